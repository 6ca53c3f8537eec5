"""A pipeline with four known versions, fed by hand: fraud v1 (accuracy 0.80, drifting to the
critical tier), v2 (0.95), v3 (predictions only) and intent v7 (multiclass). History and the
Report tests read the same numbers from it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from exporter.config import Baseline, Config, GlobalConfig, HistoryConfig, ModelConfig, Thresholds, Window
from exporter.core.pipeline import Pipeline
from exporter.ingest.batches import LabelBatch, PredictionBatch
from tests.helpers import FakeClock as Clock
from tests.helpers import obj

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC).timestamp()



BINARY = ModelConfig(name="fraud", task="binary", classes=("0", "1"), positive_class="1",
                     thresholds=Thresholds(min_samples=50), baseline=Baseline(accuracy=0.92))
MULTI = ModelConfig(name="intent", task="multiclass", classes=("a", "b", "c"),
                    thresholds=Thresholds(min_samples=10), baseline=Baseline(accuracy=0.9))


def config(directory: Path | None, interval: float = 300.0) -> Config:
    return Config(global_=GlobalConfig(poll_interval=1.0, windows=(Window("1h", 3600.0), Window("24h", 86400.0))),
                  models=(BINARY, MULTI),
                  history=HistoryConfig(directory=str(directory) if directory else None, interval=interval))


def feed(p: Pipeline, model: str, version: str, preds: list[str], labels: list[str] | None, now: float,
         conf: float = 0.9, prefix: str = "") -> None:
    n = len(preds)
    ids = [f"{prefix}{model}-{version}-{i}" for i in range(n)]
    ts = np.full(n, now - 60.0)
    p.apply_predictions("preds", PredictionBatch(
        id=obj(ids), model=obj([model] * n), model_version=obj([version] * n), timestamp=ts,
        prediction=obj(preds), confidence=np.full(n, conf), probabilities=np.full(n, None, dtype=object)), now)
    if labels is not None:
        p.apply_labels("labels", LabelBatch(id=obj(ids), label=obj(labels), timestamp=ts,
                                            model=np.full(n, None, dtype=object)), now)


# fraud v1: 200 outcomes, accuracy 0.80 (drift, critical); v2: 0.95; v3: predictions only
Y1_TRUE = ["1"] * 100 + ["0"] * 100
Y1_PRED = ["1"] * 90 + ["0"] * 10 + ["0"] * 70 + ["1"] * 30
Y2_TRUE = ["1"] * 100 + ["0"] * 100
Y2_PRED = ["1"] * 95 + ["0"] * 5 + ["0"] * 95 + ["1"] * 5
M_TRUE = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
M_PRED = ["a"] * 8 + ["b"] * 2 + ["b"] * 9 + ["c"] * 1 + ["c"] * 5 + ["a"] * 5


def pipeline(clock: Clock, directory: Path | None) -> Pipeline:
    p = Pipeline(config(directory), clock, sources=[])
    feed(p, "fraud", "1", Y1_PRED, Y1_TRUE, clock.t)
    feed(p, "fraud", "2", Y2_PRED, Y2_TRUE, clock.t, conf=0.8)
    feed(p, "fraud", "3", ["1"] * 5, None, clock.t)
    feed(p, "intent", "7", M_PRED, M_TRUE, clock.t)
    return p
