"""Catching up on a backlog: labels are read in step with their predictions, so the bounded join
keeps every pair instead of pushing labels out as orphans (``Pipeline._pace_labels``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import Baseline, Config, FileSourceConfig, GlobalConfig, JoinConfig, ModelConfig, Window
from exporter.core.pipeline import Pipeline
from exporter.sources.file_tail import FileTailSource
from tests.helpers import FakeClock

N = 12_000
MAX_PENDING = 1_500
BUDGET = 64 << 10  # bytes per poll of each file source: ~300 predictions, ~1,300 labels


def _write_backlog(tmp: Path) -> None:
    t0 = 1_800_000_000.0
    pad = "x" * 120  # prediction lines are ~4x longer than label lines, as real ones are
    with (tmp / "predictions.jsonl").open("w") as f:
        for i in range(N):
            f.write(f'{{"id":"r{i}","model_version":"1","timestamp":{t0 + i * 0.5},"prediction":{i % 2},'
                    f'"confidence":0.9,"note":"{pad}"}}\n')
    with (tmp / "labels.jsonl").open("w") as f:
        for i in range(N):
            f.write(f'{{"id":"r{i}","label":{(i // 3) % 2}}}\n')


def _run(tmp: Path) -> Pipeline:
    model = ModelConfig(name="m", task="binary", classes=("0", "1"), baseline=Baseline(accuracy=0.9),
                        join=JoinConfig(ttl=72 * 3600.0, max_pending=MAX_PENDING))
    preds = FileSourceConfig(name="p", kind="predictions", path=str(tmp / "predictions.jsonl"), model="m",
                             max_line_bytes=4096)
    labels = FileSourceConfig(name="l", kind="labels", path=str(tmp / "labels.jsonl"), max_line_bytes=4096)
    cfg = Config(global_=GlobalConfig(windows=(Window("1h", 3600.0),)), models=(model,), sources=(preds, labels))
    clock = FakeClock(1_800_010_000.0)
    sources = [FileTailSource(preds, max_bytes_per_poll=BUDGET), FileTailSource(labels, max_bytes_per_poll=BUDGET)]
    p = Pipeline(cfg, clock, sources=sources)
    for _ in range(200):
        p.run_cycle()
        clock.t += 1.0
    return p


def _joined(p: Pipeline) -> int:
    return int(p.versions[("m", "1")].labeled_total.sum())


def test_labels_keep_pace_with_a_prediction_backlog(tmp_path: Path) -> None:
    _write_backlog(tmp_path)
    p = _run(tmp_path)
    assert _joined(p) == N
    assert sum(p.orphans_total.values()) == 0
    assert p.versions[("m", "1")].expired_total == 0
    assert p.joiner.pending_count("m") == 0


def test_without_pacing_the_bounded_join_loses_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the same backlog read at full speed overflows the waiting-label bound."""
    monkeypatch.setattr(Pipeline, "_pace_labels", lambda self, src, read: None)
    _write_backlog(tmp_path)
    p = _run(tmp_path)
    assert sum(p.orphans_total.values()) > 0
    assert _joined(p) < N


def test_a_backlog_is_read_cycle_after_cycle_without_waiting_for_the_interval(tmp_path: Path) -> None:
    """With a 60 s poll interval, a backlog of ~10 polls' worth is read in seconds, not minutes."""
    from exporter.config import load_config
    from exporter.runtime.app import Exporter
    from tests.helpers import wait_for

    n = 4_000
    with (tmp_path / "predictions.jsonl").open("w") as f:
        for i in range(n):
            f.write(f'{{"id":"r{i}","model_version":"1","prediction":1,"confidence":0.9,"note":"{"y" * 200}"}}\n')
    (tmp_path / "config.yaml").write_text(
        "global: {poll_interval: 60s, windows: [1h]}\n"
        "models: [{name: m, task: binary, classes: ['0', '1']}]\n"
        "sources:\n"
        f"  - {{name: p, kind: predictions, type: file, path: '{tmp_path}/predictions.jsonl', model: m,\n"
        "      max_line_bytes: 1000, max_bytes_per_poll: 100000}\n")
    ex = Exporter(load_config(tmp_path / "config.yaml"), "127.0.0.1:0")
    ex.start()
    try:
        # ~250 bytes a line, 100 kB a poll: about 10 polls; at the interval that would take 10 minutes
        wait_for(lambda: ex.pipeline.source_stats["p"].records >= n, timeout=30, what="the backlog read")
        assert not ex.pipeline.has_backlog
    finally:
        ex.request_stop()
        ex.stop()
