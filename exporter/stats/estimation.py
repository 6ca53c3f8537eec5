"""Label-free performance estimates and calibration error.

Labels arrive late or never, so the exporter also estimates quality from the model's own
confidence (confidence-based performance estimation, CBPE): if the model is calibrated, a
prediction made with confidence c is right with probability c, and expected counts follow.
The expected calibration error, computed on labelled predictions, says how far that
assumption is from true.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CALIBRATION_BINS = 10


def cbpe_accuracy(confidence: npt.ArrayLike) -> float:
    """Estimated accuracy: the mean top-class probability (NaN for an empty window).

    The expected number of correct predictions of a calibrated model is the sum of its
    top-class probabilities, so the expected accuracy is their mean. Predictions without a
    confidence (NaN) are left out.
    """
    c = np.asarray(confidence, dtype=np.float64).ravel()
    c = c[~np.isnan(c)]
    return float(np.mean(c)) if c.size else math.nan


def cbpe_binary(p_positive: npt.ArrayLike, predicted_positive: npt.ArrayLike) -> tuple[float, float, float]:
    """Estimated (precision, recall, F1) of the positive class from the expected confusion matrix.

    With ``p`` the calibrated probability of the positive class: ``E[TP] = sum p`` and
    ``E[FP] = sum (1 - p)`` over predictions of the positive class, ``E[FN] = sum p`` over the
    others. Then ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``,
    ``F1 = 2 TP / (2 TP + FP + FN)`` (the ratio of expectations, the usual CBPE estimator);
    each is NaN when its denominator is 0. Predictions with a NaN probability are left out.
    """
    p = np.asarray(p_positive, dtype=np.float64).ravel()
    pred = np.asarray(predicted_positive, dtype=bool).ravel()
    if p.shape != pred.shape:
        raise ValueError(f"p_positive and predicted_positive differ in length: {p.size} != {pred.size}")
    known = ~np.isnan(p)
    p = p[known]
    pred = pred[known]
    tp = float(np.sum(p[pred]))
    fp = float(np.sum(1.0 - p[pred]))
    fn = float(np.sum(p[~pred]))
    precision = tp / (tp + fp) if tp + fp > 0 else math.nan
    recall = tp / (tp + fn) if tp + fn > 0 else math.nan
    f1_den = 2.0 * tp + fp + fn
    f1 = 2.0 * tp / f1_den if f1_den > 0 else math.nan
    return (precision, recall, f1)


def calibration_bins(
    confidence: npt.ArrayLike, correct: npt.ArrayLike, n_bins: int = CALIBRATION_BINS
) -> tuple[IntArray, FloatArray, IntArray]:
    """Per-bin (count, sum of confidence, number correct) of labelled predictions.

    Bins are equal-width on [0, 1]: bin i is ``[i/n_bins, (i+1)/n_bins)`` with the edges the
    correctly rounded doubles ``i / n_bins``, and the last bin also holds 1.0 (values outside
    [0, 1] are clipped into the end bins; NaN confidences are left out). The three sums are
    additive, so a window adds the bins of entering outcomes and subtracts those of expiring
    ones instead of re-binning; counts are exact integers (the float ``conf_sum`` of a window
    maintained by add/subtract may differ from a fresh sum in the last bits).
    """
    c = np.asarray(confidence, dtype=np.float64).ravel()
    ok = np.asarray(correct).ravel().astype(bool)
    if c.shape != ok.shape:
        raise ValueError(f"confidence and correct differ in length: {c.size} != {ok.size}")
    known = ~np.isnan(c)
    if not known.all():
        c = c[known]
        ok = ok[known]
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    idx = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64, copy=False)
    conf_sum = np.bincount(idx, weights=c, minlength=n_bins).astype(np.float64, copy=False)
    n_correct = np.bincount(idx[ok], minlength=n_bins).astype(np.int64, copy=False)
    return (count, conf_sum, n_correct)


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
