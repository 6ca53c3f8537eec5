"""The cycle's mutable state -> the immutable ``Report`` (``exporter.report.model``).

The pipeline calls ``build_report`` once per cycle, on its own thread; what it reads of the
pipeline is ``CycleState`` (the pipeline satisfies it), so this module does not import the
pipeline that calls it. Every number is copied out as plain Python values: a Report shares no
array with the state that goes on changing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from exporter.config import Config
from exporter.core.join import Joiner
from exporter.core.source_stats import SourceStats
from exporter.core.versions import Histogram, VersionState
from exporter.foundation.reject_reasons import reasons_for
from exporter.report.model import (
    ConfidenceSummary,
    HistogramValues,
    JoinReport,
    Report,
    SourceReport,
    Thresholds,
    VersionReport,
    WindowReport,
)
from exporter.sources.base import Source
from exporter.sources.file_tail import FileTailSource


class CycleState(Protocol):
    """The pipeline state a Report is built from (read-only here)."""

    @property
    def config(self) -> Config: ...
    @property
    def sources(self) -> Sequence[Source]: ...
    @property
    def source_stats(self) -> Mapping[str, SourceStats]: ...
    @property
    def versions(self) -> Mapping[tuple[str, str], VersionState]: ...
    @property
    def orphans_total(self) -> Mapping[str, int]: ...
    @property
    def joiner(self) -> Joiner: ...


def build_report(p: CycleState, now: float, ready: bool) -> Report:
    return Report(
        created=now,
        ready=ready,
        versions=tuple(version_report(vs, model, version) for (model, version), vs in sorted(p.versions.items())),
        orphan_labels=_orphans(p),
        sources=tuple(source_report(src, p.source_stats[src.name], now) for src in p.sources),
        join=_join(p),
    )


def histogram_values(h: Histogram) -> HistogramValues:
    return HistogramValues(tuple(h.bounds.tolist()), tuple(h.cumulative().tolist()), h.total, h.count)


def version_report(vs: VersionState, model_name: str, version: str) -> VersionReport:
    m = vs.model
    names = tuple(vs.classes.names)
    k = len(names)
    t = m.thresholds
    windows = []
    for i, w in enumerate(vs.windows):
        s = vs.window_stats(i)
        mt, cs = s.metrics, s.confidence
        windows.append(WindowReport(
            window=s.window,
            seconds=w.seconds,
            predictions=s.predictions,
            labeled=s.labeled,
            accuracy=float(mt.accuracy),
            accuracy_lower=float(s.accuracy_lower),
            accuracy_upper=float(s.accuracy_upper),
            precision=tuple(mt.precision[:k].tolist()),
            recall=tuple(mt.recall[:k].tolist()),
            f1=tuple(mt.f1[:k].tolist()),
            macro_precision=float(mt.macro_precision),
            macro_recall=float(mt.macro_recall),
            macro_f1=float(mt.macro_f1),
            coverage=float(s.coverage),
            confidence=ConfidenceSummary(float(cs.mean), float(cs.median), float(cs.stddev), float(cs.min),
                                         float(cs.max), float(cs.low_share)),
            calibration_error=float(s.calibration_error),
            accuracy_drop=s.accuracy_drop,
            drop_p_value=float(s.drop_p_value),
            drift_detected=s.drift_detected,
            severity=s.severity,
        ))
    return VersionReport(
        model=model_name,
        version=version,
        task=m.task,
        positive_class=m.positive_class,
        classes=names,
        first_seen=vs.first_seen,
        baseline_accuracy=float(vs.baseline_accuracy),
        thresholds=Thresholds(t.accuracy, t.drift, t.confidence, t.min_samples),
        predicted_total=tuple(vs.predicted_total[:k].tolist()),
        labeled_total=tuple(tuple(row) for row in vs.labeled_total[:k, :k].tolist()),
        correct_total=vs.correct_total,
        expired_total=vs.expired_total,
        confidence_histogram=histogram_values(vs.confidence_hist),
        label_delay_histogram=histogram_values(vs.delay_hist),
        windows=tuple(windows),
        drift=vs.drift.report(),
    )


def source_report(src: Source, st: SourceStats, now: float) -> SourceReport:
    # every reason this source can produce, at 0 until it happens, so increase() works from the start
    reasons = sorted(set(reasons_for(src.config)) | set(st.invalid))
    return SourceReport(
        name=src.name,
        up=src.health.up,
        records=st.records,
        invalid=tuple((r, st.invalid.get(r, 0)) for r in reasons),
        errors=src.health.errors_total,
        last_success=src.health.last_success,
        newest_timestamp=st.newest_timestamp,
        lag_seconds=max(0.0, now - st.newest_timestamp) if st.newest_timestamp is not None else None,
        poll_duration=histogram_values(st.poll_duration),
        files_matched=src.files_matched if isinstance(src, FileTailSource) else None,
    )


def _unscoped_labels(p: CycleState) -> bool:
    """A labels source that names no model may bring labels of any model, or of none known."""
    return any(s.config.kind == "labels" and s.config.model is None for s in p.sources)


def _orphans(p: CycleState) -> tuple[tuple[str, int], ...]:
    # every configured model (and "" when a labels source may carry labels naming none), so the
    # series exist at 0 before the first orphan
    models = {m.name for m in p.config.models} | set(p.orphans_total)
    if _unscoped_labels(p):
        models.add("")
    return tuple((m, p.orphans_total.get(m, 0)) for m in sorted(models))


def _join(p: CycleState) -> tuple[JoinReport, ...]:
    j = p.joiner
    out = [JoinReport(m.name, j.pending_count(m.name), j.waiting_count(m.name), j.forgotten_total(m.name))
           for m in p.config.models]
    if j.waiting_count(None) or _unscoped_labels(p):
        out.append(JoinReport("", None, j.waiting_count(None), None))
    return tuple(out)
