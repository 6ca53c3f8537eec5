"""The Report: everything one cycle knows, as typed, immutable values (issue 12, DESIGN §7).

The core fills a ``Report`` once per cycle (``exporter.core.reporting``) from its mutable
state; every reader takes its numbers from here by attribute, never from rendered text or by
metric name:

* the catalogue (``exporter.report.catalogue``) turns it into the metric families of
  ``/metrics`` -- the only place that knows metric names and HELP texts;
* retraining takes the evidence of an alert from it, history its Parquet rows, the status page
  its cards.

Shape (one line per level)::

    Report                      created, ready; the exporter's own numbers below
      versions[]  VersionReport   model, version, task, classes, thresholds, baseline, counters,
                                  histograms, first_seen
        windows[] WindowReport     accuracy (+ Wilson interval), per-class and macro P/R/F1,
                                  counts, coverage, confidence, calibration, drop, p-value,
                                  drift detected, severity
        drift     DriftReport      reference size, change detectors, invalid feature values,
          windows[] WindowDrift    label-free estimates, per-feature data drift (FeatureDrift)
      sources[]   SourceReport    up, records, invalid by reason, errors, last success, newest
                                  timestamp / lag, poll durations, files matched
      join[]      JoinReport      per model: pending predictions, waiting labels, forgotten ids
      orphan_labels               per model ("" for labels naming none)
      exporter    ExporterStats   reload, checkpoints        } filled by the runtime and the
      retraining  RetrainingStats requests by result, ...    } actions, which keep their own
      history     HistoryStats    rows written, errors       } cumulative counters

Values are plain Python (``float``, ``int``, ``str``, tuples): no numpy array escapes into a
Report, so holding one never pins the pipeline's buffers and comparing two is ordinary ``==``
(NaN aside). A ratio with a zero denominator is NaN (DESIGN §2). This module imports nothing of
the exporter: it sits below the core that fills it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How a feature's values are compared with its reference (``FeatureDrift.kind``).
NUMERIC = "numeric"
CATEGORICAL = "categorical"
UNTYPED = "unknown"


@dataclass(frozen=True)
class HistogramValues:
    """A cumulative histogram: ``cumulative[i]`` observations <= ``bounds[i]``, the last one +Inf."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # len(bounds) + 1
    total: float
    count: int


@dataclass(frozen=True)
class ConfidenceSummary:
    """The confidence distribution of a window's predictions (NaN when it holds none)."""

    mean: float
    median: float
    stddev: float  # population (ddof 0)
    min: float
    max: float
    low_share: float  # below the model's confidence threshold


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift statistics in one window (NaN where not applicable or unknown)."""

    feature: str
    kind: str  # NUMERIC | CATEGORICAL | UNTYPED
    samples: int  # valid values in the window
    psi: float
    js_distance: float
    ks_statistic: float
    ks_p_value: float
    chi2_p_value: float
    method: str
    detected: float  # 1.0, 0.0, or NaN when the method's statistic is NaN


@dataclass(frozen=True)
class Estimates:
    """Label-free estimates of one window (CBPE)."""

    predictions: int
    accuracy: float
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class WindowDrift:
    """Data drift and label-free estimates of one version in one window."""

    window: str
    estimates: Estimates
    features: tuple[FeatureDrift, ...]  # configured features, then confidence, predicted_class

    def feature(self, name: str) -> FeatureDrift | None:
        return next((f for f in self.features if f.feature == name), None)


@dataclass(frozen=True)
class ChangeDetectorValues:
    """A change detector on the version's error stream: 0 stable, 1 warning, 2 drift."""

    detector: str
    change_points: int
    state: int


@dataclass(frozen=True)
class InvalidFeatureValues:
    """Feature values left out of data drift for one reason (missing, not_finite, wrong_type)."""

    feature: str
    reason: str
    count: int


@dataclass(frozen=True)
class DriftReport:
    """Data drift, estimates and change detection of one version."""

    reference_samples: int  # predictions in the drift reference (a learned one fills up first)
    windows: tuple[WindowDrift, ...]  # in the order of VersionReport.windows
    change_detectors: tuple[ChangeDetectorValues, ...]
    invalid_feature_values: tuple[InvalidFeatureValues, ...]  # sorted by (feature, reason)


@dataclass(frozen=True)
class WindowReport:
    """Every windowed number of one version and window (DESIGN §4, "Windowed gauges")."""

    window: str
    seconds: float
    predictions: int  # by prediction time
    labeled: int  # by label time
    accuracy: float
    accuracy_lower: float  # 95% Wilson interval
    accuracy_upper: float
    precision: tuple[float, ...]  # per class, in the order of VersionReport.classes
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    coverage: float
    confidence: ConfidenceSummary
    calibration_error: float
    accuracy_drop: float  # baseline - accuracy
    drop_p_value: float
    drift_detected: bool
    severity: str  # low | high | critical

    def class_scores(self, classes: tuple[str, ...], name: str) -> tuple[float, float, float] | None:
        """(precision, recall, f1) of class ``name`` (``classes`` are the version's), or None."""
        if name not in classes:
            return None
        i = classes.index(name)
        return (self.precision[i], self.recall[i], self.f1[i])


@dataclass(frozen=True)
class Thresholds:
    """The model's configured thresholds, as exported per version."""

    accuracy: float
    drift: float
    confidence: float
    min_samples: int


@dataclass(frozen=True)
class VersionReport:
    """One model version: its counters since first seen, and its windows."""

    model: str
    version: str
    task: str  # binary | multiclass
    positive_class: str  # the binary headline class
    classes: tuple[str, ...]  # known classes, in class-index order
    first_seen: float
    baseline_accuracy: float
    thresholds: Thresholds
    predicted_total: tuple[int, ...]  # per predicted class
    labeled_total: tuple[tuple[int, ...], ...]  # [true][predicted]
    correct_total: int
    expired_total: int
    confidence_histogram: HistogramValues
    label_delay_histogram: HistogramValues
    windows: tuple[WindowReport, ...]  # in configured order
    drift: DriftReport

    @property
    def labeled_predictions(self) -> int:
        """Joined outcomes since first seen (the sum of the confusion matrix)."""
        return sum(map(sum, self.labeled_total))

    def window(self, name: str) -> WindowReport | None:
        return next((w for w in self.windows if w.window == name), None)

    def window_drift(self, name: str) -> WindowDrift | None:
        return next((w for w in self.drift.windows if w.window == name), None)


@dataclass(frozen=True)
class SourceReport:
    """The health of one source and its cumulative self-metrics."""

    name: str
    up: bool
    records: int  # read, valid or not
    invalid: tuple[tuple[str, int], ...]  # (reason, count): every reason it can produce, sorted
    errors: int  # failed reads or requests, retries included
    last_success: float | None
    newest_timestamp: float | None
    lag_seconds: float | None  # the report's time minus newest_timestamp, never negative
    poll_duration: HistogramValues
    files_matched: int | None = None  # file sources: files the glob matched at the last poll


@dataclass(frozen=True)
class JoinReport:
    """The join buffers of one model ("" for labels that name no model)."""

    model: str
    pending: int | None  # predictions waiting for their label (None for "")
    waiting_labels: int  # labels waiting for their prediction
    forgotten_ids: int | None  # joined ids forgotten to stay bounded (None for "")


@dataclass(frozen=True)
class CheckpointStats:
    last_success: float | None
    errors: int
    restore_failures: int


@dataclass(frozen=True)
class ExporterStats:
    """The runtime's own numbers: configuration reloads and checkpoints."""

    reload_successful: bool
    reload_success_time: float
    checkpoint: CheckpointStats | None  # None without a state directory


@dataclass(frozen=True)
class RetrainingStats:
    """The retraining service's cumulative counters."""

    results: tuple[tuple[str, int], ...]  # (result, requests), every result
    last_request: tuple[tuple[str, str, float], ...]  # (model, version, trigger time), sorted
    alerts_received: tuple[tuple[str, int], ...]  # (status, alerts)
    pending: int
    invalid_payloads: int


@dataclass(frozen=True)
class HistoryStats:
    """The performance-history writer's cumulative counters."""

    rows_written: int
    write_errors: int
    last_success: float | None


@dataclass(frozen=True)
class Report:
    """What one cycle publishes. The core fills the model and source parts; the runtime adds
    its own numbers and the actions' (``dataclasses.replace``) before the catalogue renders it."""

    created: float
    ready: bool
    versions: tuple[VersionReport, ...] = ()  # sorted by (model, version)
    orphan_labels: tuple[tuple[str, int], ...] = ()  # (model, labels), sorted; "" names no model
    sources: tuple[SourceReport, ...] = ()  # in configured order
    join: tuple[JoinReport, ...] = ()  # configured models, then "" when labels may name none
    exporter: ExporterStats | None = None
    retraining: RetrainingStats | None = None
    history: HistoryStats | None = None

    def version(self, model: str, version: str) -> VersionReport | None:
        return next((v for v in self.versions if v.model == model and v.version == version), None)

    def source(self, name: str) -> SourceReport | None:
        return next((s for s in self.sources if s.name == name), None)


EMPTY_REPORT = Report(0.0, False)
