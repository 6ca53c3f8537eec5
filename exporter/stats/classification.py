"""Confusion matrices and the classification metrics derived from them.

A window keeps one C x C int64 confusion matrix per model version and updates it by adding the
outcomes that enter and subtracting those that expire; every metric is then a function of the
matrix alone, so it costs O(C^2) per cycle however many events the window holds.

Layout as ``sklearn.metrics.confusion_matrix``: rows are the true class, columns the
predicted class, ``cm[i, j]`` counts outcomes with label ``i`` predicted as ``j``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from exporter.foundation.arrays import FloatArray, IntArray


def confusion_add(cm: IntArray, true_idx: npt.ArrayLike, pred_idx: npt.ArrayLike, sign: int = 1) -> None:
    """Add (``sign=1``) or remove (``sign=-1``) a batch of outcomes from ``cm`` in place.

    One ``bincount`` over the flattened cell index replaces a per-event loop. Indices must be
    in ``[0, C)``; a bad index raises ``ValueError`` before ``cm`` is touched, so a failed update
    never leaves a half-applied batch.
    """
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign}")
    c = cm.shape[0]
    t = np.asarray(true_idx, dtype=np.int64).ravel()
    p = np.asarray(pred_idx, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"true_idx and pred_idx differ in length: {t.size} != {p.size}")
    if t.size == 0:
        return
    if min(int(t.min()), int(p.min())) < 0 or max(int(t.max()), int(p.max())) >= c:
        raise ValueError(f"class index outside [0, {c})")
    counts = np.bincount(t * c + p, minlength=c * c).reshape(c, c)
    if sign == 1:
        cm += counts
    else:
        cm -= counts


@dataclass(frozen=True)
class ClassificationMetrics:
    """Metrics of one confusion matrix; per-class arrays are indexed like the matrix rows.

    The arrays are read-only so that a snapshot holding them stays immutable.
    """

    accuracy: float
    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    macro_precision: float
    macro_recall: float
    macro_f1: float
    n: int
    correct: int


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """``num / den`` with NaN where ``den == 0`` (sklearn's ``zero_division=np.nan``)."""
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nan_mean(values: FloatArray) -> float:
    """Mean of the non-NaN values, NaN if there are none (without numpy's empty-mean warning)."""
    kept = values[~np.isnan(values)]
    return float(np.mean(kept)) if kept.size else math.nan


def classification_metrics(cm: npt.ArrayLike) -> ClassificationMetrics:
    """Accuracy, per-class and macro precision / recall / F1 of a confusion matrix.

    Matches ``sklearn.metrics.precision_recall_fscore_support(..., zero_division=np.nan)``:

    * per class: ``precision = tp / predicted``, ``recall = tp / actual`` and
      ``f1 = 2 tp / (predicted + actual)``, each NaN when its denominator is 0. Note that, as
      in scikit-learn (>= 1.3), F1 is *not* NaN merely because precision or recall is: a class
      that occurs but is never predicted has precision NaN, recall 0 and F1 0. F1 is NaN only
      for a class absent from both labels and predictions.
    * macro: the unweighted mean over the classes *seen* in the matrix (non-zero row or
      column), skipping NaN per-class values; this is scikit-learn's ``average="macro"`` with
      its default ``labels`` (the union of classes in ``y_true`` and ``y_pred``).

    An empty matrix gives NaN everywhere (and ``n == correct == 0``).
    """
    m = np.asarray(cm, dtype=np.int64)
    tp_i = np.diagonal(m)
    actual_i = m.sum(axis=1)
    predicted_i = m.sum(axis=0)
    n = int(m.sum())
    correct = int(tp_i.sum())
    tp = tp_i.astype(np.float64)
    actual = actual_i.astype(np.float64)
    predicted = predicted_i.astype(np.float64)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, actual)
    f1 = _ratio(2.0 * tp, actual + predicted)
    seen = (actual_i + predicted_i) > 0
    for arr in (precision, recall, f1):
        arr.flags.writeable = False
    return ClassificationMetrics(
        accuracy=correct / n if n > 0 else math.nan,
        precision=precision,
        recall=recall,
        f1=f1,
        macro_precision=_nan_mean(precision[seen]),
        macro_recall=_nan_mean(recall[seen]),
        macro_f1=_nan_mean(f1[seen]),
        n=n,
        correct=correct,
    )
