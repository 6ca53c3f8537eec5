"""The models the KServe tests receive events for (a binary sentiment model and 3-class iris with
drift features) and a ``type: kserve`` source config, shared by the in-process and the real-KServe
replays."""

from __future__ import annotations

from typing import Any

from exporter.config import Config, DriftConfig, GlobalConfig, KServeSourceConfig, ModelConfig, Window

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
IRIS = ("setosa", "versicolor", "virginica")
IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
CONFIG = Config(
    global_=GlobalConfig(poll_interval=5.0, windows=(Window("1h", 3600.0),)),
    models=(
        ModelConfig(name="sentiment", task="binary", classes=("0", "1"),
                    drift=DriftConfig(features=("length", "lang"))),
        ModelConfig(name="iris", task="multiclass", classes=IRIS, drift=DriftConfig(features=IRIS_FEATURES)),
    ),
)



def source_config(**kw: Any) -> KServeSourceConfig:
    opts: dict[str, Any] = {"name": "kserve", "kind": "predictions", "model_from": "inferenceservicename"}
    opts.update(kw)
    return KServeSourceConfig(**opts)
