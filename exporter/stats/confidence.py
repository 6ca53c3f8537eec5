"""Distribution of prediction confidence in a window (DESIGN §2 "Confidence statistics").

The window keeps its confidences sorted (it has to, to drop expiring values and to feed the
KS test), so the order statistics here are O(1) lookups and the shares one binary search.
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
