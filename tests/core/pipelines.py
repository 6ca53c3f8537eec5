"""A pipeline with no sources, fed hand-made batches, and what it would serve: shared by the
pipeline-level tests of tests/core (statistics, significance, the window oracle)."""

from __future__ import annotations

import numpy as np

from exporter.config import Config, GlobalConfig, ModelConfig, Window
from exporter.core.pipeline import Pipeline
from exporter.ingest.batches import LabelBatch, PredictionBatch
from exporter.report import catalogue
from exporter.report.snapshot import render
from tests.helpers import FakeClock, Samples, obj, text_samples


def make_pipeline(model: ModelConfig, clock: FakeClock) -> Pipeline:
    cfg = Config(global_=GlobalConfig(poll_interval=1.0, windows=(Window("1m", 60.0), Window("10m", 600.0))),
                 models=(model,))
    return Pipeline(cfg, clock, sources=[])


def pred_batch(ids: list[str], ts: np.ndarray, preds: list[str], conf: np.ndarray, version: str = "1",
               model: str = "m") -> PredictionBatch:
    n = len(ids)
    return PredictionBatch(id=obj(ids), model=obj([model] * n), model_version=obj([version] * n), timestamp=ts,
                           prediction=obj(preds), confidence=conf, probabilities=np.full(n, None, dtype=object))


def label_batch(ids: list[str], labels: list[str], ts: np.ndarray) -> LabelBatch:
    n = len(ids)
    return LabelBatch(id=obj(ids), label=obj(labels), timestamp=ts, model=np.full(n, None, dtype=object))


Exposed = Samples


def exposed(p: Pipeline, now: float, text: bool = True) -> Exposed:
    """Every sample the pipeline would serve at ``now``: parsed back from the rendered text
    exposition, or (``text=False``, faster) straight from the snapshot it is rendered from."""
    families = catalogue.families(p.build_report(now))
    if not text:
        return {(s.name, frozenset(s.labels)): s.value for fam in families for s in fam.samples}
    return text_samples(render(families))
