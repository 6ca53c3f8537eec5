"""Expected calibration error from per-bin sums, against a textbook loop over the raw outcomes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exporter.stats.estimation import ece_from_bins

EDGES = np.array([k / 10 for k in range(11)])  # the doubles nearest k/10


def _reference_ece(conf: np.ndarray, correct: np.ndarray) -> float:
    """Textbook ECE with 10 bins [i/10, (i+1)/10), the last closed, one explicit loop."""
    total = 0.0
    for i in range(10):
        lo, hi = EDGES[i], EDGES[i + 1]
        mask = (conf >= lo) & ((conf < hi) | ((i == 9) & (conf <= 1.0)))
        if mask.any():
            total += mask.sum() / conf.size * abs(correct[mask].mean() - conf[mask].mean())
    return total


def _bin_sums(conf: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (count, sum of confidence, number correct), bins found with ``np.digitize``."""
    idx = np.digitize(conf, EDGES[1:-1])
    return (np.bincount(idx, minlength=10), np.bincount(idx, weights=conf, minlength=10),
            np.bincount(idx, weights=correct.astype(float), minlength=10))


@pytest.mark.parametrize("seed", range(5))
def test_ece_matches_reference_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    conf = np.round(rng.beta(4, 2, 5000), int(rng.integers(1, 4)))  # rounding hits the bin edges
    correct = rng.random(conf.size) < conf**1.3  # over-confident model
    bins = _bin_sums(conf, correct)
    assert int(bins[0].sum()) == conf.size
    assert ece_from_bins(*bins) == pytest.approx(_reference_ece(conf, correct), rel=1e-12)


def test_ece_edges() -> None:
    assert math.isnan(ece_from_bins(np.zeros(10), np.zeros(10), np.zeros(10)))
    # perfectly calibrated single bin, and a maximally wrong one
    assert ece_from_bins(np.array([4]), np.array([2.0]), np.array([2])) == 0.0
    assert ece_from_bins(*_bin_sums(np.array([1.0, 1.0]), np.array([False, False]))) == 1.0
    # hand-worked: (0.3, right), (0.3, wrong) in [0.3, 0.4); (1.0, wrong), (0.95, right) in the
    # last bin; (0.25, wrong) in [0.2, 0.3): 2/5 * 0.2 + 2/5 * 0.475 + 1/5 * 0.25 = 0.32
    conf = np.array([0.3, 0.3, 1.0, 0.95, 0.25])
    right = np.array([True, False, False, True, False])
    assert ece_from_bins(*_bin_sums(conf, right)) == pytest.approx(0.32, abs=1e-15)
    assert _reference_ece(conf, right) == pytest.approx(0.32, abs=1e-15)
