"""The vectorised shortcuts of the ingest hot path give exactly what the plain computation gives.

Seeded (``numpy.random.default_rng`` with fixed seeds, hypothesis derandomized): the same cases
every run, so a planted bug is caught every run or never.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.core.joined_ids import _SORT_QUERIES, JoinedIds
from exporter.core.reference import RawColumn
from exporter.ingest.batch_ops import factorize, first_occurrences
from exporter.ingest.batches import concat_feature_columns, feature_column, feature_values
from exporter.ingest.ids import stable_id_hashes

SEEDED = settings(max_examples=300, deadline=None, derandomize=True, database=None)


def _plain_first_occurrences(values: list[str]) -> list[bool]:
    seen: set[str] = set()
    out = []
    for v in values:
        out.append(v not in seen)
        seen.add(v)
    return out


def _obj(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@pytest.mark.parametrize("seed", range(20))
def test_first_occurrences_by_hash_match_the_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 3000))
    pool = [f"req-{i}" for i in range(int(rng.integers(1, 2 * n + 2)))] + ["", "é", "\U0001f600", "a\x00b"]
    values = [pool[i] for i in rng.integers(0, len(pool), n)]
    ids = _obj(values)
    want = np.array(_plain_first_occurrences(values), dtype=bool)
    # (array_equal, not list ==: pytest's diff of long lists takes minutes when one fails)
    assert np.array_equal(first_occurrences(ids), want)
    assert np.array_equal(first_occurrences(ids, stable_id_hashes(ids)), want)
    # hashes that collide (a few buckets for many values): the values still decide
    colliding = (stable_id_hashes(ids) % np.uint64(int(rng.integers(1, 5)))).astype(np.uint64)
    assert np.array_equal(first_occurrences(ids, colliding), want)


@pytest.mark.parametrize("seed", range(10))
def test_joined_ids_contains_sorted_queries_match_a_set(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    joined = JoinedIds()
    remembered: list[int] = []
    for k in range(int(rng.integers(1, 6))):
        h = rng.integers(0, 1 << 20, int(rng.integers(1, 20_000))).astype(np.uint64)
        joined.add(h, 1000.0 + k)
        remembered += h.tolist()
    # forget the oldest (the bound): the head moves into the oldest segment
    joined.expire(0.0, max(1, len(remembered) - int(rng.integers(0, 5000))))
    keep = set(remembered[len(remembered) - len(joined):])
    for size in (10, _SORT_QUERIES - 1, _SORT_QUERIES, 3 * _SORT_QUERIES + 7):
        q = rng.integers(0, 1 << 20, size).astype(np.uint64)
        assert np.array_equal(joined.contains(q), np.array([int(x) in keep for x in q.tolist()], dtype=bool))


_feature_value = st.one_of(
    st.none(), st.booleans(), st.text(max_size=3), st.sampled_from([0.0, -0.0, 1.5, math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=False),
)


@SEEDED
@given(st.lists(st.lists(_feature_value, max_size=6), max_size=4))
def test_feature_columns_concatenate_to_the_column_of_all_values(parts: list[list[Any]]) -> None:
    cols = [feature_column(p) for p in parts]
    whole = [v for p in parts for v in p]
    expect = feature_column(whole)
    got = concat_feature_columns(cols) if cols else feature_column([])
    assert got.dtype == expect.dtype
    assert [(type(v), v) if not (isinstance(v, float) and math.isnan(v)) else "nan" for v in feature_values(got)] == \
           [(type(v), v) if not (isinstance(v, float) and math.isnan(v)) else "nan" for v in whole]
    # the drift monitor classifies both forms alike (a float column: NaN is absent)
    a, b = RawColumn.from_values(got, len(whole)), RawColumn.from_values(_obj(whole), len(whole))
    assert a.kind.tolist() == b.kind.tolist()
    np.testing.assert_array_equal(a.number, b.number)


def test_feature_column_forms() -> None:
    assert feature_column([1.0, None]).dtype == np.float64
    assert feature_column([None, None]).dtype == object  # nothing numeric: kept as values
    assert feature_column([1.0, math.nan]).dtype == object  # a NaN literal is no absent value
    assert feature_column([1.0, "a"]).dtype == object
    assert feature_column([1.0, True]).dtype == object
    assert feature_values(feature_column([2.5, None])) == [2.5, None]


def test_factorize_unchanged() -> None:
    codes, uniques = factorize(_obj(["b", None, "b", "a"]))
    assert codes.tolist() == [0, 1, 0, 2] and uniques.tolist() == ["b", None, "a"]
