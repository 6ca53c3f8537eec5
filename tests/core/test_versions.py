"""Model versions side by side: separate numbers per version, idle versions expire from /metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exporter.config import Config, GlobalConfig, ModelConfig, Window
from exporter.core.pipeline import Pipeline
from exporter.ingest.batches import LabelBatch, PredictionBatch
from exporter.report import catalogue
from tests.helpers import FakeClock, Samples, obj, samples

IDLE = 600.0



def pipeline(clock: FakeClock) -> Pipeline:
    cfg = Config(
        global_=GlobalConfig(poll_interval=1.0, windows=(Window("1m", 60.0), Window("10m", 600.0)),
                             version_idle_expiry=IDLE),
        models=(ModelConfig(name="m", classes=("0", "1")),),
    )
    return Pipeline(cfg, clock, sources=[])


def predictions(ids: list[str], versions: list[str], preds: list[str], conf: list[float],
                ts: list[float]) -> PredictionBatch:
    n = len(ids)
    return PredictionBatch(id=obj(ids), model=obj(["m"] * n), model_version=obj(versions),
                           timestamp=np.array(ts, dtype=np.float64), prediction=obj(preds),
                           confidence=np.array(conf, dtype=np.float64), probabilities=np.full(n, None, dtype=object))


def labels(ids: list[str], values: list[str], ts: list[float]) -> LabelBatch:
    return LabelBatch(id=obj(ids), label=obj(values), timestamp=np.array(ts, dtype=np.float64),
                      model=np.full(len(ids), None, dtype=object))


def value(s: Samples, name: str, **labels: str) -> float:
    return s[(name, frozenset({"model": "m", **labels}.items()))]


def versions_in(s: Samples) -> set[str]:
    return {v for _, labels in s for k, v in labels if k == "model_version"}


def cycle(p: Pipeline, clock: FakeClock, t: float) -> Samples:
    clock.t = t
    p.advance(t)
    return samples(catalogue.snapshot(p.build_report(t)))


def test_interleaved_versions_have_separate_correct_numbers() -> None:
    rng = np.random.default_rng(42)
    clock = FakeClock(1000.0)
    p = pipeline(clock)
    n = 400
    versions = rng.choice(["1", "2"], n).tolist()  # a canary beside the default, interleaved
    truth = rng.choice(["0", "1"], n).tolist()
    # version 1 is right 90% of the time, version 2 only 60%
    hit = np.where(np.array(versions) == "1", rng.random(n) < 0.9, rng.random(n) < 0.6)
    preds = [t if h else ("1" if t == "0" else "0") for t, h in zip(truth, hit, strict=True)]
    conf = rng.uniform(0.5, 1.0, n).round(6).tolist()
    ts = (1000.0 + np.arange(n) * 0.1).tolist()
    ids = [f"r{i}" for i in range(n)]
    for lo in range(0, n, 50):  # several mixed batches
        sl = slice(lo, lo + 50)
        p.apply_predictions("src", predictions(ids[sl], versions[sl], preds[sl], conf[sl], ts[sl]), 1040.0)
    labelled = list(range(0, n, 2))  # half of them get labels, in one batch across both versions
    p.apply_labels("labels", labels([ids[i] for i in labelled], [truth[i] for i in labelled],
                                    [1045.0] * len(labelled)), 1045.0)
    s = cycle(p, clock, 1050.0)

    assert versions_in(s) == {"1", "2"}
    for v in ("1", "2"):
        mine = [i for i in range(n) if versions[i] == v]
        mine_lab = [i for i in labelled if versions[i] == v]
        correct = sum(preds[i] == truth[i] for i in mine_lab)
        assert value(s, "mlmon_predictions_total", model_version=v, predicted_class="1") == sum(
            preds[i] == "1" for i in mine)
        assert value(s, "mlmon_correct_predictions_total", model_version=v) == correct
        for w in ("1m", "10m"):
            assert value(s, "mlmon_window_predictions", model_version=v, window=w) == len(mine)
            assert value(s, "mlmon_window_labeled_predictions", model_version=v, window=w) == len(mine_lab)
            assert value(s, "mlmon_accuracy_ratio", model_version=v, window=w) == pytest.approx(
                correct / len(mine_lab))
            assert value(s, "mlmon_confidence_mean_ratio", model_version=v, window=w) == pytest.approx(
                float(np.mean([conf[i] for i in mine])))
            assert value(s, "mlmon_label_coverage_ratio", model_version=v, window=w) == pytest.approx(
                len(mine_lab) / len(mine))
        assert value(s, "mlmon_model_info", model_version=v, task="binary") == 1
        assert value(s, "mlmon_model_version_first_seen_timestamp_seconds", model_version=v) == 1040.0
    acc1 = value(s, "mlmon_accuracy_ratio", model_version="1", window="10m")
    acc2 = value(s, "mlmon_accuracy_ratio", model_version="2", window="10m")
    assert acc1 > 0.8 > 0.7 > acc2


def test_idle_version_series_vanish_after_expiry() -> None:
    clock = FakeClock(0.0)
    p = pipeline(clock)
    p.apply_predictions("src", predictions(["a1", "b1"], ["1", "2"], ["1", "0"], [0.9, 0.8], [10.0, 10.0]), 10.0)
    p.apply_labels("labels", labels(["a1"], ["1"], [20.0]), 20.0)  # an outcome keeps v1 alive until 20
    assert versions_in(cycle(p, clock, 30.0)) == {"1", "2"}
    # only version 2 keeps receiving predictions
    for k, t in enumerate(range(100, 700, 100)):
        p.apply_predictions("src", predictions([f"b{t}"], ["2"], ["1"], [0.7], [float(t)]), float(t))
        s = cycle(p, clock, float(t))
        assert versions_in(s) == {"1", "2"}, t  # last seen at 20: idle for less than 600 s
        assert value(s, "mlmon_predictions_total", model_version="2", predicted_class="1") == k + 1
    s = cycle(p, clock, 620.0)  # exactly the expiry: not yet
    assert "1" in versions_in(s)
    s = cycle(p, clock, 620.5)
    assert versions_in(s) == {"2"}
    assert ("m", "1") not in p.versions  # its state is freed too
    # nothing of version 1 is left on any family, counters included
    assert not [key for key in s if ("model_version", "1") in key[1]]
    assert value(s, "mlmon_window_predictions", model_version="2", window="10m") == 6  # ts > 20.5

    # a version that comes back starts afresh
    p.apply_predictions("src", predictions(["a2"], ["1"], ["0"], [0.6], [700.0]), 700.0)
    s = cycle(p, clock, 700.0)
    assert value(s, "mlmon_model_version_first_seen_timestamp_seconds", model_version="1") == 700.0
    assert value(s, "mlmon_predictions_total", model_version="1", predicted_class="1") == 0
    assert value(s, "mlmon_predictions_total", model_version="1", predicted_class="0") == 1
    assert math.isnan(value(s, "mlmon_accuracy_ratio", model_version="1", window="1m"))
