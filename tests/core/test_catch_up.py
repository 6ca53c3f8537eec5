"""Catching up on a backlog inside one cycle (``Pipeline.run_cycle``): rounds of polls until the
backlog is read or ``CATCH_UP_SECONDS`` have passed, then one Report; the join's bound holds
after every round, not only at the end of the cycle."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.config import Baseline, Config, FileSourceConfig, GlobalConfig, JoinConfig, ModelConfig, Window
from exporter.core import pipeline as pipeline_module
from exporter.core.pipeline import Pipeline
from exporter.sources.file_tail import FileTailSource
from tests.helpers import FakeClock

N = 3_000
BUDGET = 16 << 10  # ~110 predictions a poll: the backlog is ~27 polls
MAX_PENDING = 400
T0 = 1_800_000_000.0


def _pipeline(tmp: Path, timer: Callable[[], float] | None = None, threads: int = 1) -> Pipeline:
    with (tmp / "predictions.jsonl").open("w") as f:
        for i in range(N):
            f.write(f'{{"id":"r{i}","model_version":"1","timestamp":{T0 + i * 0.01},"prediction":{i % 2},'
                    f'"confidence":0.9,"note":"{"x" * 80}"}}\n')
    model = ModelConfig(name="m", task="binary", classes=("0", "1"), baseline=Baseline(accuracy=0.9),
                        join=JoinConfig(ttl=3600.0, max_pending=MAX_PENDING))
    preds = FileSourceConfig(name="p", kind="predictions", path=str(tmp / "predictions.jsonl"), model="m",
                             max_line_bytes=4096)
    cfg = Config(global_=GlobalConfig(windows=(Window("1h", 3600.0),), ingest_threads=threads), models=(model,),
                 sources=(preds,))
    source = FileTailSource(preds, max_bytes_per_poll=BUDGET)
    return Pipeline(cfg, FakeClock(T0 + 60.0), sources=[source], timer=timer or time.perf_counter)


def test_one_cycle_reads_the_whole_backlog_and_publishes_one_report(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    report = p.run_cycle()
    assert p.cycles == 1
    assert p.source_stats["p"].records == N
    assert not p.has_backlog
    # the Report is built after the last round: it counts every prediction read
    (version,) = report.versions
    assert sum(version.predicted_total) == N


def test_the_join_bound_holds_after_every_round(tmp_path: Path) -> None:
    p = _pipeline(tmp_path)
    pending_after_round: list[int] = []
    advance = p.advance

    def watched(now: float) -> None:
        advance(now)
        pending_after_round.append(p.joiner.pending_count("m"))

    p.advance = watched  # type: ignore[method-assign]
    p.run_cycle()
    assert len(pending_after_round) >= 20  # one per poll of the backlog
    assert max(pending_after_round) == MAX_PENDING
    assert p.versions[("m", "1")].expired_total == N - MAX_PENDING


def test_a_cycle_stops_catching_up_after_its_time(tmp_path: Path) -> None:
    """A timer that moves 10 s per reading: the first round already used the time, so each
    cycle reads one poll and the backlog takes a cycle per poll (the Reports keep coming)."""
    ticks = itertools.count()
    p = _pipeline(tmp_path, timer=lambda: 10.0 * next(ticks))
    p.run_cycle()
    first = p.source_stats["p"].records
    assert 0 < first < N // 10
    assert p.has_backlog
    cycles = 1
    while p.has_backlog:
        p.run_cycle()
        cycles += 1
    assert p.source_stats["p"].records == N
    assert cycles >= N // first - 1


@pytest.mark.parametrize("threads", [1, 2])
def test_the_catch_up_time_counts_from_the_start_of_the_cycle(tmp_path: Path, threads: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A timer that moves 20 ms per reading: a poll takes well under the second, the cycle as a
    whole passes it after a few polls and stops there (not after the whole backlog, as a limit
    measured from each poll's start would)."""
    monkeypatch.setattr(pipeline_module, "USABLE_CORES", 2)
    ticks = itertools.count()
    p = _pipeline(tmp_path, timer=lambda: 0.02 * next(ticks), threads=threads)
    p.run_cycle()
    assert p.has_backlog
    polls = int(p.source_stats["p"].poll_duration.count)
    assert 2 <= polls <= 12, polls  # ~7 readings a poll: 1 s is ~7 polls, the backlog ~27


def test_the_round_cap_ends_a_cycle_whose_clock_does_not_move(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "MAX_CATCH_UP_ROUNDS", 3)
    p = _pipeline(tmp_path, timer=lambda: 0.0)
    p.run_cycle()
    assert p.has_backlog
    assert 0 < p.source_stats["p"].records < N


def test_records_without_a_version_are_told_once_per_source(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Predictions without a model_version count as version "unknown"; the source is told so once
    (a misspelt version field would otherwise show only as an odd label value), and not while
    all its records carry a version."""
    caplog.set_level("INFO", logger="exporter")
    p = _pipeline(tmp_path)  # N predictions of version "1"
    clock = p.clock
    assert isinstance(clock, FakeClock)

    def told() -> int:
        return sum("counted as version" in r.getMessage() and getattr(r, "source", None) == "p"
                   for r in caplog.records)

    p.run_cycle()
    assert told() == 0
    path = tmp_path / "predictions.jsonl"
    for cycle in range(2):
        with path.open("a") as f:
            f.writelines(f'{{"id":"u{cycle}-{i}","prediction":1}}\n' for i in range(30))
            f.writelines(f'{{"id":"w{cycle}-{i}","model_version":"1","prediction":1}}\n' for i in range(30))
        clock.t += 1.0
        p.run_cycle()
        assert told() == 1, cycle
    assert sum(p.versions[("m", "unknown")].predicted_total) == 60
