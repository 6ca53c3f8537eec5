"""Performance history: rows from the real pipeline's Report, written to Parquet and read back."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from exporter.actions.history import (
    SCHEMA,
    HistoryWriter,
    history_command,
    history_file,
    print_history,
    read_history,
)
from exporter.config import (
    Config,
    HistoryConfig,
)
from exporter.report import catalogue
from exporter.report.model import Report
from exporter.report.snapshot import render
from tests.four_versions import (
    M_PRED,
    M_TRUE,
    T0,
    Y1_PRED,
    Y1_TRUE,
    config,
    pipeline,
)
from tests.helpers import FakeClock as Clock


def rows(path: Path) -> list[dict[str, object]]:
    return list(pq.read_table(path).to_pylist())


def test_rows_written_and_read_back(tmp_path: Path) -> None:
    clock = Clock(T0)
    p = pipeline(clock, tmp_path)
    snap = p.run_cycle()
    triggered: list[tuple[str, str, float]] = []

    def lookup(model: str, version: str, since: float) -> bool:
        triggered.append((model, version, since))
        return (model, version) == ("fraud", "1")

    w = HistoryWriter(config(tmp_path), clock, lookup)
    assert w.maybe_write(snap) == 8  # 4 versions x 2 windows
    path = tmp_path / "history-2026-11-26.parquet"
    assert path == history_file(tmp_path, clock.t)
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA)
    by_key = {(r["model"], r["version"], r["window"]): r for r in table.to_pylist()}
    assert len(by_key) == 8

    v1 = by_key[("fraud", "1", "1h")]
    assert v1["timestamp"] == datetime.fromtimestamp(T0, UTC)
    assert v1["accuracy"] == pytest.approx(0.8)
    # binary: the positive class, as scikit-learn computes it
    assert v1["precision"] == pytest.approx(precision_score(Y1_TRUE, Y1_PRED, pos_label="1"))
    assert v1["recall"] == pytest.approx(recall_score(Y1_TRUE, Y1_PRED, pos_label="1"))
    assert v1["f1"] == pytest.approx(f1_score(Y1_TRUE, Y1_PRED, pos_label="1"))
    assert v1["metric_average"] == "class=1"
    assert v1["mean_confidence"] == pytest.approx(0.9)
    assert v1["drift_detected"] is True and v1["drift_severity"] == "critical"
    assert v1["retraining_triggered"] is True
    assert v1["samples"] == 200 and v1["predictions"] == 200
    assert v1["baseline_accuracy"] == 0.92 and v1["accuracy_drop"] == pytest.approx(0.12)

    v2 = by_key[("fraud", "2", "24h")]
    assert v2["accuracy"] == pytest.approx(0.95)
    assert v2["drift_detected"] is False and v2["drift_severity"] == "low"
    assert v2["retraining_triggered"] is False
    assert v2["mean_confidence"] == pytest.approx(0.8)

    # no labels yet: NaN metrics are stored as null, not as NaN
    v3 = by_key[("fraud", "3", "1h")]
    assert v3["accuracy"] is None and v3["precision"] is None and v3["samples"] == 0
    assert v3["predictions"] == 5

    # multiclass: macro averages over the classes seen
    m = by_key[("intent", "7", "1h")]
    assert m["metric_average"] == "macro"
    assert m["precision"] == pytest.approx(precision_score(M_TRUE, M_PRED, average="macro"))
    assert m["recall"] == pytest.approx(recall_score(M_TRUE, M_PRED, average="macro"))
    assert m["f1"] == pytest.approx(f1_score(M_TRUE, M_PRED, average="macro"))
    assert m["accuracy"] == pytest.approx(22 / 30)

    # "since the previous row": the first write looks back one interval
    assert {since for *_, since in triggered} == {T0 - 300.0}
    assert [x.name for x in tmp_path.iterdir()] == [path.name]  # no temp files left

    df = read_history(tmp_path, now=clock.t)
    assert len(df) == 8 and list(df.columns) == SCHEMA.names


def test_written_every_interval_one_file_per_day(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 11, 26, 23, 50, tzinfo=UTC).timestamp())
    p = pipeline(clock, tmp_path)
    w = HistoryWriter(config(tmp_path, interval=300.0), clock)
    writes = []
    for _ in range(5):  # 23:50 .. 23:54, one cycle per minute
        writes.append(w.maybe_write(p.run_cycle()))
        clock.t += 60
    assert writes == [8, 0, 0, 0, 0]
    assert w.maybe_write(p.run_cycle()) == 8  # 23:55
    clock.t += 300.0  # 00:00 the next day
    assert w.maybe_write(p.run_cycle()) == 8
    assert len(rows(tmp_path / "history-2026-11-26.parquet")) == 16
    assert len(rows(tmp_path / "history-2026-11-27.parquet")) == 8
    assert sorted(x.name for x in tmp_path.iterdir()) == ["history-2026-11-26.parquet", "history-2026-11-27.parquet"]


def test_a_restart_keeps_the_interval(tmp_path: Path) -> None:
    clock = Clock(T0)
    p = pipeline(clock, tmp_path)
    assert HistoryWriter(config(tmp_path), clock).maybe_write(p.run_cycle()) == 8
    clock.t += 100
    restarted = HistoryWriter(config(tmp_path), clock)
    assert restarted.maybe_write(p.run_cycle()) == 0
    clock.t += 200
    assert restarted.maybe_write(p.run_cycle()) == 8


def test_retraining_triggered_is_since_the_previous_row(tmp_path: Path) -> None:
    clock = Clock(T0)
    p = pipeline(clock, tmp_path)
    trigger_at = [T0 + 100.0]

    def lookup(model: str, version: str, since: float) -> bool:
        return (model, version) == ("fraud", "1") and any(since < t <= clock.t for t in trigger_at)

    w = HistoryWriter(config(tmp_path), clock, lookup)
    w.maybe_write(p.run_cycle())  # T0: trigger not yet happened
    clock.t += 300
    w.maybe_write(p.run_cycle())  # T0+300: trigger at T0+100 is in (T0, T0+300]
    clock.t += 300
    w.maybe_write(p.run_cycle())  # T0+600: nothing new
    df = read_history(tmp_path, model="fraud", now=clock.t)
    flags = df[(df["version"] == "1") & (df["window"] == "1h")]["retraining_triggered"].tolist()
    assert flags == [False, True, False]
    assert not df[df["version"] == "2"]["retraining_triggered"].any()


def test_a_damaged_file_is_moved_aside_and_new_rows_kept(tmp_path: Path) -> None:
    clock = Clock(T0)
    path = tmp_path / "history-2026-11-26.parquet"
    path.write_bytes(b"PAR1 torn")
    w = HistoryWriter(config(tmp_path), clock)
    assert w.maybe_write(pipeline(clock, tmp_path).run_cycle()) == 8
    assert len(rows(path)) == 8
    assert [x.name for x in tmp_path.glob("history-2026-11-26.parquet.corrupt-*")]


def test_write_errors_are_counted_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    clock = Clock(T0)
    w = HistoryWriter(config(blocker / "history"), clock)
    assert w.maybe_write(pipeline(clock, None).run_cycle()) == 0
    assert w.errors == 1
    text = render(catalogue.families(Report(clock.t, True, history=w.stats()))).decode()
    assert "mlmon_exporter_history_write_errors_total 1.0" in text


def test_no_directory_means_no_history(tmp_path: Path) -> None:
    clock = Clock(T0)
    w = HistoryWriter(config(None), clock)
    assert w.maybe_write(pipeline(clock, None).run_cycle()) == 0
    assert w.maybe_write(Report(clock.t, False)) == 0


def _history(tmp_path: Path, step_hours: float = 6.0, steps: int = 5) -> Clock:
    clock = Clock(T0)
    p = pipeline(clock, tmp_path)
    w = HistoryWriter(config(tmp_path), clock, lambda m, v, s: (m, v) == ("fraud", "1"))
    for _ in range(steps):
        w.maybe_write(p.run_cycle())
        clock.t += step_hours * 3600
    clock.t -= step_hours * 3600
    return clock


def test_print_history_table(tmp_path: Path) -> None:
    clock = _history(tmp_path)
    text = print_history(tmp_path, now=clock.t)
    lines = text.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "MODEL", "VERSION", "WINDOW", "ACCURACY", "PRECISION",
                                "RECALL", "F1", "CONFIDENCE", "DRIFT", "SEVERITY", "RETRAIN", "SAMPLES"]
    assert len(lines) == 1 + 5 * 8
    first = lines[1].split()
    assert first[:6] == ["2026-11-26", "10:00:00", "fraud", "1", "1h", "0.8000"]
    assert first[-4:] == ["yes", "critical", "yes", "200"]
    v3 = next(line for line in lines if line.split()[2:4] == ["fraud", "3"]).split()
    assert v3[5:9] == ["-", "-", "-", "-"]  # no labels: no accuracy
    # filters
    only_intent = print_history(tmp_path, model="intent", now=clock.t).splitlines()
    assert len(only_intent) == 1 + 5 * 2 and all(" intent " in line for line in only_intent[1:])
    recent = print_history(tmp_path, since_seconds=7 * 3600, now=clock.t).splitlines()
    assert len(recent) == 1 + 2 * 8  # the rows at +18h and +24h
    assert "no performance history for model nope" in print_history(tmp_path, model="nope", now=clock.t)
    assert "no performance history" in print_history(tmp_path / "missing", now=clock.t)


def test_history_command(tmp_path: Path) -> None:
    _history(tmp_path, step_hours=0.1, steps=2)
    out, err = io.StringIO(), io.StringIO()
    assert history_command(config(tmp_path), "fraud", None, out, err) == 0
    assert len(out.getvalue().splitlines()) == 1 + 2 * 6
    cases: list[tuple[Config, str | None, str | None, int, str]] = [
        (config(None), None, None, 1, "history.directory is not set"),
        (config(tmp_path), "nope", None, 2, "unknown model 'nope'"),
        (config(tmp_path), None, "1 day", 2, "--since"),
    ]
    for cfg, model, since, code, message in cases:
        out, err = io.StringIO(), io.StringIO()
        assert history_command(cfg, model, since, out, err) == code
        assert message in err.getvalue()
    out = io.StringIO()
    assert history_command(config(tmp_path), None, "24h", out, io.StringIO()) == 0


def test_reconfigure_moves_the_directory(tmp_path: Path) -> None:
    clock = Clock(T0)
    p = pipeline(clock, tmp_path)
    w = HistoryWriter(config(tmp_path / "a"), clock)
    w.maybe_write(p.run_cycle())
    w.reconfigure(replace(config(tmp_path / "b"), history=HistoryConfig(str(tmp_path / "b"), 300.0)))
    clock.t += 300
    w.maybe_write(p.run_cycle())
    assert (tmp_path / "a" / "history-2026-11-26.parquet").exists()
    assert (tmp_path / "b" / "history-2026-11-26.parquet").exists()


def test_values_match_the_snapshot(tmp_path: Path) -> None:
    """The history holds exactly what /metrics shows."""
    clock = Clock(T0)
    report = pipeline(clock, tmp_path).run_cycle()
    HistoryWriter(config(tmp_path), clock).maybe_write(report)
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
        (s.name, s.labels): s.value for fam in catalogue.families(report) for s in fam.samples}

    def metric(name: str, **labels: str) -> Callable[[], float]:
        return lambda: values[(name, tuple(labels.items()))]

    for r in rows(tmp_path / "history-2026-11-26.parquet"):
        if r["model"] != "fraud":
            continue
        labels = {"model": str(r["model"]), "model_version": str(r["version"]), "window": str(r["window"])}
        acc = metric("mlmon_accuracy_ratio", **labels)()
        assert (r["accuracy"] is None and math.isnan(acc)) or r["accuracy"] == acc
        assert r["samples"] == metric("mlmon_window_labeled_predictions", **labels)()
