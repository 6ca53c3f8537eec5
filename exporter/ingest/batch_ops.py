"""Whole-column operations the pipeline applies to parsed batches, with no Python per record.

Object columns (ids, classes, versions) are factorised with pandas' C hash table: each distinct
value gets a code in order of first appearance, so per-value work (a class lookup, a group)
runs once per distinct value and is broadcast back with numpy. Each function here is the
vectorised twin of a per-record loop elsewhere and gives exactly its result (tests compare).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from exporter.foundation.arrays import BoolArray, FloatArray, IntArray, ObjArray
from exporter.ingest import compiled_columns
from exporter.ingest.batches import ProbabilityTable


def factorize(values: ObjArray) -> tuple[IntArray, ObjArray]:
    """Codes (0.. in order of first appearance) and the distinct values; None is a value too
    (pandas hands it back as NaN: these columns hold text or None, never a float NaN)."""
    n = values.size
    first = values[0] if n else None
    # the usual column of a batch (its version, its model) holds one text: found with a compare
    # per row instead of hashing; the ends are looked at first so a mixed column rarely pays it
    if type(first) is str and values[n - 1] == first and values[n // 2] == first and _all_equal(values, first):
        single = np.empty(1, dtype=object)
        single[0] = first
        return np.zeros(n, dtype=np.int64), single
    # first as if no value were missing (pandas then skips its scan of the column for them);
    # only a column with None (or NaN) is factorised again, with None as a value
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if codes.size and int(codes.min()) < 0:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
    out = np.empty(len(uniques), dtype=object)
    out[:] = [None if type(u) is float and u != u else u for u in uniques.tolist()]
    return codes.astype(np.int64, copy=False), out


def _all_equal(values: ObjArray, first: str) -> bool:
    """Whether every value equals ``first``: ``list.count`` compares by identity first, and the
    parsers fill a column's repeated text with one object (three times faster than ``==``, which
    makes a Python bool per row)."""
    return bool(values.tolist().count(first) == values.size)


def first_occurrences(values: ObjArray, hashes: npt.NDArray[np.uint64] | None = None) -> BoolArray:
    """Mask of the first occurrence of each value within a batch (later ones are duplicates).

    Codes are handed out in order of first appearance, so a row is a first occurrence exactly
    when its code exceeds every code before it. With ``hashes`` (``stable_id_hashes`` of the
    values, equal for equal values) the codes come from the 64-bit hashes, a C hash table of
    integers instead of Python strings; every later row of a code is then compared with the
    code's first row, and only if some hash stood for two different values (about 2^-64 per
    pair) are the values factorised themselves: the mask is always the values' own.
    """
    if values.size == 0:
        return np.zeros(0, dtype=np.bool_)
    if hashes is not None:
        first, first_row = _first_by_hash(np.ascontiguousarray(hashes, dtype=np.uint64))
        later = np.flatnonzero(~first)
        if later.size == 0:
            return first
        if bool((values[later] == values[first_row[later]]).all()):
            return first
    codes, _ = factorize(values)
    return _first_of_codes(codes)


def _first_by_hash(hashes: npt.NDArray[np.uint64]) -> tuple[BoolArray, IntArray]:
    """Whether each row's hash comes for the first time, and the row where it first came: in C
    (a table of the rows seen, without the GIL) where it is built, else with pandas' table."""
    if compiled_columns.AVAILABLE:
        return compiled_columns.first_by_hash(hashes)
    codes = pd.factorize(hashes)[0].astype(np.int64, copy=False)
    is_first = _first_of_codes(codes)
    first_of_code = np.empty(int(codes.max()) + 1 if codes.size else 0, dtype=np.int64)
    first_of_code[codes[is_first]] = np.flatnonzero(is_first)
    return is_first, first_of_code[codes]


def _first_of_codes(codes: IntArray) -> BoolArray:
    before = np.concatenate(([-1], np.maximum.accumulate(codes)[:-1]))
    first: BoolArray = codes > before
    return first


def encode_by_value(encode: Callable[[ObjArray], npt.NDArray[np.int32]], values: ObjArray) -> npt.NDArray[np.int32]:
    """``encode(values)`` computed on the distinct values only (the encoder must be elementwise,
    and any state it keeps must depend only on the set of values, as ``ClassIndex.encode``'s
    discovery does)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int32)
    codes, uniques = factorize(values)
    out: npt.NDArray[np.int32] = encode(uniques)[codes]
    return out


def groups(values: ObjArray, factorized: tuple[IntArray, ObjArray] | None = None) -> list[tuple[str, IntArray]]:
    """Row indices per distinct value (as text), in sorted value order (``factorized``: the
    values' ``factorize``, when the caller has it)."""
    if values.size == 0:
        return []
    codes, uniques = factorize(values) if factorized is None else factorized
    names = [str(u) for u in uniques.tolist()]
    if len(names) == 1:
        return [(names[0], np.arange(values.size, dtype=np.int64))]
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    ranked = rank[codes]
    rows = np.argsort(ranked, kind="stable")
    bounds = np.searchsorted(ranked[rows], np.arange(len(names) + 1))
    merged: dict[str, list[IntArray]] = {}
    for k, i in enumerate(order):  # two values with the same text (3 and "3") share a group
        merged.setdefault(names[i], []).append(rows[bounds[k]:bounds[k + 1]])
    out = [(name, np.sort(np.concatenate(parts)) if len(parts) > 1 else parts[0])
           for name, parts in sorted(merged.items())]
    return [(name, rows) for name, rows in out if rows.size]  # given codes may name values not among these rows


def positive_probabilities(probabilities: ObjArray | ProbabilityTable, positive_class: str) -> FloatArray:
    """Probability of the positive class per prediction, NaN where the record has none; the
    rule of ``drift_monitor.positive_probabilities`` (a dict naming only one other class gives
    its complement), with the lookups done by C loops (or by numpy, for the line scanner's table)."""
    if isinstance(probabilities, ProbabilityTable):
        return probabilities.positive(positive_class)
    n = probabilities.size
    out = np.full(n, np.nan)
    if n == 0:
        return out
    items = probabilities.tolist()
    try:  # the usual batch: a dict on every record, looked up in one C loop
        got: list[Any] = list(map(dict.get, items, repeat(positive_class)))
        rows = np.arange(n)
        dicts = items
    except TypeError:  # some record without probabilities (None)
        has = np.fromiter(map(bool, items), dtype=np.bool_, count=n)  # None, {} -> False
        rows = np.flatnonzero(has)
        if rows.size == 0:
            return out
        dicts = probabilities[rows].tolist()
        got = list(map(dict.get, dicts, repeat(positive_class)))
    vals = np.array(got, dtype=np.float64)  # None -> NaN
    out[rows] = vals
    for i in np.flatnonzero(np.isnan(vals)).tolist():  # the positive class absent: rare
        d = dicts[i]
        if len(d) == 1:
            out[rows[i]] = 1.0 - next(iter(d.values()))
    return out


def model_rows(models: npt.NDArray[np.object_]) -> list[tuple[str, npt.NDArray[np.bool_] | None]]:
    """Each model named in a batch (in name order) with the mask of its rows; None for the mask
    when the batch is one model's, as it usually is (no column then needs copying)."""
    first = models[0]
    if type(first) is str and _all_equal(models, first):
        return [(first, None)]
    return [(name, models == name) for name in sorted(set(models.tolist()))]


def rows_of(values: npt.NDArray[Any], which: npt.NDArray[Any] | None) -> npt.NDArray[Any]:
    """``values[which]``, or ``values`` itself for None (all rows: nothing to copy)."""
    return values if which is None else values[which]


def spread(sel: npt.NDArray[np.bool_], ok: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The mask over the batch of the rows ``ok`` keeps among those ``sel`` selects."""
    out = np.zeros(sel.size, dtype=bool)
    out[np.flatnonzero(sel)[ok]] = True
    return out
