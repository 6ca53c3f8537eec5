"""The evidence a retraining request carries: one window's numbers for a model version, read from
the latest published Report (typed values; never the rendered text or live pipeline state, since
the webhook runs on an HTTP thread)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from exporter.report.model import Report


def _finite(x: float) -> float | None:
    """JSON has no NaN: a missing number is null."""
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class Evidence:
    """Why a version needs retraining: one window's numbers at the time of the alert."""

    window: str
    accuracy: float
    baseline: float
    drop: float
    samples: int
    severity: str
    drift_detected: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "accuracy": _finite(self.accuracy),
            "baseline": _finite(self.baseline),
            "drop": _finite(self.drop),
            "samples": self.samples,
        }


EvidenceLookup = Callable[[str, str], "Evidence | None"]


def evidence_from_report(report: Report, model: str, version: str) -> Evidence | None:
    """The evidence for ``model``/``version`` in ``report``, or None for an unknown version.

    Of the windows where drift is detected, the one with the largest accuracy drop; when no
    window shows drift (it may have recovered since the alert fired), the first window.
    """
    v = report.version(model, version)
    if v is None or not v.windows:
        return None
    found = [Evidence(window=w.window, accuracy=w.accuracy, baseline=v.baseline_accuracy, drop=w.accuracy_drop,
                      samples=w.labeled, severity=w.severity, drift_detected=w.drift_detected)
             for w in v.windows]
    drifting = [e for e in found if e.drift_detected and not math.isnan(e.drop)]
    return max(drifting, key=lambda e: e.drop) if drifting else found[0]


class HasReport(Protocol):
    @property
    def report(self) -> Report: ...


def evidence_from_pipeline(pipeline: HasReport) -> EvidenceLookup:
    """An evidence lookup reading the latest Report published by ``pipeline`` (the ``Pipeline``,
    or the runtime that keeps the last Report it published across reloads). Reading a reference
    is atomic, and a Report is immutable, so calling it from an HTTP thread is safe."""

    def lookup(model: str, version: str) -> Evidence | None:
        return evidence_from_report(pipeline.report, model, version)

    return lookup
