"""The block parser against the per-record reference (DESIGN §3): ``both_paths`` parses the same
lines both ways, as lines and as file blocks, and asserts the results are identical, down to the
type of every value and where the first refusal of each reason is located. Used by every
hand-written case of tests/ingest/test_records.py and by the seeded fuzzers of
tests/ingest/test_block_parser.py."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from hypothesis import strategies as st

from exporter.ingest import line_scanner
from exporter.ingest.batches import probability_objects
from exporter.ingest.block_parser import Block, BlockParser
from exporter.ingest.ids import encode_ids, stable_id_hashes
from exporter.ingest.records import (
    RecordSpec,
    _labels_per_record,
    _predictions_per_record,
    parse_labels,
    parse_predictions,
)

NOW = 1_800_000_000.0


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode()


OFFSETS = st.one_of(st.just("Z"), st.just("z"), st.just(""),
                     st.builds(lambda sign, h, m, colon: f"{sign}{h:02d}{colon}{m:02d}",
                               st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 61),
                               st.sampled_from(["", ":"])))
rfc3339ish = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, off:
        f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{off}",
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.sampled_from("Tt x"),
    st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=12).map(lambda t: "." + t)),
    OFFSETS,
)


def assert_same_result(a: Any, b: Any) -> None:
    assert a.invalid == b.invalid and a.records == b.records
    assert a.first_bad == b.first_bad  # which record each reason's first refusal was
    assert (a.newest_timestamp is None) == (b.newest_timestamp is None)
    if a.newest_timestamp is not None:
        assert a.newest_timestamp == b.newest_timestamp
    assert type(a.batch) is type(b.batch)
    for name in a.batch.__dataclass_fields__:
        x, y = getattr(a.batch, name), getattr(b.batch, name)
        if name == "id_keys":  # handed over by the line scanner only: must be the ids' own keys
            for batch, keys in ((a.batch, x), (b.batch, y)):
                if keys is not None:
                    assert keys.encoded.equals(encode_ids(batch.id))
                    np.testing.assert_array_equal(keys.hashes, stable_id_hashes(batch.id))
            continue
        if name == "probabilities":  # the line scanner's table stands for the dicts the others build
            x, y = probability_objects(x), probability_objects(y)
        if name == "features":
            assert x.keys() == y.keys()
            pairs = [(x[k], y[k]) for k in x]
        else:
            pairs = [(x, y)]
        for u, v in pairs:
            assert u.dtype == v.dtype and u.shape == v.shape, name
            if u.dtype == np.float64:
                np.testing.assert_array_equal(u, v)
            else:
                assert [(type(e), e) for e in u.tolist()] == [(type(e), e) for e in v.tolist()], name
                for d1, d2 in zip(u.tolist(), v.tolist(), strict=True):
                    if isinstance(d1, dict):
                        assert [(type(e), e) for e in sorted(d1.items())] == \
                               [(type(e), e) for e in sorted(d2.items())]


FAST_PATHS = (True, False) if line_scanner.AVAILABLE else (False,)
"""The block parser with the compiled line scanner first (where it is built) and without it."""


def both_paths(lines: list[bytes], spec: RecordSpec, kind: str) -> float:
    """Parse with the block parser (as lines, and as file blocks; with the compiled line scanner
    and with msgspec alone) and the per-record reference; compare the results and, for the
    blocks, where each reason's first refusal is located. Returns the smallest share of records a
    fast path took."""
    return min(_both_paths(lines, spec, kind, native) for native in FAST_PATHS)


def _both_paths(lines: list[bytes], spec: RecordSpec, kind: str, native: bool) -> float:
    name = "predictions" if kind == "p" else "labels"
    reference = _predictions_per_record if kind == "p" else _labels_per_record
    slow = reference(lines, spec, NOW, ())
    parser = BlockParser(name, spec, small_run=1, native=native)
    assert_same_result(parser.parse_lines(lines, NOW), slow)
    assert_same_result((parse_predictions if kind == "p" else parse_labels)(lines, spec, NOW), slow)
    # as the file source hands them over: two blocks split at a line, the second without a final
    # newline; blank lines stay in the blocks but are no records
    in_block = [x for x in lines if b"\n" not in x]
    kept_at = [i for i, x in enumerate(in_block) if x and not x.isspace()]
    kept = [in_block[i] for i in kept_at]
    k = len(in_block) // 2
    parts = [("first", 1000, 0, in_block[:k], b"\n"), ("second", 0, k, in_block[k:], b"")] if k else \
        [("only", 7, 0, in_block, b"")]
    got, where = parser.parse([Block(b"\n".join(ls) + end, origin, offset) for origin, offset, _, ls, end in parts],
                              NOW)
    want = reference(kept, spec, NOW, ())
    assert_same_result(got, want)

    def located(record: int) -> str:  # origin:byte offset of the line a record was read from
        i = kept_at[record]
        origin, offset, first, _, _ = parts[-1] if i >= k else parts[0]
        return f"{origin}:{offset + sum(len(x) + 1 for x in in_block[first:i])}"

    assert where == {reason: located(i) for reason, i in want.first_bad.items()}
    return parser.fast_records / max(len(lines) + len(kept), 1)
