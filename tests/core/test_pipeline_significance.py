"""Accuracy interval, drop p-value and baseline as they come out of the pipeline, per window.

The statistics functions have tests of their own (test_stats_significance.py); these check
that the pipeline calls them with the right numbers: the Wilson interval at z = 1.959964, the
exact one-sided binomial p-value against a fixed baseline, the pooled one-sided two-proportion
z-test against a learned one, and a learned baseline that is hits / N of the first N labelled
predictions. Every value is read as a user reads it: from the rendered text exposition.

Event timestamps lie on a 10 s grid and the windows are 1m and 10m, so a window holds the
same events under the exact rule (``ts > now - L``) and the bucketed one of DESIGN §2 with the
default 60 buckets (widths 1 s and 10 s divide the grid): these tests hold on both.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
from scipy.stats import binom, binomtest, norm

from exporter.config import Baseline, JoinConfig, ModelConfig, Thresholds
from exporter.core.pipeline import Pipeline
from tests.core.pipelines import Exposed, exposed, label_batch, make_pipeline, pred_batch
from tests.helpers import FakeClock

Z95 = 1.959964  # DESIGN §2 "Accuracy interval"
WINDOWS = (("1m", 60.0), ("10m", 600.0))
GRID = 10.0
T0 = 1_000_000.0  # a multiple of the grid
def value(e: Exposed, name: str, version: str, window: str | None = None) -> float:
    labels = {("model", "m"), ("model_version", version)}
    if window is not None:
        labels.add(("window", window))
    return e[(name, frozenset(labels))]


# -- the oracle: formulas written out, checked against hand-worked cases ------------------------------

def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score interval, no continuity correction (Wilson 1927), at z = 1.959964."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    z2 = Z95 * Z95
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (centre - half, centre + half)


def fixed_p_value(k: int, n: int, baseline: float) -> float:
    """P(X <= k), X ~ Bin(n, baseline): the exact one-sided binomial test."""
    return float(binom.cdf(k, n, baseline)) if n else math.nan


def learned_p_value(k: int, n: int, k0: int, n0: int) -> float:
    """Pooled two-proportion z-test, one-sided (current below baseline): Phi(z)."""
    if n == 0 or n0 == 0:
        return math.nan
    pooled = (k + k0) / (n + n0)
    var = pooled * (1 - pooled) * (1 / n + 1 / n0)
    if var == 0:
        return 1.0  # both samples all right or all wrong: documented as "no evidence of a drop"
    return float(norm.cdf((k / n - k0 / n0) / math.sqrt(var)))


def test_oracle_against_hand_worked_cases() -> None:
    # 8 of 10: the textbook Wilson 95% interval is [0.4902, 0.9433]
    lo, hi = wilson(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    ci = binomtest(8, 10).proportion_ci(method="wilson")  # scipy's z = 1.95996398...: same to ~1e-8
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-7)
    # P(X <= 7 | 10, 0.9) = 1 - 0.9^10 - 10 * 0.9^9 * 0.1 - 45 * 0.9^8 * 0.01
    assert fixed_p_value(7, 10, 0.9) == pytest.approx(1 - 0.3486784401 - 0.387420489 - 0.1937102445, rel=1e-12)
    # 40/50 against 90/100: pooled 130/150, z = -0.1 / sqrt(.8667 * .1333 * .03) = -1.6984, Phi(z) = 0.04471
    assert learned_p_value(40, 50, 90, 100) == pytest.approx(0.044714679, rel=1e-7)
    assert learned_p_value(60, 50, 90, 100) > 0.5  # accuracy above the baseline: no evidence of a drop


# -- the stream -----------------------------------------------------------------------------------------

class Outcome(NamedTuple):
    rid: str
    version: str
    label_ts: float
    correct: bool


def _check(p: Pipeline, now: float, outcomes: list[Outcome], model: ModelConfig, first_n: int | None) -> list[float]:
    """Compare every window of both versions with the oracle; the finite p-values seen."""
    e = exposed(p, now)
    finite = []
    for version in ("1", "2"):
        mine = [o for o in outcomes if o.version == version]
        if first_n is None:
            base_k, base_n = 0, 0
            baseline = model.baseline.accuracy
            assert baseline is not None
        elif len(mine) >= first_n:
            base_k, base_n = sum(o.correct for o in mine[:first_n]), first_n
            baseline = base_k / base_n
        else:
            base_k, base_n, baseline = 0, 0, math.nan
        if (("mlmon_baseline_accuracy_ratio", frozenset({("model", "m"), ("model_version", version)}))) not in e:
            assert not mine
            continue
        got_base = value(e, "mlmon_baseline_accuracy_ratio", version)
        assert got_base == pytest.approx(baseline, rel=1e-15, nan_ok=True), (version, len(mine))
        for name, length in WINDOWS:
            inside = [o for o in mine if o.label_ts > now - length]
            k, n = sum(o.correct for o in inside), len(inside)
            assert value(e, "mlmon_window_labeled_predictions", version, name) == n
            acc = k / n if n else math.nan
            assert value(e, "mlmon_accuracy_ratio", version, name) == pytest.approx(acc, rel=1e-15, nan_ok=True)
            lo, hi = wilson(k, n)
            assert value(e, "mlmon_accuracy_lower_ratio", version, name) == pytest.approx(lo, abs=1e-12, nan_ok=True)
            assert value(e, "mlmon_accuracy_upper_ratio", version, name) == pytest.approx(hi, abs=1e-12, nan_ok=True)
            assert value(e, "mlmon_accuracy_drop_ratio", version, name) == pytest.approx(
                baseline - acc, abs=1e-15, nan_ok=True)
            if math.isnan(baseline) or n == 0:
                expect = math.nan
            elif first_n is None:
                expect = fixed_p_value(k, n, baseline)
            else:
                expect = learned_p_value(k, n, base_k, base_n)
            got = value(e, "mlmon_accuracy_drop_p_value", version, name)
            assert got == pytest.approx(expect, rel=1e-9, abs=1e-300, nan_ok=True), (version, name, k, n)
            if not math.isnan(got):
                finite.append(got)
    return finite


@pytest.mark.parametrize("baseline", [Baseline(accuracy=0.85), Baseline(first_labeled=37)],
                         ids=["fixed", "learned"])
def test_interval_p_value_and_baseline_match_the_oracle(baseline: Baseline) -> None:
    rng = np.random.default_rng(1107)
    model = ModelConfig(name="m", classes=("0", "1"), baseline=baseline, thresholds=Thresholds(min_samples=5),
                        join=JoinConfig(ttl=1e6, max_pending=10**6))
    clock = FakeClock(T0)
    p = make_pipeline(model, clock)
    first_n = baseline.first_labeled
    truth: dict[str, tuple[str, float, str]] = {}  # id -> (version, prediction ts, predicted class)
    waiting: list[str] = []
    outcomes: list[Outcome] = []
    finite: list[float] = []
    for step in range(90):
        clock.t += GRID * int(rng.integers(1, 4))
        now = clock.t
        n = int(rng.integers(0, 25))
        ids = [f"s{step}-{i}" for i in range(n)]
        ts = now - GRID * rng.integers(0, 4, n)  # a little late, out of order
        versions = rng.choice(["1", "2"], n, p=[0.7, 0.3]).tolist()
        preds = rng.choice(["0", "1"], n).tolist()
        for v in ("1", "2"):
            rows = [i for i in range(n) if versions[i] == v]
            if rows:
                p.apply_predictions("preds", pred_batch([ids[i] for i in rows], ts[rows], [preds[i] for i in rows],
                                                        rng.uniform(0.5, 1.0, len(rows)), version=v), now)
        for i, rid in enumerate(ids):
            truth[rid] = (versions[i], float(ts[i]), preds[i])
        waiting.extend(ids)
        # the model is good, then much worse (small p-values), then recovers; version 2 a little worse
        acc = 0.9 if step < 30 else (0.55 if step < 60 else 0.85)
        k = int(rng.integers(0, len(waiting) + 1))
        chosen = [waiting.pop(int(rng.integers(0, len(waiting)))) for _ in range(k)]
        right = [rng.random() < acc - (0.1 if truth[r][0] == "2" else 0.0) for r in chosen]
        flip = {"0": "1", "1": "0"}
        labels = [truth[r][2] if ok else flip[truth[r][2]] for r, ok in zip(chosen, right, strict=True)]
        # a label is stamped on the grid, at or after its prediction, up to 30 s before now
        lts = np.array([max(truth[r][1], now - GRID * int(rng.integers(0, 4))) for r in chosen])
        p.apply_labels("labels", label_batch(chosen, labels, lts), now)
        outcomes.extend(Outcome(r, truth[r][0], float(t), ok) for r, t, ok in zip(chosen, lts, right, strict=True))
        p.advance(now)
        finite += _check(p, now, outcomes, model, first_n)
        # the clock alone, between two cycles: events leave the windows with nothing arriving
        p.advance(now + 5.0)
        finite += _check(p, now + 5.0, outcomes, model, first_n)
    # the stream exercised what it should: many p-values, from far in the lower tail to near 1
    assert len(finite) > 300 and min(finite) < 1e-4 and max(finite) > 0.9
    if first_n is not None:
        per_version = {v: sum(o.version == v for o in outcomes) for v in ("1", "2")}
        assert min(per_version.values()) > first_n


def test_learned_baseline_is_hits_over_n_of_the_first_labelled() -> None:
    """Hand-worked: outcomes right, wrong, right | right, wrong, right with N = 4 -> baseline 3/4 (not 1/4)."""
    model = ModelConfig(name="m", classes=("0", "1"), baseline=Baseline(first_labeled=4))
    clock = FakeClock(T0)
    p = make_pipeline(model, clock)
    ids = ["a", "b", "c", "d", "e", "f"]
    p.apply_predictions("preds", pred_batch(ids, np.full(6, T0), ["1", "1", "0", "1", "0", "1"], np.full(6, 0.9)), T0)
    p.apply_labels("labels", label_batch(ids[:3], ["1", "0", "0"], np.full(3, T0)), T0)  # right, wrong, right
    assert math.isnan(value(exposed(p, T0), "mlmon_baseline_accuracy_ratio", "1"))  # 3 < N: not frozen yet
    assert math.isnan(value(exposed(p, T0), "mlmon_accuracy_drop_p_value", "1", "1m"))
    p.apply_labels("labels", label_batch(ids[3:], ["1", "1", "1"], np.full(3, T0)), T0)  # right, wrong, right
    e = exposed(p, T0)
    assert value(e, "mlmon_baseline_accuracy_ratio", "1") == 3 / 4  # the first 4: right, wrong, right, right
    # window: 4 right of 6; learned baseline 3 of 4
    assert value(e, "mlmon_accuracy_drop_p_value", "1", "1m") == pytest.approx(learned_p_value(4, 6, 3, 4),
                                                                               rel=1e-12)


@pytest.mark.parametrize(("window", "length"), WINDOWS)
def test_an_event_leaves_the_window_exactly_at_its_edge(window: str, length: float) -> None:
    """An event stamped T is in the window until now = T + L and out from then on (DESIGN §2 Windows).

    T is a bucket boundary, so the exact rule and the bucketed one agree: at now = T + L - 0.5
    it is in; at T + L its bucket index equals floor((now - L) / r) and it is out. A late event
    stamped exactly now - L is never counted; one stamped a grid step later is.
    """
    model = ModelConfig(name="m", classes=("0", "1"), baseline=Baseline(accuracy=0.9))
    t = T0
    clock = FakeClock(t)
    p = make_pipeline(model, clock)
    p.apply_predictions("preds", pred_batch(["x"], np.array([t]), ["1"], np.array([0.8])), t)
    p.apply_labels("labels", label_batch(["x"], ["1"], np.array([t])), t)
    counts = {}
    for dt in (-0.5, 0.0, 0.5):
        p.advance(t + length + dt)
        e = exposed(p, t + length + dt)
        counts[dt] = (value(e, "mlmon_window_predictions", "1", window),
                      value(e, "mlmon_window_labeled_predictions", "1", window))
    assert counts == {-0.5: (1.0, 1.0), 0.0: (0.0, 0.0), 0.5: (0.0, 0.0)}

    now = t + 2 * length
    late = ["y", "z"]
    stamps = np.array([now - length, now - length + GRID])
    p.apply_predictions("preds", pred_batch(late, stamps, ["1", "0"], np.array([0.7, 0.6])), now)
    p.apply_labels("labels", label_batch(late, ["1", "1"], stamps), now)
    e = exposed(p, now)
    assert value(e, "mlmon_window_predictions", "1", window) == 1
    assert value(e, "mlmon_window_labeled_predictions", "1", window) == 1
    assert value(e, "mlmon_accuracy_ratio", "1", window) == 0.0  # only "z" (predicted 0, label 1) is inside
