"""Shared test plumbing: free ports, waiting on real conditions, requiring real tools, starting the
exporter, appending to tailed files, a fake clock, object columns, snapshot samples and hand-built
Reports. (Fixtures and command-line options live in conftest.py.)"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.report.model import (
    ConfidenceSummary,
    DriftReport,
    Estimates,
    HistogramValues,
    Thresholds,
    VersionReport,
    WindowDrift,
    WindowReport,
)
from exporter.report.snapshot import Snapshot

T = TypeVar("T")
#: Sample values by (sample name, label set).
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(fn: Callable[[], T | None], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.1, *, alive: Sequence[subprocess.Popen[Any]] = ()) -> T:
    """Poll ``fn`` until it returns something truthy; errors while waiting count as 'not yet'.

    ``alive`` are processes the condition depends on: one that exits fails the wait at once,
    naming it, instead of timing out later.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for p in alive:
            assert p.poll() is None, f"{p.args[0]} exited with {p.returncode} while waiting for {what}"
        try:
            value = fn()
            if value:
                return value
        except (OSError, ValueError, KeyError, IndexError) as e:
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


def spawn_exporter(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m exporter *args`` in its own session, stdout and stderr to ``log``."""
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "exporter", *args], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def append(path: Path, data: bytes) -> None:
    """Append ``data`` to a file a source tails."""
    with path.open("ab") as f:
        f.write(data)


def missing(what: str) -> NoReturn:
    """A tool the test needs is absent: a failure under CI (``CI`` set), a skip elsewhere."""
    (pytest.fail if os.environ.get("CI") else pytest.skip)(f"missing {what}")
    raise AssertionError("unreachable")


def require_tool(name: str) -> str:
    """Path of a binary the test needs (see ``missing``)."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} (apt-get install --no-install-recommends prometheus prometheus-alertmanager)")
    return path


class FakeClock:
    """A clock the test moves by hand: ``clock.t += 60`` is a minute passing."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def in_window(ts: npt.ArrayLike, now: float, length: float, buckets: int = 60) -> npt.NDArray[np.bool_]:
    """DESIGN §2 "Windows", from the text: the events whose epoch-aligned bucket of width
    ``length / buckets`` has an index greater than ``floor((now - length) / width)``. ``ts`` must
    already be clamped to the time each event arrived (a future stamp counts as then)."""
    width = length / buckets
    t = np.asarray(ts, dtype=np.float64)
    out: npt.NDArray[np.bool_] = np.floor(t / width) > math.floor((now - length) / width)
    return out


def obj(values: Iterable[Any]) -> npt.NDArray[np.object_]:
    """A 1-D object column of ``values`` as they are (ids, classes, versions, dicts, None): each
    value one element, even a tuple or a list, which ``np.array(..., dtype=object)`` would split."""
    items = list(values)
    return np.fromiter(items, dtype=object, count=len(items))


def samples(snapshot: Snapshot) -> Samples:
    """Every sample of the snapshot by (name, label set), for lookups that ignore label order."""
    return {(s.name, frozenset(s.labels)): s.value for f in snapshot.families for s in f.samples}


NAN = math.nan


def window_report(window: str = "1h", seconds: float = 3600.0, **fields: Any) -> WindowReport:
    """A ``WindowReport`` with every number unknown (NaN, 0, no drift) but ``fields``."""
    empty = ConfidenceSummary(NAN, NAN, NAN, NAN, NAN, NAN)
    base = WindowReport(window, seconds, 0, 0, NAN, NAN, NAN, (), (), (), NAN, NAN, NAN, NAN, empty, NAN, NAN, NAN,
                        False, "low")
    return dataclasses.replace(base, **fields)


def version_report(model: str, version: str, windows: Sequence[WindowReport] = (), **fields: Any) -> VersionReport:
    """A ``VersionReport`` of ``windows`` (binary, classes 0 and 1, no counts) but ``fields``."""
    hist = HistogramValues((), (0,), 0.0, 0)
    drift = DriftReport(0, tuple(WindowDrift(w.window, Estimates(0, NAN, NAN, NAN, NAN), ()) for w in windows),
                        (), ())
    base = VersionReport(model, version, "binary", "1", ("0", "1"), 0.0, NAN, Thresholds(0.8, 0.05, 0.75, 100),
                         (0, 0), ((0, 0), (0, 0)), 0, 0, hist, hist, tuple(windows), drift)
    return dataclasses.replace(base, **fields)


def text_samples(text: str | bytes) -> Samples:
    """Every sample of a text exposition (what a scrape serves) by (name, label set)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}
