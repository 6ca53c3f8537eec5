"""Ingest's whole-column helpers in C (``_columns.c``), handed back as numpy arrays.

Each runs without the GIL, so while the parsing thread finds a block's lines, checks its line
guards or hashes its ids, the pipeline thread goes on applying the poll before. Each has numpy
twin code where it is called (``block_parser``, ``ids``, ``batch_ops``): the fallback where the
extension was not built (``AVAILABLE`` False) and the reference the tests hold it to.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from exporter.foundation.arrays import BoolArray, HashArray, IntArray

try:
    from exporter.ingest import _columns  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the callers' numpy code does the work
    _columns = None

AVAILABLE: bool = _columns is not None


def line_bounds(data: bytes) -> tuple[IntArray, IntArray]:
    """Start and end (exclusive) of every non-empty line of ``data``."""
    starts, ends = _columns.line_bounds(data)
    return np.frombuffer(starts, dtype=np.int64), np.frombuffer(ends, dtype=np.int64)


def line_guards(data: bytes, starts: IntArray, ends: IntArray, max_line_bytes: int) -> BoolArray:
    """The block parser's line guards (its module docstring): True for a line the decoders must not see."""
    mask = _columns.line_guards(data, np.ascontiguousarray(starts, dtype=np.int64),
                                np.ascontiguousarray(ends, dtype=np.int64), max_line_bytes)
    return np.frombuffer(mask, dtype=np.bool_)


def stable_hashes(offsets: IntArray, data: Any) -> HashArray:
    """``ids.stable_id_hashes`` of the ids ``data[offsets[i]:offsets[i + 1]]`` (``data``: any buffer)."""
    out = _columns.stable_hashes(np.ascontiguousarray(offsets, dtype=np.int64), data if data is not None else b"")
    return np.frombuffer(out, dtype=np.uint64)


def first_by_hash(hashes: HashArray) -> tuple[BoolArray, IntArray]:
    """Whether each row's hash comes for the first time, and the row where it first came."""
    first, first_row = _columns.first_by_hash(np.ascontiguousarray(hashes, dtype=np.uint64))
    return np.frombuffer(first, dtype=np.bool_), np.frombuffer(first_row, dtype=np.int64)
