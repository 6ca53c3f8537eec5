"""Parsing ahead (``global.ingest_threads: 2``): while the pipeline thread applies one poll, the
next ones are parsed on a second thread. Whatever the thread does, the result must be exactly what
parsing each poll in turn gives, and a cycle that fails must lose and double-count nothing."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from exporter.config import Baseline, Config, FileSourceConfig, GlobalConfig, JoinConfig, ModelConfig, Window
from exporter.core import pipeline as pipeline_module
from exporter.core.pipeline import Pipeline
from exporter.report import catalogue
from exporter.report.snapshot import render
from exporter.sources.file_tail import FileTailSource
from tests.helpers import FakeClock

N = 4_000
BUDGET = 24 << 10  # ~200 predictions a poll: a backlog of ~20 polls per source
T0 = 1_800_000_000.0


def _write(tmp: Path) -> None:
    """Predictions and their labels, with what the pipeline refuses mixed in: malformed lines,
    repeated ids, a class the model does not have, labels without a prediction. Seeded."""
    rng = random.Random(7)
    with (tmp / "predictions.jsonl").open("w") as p, (tmp / "labels.jsonl").open("w") as lab:
        for i in range(N):
            version = "2" if i > N // 2 and i % 3 == 0 else "1"
            pred = "7" if i % 97 == 0 else str(rng.randrange(2))
            p.write(f'{{"id":"r{i}","model_version":"{version}","timestamp":{T0 + i * 0.01},'
                    f'"prediction":"{pred}","confidence":{rng.random():.4f},"x":{rng.gauss(0, 1):.5f}}}\n')
            if i % 50 == 0:
                p.write('{"id": broken\n')
            if i % 70 == 0:
                p.write(f'{{"id":"r{i - 1}","prediction":"0","timestamp":{T0}}}\n')  # a repeated id
            if i % 5 != 0:
                truth = pred if rng.random() < 0.8 else str(1 - int(pred) if pred != "7" else 0)
                lab.write(f'{{"id":"r{i}","label":"{truth}","timestamp":{T0 + i * 0.01 + 1}}}\n')
            if i % 90 == 0:
                lab.write(f'{{"id":"orphan{i}","label":"1","timestamp":{T0}}}\n')


def _pipeline(tmp: Path, threads: int) -> Pipeline:
    model = ModelConfig(name="m", task="binary", classes=("0", "1"), baseline=Baseline(accuracy=0.8),
                        join=JoinConfig(ttl=3600.0, max_pending=N))
    preds = FileSourceConfig(name="p", kind="predictions", path=str(tmp / "predictions.jsonl"), model="m",
                             max_line_bytes=4096)
    labels = FileSourceConfig(name="l", kind="labels", path=str(tmp / "labels.jsonl"), model="m",
                              max_line_bytes=4096)
    cfg = Config(global_=GlobalConfig(windows=(Window("1h", 3600.0),), ingest_threads=threads),
                 models=(model,), sources=(preds, labels))
    sources = [FileTailSource(preds, max_bytes_per_poll=BUDGET), FileTailSource(labels, max_bytes_per_poll=BUDGET)]
    # a timer that does not move: rounds go on until the backlog is read, the same in both runs
    return Pipeline(cfg, FakeClock(T0 + 60.0), sources=sources, timer=lambda: 0.0)


@pytest.fixture(autouse=True)
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second thread is only used where the process may use two cores; here it always is."""
    monkeypatch.setattr(pipeline_module, "USABLE_CORES", 2)


def _parsing_threads(p: Pipeline) -> set[str]:
    """Record which threads parse (wraps each source's parser)."""
    names: set[str] = set()
    for parser in p._parsers.values():
        parse = parser.parse

        def recorded(*a: Any, _parse: Any = parse, **kw: Any) -> Any:
            names.add(threading.current_thread().name)
            return _parse(*a, **kw)

        parser.parse = recorded  # type: ignore[method-assign]
    return names


def _exposition(p: Pipeline) -> bytes:
    return render(catalogue.families(p.run_cycle()))


def test_parsing_ahead_gives_exactly_what_parsing_in_turn_gives(tmp_path: Path) -> None:
    _write(tmp_path)
    in_turn, ahead = _pipeline(tmp_path, 1), _pipeline(tmp_path, 2)
    threads_in_turn, threads_ahead = _parsing_threads(in_turn), _parsing_threads(ahead)
    first = _exposition(in_turn)
    assert _exposition(ahead) == first
    assert threads_in_turn == {threading.current_thread().name}
    assert {t.split("_")[0] for t in threads_ahead} == {"mlmon-parse"}
    st = ahead.source_stats
    assert st["p"].records == N + N // 50 + N // 70 + 1
    assert st["p"].invalid == {"invalid_json": N // 50, "unknown_class": N // 97 + 1,
                               "duplicate": N // 70}  # "r-1" (i = 0) is new: a prediction of its own
    assert st["l"].records == sum(i % 5 != 0 for i in range(N)) + N // 90 + 1
    labeled = sum(i % 5 != 0 and i % 97 != 0 for i in range(N))  # a refused prediction's label waits in vain
    assert sum(sum(map(sum, v.labeled_total)) for v in ahead.report.versions) == labeled
    assert sorted(v.version for v in ahead.report.versions) == ["1", "2", "unknown"]
    assert sum(sum(v.predicted_total) for v in ahead.report.versions) == N - (N // 97 + 1) + 1
    assert in_turn.export_state()["sources"] == ahead.export_state()["sources"]
    assert not ahead.has_backlog and ahead.cycles == 1


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failed_cycle_reads_its_polls_again(tmp_path: Path, threads: int) -> None:
    """Applying the third label poll fails: the cycle is lost, but the polls it read and did not
    commit (with parsing ahead, the ones queued behind the failure too) are read again by the
    next cycle, so the totals equal a run that never failed."""
    _write(tmp_path)
    reference = _pipeline(tmp_path, 1)
    expected = _exposition(reference)
    p = _pipeline(tmp_path, threads)
    apply_labels = p.apply_labels
    calls = 0

    def failing(*a: Any, **kw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("planted")
        apply_labels(*a, **kw)

    p.apply_labels = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="planted"):
        p.run_cycle()
    assert p.has_backlog
    got = _exposition(p)  # the rest of the backlog, in one cycle
    ref_versions = {(v.version, tuple(v.predicted_total), tuple(v.labeled_total)) for v in reference.report.versions}
    assert {(v.version, tuple(v.predicted_total), tuple(v.labeled_total)) for v in p.report.versions} == ref_versions
    assert p.source_stats["p"].invalid == reference.source_stats["p"].invalid
    assert p.source_stats["l"].invalid == reference.source_stats["l"].invalid
    assert p.export_state()["sources"] == reference.export_state()["sources"]
    assert b"mlmon_accuracy" in got and got.count(b"\n") == expected.count(b"\n")


def test_a_parse_that_fails_on_the_thread_fails_the_cycle(tmp_path: Path) -> None:
    _write(tmp_path)
    p = _pipeline(tmp_path, 2)
    parse = p._parsers["l"].parse

    def failing(*a: Any, **kw: Any) -> Any:
        raise ValueError("planted")

    p._parsers["l"].parse = failing  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="planted"):
        p.run_cycle()
    p._parsers["l"].parse = parse  # type: ignore[method-assign]
    reference = _pipeline(tmp_path, 1)
    reference.run_cycle()
    p.run_cycle()
    assert p.source_stats["l"].records == reference.source_stats["l"].records
    assert p.source_stats["p"].records == reference.source_stats["p"].records


def test_in_order_applies_every_item_in_order_at_most_depth_ahead() -> None:
    """The loop alone: results applied in the items' order, parsing on one other thread, and never
    more than ``depth`` items parsed or being parsed beside the one applied (what bounds memory)."""
    from exporter.core.parse_ahead import in_order

    pulled: list[int] = []
    applied: list[tuple[int, int]] = []
    threads: set[str] = set()
    most = 0

    def items() -> Any:
        for i in range(50):
            pulled.append(i)
            yield i

    def parse(i: int) -> int:
        threads.add(threading.current_thread().name)
        return i * i

    def apply(i: int, parsed: int) -> None:
        nonlocal most
        most = max(most, len(pulled) - len(applied) - 1)  # pulled, not yet applied, besides this one
        applied.append((i, parsed))

    assert in_order(items(), parse, apply, depth=2) == 50
    assert applied == [(i, i * i) for i in range(50)]
    assert most == 2
    assert len(threads) == 1 and threading.current_thread().name not in threads


@pytest.mark.parametrize("fails", ["parse", "apply"])
def test_in_order_stops_at_a_failure_and_reads_no_further(fails: str) -> None:
    from exporter.core.parse_ahead import in_order

    pulled: list[int] = []
    applied: list[int] = []

    def items() -> Any:
        for i in range(50):
            pulled.append(i)
            yield i

    def parse(i: int) -> int:
        if fails == "parse" and i == 5:
            raise ValueError("planted")
        return i

    def apply(i: int, parsed: int) -> None:
        if fails == "apply" and i == 5:
            raise ValueError("planted")
        applied.append(i)

    with pytest.raises(ValueError, match="planted"):
        in_order(items(), parse, apply, depth=2)
    assert applied == [0, 1, 2, 3, 4]
    assert len(pulled) == 8  # the failed item and the two queued behind it
