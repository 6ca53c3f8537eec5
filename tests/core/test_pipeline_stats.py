"""Every windowed statistic against scikit-learn / numpy on the same events, with a fake clock.

Predictions and labels are fed through the real join and windows in random batches with
out-of-order and late timestamps; at each step the exported numbers are compared with a
brute-force recomputation over exactly the events DESIGN §2 places in each window.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from exporter.config import Baseline, JoinConfig, ModelConfig, Thresholds
from exporter.core.pipeline import Pipeline
from exporter.report import catalogue
from tests.core.pipelines import label_batch, make_pipeline, pred_batch
from tests.helpers import FakeClock, in_window


def check_window(p: Pipeline, now: float, preds: dict[str, tuple[float, str, float]],
                 outcomes: list[tuple[str, float, str]], classes: list[str], model: ModelConfig) -> None:
    vs = p.versions[("m", "1")]
    for i, w in enumerate(vs.windows):
        s = vs.window_stats(i)
        in_pred = [k for k, (ts, _, _) in preds.items() if in_window([ts], now, w.seconds)[0]]
        in_out = [(rid, lts, lab) for rid, lts, lab in outcomes if in_window([lts], now, w.seconds)[0]]
        assert s.predictions == len(in_pred)
        assert s.labeled == len(in_out)
        # coverage: labelled predictions among the window's predictions, both by prediction time
        labelled_ids = {rid for rid, _, _ in outcomes}
        n_cov = sum(1 for k in in_pred if k in labelled_ids)
        assert s.labeled_by_prediction_time == n_cov
        if in_pred:
            assert s.coverage == pytest.approx(n_cov / len(in_pred), rel=1e-12)
            conf = np.array([preds[k][2] for k in in_pred])
            cs = s.confidence
            # DESIGN §2 "Exactness": ratios within 1e-9 (fixed-point sums), the median within
            # 0.001 (a 0.001-wide histogram); min and max exact
            assert cs.mean == pytest.approx(np.mean(conf), abs=1e-9)
            assert cs.median == pytest.approx(np.median(conf), abs=1e-3)
            assert cs.stddev == pytest.approx(np.std(conf), abs=1e-9)
            assert (cs.min, cs.max) == (conf.min(), conf.max())
            assert cs.low_share == pytest.approx(np.mean(conf < model.thresholds.confidence), rel=1e-12)
        else:
            assert math.isnan(s.coverage) and math.isnan(s.confidence.mean)
        if not in_out:
            assert math.isnan(s.metrics.accuracy) and math.isnan(s.accuracy_drop)
            continue
        y_true = [lab for _, _, lab in in_out]
        y_pred = [preds[rid][1] for rid, _, _ in in_out]
        assert s.metrics.accuracy == pytest.approx(accuracy_score(y_true, y_pred), rel=1e-12)
        p_, r_, f_, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average=None,
                                                        zero_division=np.nan)
        for c, cls in enumerate(classes):
            if cls not in p.classes["m"].names:  # never seen yet: no series, and sklearn agrees it is NaN
                assert math.isnan(p_[c]) and math.isnan(r_[c])
                continue
            idx = p.classes["m"].names.index(cls)
            for ours, ref in ((s.metrics.precision[idx], p_[c]), (s.metrics.recall[idx], r_[c]),
                              (s.metrics.f1[idx], f_[c])):
                assert (math.isnan(ours) and math.isnan(ref)) or ours == pytest.approx(ref, rel=1e-12)
        mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=np.nan)
        assert s.metrics.macro_precision == pytest.approx(mp, rel=1e-12)
        assert s.metrics.macro_recall == pytest.approx(mr, rel=1e-12)
        assert s.metrics.macro_f1 == pytest.approx(mf, rel=1e-12, nan_ok=True)
        acc = accuracy_score(y_true, y_pred)
        base = model.baseline.accuracy
        assert base is not None
        assert s.accuracy_drop == pytest.approx(base - acc, rel=1e-12, abs=1e-15)
        expect = (base - acc) > model.thresholds.drift and len(in_out) >= model.thresholds.min_samples
        assert s.drift_detected == expect
        conf = np.array([preds[rid][2] for rid, _, _ in in_out])
        correct = np.array([preds[rid][1] == lab for rid, _, lab in in_out], dtype=float)
        assert s.calibration_error == pytest.approx(reference_ece(conf, correct), abs=1e-9)


#: The 11 edges of 10 equal-width bins, each the double nearest k/10 (``np.linspace(0, 1, 11)``
#: would give 0.30000000000000004 for the fourth and move a confidence of 0.3 down a bin).
ECE_EDGES = np.array([k / 10 for k in range(11)])


def reference_ece(conf: np.ndarray, correct: np.ndarray) -> float:
    """ECE from its definition: bins [k/10, (k+1)/10), the last one closed at 1.0, found by
    ``np.digitize`` on the inner edges (independent of how the exporter bins)."""
    bins = np.digitize(conf, ECE_EDGES[1:-1], right=False)  # how many inner edges are <= conf
    total = 0.0
    for b in range(10):
        mask = bins == b
        if mask.any():
            total += mask.sum() / conf.size * abs(correct[mask].mean() - conf[mask].mean())
    return total


def test_reference_ece_hand_worked_on_bin_edges() -> None:
    """0.3 belongs to [0.3, 0.4) and 1.0 to the last bin, through the oracle and through the pipeline.

    Outcomes (confidence, right?): (0.3, yes), (0.3, no), (1.0, no), (0.95, yes), (0.25, no).
    Bin [0.3, 0.4): accuracy 1/2, confidence 0.3 -> |0.5 - 0.3| = 0.2, weight 2/5;
    bin [0.9, 1.0]: accuracy 1/2, confidence 0.975 -> 0.475, weight 2/5;
    bin [0.2, 0.3): accuracy 0, confidence 0.25 -> 0.25, weight 1/5.
    ECE = 0.08 + 0.19 + 0.05 = 0.32. (0.3 in the bin below would give 0.22; 1.0 in a bin of its
    own 0.34.)
    """
    conf = np.array([0.3, 0.3, 1.0, 0.95, 0.25])
    right = np.array([1.0, 0.0, 0.0, 1.0, 0.0])
    assert reference_ece(conf, right) == pytest.approx(0.32, abs=1e-15)
    model = ModelConfig(name="m", classes=("0", "1"), baseline=Baseline(accuracy=0.9))
    p = make_pipeline(model, FakeClock(100.0))
    ids = ["a", "b", "c", "d", "e"]
    p.apply_predictions("s", pred_batch(ids, np.full(5, 100.0), ["1"] * 5, conf), 100.0)
    p.apply_labels("l", label_batch(ids, ["1", "0", "0", "1", "0"], np.full(5, 100.0)), 100.0)
    ece = next(s.value for f in catalogue.families(p.build_report(100.0)) if f.name == "mlmon_calibration_error_ratio"
               for s in f.samples if ("window", "1m") in s.labels)
    assert ece == pytest.approx(0.32, abs=1e-9)


#: Stamps are multiples of 10 s, so a window holds the same events under the exact rule
#: (``ts > now - L``, used by ``check_window``) and under DESIGN §2's buckets (widths 1 s and 10 s
#: for 1m and 10m with the default 60 buckets). Off-grid stamps: tests/core/test_window_oracle.py.
GRID = 10.0


def on_grid(ts: np.ndarray) -> np.ndarray:
    return np.floor(ts / GRID) * GRID


@pytest.mark.parametrize(("task", "classes"), [("binary", ["0", "1"]), ("multiclass", ["a", "b", "c", "d", "e"])])
def test_windows_against_sklearn(task: str, classes: list[str]) -> None:
    rng = np.random.default_rng(42)
    model = ModelConfig(name="m", task=task, classes=tuple(classes) if task == "binary" else None,  # type: ignore[arg-type]
                        positive_class="1", baseline=Baseline(accuracy=0.8),
                        thresholds=Thresholds(min_samples=20), join=JoinConfig(ttl=300.0, max_pending=10**6))
    clock = FakeClock(10_000.0)
    p = make_pipeline(model, clock)
    preds: dict[str, tuple[float, str, float]] = {}
    outcomes: list[tuple[str, float, str]] = []
    waiting: list[str] = []
    counter = 0
    for step in range(120):
        clock.t += float(rng.exponential(8.0))
        now = clock.t
        n = int(rng.integers(0, 30))
        ids = [f"r{counter + i}" for i in range(n)]
        counter += n
        ts = on_grid(now - rng.exponential(3.0, n))
        pr = rng.choice(classes, n, p=None).tolist()
        if task == "multiclass" and step < 60:
            pr = [c if c != "e" else "d" for c in pr]  # class "e" absent early: empty-class NaNs
        conf = np.round(rng.uniform(0.3, 1.0, n), 3)
        p.apply_predictions("preds", pred_batch(ids, ts, pr, conf), now)
        for i, rid in enumerate(ids):
            preds[rid] = (float(ts[i]), pr[i], float(conf[i]))
        waiting.extend(ids)
        # label some waiting predictions: mostly right early, drifting later
        k = int(rng.integers(0, len(waiting) + 1)) if waiting else 0
        chosen = [waiting.pop(int(rng.integers(0, len(waiting)))) for _ in range(k)]
        acc = 0.9 if step < 70 else 0.6
        labs = [preds[r][1] if rng.random() < acc else str(rng.choice(classes)) for r in chosen]
        has_ts = rng.random(k) < 0.7
        lts = on_grid(np.where(has_ts, now - rng.uniform(0, 20, k), now))
        p.apply_labels("labels", label_batch(chosen, labs, lts), now)
        outcomes.extend(zip(chosen, lts.tolist(), labs, strict=True))
        p.advance(now)
        if step % 5 == 0 or step > 110:
            check_window(p, now, preds, outcomes, classes, model)
        if step % 3 == 0:
            # the clock alone, to the next grid point: now - L is then a stamp events carry, the
            # edge where an event must just have left the window
            clock.t = float(on_grid(np.array([now]))[0]) + GRID
            p.advance(clock.t)
            check_window(p, clock.t, preds, outcomes, classes, model)
    # the clock alone empties the windows
    clock.t += 700.0
    p.advance(clock.t)
    check_window(p, clock.t, preds, outcomes, classes, model)
    vs = p.versions[("m", "1")]
    assert vs.window_stats(1).predictions == 0


def test_tiny_and_empty_windows_give_nan_not_errors() -> None:
    model = ModelConfig(name="m", classes=("0", "1"), baseline=Baseline(accuracy=0.9))
    clock = FakeClock(100.0)
    p = make_pipeline(model, clock)
    p.apply_predictions("s", pred_batch(["a"], np.array([100.0]), ["1"], np.array([np.nan])), 100.0)
    p.apply_labels("l", label_batch(["a"], ["0"], np.array([100.0])), 100.0)
    s = p.versions[("m", "1")].window_stats(0)
    assert s.metrics.accuracy == 0.0 and s.labeled == 1
    # predicted "1", truly "0": class 1 has one false positive and no true one -> precision 0/1,
    # recall 0/0; class 0 has one false negative -> precision 0/0, recall 0/1
    assert s.metrics.precision[1] == 0.0 and math.isnan(s.metrics.recall[1])
    assert math.isnan(s.metrics.precision[0]) and s.metrics.recall[0] == 0.0
    assert math.isnan(s.confidence.mean)  # no confidence given
    assert not s.drift_detected  # one sample is below min_samples
    snap = catalogue.snapshot(p.build_report(100.0))
    assert any(f.name == "mlmon_accuracy_ratio" for f in snap.families)


def test_version_cap_bounds_the_version_label() -> None:
    model = ModelConfig(name="m", classes=("0", "1"), baseline=Baseline(accuracy=0.9), max_versions=2)
    clock = FakeClock(100.0)
    p = make_pipeline(model, clock)
    for i, version in enumerate(["a", "b", "c", "a"]):
        p.apply_predictions("s", pred_batch([f"id{i}"], np.array([100.0]), ["1"], np.array([0.9]), version=version),
                            100.0)
    assert sorted(v for _, v in p.versions) == ["a", "b"]
    assert p.source_stats["s"].invalid == {"too_many_versions": 1}
