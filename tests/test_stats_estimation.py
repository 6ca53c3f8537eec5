"""CBPE estimates and expected calibration error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exporter.stats.estimation import calibration_bins, cbpe_accuracy, cbpe_binary, ece_from_bins


def _reference_ece(conf: np.ndarray, correct: np.ndarray) -> float:
    """Textbook ECE with 10 bins [i/10, (i+1)/10), the last closed, one explicit loop."""
    total = 0.0
    for i in range(10):
        lo, hi = i / 10, (i + 1) / 10
        mask = (conf >= lo) & ((conf < hi) | ((i == 9) & (conf <= 1.0)))
        if mask.any():
            total += mask.sum() / conf.size * abs(correct[mask].mean() - conf[mask].mean())
    return total


def test_cbpe_accuracy_is_mean_confidence() -> None:
    conf = np.random.default_rng(0).uniform(0.5, 1.0, 1000)
    assert cbpe_accuracy(conf) == float(np.mean(conf))
    assert math.isnan(cbpe_accuracy(np.array([])))
    assert cbpe_accuracy(np.array([0.8, np.nan, 0.6])) == pytest.approx(0.7, rel=1e-15)


def test_cbpe_accuracy_estimates_calibrated_model() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 200_000)
    correct = rng.random(conf.size) < conf  # perfectly calibrated by construction
    assert cbpe_accuracy(conf) == pytest.approx(correct.mean(), abs=0.005)


def test_cbpe_binary_hand_worked() -> None:
    p = np.array([0.9, 0.8, 0.3, 0.2, 0.6])
    pred = np.array([True, True, False, False, True])
    tp, fp, fn = 0.9 + 0.8 + 0.6, 0.1 + 0.2 + 0.4, 0.3 + 0.2
    precision, recall, f1 = cbpe_binary(p, pred)
    assert precision == pytest.approx(tp / (tp + fp), rel=1e-14)
    assert recall == pytest.approx(tp / (tp + fn), rel=1e-14)
    assert f1 == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-14)
    assert f1 == pytest.approx(2 * precision * recall / (precision + recall), rel=1e-14)


def test_cbpe_binary_estimates_calibrated_model() -> None:
    rng = np.random.default_rng(2)
    p = rng.beta(2, 3, 300_000)
    y = rng.random(p.size) < p
    pred = p >= 0.5
    tp = np.sum(y & pred)
    est = cbpe_binary(p, pred)
    truth = (tp / pred.sum(), tp / y.sum(), 2 * tp / (pred.sum() + y.sum()))
    assert est == pytest.approx(truth, abs=0.01)


def test_cbpe_binary_zero_denominators() -> None:
    precision, recall, f1 = cbpe_binary(np.array([0.2, 0.4]), np.array([False, False]))
    assert math.isnan(precision) and recall == 0.0 and f1 == 0.0
    assert all(math.isnan(v) for v in cbpe_binary(np.array([0.0, 0.0]), np.array([False, False])))
    assert all(math.isnan(v) for v in cbpe_binary(np.array([]), np.array([], dtype=bool)))
    with pytest.raises(ValueError):
        cbpe_binary(np.array([0.1]), np.array([True, False]))


def test_calibration_bin_boundaries() -> None:
    conf = np.array([0.0, 0.0999, 0.1, 0.3, 0.7, 0.95, 0.9999, 1.0])
    count, conf_sum, correct = calibration_bins(conf, np.ones(conf.size, dtype=bool))
    assert count.dtype == np.int64 and correct.dtype == np.int64
    assert count.tolist() == [2, 1, 0, 1, 0, 0, 0, 1, 0, 3]
    assert conf_sum[9] == pytest.approx(0.95 + 0.9999 + 1.0, rel=1e-15)
    assert correct.tolist() == count.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_ece_matches_reference_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    conf = np.round(rng.beta(4, 2, 5000), int(rng.integers(1, 4)))  # rounding hits the bin edges
    correct = rng.random(conf.size) < conf**1.3  # over-confident model
    bins = calibration_bins(conf, correct)
    assert int(bins[0].sum()) == conf.size
    assert ece_from_bins(*bins) == pytest.approx(_reference_ece(conf, correct), rel=1e-12)


def test_ece_incremental_add_and_subtract() -> None:
    rng = np.random.default_rng(9)
    conf = rng.random(4000)
    correct = rng.random(4000) < conf
    first = calibration_bins(conf[:1500], correct[:1500])
    whole = calibration_bins(conf, correct)
    rest = [w - f for w, f in zip(whole, first, strict=True)]
    expected = calibration_bins(conf[1500:], correct[1500:])
    assert np.array_equal(rest[0], expected[0]) and np.array_equal(rest[2], expected[2])
    assert ece_from_bins(*rest) == pytest.approx(ece_from_bins(*expected), rel=1e-10)


def test_ece_edges() -> None:
    empty = calibration_bins(np.array([]), np.array([], dtype=bool))
    assert [b.tolist() for b in empty] == [[0] * 10, [0.0] * 10, [0] * 10]
    assert math.isnan(ece_from_bins(*empty))
    # perfectly calibrated single bin, and a maximally wrong one
    assert ece_from_bins(np.array([4]), np.array([2.0]), np.array([2])) == 0.0
    count, conf_sum, correct = calibration_bins(np.array([1.0, 1.0]), np.array([False, False]))
    assert ece_from_bins(count, conf_sum, correct) == 1.0
    # NaN confidences are left out
    a = calibration_bins(np.array([0.3, np.nan, 0.9]), np.array([True, True, False]))
    b = calibration_bins(np.array([0.3, 0.9]), np.array([True, False]))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
