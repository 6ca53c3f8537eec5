"""Data-drift statistics against scipy (ks_2samp, kstwo, jensenshannon, chi2_contingency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from exporter.core.drift_features import ks_against_reference
from exporter.stats.drift import (
    bin_counts,
    chi2_p_value,
    js_distance,
    kstwo_sf,
    psi,
    quantile_edges,
    smirnov_sf,
)

# --- binning -----------------------------------------------------------------------------------


def test_quantile_edges_are_deduplicated_reference_deciles() -> None:
    ref = np.random.default_rng(0).normal(size=5000)
    edges = quantile_edges(ref)
    assert edges.tolist() == np.quantile(ref, np.arange(1, 10) / 10).tolist()
    counts = bin_counts(ref, edges)
    assert counts.sum() == 5000 and counts.size == 10
    assert counts.min() >= 499 and counts.max() <= 501  # equal-frequency by construction

    # a point mass: 65% zeros collapse six deciles into one cut point
    masses = np.concatenate([np.zeros(650), np.arange(1, 351, dtype=np.float64)])
    edges = quantile_edges(masses)
    assert edges.tolist() == np.unique(np.quantile(masses, np.arange(1, 10) / 10)).tolist()
    assert edges[0] == 0.0 and np.all(np.diff(edges) > 0) and edges.size == 4
    assert bin_counts(masses, edges)[0] == 650  # (-inf, 0] holds every zero

    assert quantile_edges(np.array([])).size == 0
    assert quantile_edges(np.array([np.nan, np.nan])).size == 0
    assert quantile_edges(np.arange(10.0), bins=1).size == 0
    with pytest.raises(ValueError):
        quantile_edges(np.arange(3.0), bins=0)


def test_bin_counts_right_closed() -> None:
    edges = np.array([1.0, 2.0])
    counts = bin_counts(np.array([0.0, 1.0, 1.5, 2.0, 3.0, np.nan]), edges)
    assert counts.dtype == np.int64
    assert counts.tolist() == [2, 2, 1]  # (-inf,1], (1,2], (2,inf); NaN not counted
    rng = np.random.default_rng(1)
    v = rng.normal(size=1000)
    e = np.sort(rng.normal(size=7))
    assert np.array_equal(bin_counts(v, e), np.bincount(np.digitize(v, e, right=True), minlength=8))
    assert bin_counts(np.array([0.3, 7.0]), np.array([])).tolist() == [2]


# --- PSI ---------------------------------------------------------------------------------------


def test_psi_hand_worked() -> None:
    # shares 0.5/0.3/0.2 -> 0.4/0.4/0.2: (-0.1) ln(0.8) + (0.1) ln(4/3) + 0 = 0.1 ln(5/3)
    assert psi([50, 30, 20], [40, 40, 20]) == pytest.approx(0.1 * math.log(5 / 3), rel=1e-14)
    assert psi([50, 30, 20], [40, 40, 20]) == pytest.approx(0.0510825623766, rel=1e-11)
    # an empty reference bin is floored at 1e-4: (0.5-1) ln(0.5/1) + (0.5-1e-4) ln(0.5/1e-4)
    expected = (0.5 - 1.0) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi([100, 0], [50, 50]) == pytest.approx(expected, rel=1e-14)
    assert psi([100, 0], [50, 50]) == pytest.approx(4.6043185, rel=1e-7)
    # symmetric in its two arguments
    assert psi([50, 50], [100, 0]) == pytest.approx(expected, rel=1e-14)


def test_psi_edges() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0, abs=1e-15)
    assert math.isnan(psi([0, 0], [1, 2]))
    assert math.isnan(psi([1, 2], [0, 0]))
    assert psi([5], [9]) == 0.0
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])


def test_psi_of_shifted_distribution_crosses_default_threshold() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=5000)
    edges = quantile_edges(ref)
    same = psi(bin_counts(ref, edges), bin_counts(rng.normal(size=5000), edges))
    shifted = psi(bin_counts(ref, edges), bin_counts(rng.normal(0.8, 1.0, size=5000), edges))
    assert same < 0.02 < 0.25 < shifted


# --- JS distance -------------------------------------------------------------------------------


def test_js_distance_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    for k in (2, 5, 10, 40):
        for _ in range(20):
            r = rng.integers(0, 50, k)
            c = rng.integers(0, 50, k)
            r[0] += 1
            c[-1] += 1
            if rng.random() < 0.5:
                r[rng.integers(0, k)] = 0  # empty bins on one side
            expected = float(jensenshannon(r, c, base=2))
            assert js_distance(r, c) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_js_distance_edges() -> None:
    assert js_distance([1, 2, 3], [2, 4, 6]) == 0.0
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0, rel=1e-15)  # disjoint: the maximum
    assert math.isnan(js_distance([0, 0], [1, 1]))
    assert math.isnan(js_distance([1, 1], [0, 0]))


# --- Kolmogorov-Smirnov ------------------------------------------------------------------------


def _check_ks(a: np.ndarray, b: np.ndarray, rel: float = 1e-10) -> None:
    """The KS test production runs (``ks_against_reference``: reference ``a``, window ``b``) vs scipy."""
    ref = stats.ks_2samp(a, b, method="asymp")
    d, p = ks_against_reference(np.sort(a), np.sort(b))
    assert d == float(ref.statistic)  # exactly
    if math.isnan(ref.pvalue):
        assert math.isnan(p)
    else:
        assert p == pytest.approx(float(ref.pvalue), rel=rel, abs=1e-300)


@pytest.mark.parametrize(("n1", "n2"), [(5, 7), (30, 30), (50, 200), (1000, 800), (5000, 20000), (3, 50000)])
@pytest.mark.parametrize("shift", [0.0, 0.1, 0.3, 1.0])
def test_ks_matches_scipy_asymp(n1: int, n2: int, shift: float) -> None:
    rng = np.random.default_rng(n1 * 31 + n2)
    _check_ks(rng.normal(size=n1), rng.normal(shift, 1.0, size=n2))


def test_ks_with_ties_and_discrete_values() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        a = np.round(rng.beta(5, 2, int(rng.integers(10, 600))), 1)
        b = np.round(rng.beta(4, 2, int(rng.integers(10, 600))), 1)
        _check_ks(a, b)
    _check_ks(np.ones(40), np.ones(70))  # identical: D = 0, p = 1
    _check_ks(np.zeros(40), np.ones(70))  # disjoint: D = 1, p = 0


def test_ks_edges() -> None:
    assert all(math.isnan(v) for v in ks_against_reference(np.array([]), np.array([1.0, 2.0])))
    assert all(math.isnan(v) for v in ks_against_reference(np.array([1.0]), np.array([])))
    # n1 = n2 = 1: en = 0.5 rounds to 0, scipy's kstwo is undefined there too
    d, p = ks_against_reference(np.array([1.0]), np.array([2.0]))
    assert d == 1.0 and math.isnan(p)
    _check_ks(np.array([1.0, 2.0]), np.array([1.5]))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 50, 139, 140, 141, 500, 3000, 20000, 100000, 100001, 400000])
def test_kstwo_sf_matches_scipy(n: int) -> None:
    # every branch of the Simard-L'Ecuyer dispatch is crossed by this grid. 1 - cdf cancels
    # where the tail is small and both sides compute the cdf independently, hence 1e-11.
    grid = np.linspace(0.0005, 0.999, 300 if n <= 20000 else 80)
    xs = np.concatenate([grid, [0.5 / n, 0.75 / n, 1 / n, 1.5 / n, 1 - 1 / n, 1.2 / math.sqrt(n)]])
    for x in xs:
        expected = float(stats.kstwo.sf(x, n))
        assert kstwo_sf(float(x), n) == pytest.approx(expected, rel=1e-11, abs=1e-300), (n, x)
    assert kstwo_sf(0.0, n) == 1.0 and kstwo_sf(1.0, n) == 0.0
    assert math.isnan(kstwo_sf(0.3, 0)) and math.isnan(kstwo_sf(math.nan, n))


@pytest.mark.parametrize("n", [1, 5, 50, 1000, 100000])
def test_smirnov_sf_matches_scipy_special(n: int) -> None:
    from scipy.special import smirnov

    for d in np.linspace(0.001, 0.999, 120):
        assert smirnov_sf(n, float(d)) == pytest.approx(float(smirnov(n, d)), rel=1e-12, abs=1e-300)


# --- chi-square --------------------------------------------------------------------------------


def _scipy_chi2(r: np.ndarray, c: np.ndarray) -> float:
    table = np.array([r, c])
    table = table[:, table.sum(axis=0) > 0]
    return float(stats.chi2_contingency(table).pvalue)


def test_chi2_matches_scipy_random() -> None:
    rng = np.random.default_rng(5)
    for k in (2, 3, 5, 12, 60):
        for _ in range(25):
            r = rng.integers(0, 200, k)
            c = r + rng.integers(-20, 40, k).clip(-r.min(), None)
            c = np.maximum(c, 0)
            if rng.random() < 0.3:
                j = rng.integers(0, k)
                r[j] = c[j] = 0  # a category empty on both sides is dropped
            if r.sum() == 0 or c.sum() == 0 or np.count_nonzero(r + c) < 2:
                continue
            assert chi2_p_value(r, c) == pytest.approx(_scipy_chi2(r, c), rel=1e-11, abs=1e-300), (r, c)


def test_chi2_yates_and_degenerate_cases() -> None:
    # two categories: one degree of freedom, Yates' correction applies
    assert chi2_p_value([30, 10], [20, 20]) == pytest.approx(
        _scipy_chi2(np.array([30, 10]), np.array([20, 20])), rel=1e-12
    )
    # three categories, one empty everywhere: dof falls to 1, Yates again
    assert chi2_p_value([30, 0, 10], [20, 0, 20]) == chi2_p_value([30, 10], [20, 20])
    # a very different distribution: tiny but accurate p-value
    r, c = np.array([900, 50, 50]), np.array([100, 450, 450])
    assert chi2_p_value(r, c) == pytest.approx(_scipy_chi2(r, c), rel=1e-11)
    assert chi2_p_value([10, 0], [5, 0]) == 1.0  # one category left: no degree of freedom
    assert math.isnan(chi2_p_value([0, 0], [3, 4]))
    assert math.isnan(chi2_p_value([3, 4], [0, 0]))
    assert math.isnan(chi2_p_value([0, 0], [0, 0]))
