"""The probability a binary model gave its positive class, from the records' ``probabilities``.

Ingest-level: it reads the decoded ``probabilities`` column of a prediction batch. The pipeline
hands the result to the per-version state (calibration, confidence drift), so it lives below
both rather than in the drift monitor.
"""

from __future__ import annotations

import math

import numpy as np

from exporter.arrays import FloatArray, ObjArray


def positive_probabilities(probabilities: ObjArray, positive_class: str) -> FloatArray:
    """Probability of the positive class per prediction, NaN where the record has none.

    ``probabilities`` holds dicts (class text -> probability) or None. When a dict lacks the
    positive class but names exactly one other class, the complement of that one is used (a
    binary model that logs only the probability of its prediction).
    """
    out = np.full(len(probabilities), math.nan)
    for i, probs in enumerate(probabilities.tolist()):
        if not probs:
            continue
        p = probs.get(positive_class)
        if p is not None:
            out[i] = p
        elif len(probs) == 1:
            out[i] = 1.0 - next(iter(probs.values()))
    return out
