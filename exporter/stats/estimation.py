"""Expected calibration error from per-bin sums of labelled predictions.

The label-free estimates (CBPE) that this error qualifies are computed by the drift monitor
straight from its windows' fixed-point sums (``exporter.core.drift_monitor``): if the model is
calibrated, a prediction made with confidence c is right with probability c. The expected
calibration error, computed on labelled predictions, says how far that assumption is from true.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def ece_from_bins(count: npt.ArrayLike, conf_sum: npt.ArrayLike, correct: npt.ArrayLike) -> float:
    """Expected calibration error ``sum_b count_b/N * |correct_b/count_b - conf_sum_b/count_b|``.

    Computed in the algebraically equal form ``sum_b |correct_b - conf_sum_b| / N``, which needs
    no per-bin division and so no guard for empty bins. NaN when N == 0.
    """
    cnt = np.asarray(count, dtype=np.float64).ravel()
    total = float(cnt.sum())
    if total <= 0:
        return math.nan
    s = np.asarray(conf_sum, dtype=np.float64).ravel()
    k = np.asarray(correct, dtype=np.float64).ravel()
    return float(np.sum(np.abs(k - s)) / total)
