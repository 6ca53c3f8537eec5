"""Wilson interval, drop p-values, severity and the distribution kernels against scipy / mpmath."""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
import pytest
from scipy import stats

from exporter.stats.significance import (
    binom_cdf,
    binom_pmf,
    binomial_drop_p_value,
    chi2_sf,
    drift_severity,
    gamma_q,
    two_proportion_drop_p_value,
    wilson_interval,
)

Z95 = 1.959964


def test_wilson_hand_computed() -> None:
    # 81 of 100 correct, by the textbook formula
    k, n, z = 81, 100, Z95
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(center - half, rel=1e-13)
    assert hi == pytest.approx(center + half, rel=1e-13)
    assert (lo, hi) == pytest.approx((0.72221, 0.87485), abs=1e-5)


@pytest.mark.parametrize(
    ("k", "n"),
    [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (81, 100), (999, 1000), (12345, 20000), (9_000_000, 10_000_000)],
)
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    # scipy derives z from 0.95 exactly (1.95996398...), we use the rounded 1.959964
    assert lo == pytest.approx(ci.low, abs=1e-6)
    assert hi == pytest.approx(ci.high, abs=1e-6)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_edges() -> None:
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and 0 < hi < 0.1
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and 0.9 < lo < 1.0
    # a custom z (99%)
    z99 = float(stats.norm.ppf(0.995))
    ci = stats.binomtest(40, 60).proportion_ci(confidence_level=0.99, method="wilson")
    assert wilson_interval(40, 60, z=z99) == pytest.approx((ci.low, ci.high), rel=1e-12)


def _scipy_less(k: int, n: int, p: float) -> float:
    return float(stats.binomtest(k, n, p, alternative="less").pvalue)


@pytest.mark.parametrize("n", [1, 2, 7, 30, 100, 1000, 10_000, 100_000])
@pytest.mark.parametrize("p", [0.01, 0.5, 0.8, 0.92, 0.999])
def test_binomial_p_value_matches_scipy(n: int, p: float) -> None:
    sd = math.sqrt(n * p * (1 - p))
    ks = {0, n, n - 1, int(n * p), int(n * p) - 1, int(n * p - 3 * sd), int(n * p - 8 * sd), int(n * p + 2 * sd)}
    for k in sorted(k for k in ks if 0 <= k <= n):
        expected = _scipy_less(k, n, p)
        assert binomial_drop_p_value(k, n, p) == pytest.approx(expected, rel=1e-12, abs=1e-300), (k, n, p)


@pytest.mark.parametrize("n", [1_000_000, 10_000_000])
def test_binomial_p_value_large_n(n: int) -> None:
    p = 0.9
    sd = math.sqrt(n * p * (1 - p))
    for k in (int(n * p - 10 * sd), int(n * p - 3 * sd), int(n * p), int(n * p + 3 * sd)):
        assert binomial_drop_p_value(k, n, p) == pytest.approx(_scipy_less(k, n, p), rel=1e-10), k


def test_binomial_p_value_far_tail_against_mpmath() -> None:
    # ~10 standard deviations below the mean (p-value ~7.6e-24), summed in 50-digit arithmetic
    n, p = 10_000_000, 0.5
    k = 4_984_188
    mpmath.mp.dps = 50
    term = mpmath.binomial(n, k) * mpmath.mpf(p) ** n
    total = mpmath.mpf(0)
    i = k
    while i >= 0 and term > total * mpmath.mpf(10) ** -30:
        total += term
        term = term * i / (n - i + 1)  # pmf(i-1) / pmf(i) at p = 1/2
        i -= 1
    assert binomial_drop_p_value(k, n, p) == pytest.approx(float(total), rel=1e-13)


def test_binomial_p_value_edges() -> None:
    assert math.isnan(binomial_drop_p_value(0, 0, 0.9))
    assert math.isnan(binomial_drop_p_value(5, 10, math.nan))
    assert math.isnan(binomial_drop_p_value(5, 10, 1.5))
    assert binomial_drop_p_value(10, 10, 0.9) == 1.0
    assert binomial_drop_p_value(3, 10, 0.0) == 1.0
    assert binomial_drop_p_value(9, 10, 1.0) == 0.0
    assert binomial_drop_p_value(10, 10, 1.0) == 1.0
    assert binomial_drop_p_value(0, 10, 0.9) == pytest.approx(0.1**10, rel=1e-13)
    # monotone in the number correct
    vals = [binomial_drop_p_value(k, 200, 0.9) for k in range(150, 201)]
    assert all(a <= b for a, b in itertools.pairwise(vals))


def test_binom_pmf_and_cdf_match_scipy() -> None:
    for n, p in [(1, 0.3), (10, 0.5), (57, 0.93), (1000, 0.001), (100_000, 0.37)]:
        ks = np.unique(np.linspace(0, n, min(n + 1, 200)).astype(int))
        assert binom_pmf(ks, n, p).tolist() == pytest.approx(stats.binom.pmf(ks, n, p).tolist(), rel=1e-12)
        for k in ks[::7]:
            assert binom_cdf(int(k), n, p) == pytest.approx(float(stats.binom.cdf(k, n, p)), rel=1e-12)


def test_two_proportion_hand_worked() -> None:
    # 80/100 now, 920/1000 at baseline
    pooled = 1000 / 1100
    se = math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 1000))
    z = (0.80 - 0.92) / se
    assert z == pytest.approx(-3.97995, abs=1e-5)
    expected = float(stats.norm.cdf(z))
    assert two_proportion_drop_p_value(80, 100, 920, 1000) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(3.4465e-5, rel=1e-4)
    # current better than baseline: p-value above one half
    assert two_proportion_drop_p_value(95, 100, 920, 1000) > 0.5
    # equal rates: exactly one half
    assert two_proportion_drop_p_value(46, 50, 920, 1000) == pytest.approx(0.5, rel=1e-12)


def test_two_proportion_random_against_scipy_norm() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n, bn = (int(v) for v in rng.integers(1, 5000, 2))
        c, bc = int(rng.integers(0, n + 1)), int(rng.integers(0, bn + 1))
        pooled = (c + bc) / (n + bn)
        if pooled in (0.0, 1.0):
            continue
        z = (c / n - bc / bn) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / bn))
        expected = float(stats.norm.cdf(z))
        assert two_proportion_drop_p_value(c, n, bc, bn) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_two_proportion_edges() -> None:
    assert math.isnan(two_proportion_drop_p_value(0, 0, 90, 100))
    assert math.isnan(two_proportion_drop_p_value(5, 10, 0, 0))
    assert two_proportion_drop_p_value(10, 10, 100, 100) == 1.0  # both perfect: no evidence
    assert two_proportion_drop_p_value(0, 10, 0, 100) == 1.0


@pytest.mark.parametrize(
    ("drop", "expected"),
    [
        (0.2, "critical"),
        (0.1000001, "critical"),
        (0.10, "high"),
        (0.07, "high"),
        (0.05, "low"),
        (0.0, "low"),
        (-0.3, "low"),
        (math.nan, "low"),
        (math.inf, "critical"),
    ],
)
def test_drift_severity(drop: float, expected: str) -> None:
    assert drift_severity(drop, high=0.05, critical=0.10) == expected


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 10, 49, 200, 1000])
def test_chi2_sf_matches_scipy(dof: int) -> None:
    xs = np.concatenate([[1e-8, 0.01, 0.5], dof * np.array([0.2, 0.8, 1.0, 1.2, 2.0, 4.0]), [dof + 300.0]])
    for x in xs:
        expected = float(stats.chi2.sf(x, dof))
        assert chi2_sf(float(x), dof) == pytest.approx(expected, rel=1e-11, abs=1e-300), (x, dof)


def test_gamma_q_edges() -> None:
    assert gamma_q(2.0, 0.0) == 1.0
    assert gamma_q(2.0, math.inf) == 0.0
    assert math.isnan(gamma_q(0.0, 1.0))
    assert math.isnan(chi2_sf(1.0, 0))
    assert gamma_q(1.0, 3.0) == pytest.approx(math.exp(-3.0), rel=1e-14)
