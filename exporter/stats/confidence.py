"""Distribution of prediction confidence in a window (DESIGN §2 "Confidence statistics").

Two forms of the same statistics: ``confidence_stats`` from the values themselves (the
reference definition, used for a reference sample and by tests), and
``confidence_stats_from_sums`` from what a window keeps instead of values -- exact fixed-point
sums, exact min and max, the count below the threshold and a histogram of width 0.001 for the
median (``histogram_median``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ConfidenceStats:
    """Summary of a window's confidences; every field is NaN when the window is empty."""

    mean: float
    median: float
    stddev: float
    min: float
    max: float
    low_share: float
    high_share: float


_EMPTY = ConfidenceStats(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)


def confidence_stats(sorted_values: npt.ArrayLike, threshold: float) -> ConfidenceStats:
    """Mean, median, population stddev, min, max and the shares below / at-or-above threshold.

    ``sorted_values`` must be ascending (the caller's invariant; not re-checked, it would cost
    O(n)). Because the input order is canonical, the result is a deterministic function of the
    multiset of values: two replicas holding the same events export identical numbers even
    though numpy's pairwise summation depends on order.

    * ``median`` is ``numpy.median`` (the mean of the two middle values for even sizes),
    * ``stddev`` is ``numpy.std`` with ddof 0, as the notebook,
    * ``low_share`` counts values strictly below ``threshold``; ``high_share`` is the rest
      (at or above), so the two always sum to 1.

    NaN entries (which ``numpy.sort`` places last) are ignored.
    """
    a = np.asarray(sorted_values, dtype=np.float64).ravel()
    if a.size and np.isnan(a[-1]):  # numpy sorts NaN last; a missing confidence is no value
        a = a[~np.isnan(a)]
    n = a.size
    if n == 0:
        return _EMPTY
    mid = n // 2
    median = float(a[mid]) if n % 2 else float((a[mid - 1] + a[mid]) / 2.0)
    below = int(np.searchsorted(a, threshold, side="left"))
    return ConfidenceStats(
        mean=float(np.mean(a)),
        median=median,
        stddev=float(np.std(a)),
        min=float(a[0]),
        max=float(a[-1]),
        low_share=below / n,
        high_share=(n - below) / n,
    )


#: Bins of the confidence histogram a window keeps for its median: width 0.001 on [0, 1].
MEDIAN_BINS = 1000


def median_bins(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Histogram bin of each confidence: bin j covers [j/1000, (j+1)/1000), 1.0 goes in the last."""
    out: npt.NDArray[np.int64] = np.clip(np.floor(values * MEDIAN_BINS), 0, MEDIAN_BINS - 1).astype(np.int64)
    return out


def _order_statistic(cum: npt.NDArray[np.int64], counts: npt.NDArray[np.int64], k: int) -> float:
    """The k-th smallest value (0-based), placed by linear interpolation inside its bin.

    This is Prometheus' ``histogram_quantile`` rule at rank ``k + 0.5`` (the middle of the k-th
    value's share of the ranks, which is the rank ``q·n`` Prometheus uses for the median of an
    odd count): the bin holding that rank, and within it the share of the bin's count the rank
    reaches. The true value lies in the same bin, so the error is below one bin width, and half a
    bin for a value alone in its bin (confidences rounded to 0.001 land on bin edges).
    """
    j = int(np.searchsorted(cum, k + 1, side="left"))
    before = int(cum[j - 1]) if j else 0
    return (j + (k + 0.5 - before) / int(counts[j])) / MEDIAN_BINS


def histogram_median(counts: npt.ArrayLike, lo: float, hi: float) -> float:
    """``numpy.median`` of the values behind a 0.001-wide histogram, to within 0.001.

    For an even count numpy averages the two middle values, which may lie in bins far apart;
    each is estimated in its own bin and the two estimates averaged, so the error stays below one
    bin width however sparse the window. Estimates are clamped to the exact ``[lo, hi]``.
    """
    c = np.asarray(counts, dtype=np.int64)
    n = int(c.sum())
    if n == 0:
        return math.nan
    cum = np.cumsum(c)
    mid = n // 2

    def at(k: int) -> float:
        return min(max(_order_statistic(cum, c, k), lo), hi)

    return at(mid) if n % 2 else (at(mid - 1) + at(mid)) / 2.0


def confidence_stats_from_sums(n: int, sum_fixed: int, square_sum_fixed: int, scale: float, lo: float, hi: float,
                               below: int, histogram: npt.ArrayLike) -> ConfidenceStats:
    """The same statistics as ``confidence_stats``, from a window's sufficient statistics.

    ``sum_fixed`` and ``square_sum_fixed`` are the sums of the values and of their squares in
    fixed point (values times ``scale``, rounded); the variance ``(n·S2 - S1²) / n²`` is formed
    in exact integers before one division, so it carries no cancellation error, only the
    quantum of the fixed point. ``below`` counts values strictly below the threshold.
    """
    if n == 0:
        return _EMPTY
    mean = sum_fixed / n / scale
    var_num = n * square_sum_fixed - sum_fixed * sum_fixed
    stddev = math.sqrt(max(var_num, 0) / (n * n) / (scale * scale))
    return ConfidenceStats(
        mean=mean,
        median=histogram_median(histogram, lo, hi),
        stddev=stddev,
        min=lo,
        max=hi,
        low_share=below / n,
        high_share=(n - below) / n,
    )
