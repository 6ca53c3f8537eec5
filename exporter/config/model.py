"""The frozen, typed config of everything but the sources: global settings, models, retraining,
history, and ``Config`` holding them all.

Everything the rest of the exporter reads from the YAML goes through these dataclasses. A field's
name is its YAML key (``keys.yaml_keys``; ``Config.global_`` says ``global`` in its metadata), and
the field order is the order the keys are listed in messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from exporter.config.keys import yaml_name
from exporter.config.sources import SourceConfig

TaskKind = Literal["binary", "multiclass"]
TASKS: tuple[str, ...] = get_args(TaskKind)
DRIFT_METHODS = ("psi", "ks", "js", "chi2")
# Features that every model's data drift covers without being listed; a user feature of the same
# name would collide with them in the `feature` label.
BUILTIN_DRIFT_FEATURES = ("confidence", "predicted_class")
#: More buckets buy resolution at the cost of memory per window (DESIGN §2 "Windows").
MAX_WINDOW_BUCKETS = 1000
MAX_INGEST_THREADS = 2


@dataclass(frozen=True)
class Window:
    """A sliding window: ``name`` is the label value users see (``1h``), ``seconds`` its length."""

    name: str
    seconds: float


@dataclass(frozen=True)
class SeverityTiers:
    """Accuracy-drop tiers: drop > critical is ``critical``, drop > high is ``high``, else ``low``."""

    high: float = 0.05
    critical: float = 0.10


@dataclass(frozen=True)
class Thresholds:
    accuracy: float = 0.80
    drift: float = 0.05
    confidence: float = 0.75
    min_samples: int = 100
    severity: SeverityTiers = field(default_factory=SeverityTiers)


@dataclass(frozen=True)
class Baseline:
    """Exactly one of ``accuracy`` (fixed for every version) or ``first_labeled`` (learned per version)."""

    accuracy: float | None = None
    first_labeled: int | None = None


@dataclass(frozen=True)
class JoinConfig:
    ttl: float = 72 * 3600.0
    max_pending: int = 1_000_000


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.25
    ks: float = 0.1
    js: float = 0.1
    chi2_p_value: float = 0.01


@dataclass(frozen=True)
class DriftConfig:
    reference: str | None = None
    reference_size: int = 5000
    features: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("psi",)
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    max_categories: int = 50


@dataclass(frozen=True)
class ModelConfig:
    name: str
    task: TaskKind = "binary"
    classes: tuple[str, ...] | None = None
    positive_class: str = "1"
    max_classes: int = 50
    max_versions: int = 20
    thresholds: Thresholds = field(default_factory=Thresholds)
    baseline: Baseline = field(default_factory=Baseline)
    join: JoinConfig = field(default_factory=JoinConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    confidence_buckets: tuple[float, ...] = (
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99,
    )
    label_delay_buckets: tuple[float, ...] = (
        60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0, 172800.0, 259200.0, 604800.0,
    )


@dataclass(frozen=True)
class RetrainingConfig:
    endpoint: str | None = None
    cooldown: float = 6 * 3600.0
    timeout: float = 10.0
    max_attempts: int = 5
    training_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryConfig:
    directory: str | None = None
    interval: float = 300.0


@dataclass(frozen=True)
class GlobalConfig:
    poll_interval: float = 5.0
    windows: tuple[Window, ...] = (Window("1h", 3600.0), Window("24h", 86400.0))
    window_buckets: int = 60
    version_idle_expiry: float = 7 * 86400.0
    checkpoint_interval: float = 10.0
    ingest_threads: int = 2


@dataclass(frozen=True)
class Config:
    global_: GlobalConfig = field(default_factory=GlobalConfig, metadata=yaml_name("global"))
    models: tuple[ModelConfig, ...] = ()
    sources: tuple[SourceConfig, ...] = ()
    retraining: RetrainingConfig = field(default_factory=RetrainingConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)

    def model(self, name: str) -> ModelConfig | None:
        for m in self.models:
            if m.name == name:
                return m
        return None
