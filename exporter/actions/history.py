"""Performance history: one Parquet row per model, version and window every ``history.interval``.

Rows go to ``<history.directory>/history-YYYY-MM-DD.parquet``, one file per UTC day (DESIGN
§2, §8). The writer reads the published Report (``exporter.report.model``), the same numbers
Prometheus scrapes, so the history never disagrees with the metrics and writing never touches
live pipeline state.

Columns (schema ``SCHEMA``; their names are a file format, kept as they are), each taken from
a ``VersionReport`` ``v`` and one of its ``WindowReport`` s ``w``:

=====================  =========================================================================
timestamp              when the numbers were computed (``Report.created``), UTC, milliseconds
model, version, window ``v.model``, ``v.version``, ``w.window``
accuracy               ``w.accuracy``
precision, recall, f1  binary models: of the positive class (``v.positive_class``, default ``1``);
                       multiclass models: macro averages over the classes seen in the window
                       (``w.macro_*``). ``metric_average`` says which: ``class=<c>`` or ``macro``.
mean_confidence        ``w.confidence.mean``
drift_detected         ``w.drift_detected``
drift_severity         ``w.severity``: the accuracy-drift tier, ``low`` / ``high`` / ``critical``
retraining_triggered   a retraining request for the version was accepted since the previous row
samples                labelled predictions in the window (``w.labeled``)
predictions            predictions in the window (``w.predictions``)
baseline_accuracy      ``v.baseline_accuracy``; accuracy_drop: ``w.accuracy_drop``
=====================  =========================================================================

A number the exporter reports as NaN (an empty window, a 0/0 ratio) is stored as null.

Crash safety: appending reads the day's file, adds the rows and writes the whole file to a temp
file in the same directory, fsyncs it and renames it over the old one. A crash leaves the old
file or the new one, never a torn file. A day's file stays small (interval 5m, 20 series:
5,760 rows), so rewriting it is cheap. A damaged file is renamed aside (``.corrupt-<time>``)
and a new one started, so new rows are never lost because of an old problem.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exporter.config import Config
from exporter.config.durations import parse_duration
from exporter.foundation.atomic_file import atomic_write
from exporter.foundation.clock import Clock
from exporter.report.model import HistoryStats, Report

if TYPE_CHECKING:  # pandas costs ~35 MiB of RSS; only the `history` command needs it, so it is imported there
    import pandas as pd

log = logging.getLogger(__name__)
# triggered(model, version, since) -> whether a retraining request was accepted after `since`
TriggeredLookup = Callable[[str, str, float], bool]

FILE_PREFIX = "history-"
FILE_RE = re.compile(r"^history-(\d{4}-\d{2}-\d{2})\.parquet$")

SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("ms", tz="UTC")),
    ("model", pa.string()),
    ("version", pa.string()),
    ("window", pa.string()),
    ("accuracy", pa.float64()),
    ("precision", pa.float64()),
    ("recall", pa.float64()),
    ("f1", pa.float64()),
    ("mean_confidence", pa.float64()),
    ("drift_detected", pa.bool_()),
    ("drift_severity", pa.string()),
    ("retraining_triggered", pa.bool_()),
    ("samples", pa.int64()),
    ("predictions", pa.int64()),
    ("baseline_accuracy", pa.float64()),
    ("accuracy_drop", pa.float64()),
    ("metric_average", pa.string()),
])

def history_file(directory: Path | str, t: float) -> Path:
    """The file that holds rows with timestamp ``t`` (its UTC day)."""
    return Path(directory) / f"{FILE_PREFIX}{datetime.fromtimestamp(t, UTC):%Y-%m-%d}.parquet"


def _num(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def rows_from_report(report: Report, triggered: Callable[[str, str], bool] | None = None,
                     timestamp: float | None = None) -> list[dict[str, Any]]:
    """One history row per (model, version, window) of ``report``."""
    ts = timestamp if timestamp is not None else report.created
    when = datetime.fromtimestamp(ts, UTC)
    rows: list[dict[str, Any]] = []
    for v in report.versions:
        for w in v.windows:
            if v.task == "binary":
                cls = v.positive_class
                precision, recall, f1 = w.class_scores(v.classes, cls) or (None, None, None)
                average = f"class={cls}"
            else:
                precision, recall, f1 = w.macro_precision, w.macro_recall, w.macro_f1
                average = "macro"
            rows.append({
                "timestamp": when,
                "model": v.model,
                "version": v.version,
                "window": w.window,
                "accuracy": _num(w.accuracy),
                "precision": _num(precision),
                "recall": _num(recall),
                "f1": _num(f1),
                "mean_confidence": _num(w.confidence.mean),
                "drift_detected": w.drift_detected,
                "drift_severity": w.severity,
                "retraining_triggered": bool(triggered(v.model, v.version)) if triggered is not None else False,
                "samples": w.labeled,
                "predictions": w.predictions,
                "baseline_accuracy": _num(v.baseline_accuracy),
                "accuracy_drop": _num(w.accuracy_drop),
                "metric_average": average,
            })
    return rows


def append_rows(directory: Path | str, rows: list[dict[str, Any]]) -> list[Path]:
    """Append ``rows`` to their day files (crash-safe rewrite); returns the files written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    by_day: dict[Path, list[dict[str, Any]]] = {}
    for r in rows:
        by_day.setdefault(history_file(directory, r["timestamp"].timestamp()), []).append(r)
    for path, day_rows in by_day.items():
        new = pa.Table.from_pylist(day_rows, schema=SCHEMA)
        table = new
        old = _read_existing(path)
        if old is not None:
            table = pa.concat_tables([old, new], promote_options="default")
        _write_atomic(table, path)
    return list(by_day)


def _read_existing(path: Path) -> pa.Table | None:
    if not path.exists():
        return None
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.error("history file unreadable, moved aside and started anew",
                  extra={"path": str(path), "moved_to": str(aside), "err": str(e)})
        os.replace(path, aside)
        return None


def _write_atomic(table: pa.Table, path: Path) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write(path, sink.getvalue().to_pybytes())


class HistoryWriter:
    """Writes the history rows every ``history.interval``; call ``maybe_write`` once per cycle.

    ``triggered`` answers whether a retraining request for a version was accepted after a
    time (``RetrainingService.retraining_triggered``). ``maybe_write`` never raises for I/O
    problems: they are logged and counted (``stats``: ``mlmon_exporter_history_write_errors_total``).
    """

    def __init__(self, config: Config, clock: Clock = time.time,
                 triggered: TriggeredLookup | None = None) -> None:
        self._config = config
        self._clock = clock
        self._triggered = triggered
        self._last: float | None = None
        self._loaded_last = False
        self._lock = threading.Lock()
        self.rows_written = 0
        self.errors = 0
        self.last_success: float | None = None

    @property
    def directory(self) -> Path | None:
        d = self._config.history.directory
        return Path(d) if d is not None else None

    def reconfigure(self, config: Config) -> None:
        with self._lock:
            self._config = config

    def maybe_write(self, report: Report, now: float | None = None) -> int:
        """Write the report's rows if ``history.interval`` has passed; returns rows written."""
        with self._lock:
            directory = self.directory
            if directory is None:
                return 0
            now = self._clock() if now is None else now
            if not self._loaded_last:
                self._loaded_last = True
                self._last = last_timestamp(directory, now)
            interval = self._config.history.interval
            if self._last is not None and now - self._last < interval and now >= self._last:
                return 0
            return self._write(directory, report, now, interval)

    def write(self, report: Report, now: float | None = None) -> int:
        """Write the report's rows now, whatever the interval."""
        with self._lock:
            directory = self.directory
            if directory is None:
                return 0
            now = self._clock() if now is None else now
            return self._write(directory, report, now, self._config.history.interval)

    def _write(self, directory: Path, report: Report, now: float, interval: float) -> int:
        since = self._last if self._last is not None else now - interval
        self._last = now
        lookup = self._triggered

        def triggered(model: str, version: str) -> bool:
            return lookup is not None and lookup(model, version, since)

        ts = report.created if report.created > 0 else now
        rows = rows_from_report(report, triggered, ts)
        if not rows:
            return 0
        try:
            append_rows(directory, rows)
        except (OSError, pa.ArrowException) as e:
            self.errors += 1
            log.error("cannot write performance history", extra={"directory": str(directory), "err": str(e)})
            return 0
        self.rows_written += len(rows)
        self.last_success = now
        return len(rows)

    def stats(self) -> HistoryStats:
        """The writer's counters (the ``mlmon_exporter_history_*`` metrics)."""
        with self._lock:
            return HistoryStats(self.rows_written, self.errors, self.last_success)


def last_timestamp(directory: Path, now: float) -> float | None:
    """Newest row time in today's file (so a restart keeps the interval), or None."""
    path = history_file(directory, now)
    try:
        col = pq.read_table(path, columns=["timestamp"]).column("timestamp")
    except (pa.ArrowException, OSError):
        return None
    if len(col) == 0:
        return None
    newest = pc.max(col).as_py()
    return newest.timestamp() if newest is not None else None


# --------------------------------------------------------------------------------------------
# Reading: `mlmon-exporter history`
# --------------------------------------------------------------------------------------------


def read_history(directory: Path | str, model: str | None = None, since_seconds: float | None = None,
                 now: float | None = None) -> pd.DataFrame:
    """The history rows, oldest first, optionally of one model and of the last ``since_seconds``."""
    import pandas as pd

    directory = Path(directory)
    now = time.time() if now is None else now
    cutoff = now - since_seconds if since_seconds is not None else None
    first_day = (datetime.fromtimestamp(cutoff, UTC) - timedelta(days=1)).date() if cutoff is not None else None
    tables = []
    for path in sorted(directory.glob(f"{FILE_PREFIX}*.parquet")):
        m = FILE_RE.match(path.name)
        if m is None:
            continue
        if first_day is not None and datetime.strptime(m.group(1), "%Y-%m-%d").date() < first_day:
            continue
        try:
            tables.append(pq.read_table(path))
        except (pa.ArrowException, OSError) as e:
            log.warning("history file unreadable, skipped", extra={"path": str(path), "err": str(e)})
    if not tables:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in SCHEMA.names})
    df = pa.concat_tables(tables, promote_options="default").to_pandas()
    if model is not None:
        df = df[df["model"] == model]
    if cutoff is not None:
        df = df[df["timestamp"] >= pd.Timestamp(cutoff, unit="s", tz="UTC")]
    return df.sort_values(["timestamp", "model", "version", "window"], kind="stable").reset_index(drop=True)


_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "TIME (UTC)"), ("model", "MODEL"), ("version", "VERSION"), ("window", "WINDOW"),
    ("accuracy", "ACCURACY"), ("precision", "PRECISION"), ("recall", "RECALL"), ("f1", "F1"),
    ("mean_confidence", "CONFIDENCE"), ("drift_detected", "DRIFT"), ("drift_severity", "SEVERITY"),
    ("retraining_triggered", "RETRAIN"), ("samples", "SAMPLES"),
)
_NUMERIC = {"accuracy", "precision", "recall", "f1", "mean_confidence", "samples"}


def _cell(column: str, value: Any) -> str:
    import pandas as pd

    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "-"
    if column == "timestamp":
        return str(pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S"))
    if column in ("drift_detected", "retraining_triggered"):
        return "yes" if bool(value) else "no"
    if column == "samples":
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def format_history(df: pd.DataFrame) -> str:
    """A plain-text table of history rows, one line per row."""
    cells = [[_cell(c, v) for c, v in zip([c for c, _ in _TABLE_COLUMNS], row, strict=True)]
             for row in df[[c for c, _ in _TABLE_COLUMNS]].itertuples(index=False, name=None)]
    headers = [h for _, h in _TABLE_COLUMNS]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        out = []
        for (col, _), v, w in zip(_TABLE_COLUMNS, values, widths, strict=True):
            out.append(v.rjust(w) if col in _NUMERIC else v.ljust(w))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in cells)]) + "\n"


def print_history(directory: Path | str, model: str | None = None, since_seconds: float | None = None,
                  now: float | None = None) -> str:
    """The history as a table (what ``mlmon-exporter history`` prints)."""
    df = read_history(directory, model, since_seconds, now)
    if df.empty:
        what = f" for model {model}" if model is not None else ""
        return f"no performance history{what} in {directory}\n"
    return format_history(df)


def history_command(config: Config, model: str | None = None, since: str | None = None,
                    out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``mlmon-exporter history --config.file=F [--model M] [--since 24h]``: print, return exit code."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    directory = config.history.directory
    if directory is None:
        err.write("mlmon-exporter: history.directory is not set in the configuration; no history is kept\n")
        return 1
    if model is not None and config.model(model) is None:
        known = ", ".join(m.name for m in config.models)
        err.write(f"mlmon-exporter: --model: unknown model {model!r} (configured: {known})\n")
        return 2
    since_seconds: float | None = None
    if since is not None:
        try:
            since_seconds = parse_duration(since)
        except ValueError as e:
            err.write(f"mlmon-exporter: --since: {e}\n")
            return 2
    out.write(print_history(directory, model, since_seconds))
    return 0
