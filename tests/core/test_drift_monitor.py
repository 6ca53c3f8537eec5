"""VersionDrift: data drift, CBPE estimates and change detection, against scipy / river / by hand."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import river.drift
import river.drift.binary
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp

from exporter.config import DriftConfig, DriftThresholds, ModelConfig, Window
from exporter.core.drift_features import OTHER_CATEGORY, build_feature_model, ks_against_reference
from exporter.core.drift_monitor import FeatureDrift, VersionDrift
from exporter.core.reference import RawColumn, Reference
from exporter.ingest.batch_ops import positive_probabilities
from exporter.report import catalogue
from exporter.report.snapshot import Snapshot
from exporter.runtime import checkpoint
from tests.helpers import Samples, in_window, obj, samples

CLASSES = ["0", "1"]
WINDOWS = (Window("1m", 60.0), Window("5m", 300.0))


def model(features: tuple[str, ...] = ("amount", "country"), reference_size: int = 100,
          methods: tuple[str, ...] = ("psi",), task: str = "binary", max_categories: int = 50,
          thresholds: DriftThresholds | None = None) -> ModelConfig:
    drift = DriftConfig(features=features, reference_size=reference_size, methods=methods,
                        max_categories=max_categories, thresholds=thresholds or DriftThresholds())
    classes = ("0", "1") if task == "binary" else ("a", "b", "c")
    return ModelConfig(name="m", task=task, classes=classes, drift=drift)  # type: ignore[arg-type]


def file_reference(n: int, features: dict[str, Sequence[Any]], confidence: Sequence[float] | None = None,
                   predicted: Sequence[str] | None = None) -> Reference:
    return Reference(
        features={k: RawColumn.from_values(obj(v), n) for k, v in features.items()},
        confidence=np.asarray(confidence if confidence is not None else np.full(n, 0.9), dtype=np.float64),
        predicted_class=obj(predicted if predicted is not None else ["1"] * n),
        origin="test-file",
    )


def feed(vd: VersionDrift, ts: np.ndarray, now: float, features: dict[str, Sequence[Any]] | None = None,
         confidence: np.ndarray | None = None, pred: np.ndarray | None = None,
         p_pos: np.ndarray | None = None) -> None:
    n = ts.size
    feats = {k: obj(v) for k, v in (features or {}).items()}
    conf = confidence if confidence is not None else np.full(n, 0.9)
    pred_idx = (pred if pred is not None else np.ones(n)).astype(np.int32)
    pp = p_pos if p_pos is not None else np.full(n, math.nan)
    vd.add_predictions(np.asarray(ts, dtype=np.float64), feats, conf, pred_idx, pp, now)


def drift_of(vd: VersionDrift, window: int, feature: str) -> FeatureDrift:
    return next(fd for fd in vd.window_drift(window) if fd.feature == feature)


def names() -> list[str]:
    return list(CLASSES)


# --- hand-worked PSI --------------------------------------------------------------------------------

def test_psi_categorical_hand_worked() -> None:
    ref = file_reference(100, {"country": ["A"] * 50 + ["B"] * 30 + ["C"] * 20, "amount": [1.0] * 100})
    vd = VersionDrift(model(), WINDOWS, ref, names)
    cur = ["A"] * 30 + ["B"] * 30 + ["C"] * 40
    feed(vd, np.full(100, 1000.0), 1000.0, {"country": cur, "amount": [1.0] * 100})
    fd = drift_of(vd, 0, "country")
    # shares ref (.5, .3, .2, __other__ 0 -> 1e-4), window (.3, .3, .4, 0 -> 1e-4):
    # (.3-.5) ln(.3/.5) + 0 + (.4-.2) ln(.4/.2) + 0 = .2 ln(5/3) + .2 ln 2
    expected = 0.2 * math.log(5 / 3) + 0.2 * math.log(2)
    assert fd.psi == pytest.approx(expected, rel=1e-12)
    assert fd.psi == pytest.approx(0.24079456, abs=1e-8)
    assert fd.kind == "categorical"
    assert fd.detected == 0.0  # 0.2408 is under the 0.25 default
    assert math.isnan(fd.ks_statistic)


def test_psi_numeric_hand_worked() -> None:
    # reference 1..10: the 10%..90% quantiles are 1.9, 2.8, ..., 9.1 -> one reference value per bin
    ref = file_reference(10, {"amount": [float(v) for v in range(1, 11)], "country": ["A"] * 10})
    vd = VersionDrift(model(), WINDOWS, ref, names)
    feed(vd, np.full(10, 5.0), 5.0, {"amount": [1.0] * 5 + [10.0] * 5, "country": ["A"] * 10})
    fd = drift_of(vd, 0, "amount")
    # window shares: .5 in the first and the last bin, 0 (floored to 1e-4) in the 8 others
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert fd.psi == pytest.approx(expected, rel=1e-12)
    assert fd.psi == pytest.approx(6.80822835, abs=1e-7)
    assert fd.detected == 1.0


# --- against scipy ----------------------------------------------------------------------------------

def _numeric_case(seed: int) -> tuple[VersionDrift, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref_vals = rng.normal(0.0, 1.0, 700)
    ref = file_reference(700, {"amount": ref_vals.tolist(), "country": ["A"] * 700})
    vd = VersionDrift(model(methods=("ks", "psi")), WINDOWS, ref, names)
    cur = rng.normal(0.3, 1.2, 450)
    ts = np.linspace(0.0, 50.0, cur.size)
    for lo in range(0, cur.size, 64):  # in batches, as a pipeline would
        sl = slice(lo, lo + 64)
        feed(vd, ts[sl], 50.0, {"amount": cur[sl].tolist(), "country": ["A"] * len(ts[sl])})
    return vd, ref_vals, cur


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ks_matches_scipy(seed: int) -> None:
    vd, ref_vals, cur = _numeric_case(seed)
    fd = drift_of(vd, 0, "amount")
    asymp = ks_2samp(ref_vals, cur, method="asymp")
    assert fd.ks_statistic == asymp.statistic  # bit for bit
    # scipy's default (exact for n <= 10000) snaps D to a multiple of 1/lcm(n1, n2): same to ~1 ulp
    assert fd.ks_statistic == pytest.approx(ks_2samp(ref_vals, cur).statistic, rel=1e-12)
    assert fd.ks_p_value == pytest.approx(asymp.pvalue, rel=1e-9, abs=1e-300)
    assert fd.method == "ks"
    assert fd.detected == (1.0 if fd.ks_statistic > 0.1 else 0.0)
    assert math.isnan(fd.chi2_p_value)


@pytest.mark.parametrize("case", range(8))
def test_fast_ks_matches_scipy_on_hard_cases(case: int) -> None:
    rng = np.random.default_rng(case)
    ref, cur = {
        0: (rng.normal(0, 1, 500), rng.normal(0.2, 1, 3000)),
        1: (rng.integers(0, 5, 400).astype(float), rng.integers(0, 7, 2500).astype(float)),  # ties
        2: (rng.uniform(0, 1, 50), rng.uniform(2, 3, 70)),  # disjoint, window above
        3: (rng.uniform(2, 3, 50), rng.uniform(0, 1, 70)),  # disjoint, window below
        4: (np.arange(100.0), np.arange(100.0)),  # identical
        5: (np.array([1.0]), rng.normal(1, 1, 9)),
        6: (rng.normal(0, 1, 1000), np.array([0.0])),
        7: (np.repeat([0.0, 1.0], [900, 100]), np.repeat([0.0, 1.0], [500, 500])),  # point masses
    }[case]
    ref, cur = np.sort(ref), np.sort(cur)
    d, p = ks_against_reference(ref, cur)
    asymp = ks_2samp(ref, cur, method="asymp")
    assert d == asymp.statistic  # bit for bit
    assert p == pytest.approx(asymp.pvalue, rel=1e-10, abs=1e-300, nan_ok=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_js_matches_scipy_on_the_same_bins(seed: int) -> None:
    vd, ref_vals, cur = _numeric_case(seed)
    edges = np.unique(np.quantile(ref_vals, np.arange(1, 10) / 10))
    ref_bins = np.bincount(np.searchsorted(edges, ref_vals, side="left"), minlength=edges.size + 1)
    cur_bins = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=edges.size + 1)
    fd = drift_of(vd, 0, "amount")
    assert fd.js_distance == pytest.approx(jensenshannon(ref_bins, cur_bins, base=2), rel=1e-12)
    rs = np.maximum(ref_bins / ref_bins.sum(), 1e-4)
    cs = np.maximum(cur_bins / cur_bins.sum(), 1e-4)
    assert fd.psi == pytest.approx(float(np.sum((cs - rs) * np.log(cs / rs))), rel=1e-12)


def test_categorical_chi2_and_js_match_scipy_with_category_cap() -> None:
    rng = np.random.default_rng(7)
    cats = np.array(["DE", "FR", "US", "UK", "PL", "NL"])
    ref_vals = rng.choice(cats, 900, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05]).tolist()
    cur_vals = rng.choice(cats, 400, p=[0.2, 0.2, 0.2, 0.2, 0.1, 0.1]).tolist() + ["BR"] * 10
    ref = file_reference(900, {"country": ref_vals, "amount": [0.0] * 900})
    vd = VersionDrift(model(max_categories=3, methods=("ks", "chi2")), WINDOWS, ref, names)
    feed(vd, np.full(len(cur_vals), 10.0), 10.0, {"country": cur_vals, "amount": [0.0] * len(cur_vals)})
    # expected bins by hand: the 3 most frequent reference categories, the rest in __other__
    top = [c for c, _ in sorted(Counter(ref_vals).items(), key=lambda kv: (-kv[1], kv[0]))[:3]]
    assert vd.features["country"].categories == tuple(top)

    def bins(values: list[str]) -> np.ndarray:
        return np.array([values.count(c) for c in top] + [sum(v not in top for v in values)])

    rb, cb = bins(ref_vals), bins(cur_vals)
    fd = drift_of(vd, 0, "country")
    assert fd.chi2_p_value == pytest.approx(chi2_contingency(np.stack([rb, cb])).pvalue, rel=1e-9)
    assert fd.js_distance == pytest.approx(jensenshannon(rb, cb, base=2), rel=1e-12)
    assert fd.method == "chi2"  # ks does not apply to a categorical feature: the next method does
    assert fd.detected == (1.0 if fd.chi2_p_value < 0.01 else 0.0)
    assert math.isnan(fd.ks_statistic)
    assert OTHER_CATEGORY == "__other__"


def test_predicted_class_chi2_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    ref_pred = rng.choice(["0", "1"], 500, p=[0.7, 0.3]).tolist()
    ref = file_reference(500, {"amount": [0.0] * 500, "country": ["A"] * 500}, predicted=ref_pred)
    vd = VersionDrift(model(), WINDOWS, ref, names)
    cur = rng.choice([0, 1], 300, p=[0.55, 0.45])
    feed(vd, np.full(300, 1.0), 1.0, {"amount": [0.0] * 300, "country": ["A"] * 300}, pred=cur)
    rb = np.array([ref_pred.count("0"), ref_pred.count("1")])  # "0" is the more frequent: first
    cb = np.array([(cur == 0).sum(), (cur == 1).sum()])
    fd = drift_of(vd, 0, "predicted_class")
    assert vd.features["predicted_class"].categories == ("0", "1")
    assert fd.chi2_p_value == pytest.approx(chi2_contingency(np.stack([rb, cb])).pvalue, rel=1e-9)
    assert fd.kind == "categorical"


def test_confidence_is_a_numeric_feature() -> None:
    rng = np.random.default_rng(11)
    ref_conf = rng.uniform(0.5, 1.0, 300)
    ref = file_reference(300, {"amount": [0.0] * 300, "country": ["A"] * 300}, confidence=ref_conf.tolist())
    vd = VersionDrift(model(), WINDOWS, ref, names)
    cur = rng.uniform(0.4, 0.9, 200)
    feed(vd, np.full(200, 1.0), 1.0, {"amount": [0.0] * 200, "country": ["A"] * 200}, confidence=cur)
    fd = drift_of(vd, 0, "confidence")
    assert fd.kind == "numeric"
    assert fd.ks_statistic == ks_2samp(ref_conf, cur, method="asymp").statistic


# --- estimation -------------------------------------------------------------------------------------

def test_estimates_match_numpy() -> None:
    rng = np.random.default_rng(5)
    n = 1000
    p1 = rng.uniform(0, 1, n)
    pred = (p1 >= 0.5).astype(int)
    conf = np.where(pred == 1, p1, 1 - p1)
    p1[::17] = math.nan  # some records without probabilities
    conf[::23] = math.nan
    ts = np.linspace(0, 200, n)
    vd = VersionDrift(model(features=()), WINDOWS, None, names)
    for lo in range(0, n, 100):
        sl = slice(lo, lo + 100)
        feed(vd, ts[sl], 200.0, confidence=conf[sl], pred=pred[sl], p_pos=p1[sl])
    for i, w in enumerate(WINDOWS):
        inside = in_window(ts, 200.0, w.seconds)
        est = vd.estimates(i)
        c = conf[inside]
        assert est.predictions == int(inside.sum())
        assert est.accuracy == pytest.approx(np.nanmean(c), abs=1e-9)
        p, pr = p1[inside], pred[inside]
        known = ~np.isnan(p)
        tp = p[known & (pr == 1)].sum()
        fp = (1 - p[known & (pr == 1)]).sum()
        fn = p[known & (pr == 0)].sum()
        assert est.precision == pytest.approx(tp / (tp + fp), abs=1e-9)
        assert est.recall == pytest.approx(tp / (tp + fn), abs=1e-9)
        assert est.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-9)


def test_estimates_before_any_prediction_are_nan() -> None:
    vd = VersionDrift(model(), WINDOWS, None, names)
    est = vd.estimates(0)
    assert est.predictions == 0
    assert all(math.isnan(x) for x in (est.accuracy, est.precision, est.recall, est.f1))


def test_positive_probabilities() -> None:
    probs = obj([{"0": 0.2, "1": 0.8}, None, {"0": 0.9}, {"1": 0.3}, {"0": 0.5, "2": 0.5}])
    got = positive_probabilities(probs, "1")
    np.testing.assert_allclose(got, [0.8, math.nan, 0.1, 0.3, math.nan])


# --- a feature that shifts, with a fake clock ------------------------------------------------------

def test_shift_appears_then_slides_out_of_the_window() -> None:
    rng = np.random.default_rng(2024)
    windows = (Window("5m", 300.0),)
    vd = VersionDrift(model(features=("amount", "age"), reference_size=500, methods=("psi", "ks")),
                      windows, None, names)
    rate = 5  # predictions per second
    seen: dict[float, FeatureDrift] = {}
    age_max_psi = 0.0
    for step in range(0, 1500, 10):  # a poll every 10 s
        now = float(step + 10)
        ts = step + np.arange(10 * rate) / rate
        shifted = (ts >= 600) & (ts < 900)  # amount shifts for five minutes, then returns
        amount = rng.normal(100.0, 15.0, ts.size) + np.where(shifted, 40.0, 0.0)
        age = rng.normal(40.0, 10.0, ts.size)
        feed(vd, ts, now, {"amount": amount.tolist(), "age": age.tolist()},
             confidence=rng.uniform(0.6, 1.0, ts.size), pred=rng.integers(0, 2, ts.size))
        vd.advance(now)
        if now < 100:
            assert not vd.reference_complete
            assert math.isnan(drift_of(vd, 0, "amount").psi)
            assert math.isnan(drift_of(vd, 0, "amount").detected)
        else:
            assert vd.reference_complete and vd.reference_samples == 500
            seen[now] = drift_of(vd, 0, "amount")
            age_fd = drift_of(vd, 0, "age")
            assert age_fd.detected == 0.0, now
            age_max_psi = max(age_max_psi, age_fd.psi)
    # before the shift: no drift
    assert all(fd.detected == 0.0 for t, fd in seen.items() if t <= 600)
    # the window that holds the shift shows it (PSI well above 0.25)
    assert seen[900.0].detected == 1.0 and seen[900.0].psi > 1.0
    assert seen[700.0].detected == 1.0
    # PSI crosses 0.25 once about a fifth of the window is shifted (+2.7 sd) and stays above
    # until less than a fifth is: from ~1 min after the shift starts to ~1 min before it has left
    assert all(seen[t].detected == 1.0 for t in seen if 670 <= t <= 1120)
    # once the 5m window has slid past the shifted events, the drift is gone
    assert all(fd.detected == 0.0 for t, fd in seen.items() if t >= 1200)
    assert seen[1500.0].psi < 0.1
    assert age_max_psi < 0.1
    # the window holds exactly the events of its buckets (5 s wide): those from 1205 s on
    all_ts = np.arange(1500 * rate) / rate
    assert seen[1500.0].samples == int(in_window(all_ts, 1500.0, 300.0).sum()) == 295 * rate


def test_learned_reference_rebuilds_windows_from_held_back_predictions() -> None:
    """Predictions made before the reference completed are in the windows once it has."""
    rng = np.random.default_rng(9)
    vd = VersionDrift(model(reference_size=100), WINDOWS, None, names)
    vals = rng.normal(0, 1, 160)
    feed(vd, np.arange(60, dtype=float), 60.0, {"amount": vals[:60].tolist(), "country": ["A"] * 60})
    assert not vd.reference_complete and vd.reference_samples == 60
    assert vd.estimates(1).predictions == 60
    # this batch completes the reference (40 rows) and carries 60 more
    feed(vd, 60 + np.arange(100, dtype=float), 160.0, {"amount": vals[60:].tolist(), "country": ["A"] * 100})
    assert vd.reference_complete and len(vd.reference or ()) == 100
    ref_vals = vals[:100]
    fd = drift_of(vd, 1, "amount")  # 5m window: all 160 events
    assert fd.samples == 160
    assert fd.ks_statistic == ks_2samp(ref_vals, vals, method="asymp").statistic
    fd0 = drift_of(vd, 0, "amount")  # 1m window: ts > 100
    assert fd0.ks_statistic == ks_2samp(ref_vals, vals[101:], method="asymp").statistic


# --- invalid values, types -------------------------------------------------------------------------

def test_invalid_feature_values_are_counted_not_fatal() -> None:
    vd = VersionDrift(model(reference_size=4), WINDOWS, None, names)
    # reference: amount numeric (3 numbers vs 1 string), country categorical
    feed(vd, np.arange(4.0), 4.0, {"amount": [1.0, 2.0, "x", 3.0], "country": ["A", "B", None, "A"]})
    assert vd.features["amount"].kind == "numeric"
    assert vd.features["country"].kind == "categorical"
    assert vd.invalid_feature_values == Counter({("amount", "wrong_type"): 1, ("country", "missing"): 1})
    feed(vd, np.arange(4.0, 10.0), 10.0,
         {"amount": [1.5, None, True, "7", float("nan"), 2.0], "country": ["A", 3.0, "C", "B", None, False]})
    assert vd.invalid_feature_values == Counter({
        ("amount", "wrong_type"): 3, ("amount", "missing"): 1, ("amount", "not_finite"): 1,
        ("country", "missing"): 2, ("country", "wrong_type"): 2,
    })
    assert drift_of(vd, 1, "amount").samples == 3 + 2
    assert drift_of(vd, 1, "country").samples == 3 + 3  # "C" is a valid value, binned as __other__
    # a missing feature column counts every value as missing; a missing confidence is not counted
    feed(vd, np.array([11.0]), 11.0, {"country": ["A"]}, confidence=np.array([math.nan]))
    assert vd.invalid_feature_values[("amount", "missing")] == 2
    assert not [key for key in vd.invalid_feature_values if key[0] == "confidence"]


def test_boolean_feature_is_categorical() -> None:
    ref = file_reference(10, {"flag": [True] * 7 + [False] * 3})
    vd = VersionDrift(model(features=("flag",)), WINDOWS, ref, names)
    feed(vd, np.full(10, 1.0), 1.0, {"flag": [True] * 3 + [False] * 7})
    fd = drift_of(vd, 0, "flag")
    assert fd.kind == "categorical"
    assert vd.features["flag"].categories == ("true", "false")
    assert fd.chi2_p_value == pytest.approx(chi2_contingency([[7, 3], [3, 7]]).pvalue, rel=1e-9)


def test_feature_without_valid_reference_values_stays_nan() -> None:
    ref = file_reference(5, {"amount": [None] * 5})
    vd = VersionDrift(model(features=("amount",)), WINDOWS, ref, names)
    feed(vd, np.full(3, 1.0), 1.0, {"amount": [1.0, 2.0, None]})
    fd = drift_of(vd, 0, "amount")
    assert math.isnan(fd.psi) and math.isnan(fd.detected)
    assert vd.invalid_feature_values == Counter({("amount", "missing"): 1})


# --- change detection --------------------------------------------------------------------------------

def _error_stream(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(1500) < 0.1, rng.random(1500) < 0.45, rng.random(800) < 0.1]).astype(int)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_change_detectors_match_river(seed: int) -> None:
    errors = _error_stream(seed)
    ph = river.drift.PageHinkley(mode="up")
    ddm = river.drift.binary.DDM()
    ph_n = ddm_n = 0
    for e in errors.tolist():
        ph.update(e)  # type: ignore[no-untyped-call]
        ddm.update(e)  # type: ignore[no-untyped-call]
        ph_n += ph.drift_detected
        ddm_n += ddm.drift_detected
    vd = VersionDrift(model(), WINDOWS, None, names)
    for lo in range(0, errors.size, 97):
        vd.add_outcomes(errors[lo:lo + 97] == 0)
    assert vd.detectors["page_hinkley"].detections == ph_n
    assert vd.detectors["ddm"].detections == ddm_n
    assert ph_n >= 1 and ddm_n >= 1


def test_change_detector_state_holds_for_the_shortest_window() -> None:
    vd = VersionDrift(model(), WINDOWS, None, names)
    rng = np.random.default_rng(4)
    vd.add_outcomes(rng.random(2000) >= 0.2)
    vd.advance(100.0)
    assert vd.detectors["ddm"].state in (0, 1) and vd.detectors["ddm"].detections == 0
    vd.add_outcomes(rng.random(1500) >= 0.6)  # error rate jumps
    vd.advance(200.0)
    assert vd.detectors["ddm"].state == 2 and vd.detectors["page_hinkley"].state == 2
    detections = vd.detectors["ddm"].detections
    vd.advance(259.0)
    assert vd.detectors["ddm"].state == 2
    vd.advance(260.0)  # 1m after the change point: back to the live state
    assert vd.detectors["ddm"].state in (0, 1) and vd.detectors["page_hinkley"].state == 0
    assert vd.detectors["ddm"].detections == detections  # the counter is untouched


# --- exposition ----------------------------------------------------------------------------------------

def _samples(vd: VersionDrift) -> Samples:
    """The version's drift families as the catalogue renders them from its part of the Report."""
    positive = vd.model.positive_class if vd.model.task == "binary" else None
    families = catalogue.drift_families((("model", "m"), ("model_version", "1")), vd.report(), positive)
    return samples(Snapshot(families, 0.0, True))


def test_families_labels_and_nan_until_reference() -> None:
    vd = VersionDrift(model(reference_size=50), WINDOWS, None, names)
    feed(vd, np.arange(10.0), 10.0, {"amount": [1.0] * 10, "country": ["A"] * 10},
         p_pos=np.full(10, 0.8))
    s = _samples(vd)
    base = (("model", "m"), ("model_version", "1"))
    wl = (*base, ("window", "1m"))
    assert math.isnan(s[("mlmon_data_drift_psi", frozenset((*wl, ("feature", "amount"))))])
    assert math.isnan(s[("mlmon_data_drift_detected", frozenset((*wl, ("feature", "predicted_class"))))])
    assert ("mlmon_data_drift_ks_statistic", frozenset((*wl, ("feature", "confidence")))) in s
    assert ("mlmon_data_drift_chi2_p_value", frozenset((*wl, ("feature", "predicted_class")))) in s
    assert ("mlmon_data_drift_ks_statistic", frozenset((*wl, ("feature", "amount")))) not in s  # type not known yet
    assert s[("mlmon_data_drift_reference_samples", frozenset(base))] == 10
    assert s[("mlmon_estimated_accuracy_ratio", frozenset(wl))] == pytest.approx(0.9)
    assert s[("mlmon_estimated_precision_ratio", frozenset((*wl, ("class", "1"))))] == pytest.approx(0.8)
    assert s[("mlmon_change_points_total", frozenset((*base, ("detector", "page_hinkley"))))] == 0
    assert s[("mlmon_change_detector_state", frozenset((*base, ("detector", "ddm"))))] == 0

    feed(vd, np.arange(10.0, 60.0), 60.0, {"amount": np.linspace(0, 1, 50).tolist(), "country": ["A"] * 50})
    s = _samples(vd)
    assert not math.isnan(s[("mlmon_data_drift_psi", frozenset((*wl, ("feature", "amount"))))])
    assert ("mlmon_data_drift_ks_p_value", frozenset((*wl, ("feature", "amount")))) in s
    assert ("mlmon_data_drift_chi2_p_value", frozenset((*wl, ("feature", "country")))) in s
    assert ("mlmon_data_drift_ks_statistic", frozenset((*wl, ("feature", "country")))) not in s


def test_multiclass_has_no_binary_estimates() -> None:
    vd = VersionDrift(model(task="multiclass", features=()), WINDOWS, None, lambda: ["a", "b", "c"])
    feed(vd, np.arange(5.0), 5.0, pred=np.array([0, 1, 2, 0, 1]))
    names_seen = {name for name, _ in _samples(vd)}
    assert "mlmon_estimated_accuracy_ratio" in names_seen
    assert "mlmon_estimated_precision_ratio" not in names_seen


# --- checkpoint -----------------------------------------------------------------------------------------

def _check_types(value: Any, path: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), path
            _check_types(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_types(v, f"{path}[{i}]")
    elif path.startswith(".detectors"):
        assert value is None or isinstance(value, (str, int, float, bool)), path  # change.py's to_dict
    else:
        assert isinstance(value, (str, int, float, np.ndarray)) and not isinstance(value, bool), (path, value)
        if isinstance(value, np.ndarray):
            assert value.dtype != object, path


def _run(vd: VersionDrift, rng: np.random.Generator, start: int, stop: int) -> None:
    for step in range(start, stop, 10):
        ts = step + np.arange(20) / 2
        shift = 3.0 if step >= 200 else 0.0
        feed(vd, ts, float(step + 10), {
            "amount": (rng.normal(shift, 1, 20)).tolist(),
            "country": rng.choice(["A", "B", "C"], 20).tolist(),
        }, confidence=rng.uniform(0.5, 1, 20), pred=rng.integers(0, 2, 20), p_pos=rng.uniform(0, 1, 20))
        vd.add_outcomes(rng.random(20) > 0.3)
        vd.advance(float(step + 10))


@pytest.mark.parametrize("cut", [30, 150, 260])  # mid-learning, just after, well after the reference
def test_restore_is_bit_identical_and_keeps_the_learned_reference(cut: int) -> None:
    m = model(reference_size=90)
    rng_a = np.random.default_rng(1)
    straight = VersionDrift(m, WINDOWS, None, names)
    _run(straight, rng_a, 0, 400)

    rng_b = np.random.default_rng(1)
    first = VersionDrift(m, WINDOWS, None, names)
    _run(first, rng_b, 0, cut)
    _check_types(first.state())
    state, _ = checkpoint.decode(checkpoint.encode({"drift": first.state()}, float(cut)))  # the real format
    state = state["drift"]
    restarted = VersionDrift(m, WINDOWS, None, names)
    restarted.restore(state, float(cut))
    assert restarted.reference_samples == first.reference_samples
    _run(restarted, rng_b, cut, 400)

    assert restarted.reference_complete
    ref_a, ref_b = straight.reference, restarted.reference
    assert ref_a is not None and ref_b is not None
    np.testing.assert_array_equal(ref_a.feature("amount").number, ref_b.feature("amount").number)
    for i in range(len(WINDOWS)):
        assert restarted.window_drift(i) == straight.window_drift(i) or _nan_equal(
            restarted.window_drift(i), straight.window_drift(i))
        assert restarted.estimates(i) == straight.estimates(i)
    assert restarted.invalid_feature_values == straight.invalid_feature_values
    for name in ("page_hinkley", "ddm"):
        assert restarted.detectors[name].to_dict() == straight.detectors[name].to_dict()
    assert _samples(restarted).keys() == _samples(straight).keys()


def _nan_equal(a: list[FeatureDrift], b: list[FeatureDrift]) -> bool:
    def norm(fd: FeatureDrift) -> tuple[Any, ...]:
        return tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in vars(fd).values())

    return [norm(x) for x in a] == [norm(x) for x in b]


def test_restore_does_not_relearn_and_file_reference_wins() -> None:
    m = model(reference_size=20)
    vd = VersionDrift(m, WINDOWS, None, names)
    feed(vd, np.arange(20.0), 20.0, {"amount": list(np.arange(20.0)), "country": ["A"] * 20})
    state = vd.state()
    assert "reference" in state
    again = VersionDrift(m, WINDOWS, None, names)
    again.restore(state, 25.0)
    assert again.reference_complete
    # later predictions do not become the reference
    feed(again, np.arange(25.0, 45.0), 45.0, {"amount": [100.0] * 20, "country": ["B"] * 20})
    assert again.reference is not None
    assert np.array_equal(again.reference.feature("amount").number, np.arange(20.0))
    assert drift_of(again, 0, "amount").detected == 1.0
    # a reference file configured since then replaces the learned one; the logged country codes
    # meant other categories, so they are dropped rather than misread
    file_ref = file_reference(5, {"amount": [100.0] * 5, "country": ["B", "C", "B", "C", "B"]})
    with_file = VersionDrift(m, WINDOWS, file_ref, names)
    with_file.restore(again.state(), 45.0)
    assert with_file.reference is file_ref
    assert drift_of(with_file, 0, "country").samples == 0
    assert drift_of(with_file, 0, "amount").samples == 0
    assert with_file.estimates(0).predictions == 40  # what does not depend on the reference is kept
    assert "reference" not in with_file.state()


@pytest.mark.parametrize("case", ["normal", "rounded", "heavy_tails", "clustered", "few", "signed_zero"])
def test_slots_match_a_binary_search_for_every_reference_shape(case: str) -> None:
    """``slots`` finds positions with a cell table when that pays, and ``encode`` takes the PSI
    bin from the slot; both must equal the plain binary search for every value, including values
    outside the reference range, values equal to reference values, values between two adjacent
    ones and both zeros. A cell table that rounds a value into the wrong cell, stops stepping too
    early, or a slot whose values straddle a bin edge given one bin, fails here."""
    rng = np.random.default_rng(["normal", "rounded", "heavy_tails", "clustered", "few", "signed_zero"].index(case))
    ref = {"normal": rng.normal(size=5000),
           "rounded": np.round(rng.normal(size=5000) * 3, 2),
           "heavy_tails": rng.standard_cauchy(size=5000) * 1e6,
           "clustered": np.concatenate([rng.normal(size=4000) * 1e-9, rng.normal(size=1000) * 1e9]),
           "few": rng.integers(0, 10, size=5000).astype(float),
           "signed_zero": np.concatenate([rng.normal(size=3000), np.zeros(100), -np.zeros(100)])}[case]
    fm = build_feature_model("x", RawColumn.from_numbers(ref), 20, ("psi", "ks"))
    uniq = np.unique(ref)
    values = np.concatenate([rng.choice(ref, 3000), rng.normal(size=3000) * float(np.ptp(ref) or 1.0),
                             np.nextafter(uniq, np.inf), np.nextafter(uniq, -np.inf),
                             [0.0, -0.0, 1e308, -1e308, float(uniq[0]), float(uniq[-1])]])
    rng.shuffle(values)
    b = np.searchsorted(uniq, values, side="left")
    expected = 2 * b + (uniq[np.minimum(b, uniq.size - 1)] == values) * (b < uniq.size)
    assert fm.slots(values).tolist() == expected.tolist()
    assert fm.edges.size > 0
    encoded = fm.encode(RawColumn.from_numbers(values))
    assert encoded["f:x"].tolist() == expected.tolist()
    assert encoded["b:x"].tolist() == np.searchsorted(fm.edges, values, side="left").tolist()
    if case in ("normal", "rounded", "signed_zero"):
        assert fm._guide is not None  # the table is in use, not only the fallback


def test_predicted_class_codes_from_indices_equal_the_text_encoding() -> None:
    """Once the reference is fixed the predicted class is binned from its index (each class
    name looked up once): the codes must be those of encoding the text column, including
    classes outside the named categories (``__other__``)."""
    ref = RawColumn.from_texts(obj(["a", "b", "b", "c", "c", "c", "d"]))
    fm = build_feature_model("predicted_class", ref, 2, ("psi",), "categorical")
    names = obj(["a", "b", "c", "d", "e"])
    idx = np.random.default_rng(4).integers(0, names.size, 500)
    by_text = fm.encode(RawColumn.from_texts(names[idx]))
    by_index = fm.encode_texts_at(idx, names)
    assert by_index.keys() == by_text.keys()
    for k in by_text:
        assert by_index[k].tolist() == by_text[k].tolist()
