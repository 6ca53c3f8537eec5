"""Data drift between a reference sample and a window: PSI, JS distance, KS and chi-square.

Conventions (DESIGN §2 "Data drift"):

* Numeric features are binned on **inner cut points** ``e_1 < ... < e_k`` taken from reference
  quantiles. Bins are right-closed: ``(-inf, e_1], (e_1, e_2], ..., (e_k, +inf)``, i.e. a value
  equal to a cut point falls in the bin to its left (``numpy.searchsorted(edges, v, "left")``).
  Right-closed bins keep a point mass (many zeros, a saturated score of 1.0) inside one bin
  together with everything below it, which is what the deduplicated quantiles describe.
* PSI and JS work on aligned count vectors (numeric bins or categories, same order on both
  sides); KS works on the raw sorted values; chi-square on category counts.

Everything here is numpy-only; the Kolmogorov distribution is computed with the same
algorithms scipy uses for ``kstwo`` (see ``kstwo_sf``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from exporter.foundation.arrays import FloatArray, IntArray
from exporter.stats.significance import binom_pmf, chi2_sf

PSI_FLOOR = 1e-4


def _finite(values: npt.ArrayLike) -> FloatArray:
    """Values as float64 with NaN dropped: a missing feature value is not an observation."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    mask = np.isnan(arr)
    return arr[~mask] if mask.any() else arr


def quantile_edges(reference: npt.ArrayLike, bins: int = 10) -> FloatArray:
    """Inner cut points of ``bins`` equal-frequency bins of the reference, deduplicated.

    The cut points are ``numpy.quantile(reference, [1/bins, ..., (bins-1)/bins])`` (linear
    interpolation, numpy's default); repeated values collapse, so a reference with point
    masses yields fewer than ``bins`` bins instead of empty zero-width ones. An empty (or
    all-NaN) reference gives no cut points: a single bin, on which PSI is 0.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    ref = _finite(reference)
    if ref.size == 0 or bins == 1:
        return np.empty(0, dtype=np.float64)
    qs = np.arange(1, bins, dtype=np.float64) / bins
    edges: FloatArray = np.unique(np.quantile(ref, qs))
    return edges


def bin_counts(values: npt.ArrayLike, edges: npt.ArrayLike) -> IntArray:
    """Counts per right-closed bin (``len(edges) + 1`` of them); NaN values are not counted."""
    e = np.asarray(edges, dtype=np.float64)
    v = _finite(values)
    idx = np.searchsorted(e, v, side="left")
    counts: IntArray = np.bincount(idx, minlength=e.size + 1).astype(np.int64, copy=False)
    return counts


def _counts_pair(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    r = np.asarray(ref_counts, dtype=np.float64).ravel()
    c = np.asarray(cur_counts, dtype=np.float64).ravel()
    if r.shape != c.shape:
        raise ValueError(f"count vectors differ in length: {r.size} != {c.size}")
    return r, c


def psi(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike, floor: float = PSI_FLOOR) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` over bin shares.

    Shares (count / total on each side) are floored at ``floor`` (1e-4) so that a bin empty on
    one side contributes a large but finite term instead of infinity; shares are *not*
    renormalised after flooring (the common industry convention). NaN when either side has
    no observations.
    """
    r, c = _counts_pair(ref_counts, cur_counts)
    rt = r.sum()
    ct = c.sum()
    if rt <= 0 or ct <= 0:
        return math.nan
    rs = np.maximum(r / rt, floor)
    cs = np.maximum(c / ct, floor)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


def js_distance(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon distance, base 2 (in [0, 1]), as ``scipy.spatial.distance.jensenshannon``.

    Same arithmetic as scipy (normalise, midpoint ``m``, ``rel_entr`` sums, divide by ln 2,
    square root). One deviation: a divergence that rounds to a tiny negative number is clamped
    to 0, where scipy would return NaN with a RuntimeWarning. NaN when either side is empty.
    """
    r, c = _counts_pair(ref_counts, cur_counts)
    rt = r.sum()
    ct = c.sum()
    if rt <= 0 or ct <= 0:
        return math.nan
    p = r / rt
    q = c / ct
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / m), 0.0)
        right = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0) / m), 0.0)
    js = float(np.sum(left)) + float(np.sum(right))
    js /= math.log(2.0)
    return math.sqrt(max(js / 2.0, 0.0))


def chi2_p_value(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float:
    """p-value of the chi-square test of homogeneity of two category-count vectors.

    Equals ``scipy.stats.chi2_contingency([ref, cur]).pvalue`` after dropping categories that
    are empty on both sides (scipy refuses zero expected counts): Pearson statistic, Yates'
    continuity correction when there is one degree of freedom (two categories), and 1.0 when
    only one category is left (no degree of freedom, as scipy). NaN when either side is empty.
    """
    r, c = _counts_pair(ref_counts, cur_counts)
    observed = np.stack([r, c])
    observed = observed[:, observed.sum(axis=0) > 0]
    row = observed.sum(axis=1)
    if observed.shape[1] == 0 or np.any(row <= 0):
        return math.nan
    dof = observed.shape[1] - 1
    if dof == 0:
        return 1.0
    expected = np.outer(row, observed.sum(axis=0)) / observed.sum()
    if dof == 1:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    stat = float(np.sum((observed - expected) ** 2 / expected))
    return chi2_sf(stat, dof)


# --- The finite-n two-sided Kolmogorov distribution -------------------------------------------
#
# Simard & L'Ecuyer (2011) "Computing the two-sided Kolmogorov-Smirnov distribution": choose,
# by n and n*x^2, between exact formulas (Ruben-Gambino tails, 2 x the one-sided Smirnov
# probability where it is exact), the Durbin matrix (Marsaglia-Tsang-Wang 2003), Pomeranz's
# recursion and the Pelz-Good asymptotic series. The cut-offs are the ones scipy's
# ``scipy.stats._ksstats`` uses, so the results agree with ``scipy.stats.kstwo.sf`` to ~1e-12.

_E128 = 2.0**128
_EM128 = 2.0**-128
_LN2 = math.log(2.0)


def _log_nfact_over_npow(n: int) -> float:
    """``log(n! / n^n)`` summed term by term: no cancellation, vectorised."""
    return float(np.sum(np.log(np.arange(1, n + 1, dtype=np.float64) / n)))


def smirnov_sf(n: int, d: float) -> float:
    """Exact one-sided KS tail ``P(D+_n >= d)`` (Birnbaum & Tingey 1951).

    ``d * sum_{v=0}^{floor(n(1-d))} C(n,v) (d + v/n)^(v-1) (1 - d - v/n)^(n-v)``: each term is a
    binomial probability with success rate ``d + v/n`` divided by that rate, evaluated with
    Loader's accurate binomial pmf, all terms at once.
    """
    if d <= 0.0:
        return 1.0
    if d >= 1.0:
        return 0.0
    v = np.arange(0, n + 1, dtype=np.float64)
    p = d + v / n
    q = (n - v) / n - d
    keep = q >= 0.0
    v, p, q = v[keep], p[keep], q[keep]
    terms = binom_pmf(v, n, p, q) / p
    return min(1.0, max(0.0, d * float(np.sum(terms))))


def _durbin_cdf(n: int, d: float) -> float:
    """P(D_n <= d) by the Durbin matrix: the (k,k) entry of H^n times n!/n^n (MTW 2003)."""
    if d >= 1.0:
        return 1.0
    nd = n * d
    if nd <= 0.5:
        return 0.0
    k = math.ceil(nd)
    h = k - nd
    m = 2 * k - 1
    j = np.arange(1, m + 1, dtype=np.float64)
    w = np.empty(m)  # w[j] = 1/j!, j = 0..m-1
    inv_fact = np.empty(m)  # inv_fact[j-1] = 1/j!
    fac = 1.0
    for i in range(1, m + 1):
        w[i - 1] = fac
        fac /= i
        inv_fact[i - 1] = fac
    v = (1.0 - h**j) * inv_fact
    tt = max(2.0 * h - 1.0, 0.0) ** m - 2.0 * h**m
    v[-1] = (1.0 + tt) * fac
    rows, cols = np.indices((m, m))
    lag = rows - cols + 1
    mat = np.where((cols >= 1) & (lag >= 0), w[np.clip(lag, 0, m - 1)], 0.0)
    mat[:, 0] = v
    mat[-1, :] = v[::-1]

    power = np.eye(m)
    expnt = 0
    mat_expnt = 0
    nn = n
    while nn > 0:
        if nn % 2:
            power = power @ mat
            expnt += mat_expnt
        mat = mat @ mat
        mat_expnt *= 2
        if abs(mat[k - 1, k - 1]) > _E128:
            mat /= _E128
            mat_expnt += 128
        nn //= 2
    p = float(power[k - 1, k - 1])
    if p <= 0.0:
        return 0.0
    return min(1.0, math.exp(math.log(p) + expnt * _LN2 + _log_nfact_over_npow(n)))


def _pomeranz_bounds(i: int, n: int, ll: int, ceilf: int, roundf: int) -> tuple[int, int]:
    """First and last possibly non-zero column of row ``i`` of Pomeranz's table."""
    if i == 0:
        j1, j2 = -ll - ceilf - 1, ll + ceilf - 1
    else:
        half, odd = divmod(i + 1, 2)
        if odd == 0:
            if half == n + 1:
                j1, j2 = n - ll - ceilf - 1, n + ll + ceilf - 1
            else:
                j1, j2 = half - 1 - ll - roundf - 1, half + ll - 1 + ceilf - 1
        else:
            j1, j2 = half - 1 - ll - 1, half + ll + roundf - 1
    return max(j1 + 2, 0), min(j2, n)


def _pomeranz_cdf(n: int, x: float) -> float:
    """P(D_n <= x) by Pomeranz's (1974) recursion; used for n <= 140 only (O(n^2 x) work)."""
    t = n * x
    ll = math.floor(t)
    f = t - ll
    g = min(f, 1.0 - f)
    ceilf = 1 if f > 0 else 0
    roundf = 1 if f > 0.5 else 0
    npwrs = 2 * (ll + 1)
    gpower = np.empty(npwrs)
    twogpower = np.empty(npwrs)
    onem2gpower = np.empty(npwrs)
    gpower[0] = twogpower[0] = onem2gpower[0] = 1.0
    a1, a2, a3 = g / n, 2 * g / n, (1 - 2 * g) / n
    for i in range(1, npwrs):
        gpower[i] = gpower[i - 1] * a1 / i
        twogpower[i] = twogpower[i - 1] * a2 / i
        onem2gpower[i] = onem2gpower[i - 1] * a3 / i
    v0 = np.zeros(npwrs)
    v1 = np.zeros(npwrs)
    v1[0] = 1.0
    v0s = v1s = 0
    expnt = 0
    j1, _ = _pomeranz_bounds(0, n, ll, ceilf, roundf)
    for i in range(1, 2 * n + 2):
        k1 = j1
        v0, v1 = v1, v0
        v0s, v1s = v1s, v0s
        v1.fill(0.0)
        j1, j2 = _pomeranz_bounds(i, n, ll, ceilf, roundf)
        pwrs = gpower if i in (1, 2 * n + 1) else (twogpower if i % 2 else onem2gpower)
        ln2 = j2 - k1 + 1
        if ln2 > 0:
            conv = np.convolve(v0[k1 - v0s : k1 - v0s + ln2], pwrs[:ln2])
            start = j1 - k1
            length = j2 - j1 + 1
            v1[:length] = conv[start : start + length]
            top = float(np.max(v1))
            if 0.0 < top < _EM128:
                v1 *= _E128
                expnt -= 128
            v1s = v0s + j1 - k1
    ans = float(v1[n - v1s])
    # times n!, one factor at a time as scipy does (n <= 140): 1 - cdf is taken next, so the
    # cdf's last ulps matter and a log-space product would not reproduce them.
    for i in range(1, n + 1):
        if abs(ans) > _E128:
            ans *= _EM128
            expnt += 128
        ans *= i
    return min(1.0, math.ldexp(ans, expnt))


_PI2 = math.pi**2
_PI4 = math.pi**4
_PI6 = math.pi**6
_SQRT2PI = math.sqrt(2.0 * math.pi)
_SQRT3 = math.sqrt(3.0)


def _pelz_good_cdf(n: int, x: float) -> float:
    """Pelz-Good (1976) asymptotic series for P(D_n <= x), in the Jacobi-theta form."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    z = math.sqrt(n) * x
    z2, z3, z4, z6 = z**2, z**3, z**4, z**6
    qlog = -_PI2 / 8.0 / z2
    if qlog < -708:
        return 0.0
    q = math.exp(qlog)
    k1a = -z2
    k1b = _PI2 / 4
    k2a = 6 * z6 + 2 * z4
    k2b = (2 * z4 - 5 * z2) * _PI2 / 4
    k2c = _PI4 * (1 - 2 * z2) / 16
    k3d = _PI6 * (5 - 30 * z2) / 64
    k3c = _PI4 * (-60 * z2 + 212 * z4) / 16
    k3b = _PI2 * (135 * z4 - 96 * z6) / 4
    k3a = -30 * z6 - 90 * z**8
    acc = np.zeros(4)
    maxk = math.ceil(16 * z / math.pi)
    for k in range(maxk, 0, -1):
        mm = 2 * k - 1
        m2, m4, m6 = mm**2, mm**4, mm**6
        coeffs = np.array(
            [
                1.0,
                k1a + k1b * m2,
                k2a + k2b * m2 + k2c * m4,
                k3a + k3b * m2 + k3c * m4 + k3d * m6,
            ]
        )
        acc *= q ** (8 * k)
        acc += coeffs
    acc *= q * _SQRT2PI
    acc /= np.array([z, 6 * z4, 72 * z**7, 6480 * z**10])
    q2 = math.exp(-_PI2 / 2 / z2)
    ks = np.arange(maxk, 0, -1, dtype=np.float64)
    ks2 = ks**2
    qp = q2**ks2
    acc[2] += float(np.sum(ks2 * qp)) * _PI2 * _SQRT2PI / (-36 * z3)
    kspi = math.pi * ks
    s3 = _SQRT3 * z
    acc[3] += float(np.sum((s3 + kspi) * (s3 - kspi) * ks2 * qp)) * _PI2 * _SQRT2PI / (216 * z6)
    acc /= np.power(float(n), np.arange(4) / 2.0)
    return float(np.sum(acc))


def kstwo_sf(x: float, n: int) -> float:
    """``P(D_n > x)`` for the two-sided one-sample KS statistic with n observations.

    The dispatch of Simard & L'Ecuyer (2011), with the same thresholds as scipy's ``kstwo``:
    exact tails for ``n x <= 1`` and ``n x >= n - 1``, ``2 * smirnov`` for ``x >= 0.5`` and in
    the far tail, Durbin's matrix / Pomeranz for small n, Pelz-Good otherwise. NaN for n < 1.
    """
    if math.isnan(x) or n < 1:
        return math.nan
    if x >= 1.0:
        return 0.0
    if x <= 0.0:
        return 1.0
    t = n * x
    if t <= 1.0:
        if t <= 0.5:
            return 1.0
        if n <= 140:
            prob = float(np.prod(np.arange(1, n + 1) * (1.0 / n) * (2 * t - 1)))
        else:
            prob = math.exp(_log_nfact_over_npow(n) + n * math.log(2 * t - 1))
        return _clip(1.0 - prob)
    if t >= n - 1:
        return _clip(2.0 * (1.0 - x) ** n)
    if x >= 0.5:
        return _clip(2.0 * smirnov_sf(n, x))
    nx2 = t * x
    if n <= 140:
        if nx2 <= 0.754693:
            return _clip(1.0 - _durbin_cdf(n, x))
        if nx2 <= 4:
            return _clip(1.0 - _pomeranz_cdf(n, x))
        return _clip(2.0 * smirnov_sf(n, x))
    if nx2 >= 370.0:
        return 0.0
    if nx2 >= 2.2:
        return _clip(2.0 * smirnov_sf(n, x))
    cdf = _durbin_cdf(n, x) if n <= 100000 and n * x**1.5 <= 1.4 else _pelz_good_cdf(n, x)
    return _clip(1.0 - cdf)


def _clip(p: float) -> float:
    return min(1.0, max(0.0, p))
