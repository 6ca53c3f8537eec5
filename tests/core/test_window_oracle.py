"""Bucketed windows (DESIGN §2 "Windows", "Exactness") against plain numpy over the same events.

The oracle keeps every event the test fed and, at each check, recomputes every windowed gauge
from the events whose bucket lies inside the window, with numpy / scipy / scikit-learn; the
pipeline's values are read from its text exposition, as a user reads them.

The bucket rule, from DESIGN §2: a window of length L has buckets of width
r = L / ``global.window_buckets``, aligned to the Unix epoch (bucket k covers [k r, (k+1) r)).
At time ``now`` it holds the events whose bucket index floor(ts / r) is greater than
floor((now - L) / r).

Which timestamp places an event (our reading of DESIGN §2, stated here so it can be argued with):

* A **prediction** is placed by its own timestamp -- its count, its confidence, its feature
  values for data drift, the label-free estimate.
* A **labelled outcome** (accuracy, precision/recall/F1, ECE, ...) is placed by the label's
  timestamp; a label without one is stamped with its arrival time by the parser, so the test
  gives such labels ``ts = now``.
* **Label coverage** = labelled predictions / predictions, both placed by the prediction's
  timestamp, so a labelled prediction sits in the bucket of the prediction it covers and
  coverage never exceeds 1.
* **Future stamps**: "an event stamped in the future counts as now" -- as now *when it is
  ingested*: its timestamp is clamped to the ``now`` of the cycle that ingests it, so it goes
  into the bucket floor(now / r) and from then on ages like any event of that bucket. (Keeping
  the future stamp would need buckets ahead of the clock -- unbounded for a stamp years ahead --
  and an event that "counts as now" for ever would never leave.) A labelled prediction's
  coverage uses the prediction's clamped timestamp, for the reason above. Labels that arrive
  before their prediction are never future-stamped here (which ``now`` clamps them would be a
  further choice; the test does not make it).
* An event older than every window is in no window and still in the counters.

Tolerances (the issue's "How it is checked"): every ratio within 1e-9, the median within 0.001
of ``numpy.median`` (a 0.001-wide histogram), the KS statistic equal to ``scipy.stats.ks_2samp``
over the same events and its p-value the asymptotic one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp
from sklearn.metrics import precision_recall_fscore_support

from exporter.config import (
    Baseline,
    Config,
    DriftConfig,
    GlobalConfig,
    JoinConfig,
    ModelConfig,
    Thresholds,
    Window,
)
from exporter.core.pipeline import Pipeline
from exporter.ingest.batches import PredictionBatch
from exporter.runtime.checkpoint import Checkpointer
from tests.core.pipelines import Exposed, exposed, label_batch
from tests.helpers import FakeClock, obj

WINDOWS = (Window("1m", 60.0), Window("10m", 600.0))
CLASSES = ("a", "b", "c")
COUNTRIES = ("DE", "FR", "US", "PL")
BASELINE = 0.8
CONF_THRESHOLD = 0.75
T0 = 1_764_000_000.0  # late 2025; a multiple of every bucket width used here
EPS = 1e-3
N_REF = 400


# -- the oracle's placement rule -------------------------------------------------------------------------

def in_window(ts: np.ndarray, now: float, length: float, buckets: int) -> np.ndarray:
    """Events (by their placing timestamp) whose bucket lies inside the window at ``now``."""
    r = length / buckets
    return np.floor(ts / r) > math.floor((now - length) / r)


def test_bucket_rule_hand_worked() -> None:
    """L = 60 s, 6 buckets of 10 s. At now = 1000: floor(940 / 10) = 94, buckets 95..100 are in,
    i.e. stamps in [950, 1010): 50 s of history plus the current bucket's 0 s. At now = 999.999:
    floor(939.999 / 10) = 93, stamps from 940 on: the full 60 s."""
    ts = np.array([939.999, 940.0, 949.999, 950.0, 999.0, 1000.0])
    assert in_window(ts, 1000.0, 60.0, 6).tolist() == [False, False, False, True, True, True]
    assert in_window(ts, 1000.0 - EPS, 60.0, 6).tolist() == [False, True, True, True, True, True]
    assert in_window(ts, 1009.999, 60.0, 6).tolist() == [False, False, False, True, True, True]
    assert in_window(ts, 1010.0, 60.0, 6).tolist() == [False, False, False, False, True, True]
    # aligned to the epoch: at now = T0 + 50.2 the bucket [T0 - 10, T0) has left as a whole, so
    # T0 - 9.5 is out although it is less than 60 s old (the exact rule would still hold it)
    assert in_window(np.array([T0 - 10.0, T0 - 9.5, T0]), T0 + 50.2, 60.0, 6).tolist() == [False, False, True]


# -- the stream -------------------------------------------------------------------------------------------

@dataclass
class Pred:
    rid: str
    version: str
    ts: float  # as stamped (may be in the future)
    pred: str
    conf: float  # NaN: no confidence
    amount: float | None
    country: str | None
    arrival: float = math.nan  # the cycle's now when the pipeline ingests it

    @property
    def placed(self) -> float:
        return min(self.ts, self.arrival)


@dataclass
class Label:
    rid: str
    label: str
    ts: float
    arrival: float = math.nan

    @property
    def placed(self) -> float:
        return min(self.ts, self.arrival)


@dataclass
class Cycle:
    now: float
    preds: list[Pred]
    labels: list[Label]
    checks: list[float]  # when to read the exposition after this cycle (ascending, >= now)


@dataclass
class Stream:
    cycles: list[Cycle] = field(default_factory=list)
    v2_last_arrival: float = 0.0


def reference_records(rng: np.random.Generator) -> list[dict[str, object]]:
    amount = rng.normal(100.0, 15.0, N_REF)
    return [{"id": f"ref{i}", "prediction": str(rng.choice(CLASSES, p=[0.5, 0.3, 0.2])),
             "confidence": float(rng.uniform(0.4, 1.0)),
             "features": {"amount": float(amount[i]), "country": str(rng.choice(COUNTRIES, p=[0.4, 0.3, 0.2, 0.1]))}}
            for i in range(N_REF)]


def make_stream(seed: int, buckets: int, grid: float | None, steps: int = 150) -> Stream:
    """A seeded stream of cycles. ``grid``: every stamp a multiple of it and none in the future, a
    stream on which the exact rule (``ts > now - L``) and the bucket rule agree (see
    ``test_oracle_matches_the_exact_rule_on_a_grid``)."""
    rng = np.random.default_rng(seed)
    widths = [w.seconds / buckets for w in WINDOWS]

    def stamp(ts: float, now: float) -> float:
        return ts if grid is None else min(math.floor(ts / grid), math.floor(now / grid)) * grid

    s = Stream()
    t = T0 + 3.7
    waiting: list[Pred] = []  # delivered, not yet labelled
    held: list[Pred] = []  # their label goes first; the prediction comes next cycle
    labelled: set[str] = set()
    counter = 0
    v2_until = int(steps * 0.35)
    for step in range(steps):
        if rng.random() < 0.06:
            # a quiet spell: empty buckets, and a clock-only cycle in the middle of it, when the
            # 1m window has emptied with no event arriving
            gap = float(rng.uniform(150.0, 260.0))
            s.cycles.append(Cycle(t + gap / 2, [], [], [t + gap / 2]))
            t += gap
        else:
            t += float(rng.exponential(6.0)) + 0.01
        now = t
        preds: list[Pred] = list(held)
        held = []
        labels: list[Label] = []
        shift = 25.0 if 50 <= step < 90 else 0.0  # amount drifts for a while
        for _ in range(int(rng.integers(0, 14))):
            version = "2" if step < v2_until and rng.random() < 0.35 else "1"
            u = rng.random()
            if u < 0.68:
                ts = now - float(rng.exponential(4.0))
            elif u < 0.80:
                ts = now - float(rng.uniform(0.0, 700.0))  # late and out of order; some beyond every window
            elif u < 0.88 and grid is None:
                ts = now + float(rng.uniform(0.01, 40.0))  # stamped in the future
            else:
                ts = math.floor((now - float(rng.uniform(0.0, 120.0))) / widths[0]) * widths[0]  # on a boundary
            p = Pred(f"r{counter}", version, stamp(ts, now), str(rng.choice(CLASSES, p=[0.45, 0.35, 0.2])),
                     math.nan if rng.random() < 0.03 else float(rng.uniform(0.3, 1.0)),
                     None if rng.random() < 0.04 else float(rng.normal(100.0 + shift, 15.0)),
                     None if rng.random() < 0.04 else str(rng.choice((*COUNTRIES, "BR"), p=[0.3, 0.3, 0.2, 0.1, 0.1])))
            counter += 1
            if rng.random() < 0.06:
                # the label arrives first (an orphan for one cycle), stamped at or before now
                labels.append(_label(rng, p, stamp(now - float(rng.uniform(0.0, 30.0)), now), step))
                labelled.add(p.rid)
                held.append(p)
            else:
                preds.append(p)
        for p in preds:
            p.arrival = now
            if p.version == "2":
                s.v2_last_arrival = now
        waiting.extend(p for p in preds if p.rid not in labelled)
        if step == v2_until:
            waiting = [p for p in waiting if p.version == "1"]  # version 2 goes idle: no more labels either
        k = int(rng.integers(0, len(waiting) + 1)) if waiting else 0
        for _ in range(k):
            p = waiting.pop(int(rng.integers(0, len(waiting))))
            v = rng.random()
            if v < 0.6:
                lts = p.placed + float(rng.exponential(20.0))  # may lie in the future
            elif v < 0.85:
                lts = now  # no timestamp: arrival time
            else:
                lts = now - float(rng.uniform(0.0, 700.0))  # a late label, stamped long ago
            labels.append(_label(rng, p, stamp(lts, now), step))
            labelled.add(p.rid)
        for lab in labels:
            lab.arrival = now
        checks = [now]
        if rng.random() < 0.3:
            r = widths[int(rng.integers(0, len(widths)))]
            b = (math.floor(now / r) + 1) * r
            if b - EPS > now:
                checks += [b - EPS, b, b + EPS]
                t = b + EPS
        s.cycles.append(Cycle(now, preds, labels, checks))
    return s


def _label(rng: np.random.Generator, p: Pred, ts: float, step: int) -> Label:
    acc = 0.85 if step < 70 else 0.6
    label = p.pred if rng.random() < acc else str(rng.choice([c for c in CLASSES if c != p.pred]))
    return Label(p.rid, label, ts)


# -- the pipeline -------------------------------------------------------------------------------------------

def make_config(reference: Path, buckets: int | None) -> Config:
    model = ModelConfig(
        name="m", task="multiclass", classes=CLASSES, baseline=Baseline(accuracy=BASELINE),
        thresholds=Thresholds(min_samples=5, confidence=CONF_THRESHOLD),
        join=JoinConfig(ttl=1e7, max_pending=10**6),
        drift=DriftConfig(reference=str(reference), features=("amount", "country"), methods=("psi", "ks")))
    g = (GlobalConfig(poll_interval=1.0, windows=WINDOWS) if buckets is None
         else GlobalConfig(poll_interval=1.0, windows=WINDOWS, window_buckets=buckets))
    return Config(global_=g, models=(model,))


def prediction_batch(preds: list[Pred]) -> PredictionBatch:
    n = len(preds)
    return PredictionBatch(
        id=obj([p.rid for p in preds]), model=obj(["m"] * n), model_version=obj([p.version for p in preds]),
        timestamp=np.array([p.ts for p in preds], dtype=np.float64), prediction=obj([p.pred for p in preds]),
        confidence=np.array([p.conf for p in preds], dtype=np.float64), probabilities=np.full(n, None, dtype=object),
        features={"amount": obj([p.amount for p in preds]), "country": obj([p.country for p in preds])})


Readings = list[tuple[float, Exposed]]


def run(config: Config, stream: Stream, state_dir: Path | None = None, restart_after: int | None = None,
        on_check: Callable[[int, float, Exposed], None] | None = None) -> Readings:
    """Feed the stream; the exposition at every check. With ``restart_after``, checkpoint after
    that cycle to ``state_dir`` with the real Checkpointer, and continue in a new Pipeline."""
    clock = FakeClock(stream.cycles[0].now)
    p = Pipeline(config, clock, sources=[])
    readings: Readings = []
    for i, c in enumerate(stream.cycles):
        clock.t = c.now
        if c.preds:
            p.apply_predictions("preds", prediction_batch(c.preds), c.now)
        if c.labels:
            p.apply_labels("labels", label_batch([lab.rid for lab in c.labels], [lab.label for lab in c.labels],
                                                 np.array([lab.ts for lab in c.labels])), c.now)
        for t in c.checks:
            clock.t = t
            p.advance(t)
            readings.append((t, exposed(p, t, text=False)))
            if on_check is not None:
                on_check(i, t, readings[-1][1])
        if i == restart_after:
            assert state_dir is not None
            assert Checkpointer(state_dir).save(p.export_state(), clock.t)
            state = Checkpointer(state_dir).load()
            assert state is not None
            p = Pipeline(config, clock, sources=[])
            p.restore_state(state, clock.t)
    return readings


# -- the oracle ---------------------------------------------------------------------------------------------

class Oracle:
    """Every event fed so far, and the windowed values they imply at a given time."""

    def __init__(self, stream: Stream, buckets: int, ref: list[dict[str, object]]) -> None:
        self.stream = stream
        self.buckets = buckets
        feats = [r["features"] for r in ref]
        self.ref_amount = np.array([f["amount"] for f in feats], dtype=np.float64)  # type: ignore[index]
        self.ref_country = [str(f["country"]) for f in feats]  # type: ignore[index]
        self.ref_conf = np.array([r["confidence"] for r in ref], dtype=np.float64)
        self.ref_pred = [str(r["prediction"]) for r in ref]

    def events(self, upto: int) -> tuple[list[Pred], dict[str, Label]]:
        """Predictions ingested in cycles 0..upto, and their labels ingested by then (by id)."""
        preds = [p for c in self.stream.cycles[:upto + 1] for p in c.preds]
        labels = {lab.rid: lab for c in self.stream.cycles[:upto + 1] for lab in c.labels}
        return preds, labels

    def check(self, upto: int, now: float, e: Exposed) -> None:
        preds, labels = self.events(upto)
        for version in ("1", "2"):
            mine = [p for p in preds if p.version == version]
            if not mine:
                continue
            joined = [(p, labels[p.rid]) for p in mine if p.rid in labels]
            self._counters(e, version, mine, joined)
            for w in WINDOWS:
                self._window(e, version, w, now, mine, joined)

    @staticmethod
    def _counters(e: Exposed, version: str, mine: list[Pred], joined: list[tuple[Pred, Label]]) -> None:
        base = {("model", "m"), ("model_version", version)}
        for cls in CLASSES:
            key = ("mlmon_predictions_total", frozenset({*base, ("predicted_class", cls)}))
            assert e[key] == sum(p.pred == cls for p in mine)
        for pc in CLASSES:
            for tc in CLASSES:
                key = ("mlmon_labeled_predictions_total",
                       frozenset({*base, ("predicted_class", pc), ("true_class", tc)}))
                assert e[key] == sum(p.pred == pc and lab.label == tc for p, lab in joined)
        assert e[("mlmon_correct_predictions_total", frozenset(base))] == sum(p.pred == lab.label for p, lab in joined)

    def _window(self, e: Exposed, version: str, w: Window, now: float, mine: list[Pred],
                joined: list[tuple[Pred, Label]]) -> None:
        labels = {("model", "m"), ("model_version", version), ("window", w.name)}

        def got(name: str, extra: dict[str, str] | None = None) -> float:
            return e[(name, frozenset(labels | set((extra or {}).items())))]

        def close(name: str, expect: float, tol: float = 1e-9, rel: float | None = None,
                  extra: dict[str, str] | None = None) -> None:
            value = got(name, extra)
            assert value == pytest.approx(expect, abs=tol, rel=rel, nan_ok=True), (name, extra, w.name, version, now)

        inside = in_window(np.array([p.placed for p in mine]), now, w.seconds, self.buckets)
        win = [p for p, i in zip(mine, inside, strict=True) if i]
        assert got("mlmon_window_predictions") == len(win), (w.name, version, now)
        ids_in = {p.rid for p in win}
        covered = sum(1 for p, _ in joined if p.rid in ids_in)
        close("mlmon_label_coverage_ratio", covered / len(win) if win else math.nan)

        conf = np.array([p.conf for p in win], dtype=np.float64)
        conf = conf[~np.isnan(conf)]
        nan = math.nan
        has = conf.size > 0
        close("mlmon_confidence_mean_ratio", float(np.mean(conf)) if has else nan)
        close("mlmon_confidence_stddev_ratio", float(np.std(conf)) if has else nan)
        close("mlmon_confidence_min_ratio", float(conf.min()) if has else nan)
        close("mlmon_confidence_max_ratio", float(conf.max()) if has else nan)
        close("mlmon_low_confidence_ratio", float(np.mean(conf < CONF_THRESHOLD)) if has else nan)
        close("mlmon_confidence_median_ratio", float(np.median(conf)) if has else nan, tol=0.001)
        close("mlmon_estimated_accuracy_ratio", float(np.mean(conf)) if has else nan)

        out_in = in_window(np.array([lab.placed for _, lab in joined]), now, w.seconds, self.buckets)
        outs = [pl for pl, i in zip(joined, out_in, strict=True) if i]
        assert got("mlmon_window_labeled_predictions") == len(outs), (w.name, version, now)
        y_true = [lab.label for _, lab in outs]
        y_pred = [p.pred for p, _ in outs]
        if outs:
            acc = float(np.mean([t == q for t, q in zip(y_true, y_pred, strict=True)]))
            pr, rc, f1, (mp, mr, mf) = per_class(y_true, y_pred)
            oc = np.array([p.conf for p, _ in outs])
            ok = np.array([p.pred == lab.label for p, lab in outs], dtype=float)
            has_c = ~np.isnan(oc)
            ece = _ece(oc[has_c], ok[has_c]) if has_c.any() else nan
        else:
            acc = mp = mr = mf = ece = nan
            pr = rc = f1 = np.full(len(CLASSES), nan)
        close("mlmon_accuracy_ratio", acc)
        close("mlmon_accuracy_drop_ratio", BASELINE - acc)
        for i, cls in enumerate(CLASSES):
            close("mlmon_precision_ratio", float(pr[i]), extra={"class": cls})
            close("mlmon_recall_ratio", float(rc[i]), extra={"class": cls})
            close("mlmon_f1_ratio", float(f1[i]), extra={"class": cls})
        close("mlmon_macro_precision_ratio", float(mp))
        close("mlmon_macro_recall_ratio", float(mr))
        close("mlmon_macro_f1_ratio", float(mf))
        close("mlmon_calibration_error_ratio", ece)

        # data drift, window vs the reference file
        amount = np.array([p.amount for p in win if p.amount is not None], dtype=np.float64)
        self._numeric(got, close, "amount", self.ref_amount, amount, detect=True)
        self._numeric(got, close, "confidence", self.ref_conf, conf, detect=False)
        self._categorical(close, "country", self.ref_country, [p.country for p in win if p.country is not None])
        self._categorical(close, "predicted_class", self.ref_pred, [p.pred for p in win])

    @staticmethod
    def _numeric(got: Callable[..., float], close: Callable[..., None], feature: str, ref: np.ndarray,
                 cur: np.ndarray, detect: bool) -> None:
        edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))
        # right-closed bins: a value's bin is the number of cut points strictly below it
        rb = np.bincount((ref[:, None] > edges[None, :]).sum(axis=1), minlength=edges.size + 1)
        cb = np.bincount((cur[:, None] > edges[None, :]).sum(axis=1), minlength=edges.size + 1)
        psi, js = _psi_js(rb, cb)
        close("mlmon_data_drift_psi", psi, extra={"feature": feature})
        close("mlmon_data_drift_js_distance", js, extra={"feature": feature})
        d = got("mlmon_data_drift_ks_statistic", extra={"feature": feature})
        pv = got("mlmon_data_drift_ks_p_value", extra={"feature": feature})
        if cur.size:
            ks = ks_2samp(ref, cur, method="asymp")
            assert d == ks.statistic, (feature, d, ks.statistic)
            assert pv == pytest.approx(ks.pvalue, rel=1e-9, abs=1e-300), feature
        else:
            assert math.isnan(d) and math.isnan(pv), feature
        if detect:  # "psi" is the first configured method
            expect = math.nan if math.isnan(psi) else float(psi > 0.25)
            close("mlmon_data_drift_detected", expect, extra={"feature": feature})

    @staticmethod
    def _categorical(close: Callable[..., None], feature: str, ref: list[str], cur: list[str]) -> None:
        ranked = sorted(set(ref), key=lambda c: (-ref.count(c), c))  # fewer than max_categories: all named
        rb = np.array([ref.count(c) for c in ranked] + [0])
        cb = np.array([cur.count(c) for c in ranked] + [sum(v not in ranked for v in cur)])
        psi, js = _psi_js(rb, cb)
        close("mlmon_data_drift_psi", psi, extra={"feature": feature})
        close("mlmon_data_drift_js_distance", js, extra={"feature": feature})
        if cb.sum():
            table = np.stack([rb, cb])
            table = table[:, table.sum(axis=0) > 0]
            chi = float(chi2_contingency(table).pvalue) if table.shape[1] > 1 else 1.0
        else:
            chi = math.nan
        close("mlmon_data_drift_chi2_p_value", chi, tol=1e-12, rel=1e-9, extra={"feature": feature})


def _psi_js(rb: np.ndarray, cb: np.ndarray) -> tuple[float, float]:
    if cb.sum() == 0:
        return (math.nan, math.nan)
    rs = np.maximum(rb / rb.sum(), 1e-4)
    cs = np.maximum(cb / cb.sum(), 1e-4)
    return (float(np.sum((cs - rs) * np.log(cs / rs))), float(jensenshannon(rb, cb, base=2)))


ECE_EDGES = np.array([k / 10 for k in range(11)])


def per_class(y_true: list[str], y_pred: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                               tuple[float, float, float]]:
    """Precision, recall, F1 per class of ``CLASSES`` (NaN for a zero denominator) and their macro
    averages over the classes seen (in labels or predictions), NaNs left out (DESIGN §2)."""
    t, q = np.array(y_true), np.array(y_pred)
    tp = np.array([np.sum((t == c) & (q == c)) for c in CLASSES], dtype=float)
    n_pred = np.array([np.sum(q == c) for c in CLASSES], dtype=float)
    n_true = np.array([np.sum(t == c) for c in CLASSES], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_pred > 0, tp / n_pred, np.nan)
        recall = np.where(n_true > 0, tp / n_true, np.nan)
        f1 = np.where(n_pred + n_true > 0, 2 * tp / (n_pred + n_true), np.nan)
    seen = (n_pred + n_true) > 0

    def macro(v: np.ndarray) -> float:
        ok = v[seen & ~np.isnan(v)]
        return float(ok.mean()) if ok.size else math.nan

    return precision, recall, f1, (macro(precision), macro(recall), macro(f1))


def test_per_class_oracle_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        n = int(rng.integers(1, 40))
        y_true = rng.choice(["a", "b"], n).tolist()  # "c" never a label, sometimes predicted
        y_pred = rng.choice(list(CLASSES), n, p=[0.5, 0.4, 0.1]).tolist()
        pr, rc, f1, macro = per_class(y_true, y_pred)
        sk = precision_recall_fscore_support(y_true, y_pred, labels=list(CLASSES), average=None, zero_division=np.nan)
        for ours, ref in zip((pr, rc, f1), sk[:3], strict=False):
            np.testing.assert_allclose(ours, ref, rtol=1e-12)
        sk_macro = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=np.nan)[:3]
        assert macro == pytest.approx(sk_macro, rel=1e-12, nan_ok=True)


def _ece(conf: np.ndarray, correct: np.ndarray) -> float:
    bins = np.digitize(conf, ECE_EDGES[1:-1])
    return float(sum(np.sum(bins == b) / conf.size * abs(correct[bins == b].mean() - conf[bins == b].mean())
                     for b in range(10) if np.any(bins == b)))


# -- the tests ----------------------------------------------------------------------------------------------

def _setup(tmp_path: Path, seed: int) -> tuple[Path, list[dict[str, object]]]:
    ref = reference_records(np.random.default_rng(seed + 1000))
    path = tmp_path / "reference.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ref))
    return path, ref


def _same(a: Exposed, b: Exposed) -> list[str]:
    return [f"{k}: {a.get(k)} != {b.get(k)}" for k in sorted(set(a) | set(b), key=str)
            if not (a.get(k) == b.get(k) or (a.get(k) != a.get(k) and b.get(k) != b.get(k)))]


def _run_against_oracle(tmp_path: Path, buckets: int, config_buckets: int | None, grid: float | None,
                        seed: int) -> None:
    ref_path, ref = _setup(tmp_path, seed)
    stream = make_stream(seed, buckets, grid)
    oracle = Oracle(stream, buckets, ref)
    config = make_config(ref_path, config_buckets)
    checked = [0]

    def check(i: int, t: float, e: Exposed) -> None:
        oracle.check(i, t, e)
        checked[0] += 1

    steady = run(config, stream, on_check=check)
    assert checked[0] == len(steady) > 200

    # the stream covered what it should
    all_preds = [p for c in stream.cycles for p in c.preds]
    if grid is None:
        assert sum(p.ts > p.arrival for p in all_preds) > 10  # stamped in the future
    assert sum(p.ts < p.arrival - 600 for p in all_preds) > 5  # older than every window
    assert sum(len(c.checks) == 4 for c in stream.cycles) > 20  # boundary - eps, boundary, boundary + eps

    # windows were empty at times (empty buckets) and full at others, and some bucket boundaries
    # took events out of a window: between boundary - eps and boundary the counts changed
    v1_1m = frozenset({("model", "m"), ("model_version", "1"), ("window", "1m")})
    counts = [e[("mlmon_window_predictions", v1_1m)] for _, e in steady]
    assert sum(c == 0 for c in counts) > 3 and sum(c > 20 for c in counts) > 20
    moved, i = 0, 0
    for c in stream.cycles:
        if len(c.checks) == 4:
            before, at = steady[i + 1][1], steady[i + 2][1]
            moved += any(before[k] != at[k] for k in before if k[0] == "mlmon_window_predictions")
        i += len(c.checks)
    assert moved > (10 if grid is None else 0)

    # a version idle for longer than a window: empty windows, NaN ratios, counters intact
    last_t, last = steady[-1]
    assert last_t - stream.v2_last_arrival > 600 + 600 / buckets
    for w in WINDOWS:
        wl = frozenset({("model", "m"), ("model_version", "2"), ("window", w.name)})
        assert last[("mlmon_window_predictions", wl)] == 0 and last[("mlmon_window_labeled_predictions", wl)] == 0
        for name in ("mlmon_accuracy_ratio", "mlmon_label_coverage_ratio", "mlmon_confidence_mean_ratio",
                     "mlmon_confidence_median_ratio", "mlmon_calibration_error_ratio", "mlmon_macro_f1_ratio"):
            assert math.isnan(last[(name, wl)]), name
        assert math.isnan(last[("mlmon_data_drift_psi", wl | {("feature", "amount")})])
    v2_preds = sum(v for (name, labels), v in last.items()
                   if name == "mlmon_predictions_total" and ("model_version", "2") in labels)
    assert v2_preds == sum(p.version == "2" for p in all_preds) > 20

    # a restart in the middle gives the values of the uninterrupted run, at every later check
    cut = len(stream.cycles) // 2
    restarted = run(config, stream, tmp_path / "state", restart_after=cut)
    assert [t for t, _ in restarted] == [t for t, _ in steady]
    for (t, a), (_, b) in zip(steady, restarted, strict=True):
        assert _same(a, b) == [], t


@pytest.mark.parametrize("buckets", [6, 60])
def test_bucketed_windows_match_the_oracle(tmp_path: Path, buckets: int) -> None:
    """The new contract: ``global.window_buckets`` set, stamps anywhere, some in the future."""
    _run_against_oracle(tmp_path, buckets, buckets, grid=None, seed=buckets)


def test_oracle_matches_the_exact_rule_on_a_grid(tmp_path: Path) -> None:
    """The oracle itself, checked on code that keeps exact windows (``ts > now - L``).

    With every stamp a multiple of 100 s and none in the future, an event's bucket is inside
    exactly when its stamp is after now - L (for the default 60 buckets, widths 1 s and 10 s
    divide 100 s), so this passes on the exact windows and on the bucketed ones alike: it
    validates every statistic of the oracle before the bucketed windows exist.
    """
    _run_against_oracle(tmp_path, 60, None, grid=100.0, seed=7)
