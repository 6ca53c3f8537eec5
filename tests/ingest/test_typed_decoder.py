"""The block parser's typed decoder (numbers checked by msgspec) gives the reference's result.

The parsers here run without the compiled line scanner (``native=False``), which would otherwise
take these lines before msgspec sees them (tests/ingest/test_line_scanner.py covers it).

Seeded: the same blocks every run. ``tests/ingest/test_records.py`` fuzzes the whole block parser
against the per-record reference; these cases make sure the typed decoder really runs, and that
a type it refuses sends the run to the untyped decoder with the same result.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from exporter.ingest.block_parser import TYPED_MISSES, Block, BlockParser
from exporter.ingest.records import RecordSpec, _predictions_per_record
from tests.ingest.reference import assert_same_result

NOW = 1_764_151_200.0
SPEC = RecordSpec(model="m", feature_names=("a", "b", "c"))


def _line(rec: dict[str, Any]) -> bytes:
    return json.dumps(rec).encode()


def _record(i: int, rng: np.random.Generator, odd: float) -> dict[str, Any]:
    def number() -> Any:
        u = rng.random()
        if u < odd:  # the reference's odd cases: text, booleans, huge or integral numbers, null, nested
            return [None, "x", True, 10**400, -(10**30), 7, [1], {"k": 1}, 0, -0.0][int(rng.integers(0, 10))]
        return round(float(rng.normal()), 4)

    rec: dict[str, Any] = {"id": f"r{i}", "prediction": int(rng.integers(0, 2)), "timestamp": NOW - i}
    if rng.random() > 0.1:
        rec["confidence"] = number() if rng.random() < odd else round(float(rng.random()), 4)
    if rng.random() > 0.1:
        p = round(float(rng.random()), 4)
        rec["probabilities"] = {"0": 1 - p if rng.random() > odd else number(), "1": p}
    if rng.random() > 0.05:
        rec["features"] = {k: number() for k in ("a", "b", "c") if rng.random() > 0.1}
    return rec


def _blocks(lines: list[bytes]) -> list[Block]:
    data = b"\n".join(lines) + b"\n"
    return [Block(data, "p.jsonl", 0)]


def test_typed_decoder_takes_a_clean_block() -> None:
    rng = np.random.default_rng(7)
    lines = [_line(_record(i, rng, 0.0)) for i in range(5000)]
    parser = BlockParser("predictions", SPEC, native=False)
    got, _ = parser.parse(_blocks(lines), NOW)
    assert parser._typed_misses == 0 and parser.fast_records == len(lines)
    assert_same_result(got, _predictions_per_record(lines, SPEC, NOW, ()))
    assert got.batch.features["a"].dtype == np.float64  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("odd", [0.001, 0.02, 0.3])
def test_typed_and_untyped_runs_match_the_reference(seed: int, odd: float) -> None:
    rng = np.random.default_rng(1000 + seed)
    lines = [_line(_record(i, rng, odd)) for i in range(int(rng.integers(1, 9000)))]
    parser = BlockParser("predictions", SPEC, small_run=1, native=False)
    got, _ = parser.parse(_blocks(lines), NOW)
    assert_same_result(got, _predictions_per_record(lines, SPEC, NOW, ()))
    assert parser._typed_misses <= TYPED_MISSES


def test_a_text_feature_turns_the_parser_untyped_for_good() -> None:
    lines = [_line({"id": f"r{i}", "prediction": 1, "features": {"a": 1.5, "b": "DE"}}) for i in range(10_000)]
    parser = BlockParser("predictions", SPEC, native=False)
    for _ in range(2):
        got, _ = parser.parse(_blocks(lines), NOW)
        assert_same_result(got, _predictions_per_record(lines, SPEC, NOW, ()))
    assert parser._typed_misses == TYPED_MISSES and parser.fast_records == 2 * len(lines)
