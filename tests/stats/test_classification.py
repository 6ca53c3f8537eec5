"""Confusion matrices and classification metrics against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from exporter.stats.classification import classification_metrics, confusion_add


def _cm(y_true: np.ndarray, y_pred: np.ndarray, c: int) -> np.ndarray:
    cm = np.zeros((c, c), dtype=np.int64)
    confusion_add(cm, y_true, y_pred)
    return cm


def _assert_same(actual: np.ndarray | float, expected: np.ndarray | float) -> None:
    a = np.atleast_1d(np.asarray(actual, dtype=np.float64))
    e = np.atleast_1d(np.asarray(expected, dtype=np.float64))
    assert a.shape == e.shape
    assert np.array_equal(np.isnan(a), np.isnan(e)), (a, e)
    ok = ~np.isnan(e)
    assert a[ok].tolist() == pytest.approx(e[ok].tolist(), rel=1e-12, abs=0)


def _check_against_sklearn(y_true: np.ndarray, y_pred: np.ndarray, c: int) -> None:
    cm = _cm(y_true, y_pred, c)
    m = classification_metrics(cm)
    assert m.n == y_true.size
    assert m.correct == int(np.sum(y_true == y_pred))
    if y_true.size:
        assert m.accuracy == pytest.approx(accuracy_score(y_true, y_pred), rel=1e-12)
    else:
        assert math.isnan(m.accuracy)
        return
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(c)), average=None, zero_division=np.nan
    )
    _assert_same(m.precision, p)
    _assert_same(m.recall, r)
    _assert_same(m.f1, f)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=np.nan)
    _assert_same(m.macro_precision, mp)
    _assert_same(m.macro_recall, mr)
    _assert_same(m.macro_f1, mf)


def test_confusion_add_matches_sklearn_and_reverts() -> None:
    rng = np.random.default_rng(1)
    for c in (2, 5):
        y_true = rng.integers(0, c, 5000)
        y_pred = np.where(rng.random(5000) < 0.7, y_true, rng.integers(0, c, 5000))
        cm = _cm(y_true, y_pred, c)
        assert cm.dtype == np.int64
        assert np.array_equal(cm, confusion_matrix(y_true, y_pred, labels=list(range(c))))
        # remove the first half again: equals the matrix of the second half
        confusion_add(cm, y_true[:2500], y_pred[:2500], sign=-1)
        assert np.array_equal(cm, confusion_matrix(y_true[2500:], y_pred[2500:], labels=list(range(c))))
        confusion_add(cm, y_true[2500:], y_pred[2500:], sign=-1)
        assert not cm.any()


def test_confusion_add_rejects_bad_input_without_touching_matrix() -> None:
    cm = np.zeros((3, 3), dtype=np.int64)
    confusion_add(cm, np.array([0, 1]), np.array([1, 1]))
    before = cm.copy()
    with pytest.raises(ValueError):
        confusion_add(cm, np.array([0, 3]), np.array([0, 0]))
    with pytest.raises(ValueError):
        confusion_add(cm, np.array([0, -1]), np.array([0, 0]))
    with pytest.raises(ValueError):
        confusion_add(cm, np.array([0]), np.array([0, 1]))
    with pytest.raises(ValueError):
        confusion_add(cm, np.array([0]), np.array([0]), sign=2)
    assert np.array_equal(cm, before)
    confusion_add(cm, np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert np.array_equal(cm, before)


@pytest.mark.parametrize("c", [2, 5])
@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn_random(c: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    y_true = rng.integers(0, c, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, c, n))
    _check_against_sklearn(y_true, y_pred, c)


def test_metrics_with_unseen_and_never_predicted_classes() -> None:
    rng = np.random.default_rng(7)
    # 5 classes: class 4 never predicted, class 3 never true, so per-class NaNs appear
    y_true = rng.choice([0, 1, 2, 4], 400)
    y_pred = rng.choice([0, 1, 2, 3], 400)
    _check_against_sklearn(y_true, y_pred, 5)
    m = classification_metrics(_cm(y_true, y_pred, 5))
    assert math.isnan(m.precision[4]) and m.recall[4] == 0.0 and m.f1[4] == 0.0
    assert m.precision[3] == 0.0 and math.isnan(m.recall[3]) and m.f1[3] == 0.0


def test_metrics_class_absent_everywhere_is_nan_and_not_in_macro() -> None:
    y_true = np.array([0, 0, 1, 1, 1])
    y_pred = np.array([0, 1, 1, 1, 0])
    m = classification_metrics(_cm(y_true, y_pred, 4))
    assert np.isnan(m.precision[2:]).all() and np.isnan(m.recall[2:]).all() and np.isnan(m.f1[2:]).all()
    _check_against_sklearn(y_true, y_pred, 4)
    assert m.macro_f1 == pytest.approx((2 * 1 / 4 + 2 * 2 / 6) / 2, rel=1e-12)


def test_metrics_edge_cases() -> None:
    empty = classification_metrics(np.zeros((3, 3), dtype=np.int64))
    assert empty.n == 0 and empty.correct == 0
    for v in (empty.accuracy, empty.macro_precision, empty.macro_recall, empty.macro_f1):
        assert math.isnan(v)
    assert np.isnan(empty.precision).all() and np.isnan(empty.f1).all()

    # one class only, all correct
    one = np.array([1, 1, 1])
    _check_against_sklearn(one, one, 2)
    m = classification_metrics(_cm(one, one, 2))
    assert m.accuracy == 1.0 and m.macro_f1 == 1.0 and math.isnan(m.f1[0])

    # all correct, every class
    y = np.arange(5).repeat(3)
    _check_against_sklearn(y, y, 5)
    # all wrong in a binary model
    _check_against_sklearn(np.array([0, 0, 1]), np.array([1, 1, 0]), 2)
    # nothing predicted positive: binary precision of class 1 is NaN, recall 0
    m = classification_metrics(_cm(np.array([0, 1, 1]), np.array([0, 0, 0]), 2))
    assert math.isnan(m.precision[1]) and m.recall[1] == 0.0 and m.f1[1] == 0.0


def test_metric_arrays_are_read_only() -> None:
    m = classification_metrics(np.array([[3, 1], [0, 2]]))
    with pytest.raises(ValueError):
        m.precision[0] = 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60))
def test_metrics_match_sklearn_property(pairs: list[tuple[int, int]]) -> None:
    y_true = np.array([t for t, _ in pairs])
    y_pred = np.array([p for _, p in pairs])
    _check_against_sklearn(y_true, y_pred, 5)
