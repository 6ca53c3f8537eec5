"""Confidence statistics against numpy, on sorted windows."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.stats.confidence import confidence_stats


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 1000, 100_001])
def test_matches_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.sort(rng.beta(5, 2, n))
    s = confidence_stats(values, 0.75)
    assert s.mean == float(np.mean(values))
    assert s.median == float(np.median(values))  # bit for bit, odd and even sizes
    assert s.stddev == float(np.std(values))
    assert s.min == float(values.min())
    assert s.max == float(values.max())
    assert s.low_share == pytest.approx(float(np.mean(values < 0.75)), rel=1e-15)
    assert s.high_share == pytest.approx(float(np.mean(values >= 0.75)), rel=1e-15)
    assert s.low_share + s.high_share == 1.0


def test_threshold_boundary_counts_as_high() -> None:
    s = confidence_stats(np.array([0.5, 0.75, 0.75, 0.9]), 0.75)
    assert s.low_share == 0.25
    assert s.high_share == 0.75
    assert s.median == 0.75
    assert s.stddev == pytest.approx(float(np.std([0.5, 0.75, 0.75, 0.9])), rel=1e-15)


def test_empty_is_all_nan() -> None:
    s = confidence_stats(np.array([], dtype=np.float64), 0.75)
    assert all(math.isnan(v) for v in dataclasses.astuple(s))


def test_nan_values_are_ignored() -> None:
    s = confidence_stats(np.sort(np.array([0.9, np.nan, 0.6, 0.8])), 0.75)
    assert s == confidence_stats(np.array([0.6, 0.8, 0.9]), 0.75)
    s = confidence_stats(np.array([np.nan]), 0.75)
    assert math.isnan(s.mean)


def test_single_value() -> None:
    s = confidence_stats(np.array([0.3]), 0.75)
    assert (s.mean, s.median, s.stddev, s.min, s.max, s.low_share, s.high_share) == (0.3, 0.3, 0.0, 0.3, 0.3, 1.0, 0.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=300))
def test_deterministic_function_of_multiset(values: list[float]) -> None:
    a = np.array(values)
    b = a.copy()
    np.random.default_rng(len(values)).shuffle(b)
    # the caller sorts; any arrival order gives the same sorted array, hence identical output
    assert confidence_stats(np.sort(a), 0.75) == confidence_stats(np.sort(b), 0.75)
    s = confidence_stats(np.sort(a), 0.75)
    assert s.min <= s.median <= s.max
    assert s.median == float(np.median(a))
