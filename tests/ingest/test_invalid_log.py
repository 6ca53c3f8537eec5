"""Log lines about skipped records say where to look, and their counts add up to the counter
(issue 15, point 5). Real files tailed by the real pipeline; only the clock is ours."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exporter.config import parse_config
from exporter.core.pipeline import Pipeline
from tests.helpers import FakeClock

GOOD = b'{"id": "%d", "prediction": 1}\n'
BAD_CONF = b'{"id": "x%d", "prediction": 1, "confidence": 7}\n'


def skipped(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "invalid records skipped"]


def test_log_lines_locate_and_add_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_bytes(b"")
    cfg = parse_config({
        "models": [{"name": "m", "classes": ["0", "1"]}],
        "sources": [{"name": "p", "kind": "predictions", "type": "file", "path": str(preds), "model": "m"}],
    })
    clock = FakeClock(1_800_000_000.0)
    p = Pipeline(cfg, clock)
    caplog.set_level(logging.WARNING, logger="exporter.core.pipeline")
    first = GOOD % 1 + GOOD % 2
    preds.write_bytes(first + BAD_CONF % 1 + BAD_CONF % 2 + b"not json\n")
    p.run_cycle()
    lines = skipped(caplog)
    by_reason = {r.reason: r for r in lines}  # type: ignore[attr-defined]
    assert by_reason["invalid_confidence"].count == 2  # type: ignore[attr-defined]
    assert by_reason["invalid_confidence"].where == f"{preds}:{len(first)}"  # type: ignore[attr-defined]
    offset = len(first + BAD_CONF % 1 + BAD_CONF % 2)
    assert by_reason["invalid_json"].where == f"{preds}:{offset}"  # type: ignore[attr-defined]

    # within the rate limit: counted, not logged ...
    caplog.clear()
    for k in range(3, 6):
        clock.t += 10
        with preds.open("ab") as f:
            f.write(BAD_CONF % k)
        p.run_cycle()
    assert skipped(caplog) == []
    # ... and the next line carries everything skipped since the last one
    clock.t += 60
    before = preds.stat().st_size
    with preds.open("ab") as f:
        f.write(GOOD % 9 + BAD_CONF % 6)
    p.run_cycle()
    (line,) = skipped(caplog)
    assert line.count == 4 and line.reason == "invalid_confidence"  # type: ignore[attr-defined]
    assert line.where == f"{preds}:{before + len(GOOD % 9)}"  # type: ignore[attr-defined]
    assert p.source_stats["p"].invalid["invalid_confidence"] == 2 + 4


def test_refusals_after_parsing_are_located_by_the_poll_span(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    preds = tmp_path / "preds.jsonl"
    data = GOOD % 1 + GOOD % 2 + GOOD % 1  # the second "1" is a duplicate, known only after parsing
    preds.write_bytes(data)
    cfg = parse_config({
        "models": [{"name": "m", "classes": ["0", "1"]}],
        "sources": [{"name": "p", "kind": "predictions", "type": "file", "path": str(preds), "model": "m"}],
    })
    p = Pipeline(cfg, FakeClock(1_800_000_000.0))
    caplog.set_level(logging.WARNING, logger="exporter.core.pipeline")
    p.run_cycle()
    (line,) = skipped(caplog)
    assert line.reason == "duplicate" and line.count == 1  # type: ignore[attr-defined]
    assert line.where == f"{preds}:0-{len(data) - 1}"  # type: ignore[attr-defined]
