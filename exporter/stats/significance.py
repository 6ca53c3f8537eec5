"""Significance of an accuracy drop: Wilson interval, exact binomial and two-proportion tests.

The exporter ships with numpy only, so the distribution functions the tests need (binomial
probabilities, the normal and chi-square tails) are implemented here rather than imported
from scipy. They follow Catherine Loader's saddle-point formulation ("Fast and accurate
computation of binomial probabilities", 2000, the algorithm behind R's ``dbinom``): a log
probability written as ``stirlerr`` and ``bd0`` terms has no catastrophic cancellation, so a
binomial tail stays accurate to ~1e-13 relative even for n = 10^7, where the naive
``lgamma(n+1) - lgamma(k+1) - ...`` loses eight digits. ``drift.py`` reuses these kernels for
the chi-square and Kolmogorov-Smirnov p-values.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from exporter.foundation.arrays import FloatArray
from exporter.foundation.severities import CRITICAL, HIGH, LOW

_LN_2PI = math.log(2.0 * math.pi)
_SQRT2 = math.sqrt(2.0)

# Stirling-series coefficients of stirlerr: B_2k / (2k (2k-1)).
_S0 = 1.0 / 12.0
_S1 = 1.0 / 360.0
_S2 = 1.0 / 1260.0
_S3 = 1.0 / 1680.0
_S4 = 1.0 / 1188.0


def stirlerr(n: FloatArray) -> FloatArray:
    """``log(n!) - log(sqrt(2 pi n) (n/e)^n)``, the error of Stirling's formula, for n > 0.

    Why: it is the small remainder left once the huge, cancelling parts of ``log(n!)`` are
    taken out analytically, so it can be computed to full relative precision. Above 15 the
    asymptotic series is exact to double precision; at or below 15 (few values, never on a
    hot path) ``math.lgamma`` is used, whose absolute error there is ~1e-15.
    """
    n = np.asarray(n, dtype=np.float64)
    out = np.empty_like(n)
    large = n > 15.0
    if np.any(large):
        x = n[large]
        nn = x * x
        r = np.where(
            x > 500.0,
            (_S0 - _S1 / nn) / x,
            np.where(
                x > 80.0,
                (_S0 - (_S1 - _S2 / nn) / nn) / x,
                np.where(
                    x > 35.0,
                    (_S0 - (_S1 - (_S2 - _S3 / nn) / nn) / nn) / x,
                    (_S0 - (_S1 - (_S2 - (_S3 - _S4 / nn) / nn) / nn) / nn) / x,
                ),
            ),
        )
        out[large] = r
    small = ~large
    if np.any(small):
        out[small] = [
            math.lgamma(v + 1.0) - (v + 0.5) * math.log(v) + v - 0.5 * _LN_2PI if v > 0.0 else 0.0
            for v in n[small].tolist()
        ]
    return out


def bd0(x: FloatArray, m: FloatArray) -> FloatArray:
    """Deviance term ``x log(x/m) + m - x`` for x >= 0, m > 0, without cancellation.

    Why: near x == m the direct formula subtracts nearly equal numbers; Loader's series in
    ``v = (x-m)/(x+m)`` keeps full relative precision there.
    """
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    x, m = np.broadcast_arrays(x, m)
    out = np.empty(x.shape, dtype=np.float64)
    near = np.abs(x - m) < 0.1 * (x + m)
    far = ~near
    if np.any(far):
        xf = x[far]
        mf = m[far]
        with np.errstate(divide="ignore", invalid="ignore"):
            direct = np.where(xf > 0.0, xf * np.log(np.where(xf > 0.0, xf, 1.0) / mf), 0.0) + mf - xf
        out[far] = direct
    if np.any(near):
        xn = x[near]
        mn = m[near]
        v = (xn - mn) / (xn + mn)
        s = (xn - mn) * v
        ej = 2.0 * xn * v
        v2 = v * v
        # |v| < 0.1 so each term shrinks by 100x: 10 rounds reach double precision; the loop
        # stops as soon as no term changes any sum.
        for j in range(1, 1000):
            ej = ej * v2
            s1 = s + ej / (2 * j + 1)
            if np.array_equal(s1, s):
                break
            s = s1
        out[near] = s
    return out


def binom_pmf(k: npt.ArrayLike, n: int, p: npt.ArrayLike, q: npt.ArrayLike | None = None) -> FloatArray:
    """Binomial probabilities P(X = k) for X ~ Bin(n, p), elementwise over k (and p).

    ``q`` (= 1 - p) may be passed separately when the caller can compute it more accurately
    than ``1 - p`` (the Kolmogorov-Smirnov sum needs this). Loader's formula; accurate to
    ~1e-15 relative for every n.
    """
    k_arr = np.asarray(k, dtype=np.float64)
    p_arr = np.asarray(p, dtype=np.float64)
    q_arr = 1.0 - p_arr if q is None else np.asarray(q, dtype=np.float64)
    k_arr, p_arr, q_arr = np.broadcast_arrays(k_arr, p_arr, q_arr)
    out = np.zeros(k_arr.shape, dtype=np.float64)
    nf = float(n)
    valid = (k_arr >= 0.0) & (k_arr <= nf)
    p_zero = valid & (p_arr <= 0.0)
    q_zero = valid & ~p_zero & (q_arr <= 0.0)
    out[p_zero] = (k_arr[p_zero] == 0.0).astype(np.float64)
    out[q_zero] = (k_arr[q_zero] == nf).astype(np.float64)
    rest = valid & ~p_zero & ~q_zero
    if not np.any(rest):
        return out
    kk = k_arr[rest]
    pp = p_arr[rest]
    qq = q_arr[rest]
    res = np.empty(kk.shape, dtype=np.float64)
    lo = kk == 0.0
    hi = (kk == nf) & ~lo
    mid = ~lo & ~hi
    with np.errstate(over="ignore", under="ignore"):
        if np.any(lo):
            pl = pp[lo]
            ql = qq[lo]
            lc = np.where(pl < 0.1, -bd0(np.full(pl.shape, nf), nf * ql) - nf * pl, nf * np.log(ql))
            res[lo] = np.exp(lc)
        if np.any(hi):
            ph = pp[hi]
            qh = qq[hi]
            lc = np.where(qh < 0.1, -bd0(np.full(ph.shape, nf), nf * ph) - nf * qh, nf * np.log(ph))
            res[hi] = np.exp(lc)
        if np.any(mid):
            km = kk[mid]
            nk = nf - km
            lc = (
                stirlerr(np.array([nf]))[0]
                - stirlerr(km)
                - stirlerr(nk)
                - bd0(km, nf * pp[mid])
                - bd0(nk, nf * qq[mid])
            )
            lf = _LN_2PI + np.log(km) + np.log1p(-km / nf)
            res[mid] = np.exp(lc - 0.5 * lf)
    out[rest] = res
    return out


def _tail_sum(start: int, stop: int, step: int, n: int, p: float) -> float:
    """Sum of pmf(i) for i = start, start+step, ... up to (not including) stop.

    The caller starts at the term nearest the mode, so terms only shrink; blocks are summed
    until the last term no longer moves the total. Block size ~40 standard deviations means
    one block almost always suffices.
    """
    sd = math.sqrt(n * p * (1.0 - p))
    block = int(64 + 40 * sd)
    total = 0.0
    i = start
    while (step < 0 and i > stop) or (step > 0 and i < stop):
        end = max(i - block, stop) if step < 0 else min(i + block, stop)
        ks = np.arange(i, end, step, dtype=np.float64)
        terms = binom_pmf(ks, n, p)
        total += float(np.sum(terms[::-1]))  # smallest first
        if terms[-1] <= total * 1e-17:
            break
        i = end
    return total


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Bin(n, p), accurate in both tails for n up to 10^7 and beyond.

    Why two branches: the smaller tail is summed directly (full relative precision even for a
    p-value of 1e-300); when k is at or above the mean the answer is >= ~0.5 and ``1 - upper``
    loses nothing.
    """
    if n < 0 or not 0.0 <= p <= 1.0:
        return math.nan
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p == 0.0:
        return 1.0
    if p == 1.0:
        return 0.0
    if k < n * p:
        return min(1.0, _tail_sum(k, -1, -1, n, p))
    upper = _tail_sum(k + 1, n + 1, 1, n, p)
    return max(0.0, 1.0 - upper)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion, no continuity correction.

    Why Wilson: unlike the normal (Wald) interval it stays inside [0, 1] and keeps its coverage
    for accuracies near 1 and small windows. Same algebra as scipy's
    ``BinomTestResult.proportion_ci(method="wilson")`` (Newcombe 1998), including its exact
    endpoints 0 when ``successes == 0`` and 1 when ``successes == n``. (NaN, NaN) when n == 0.
    """
    if n <= 0:
        return (math.nan, math.nan)
    k = float(successes)
    nf = float(n)
    z2 = z * z
    denom = 2.0 * (nf + z2)
    center = (2.0 * k + z2) / denom
    delta = z / denom * math.sqrt(max(0.0, 4.0 * k * (nf - k) / nf + z2))
    lo = 0.0 if successes <= 0 else max(0.0, center - delta)
    hi = 1.0 if successes >= n else min(1.0, center + delta)
    return (lo, hi)


def binomial_drop_p_value(correct: int, n: int, baseline: float) -> float:
    """Exact one-sided binomial p-value P(X <= correct), X ~ Bin(n, baseline).

    H0: the window's accuracy equals the (fixed, configured) baseline; H1: it is below. Equals
    ``scipy.stats.binomtest(correct, n, baseline, alternative="less").pvalue``. Used when the
    baseline is a fixed number with no sampling error of its own. NaN when n == 0 or the
    baseline is not a probability.
    """
    if n <= 0 or not math.isfinite(baseline) or not 0.0 <= baseline <= 1.0:
        return math.nan
    return binom_cdf(int(correct), int(n), float(baseline))


def normal_sf(z: float) -> float:
    """Upper tail of the standard normal, via ``erfc`` so that it stays accurate far out."""
    return 0.5 * math.erfc(z / _SQRT2)


def two_proportion_drop_p_value(correct: int, n: int, base_correct: int, base_n: int) -> float:
    """One-sided pooled two-proportion z-test, H1: current accuracy below the baseline's.

    Used when the baseline is itself learned from a sample (``first_labeled``), so both
    proportions carry sampling error. ``z = (p1 - p0) / sqrt(P (1-P) (1/n + 1/n0))`` with the
    pooled ``P``; the p-value is ``Phi(z)`` (as ``statsmodels.proportions_ztest(...,
    alternative="smaller")``). NaN when either sample is empty. When the pooled proportion is
    0 or 1 both samples agree exactly and the statistic is 0/0; we return 1.0 (no evidence of
    a drop, which is also what an exact conditional test gives) instead of statsmodels' NaN.
    """
    if n <= 0 or base_n <= 0:
        return math.nan
    p1 = correct / n
    p0 = base_correct / base_n
    pooled = (correct + base_correct) / (n + base_n)
    var = pooled * (1.0 - pooled) * (1.0 / n + 1.0 / base_n)
    if var <= 0.0:
        return 1.0
    z = (p1 - p0) / math.sqrt(var)
    return normal_sf(-z)


def drift_severity(drop: float, high: float, critical: float) -> str:
    """Severity tier of an accuracy drop: ``critical`` > critical, ``high`` > high, else ``low``.

    Strict comparisons, as the notebook's rule; a NaN drop (no baseline or empty window)
    is ``low`` because there is no evidence of drift.
    """
    if math.isnan(drop):
        return LOW
    if drop > critical:
        return CRITICAL
    if drop > high:
        return HIGH
    return LOW


def _gamma_prefactor(a: float, x: float) -> float:
    """``x^a e^-x / Gamma(a)`` computed as ``a * Poisson(a; x)`` with Loader's terms."""
    lc = -float(stirlerr(np.array([a]))[0]) - float(bd0(np.array([a]), np.array([x]))[0])
    return a * math.exp(lc) / math.sqrt(2.0 * math.pi * a)


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma ``Q(a, x) = Gamma(a, x) / Gamma(a)``, a > 0.

    Series for P below ``x = a + 1`` (Q = 1 - P is then not small), Lentz's continued fraction
    above (Numerical Recipes' ``gser``/``gcf``), with the prefactor from ``_gamma_prefactor``
    so that large shape parameters do not cancel. Iterations grow like sqrt(a): a scalar loop
    is fine, this runs once per feature per cycle.
    """
    if math.isnan(a) or math.isnan(x) or a <= 0.0:
        return math.nan
    if x <= 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    eps = 1e-16
    if x < a + 1.0:
        # P(a, x) = x^a e^-x / Gamma(a+1) * sum_k x^k / ((a+1)...(a+k))
        term = 1.0
        total = 1.0
        ap = a
        for _ in range(100000):
            ap += 1.0
            term *= x / ap
            total += term
            if term < total * eps:
                break
        p = _gamma_prefactor(a, x) / a * total
        return max(0.0, 1.0 - p)
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < tiny:
            d = tiny
        c = b + an / c
        if abs(c) < tiny:
            c = tiny
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return min(1.0, _gamma_prefactor(a, x) * h)


def chi2_sf(x: float, dof: float) -> float:
    """Survival function of the chi-square distribution, ``Q(dof/2, x/2)``."""
    if dof <= 0:
        return math.nan
    return gamma_q(0.5 * dof, 0.5 * x)
