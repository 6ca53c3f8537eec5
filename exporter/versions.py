"""Everything the exporter knows about one model version: counters, windows, baseline.

Counters are cumulative since the exporter first saw the version (PromQL windows them);
windowed aggregates are kept by ``WindowedStream`` for each configured window. Three streams
per version, because DESIGN §2 places events in windows by different clocks: predictions by
their own timestamp, outcomes (labelled predictions) by the label's timestamp, and labelled
predictions again by the prediction's timestamp for label coverage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.classes import ClassIndex
from exporter.config import ModelConfig, Window
from exporter.drift_monitor import VersionDrift
from exporter.reference import Reference
from exporter.stats.classification import ClassificationMetrics, classification_metrics, confusion_add
from exporter.stats.confidence import ConfidenceStats, confidence_stats
from exporter.stats.estimation import ece_from_bins
from exporter.stats.significance import (
    binomial_drop_p_value,
    drift_severity,
    two_proportion_drop_p_value,
    wilson_interval,
)
from exporter.windows import FIXED_POINT_SCALE, Columns, SortedMultiset, WindowedStream, to_fixed_point

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
CALIBRATION_BINS = 10


class PredictionAggregate:
    """Predictions in a window: per-class counts and the confidence multiset."""

    def __init__(self, n_classes: int) -> None:
        self.class_counts = np.zeros(n_classes, dtype=np.int64)
        self.confidence = SortedMultiset()

    def add(self, cols: Columns) -> None:
        self._apply(cols, 1)

    def remove(self, cols: Columns) -> None:
        self._apply(cols, -1)

    def _apply(self, cols: Columns, sign: int) -> None:
        self.class_counts += sign * np.bincount(cols["pred_idx"], minlength=self.class_counts.size)
        conf = cols["confidence"]
        conf = conf[~np.isnan(conf)]
        (self.confidence.add if sign > 0 else self.confidence.remove)(conf)

    @property
    def n(self) -> int:
        return int(self.class_counts.sum())


class OutcomeAggregate:
    """Labelled predictions in a window: the confusion matrix and calibration bins."""

    def __init__(self, n_classes: int) -> None:
        self.cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.bin_count = np.zeros(CALIBRATION_BINS, dtype=np.int64)
        self.bin_correct = np.zeros(CALIBRATION_BINS, dtype=np.int64)
        self.bin_conf = np.zeros(CALIBRATION_BINS, dtype=np.int64)  # fixed point

    def add(self, cols: Columns) -> None:
        self._apply(cols, 1)

    def remove(self, cols: Columns) -> None:
        self._apply(cols, -1)

    def _apply(self, cols: Columns, sign: int) -> None:
        confusion_add(self.cm, cols["true_idx"], cols["pred_idx"], sign)
        conf = cols["confidence"]
        has = ~np.isnan(conf)
        if has.any():
            c = conf[has]
            b = np.minimum((c * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
            correct = (cols["true_idx"][has] == cols["pred_idx"][has]).astype(np.int64)
            self.bin_count += sign * np.bincount(b, minlength=CALIBRATION_BINS)
            self.bin_correct += sign * np.bincount(b, weights=correct, minlength=CALIBRATION_BINS).astype(np.int64)
            q = to_fixed_point(c)
            self.bin_conf += sign * np.bincount(b, weights=q, minlength=CALIBRATION_BINS).astype(np.int64)

    def calibration_error(self) -> float:
        return ece_from_bins(self.bin_count, self.bin_conf / FIXED_POINT_SCALE, self.bin_correct)


class CountAggregate:
    """Only how many events a window holds."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, cols: Columns) -> None:
        self.n += len(cols["pred_idx"])

    def remove(self, cols: Columns) -> None:
        self.n -= len(cols["pred_idx"])


@dataclass(frozen=True)
class WindowStats:
    """Every windowed number of one version and window, computed once per cycle."""

    window: str
    predictions: int
    labeled: int
    labeled_by_prediction_time: int
    metrics: ClassificationMetrics
    accuracy_lower: float
    accuracy_upper: float
    coverage: float
    confidence: ConfidenceStats
    calibration_error: float
    accuracy_drop: float
    drop_p_value: float
    drift_detected: bool
    severity: str
    predicted_class_counts: IntArray


class Histogram:
    """Cumulative histogram with fixed-point sum, so restarts reproduce ``_sum`` exactly."""

    def __init__(self, bounds: Sequence[float], scale: float) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = np.zeros(self.bounds.size + 1, dtype=np.int64)
        self.scale = scale
        self.sum_fixed = 0  # python int: unbounded
        self.count = 0

    def observe(self, values: FloatArray) -> None:
        values = values[~np.isnan(values)]
        if values.size == 0:
            return
        self.counts += np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=self.counts.size)
        self.sum_fixed += int(np.rint(values * self.scale).astype(np.int64).sum())
        self.count += int(values.size)

    @property
    def total(self) -> float:
        return self.sum_fixed / self.scale

    def cumulative(self) -> IntArray:
        return np.cumsum(self.counts)

    def state(self) -> dict[str, Any]:
        return {"counts": self.counts.tolist(), "sum_fixed": self.sum_fixed, "count": self.count}

    def restore(self, state: dict[str, Any]) -> None:
        counts = np.asarray(state["counts"], dtype=np.int64)
        if counts.size == self.counts.size:
            self.counts = counts
            self.sum_fixed = int(state["sum_fixed"])
            self.count = int(state["count"])


PREDICTION_COLUMNS = {"pred_idx": np.int32, "confidence": np.float64}
OUTCOME_COLUMNS = {"pred_idx": np.int32, "true_idx": np.int32, "confidence": np.float64}
COVERAGE_COLUMNS = {"pred_idx": np.int32}


class VersionState:
    """One (model, version): cumulative counters, windows and the baseline."""

    def __init__(self, model: ModelConfig, classes: ClassIndex, windows: Sequence[Window], now: float,
                 reference: Reference | None = None) -> None:
        self.model = model
        self.classes = classes
        self.windows = tuple(windows)
        n = classes.capacity
        lengths = [w.seconds for w in windows]
        self.predictions = WindowedStream(lengths, lambda: PredictionAggregate(n), PREDICTION_COLUMNS)
        self.outcomes = WindowedStream(lengths, lambda: OutcomeAggregate(n), OUTCOME_COLUMNS)
        self.coverage = WindowedStream(lengths, CountAggregate, COVERAGE_COLUMNS)
        self.predicted_total = np.zeros(n, dtype=np.int64)
        self.labeled_total = np.zeros((n, n), dtype=np.int64)  # rows true, cols predicted
        self.expired_total = 0
        self.confidence_hist = Histogram(model.confidence_buckets, FIXED_POINT_SCALE)
        self.delay_hist = Histogram(model.label_delay_buckets, 1e6)  # microseconds
        self.first_seen = now
        self.last_seen = now
        # learned baseline: accuracy of the first N labelled predictions of this version
        self.baseline_n = 0
        self.baseline_correct = 0
        self.drift = VersionDrift(model, windows, reference, lambda: list(classes.names))

    # -- ingest -------------------------------------------------------------------------------
    def add_predictions(self, ts: FloatArray, pred_idx: npt.NDArray[np.int32], confidence: FloatArray,
                        now: float, features: Mapping[str, npt.NDArray[np.object_]] | None = None,
                        p_positive: FloatArray | None = None) -> None:
        self.drift.add_predictions(ts, features or {}, confidence, pred_idx,
                                   p_positive if p_positive is not None else np.full(ts.size, np.nan), now)
        self.predictions.add(ts, {"pred_idx": pred_idx, "confidence": confidence}, now)
        self.predicted_total += np.bincount(pred_idx, minlength=self.predicted_total.size)
        self.confidence_hist.observe(confidence)
        self.last_seen = max(self.last_seen, now)

    def add_outcomes(self, label_ts: FloatArray, pred_ts: FloatArray, pred_idx: npt.NDArray[np.int32],
                     true_idx: npt.NDArray[np.int32], confidence: FloatArray, now: float) -> None:
        """Outcomes in arrival order (the learned baseline takes the first N of them)."""
        cols: dict[str, npt.NDArray[Any]] = {"pred_idx": pred_idx, "true_idx": true_idx, "confidence": confidence}
        self.outcomes.add(label_ts, cols, now)
        self.coverage.add(pred_ts, {"pred_idx": pred_idx}, now)
        confusion_add(self.labeled_total, true_idx, pred_idx, 1)
        self.drift.add_outcomes(pred_idx == true_idx)
        self.delay_hist.observe(np.maximum(label_ts - pred_ts, 0.0))
        need = (self.model.baseline.first_labeled or 0) - self.baseline_n
        if need > 0:
            take = min(need, pred_idx.size)
            self.baseline_n += take
            self.baseline_correct += int((pred_idx[:take] == true_idx[:take]).sum())

    def advance(self, now: float) -> None:
        self.predictions.advance(now)
        self.outcomes.advance(now)
        self.coverage.advance(now)
        self.drift.advance(now)

    # -- checkpoint -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        streams = {}
        for name, stream in (("predictions", self.predictions), ("outcomes", self.outcomes),
                             ("coverage", self.coverage)):
            ts, cols = stream.export()
            streams[name] = {"ts": ts, "cols": cols}
        return {
            "first_seen": self.first_seen, "last_seen": self.last_seen,
            "predicted_total": self.predicted_total, "labeled_total": self.labeled_total,
            "expired_total": self.expired_total, "baseline_n": self.baseline_n,
            "baseline_correct": self.baseline_correct,
            "confidence_hist": self.confidence_hist.state(), "delay_hist": self.delay_hist.state(),
            "streams": streams,
            "drift": self.drift.state(),
        }

    def restore(self, state: dict[str, Any], now: float) -> None:
        """Counters as saved; windows rebuilt from the saved events at ``now`` (possibly new lengths)."""
        self.first_seen = float(state["first_seen"])
        self.last_seen = float(state["last_seen"])
        self.predicted_total = np.asarray(state["predicted_total"], dtype=np.int64).copy()
        self.labeled_total = np.asarray(state["labeled_total"], dtype=np.int64).copy()
        self.expired_total = int(state["expired_total"])
        self.baseline_n = int(state["baseline_n"])
        self.baseline_correct = int(state["baseline_correct"])
        self.confidence_hist.restore(state["confidence_hist"])
        self.delay_hist.restore(state["delay_hist"])
        for name, stream in (("predictions", self.predictions), ("outcomes", self.outcomes),
                             ("coverage", self.coverage)):
            saved = state["streams"][name]
            stream.rebuild(np.asarray(saved["ts"], dtype=np.float64), saved["cols"], now)
        if "drift" in state:  # checkpoints written before data drift existed have none
            self.drift.restore(state["drift"], now)

    # -- read -----------------------------------------------------------------------------------
    @property
    def correct_total(self) -> int:
        return int(np.trace(self.labeled_total))

    @property
    def baseline_accuracy(self) -> float:
        b = self.model.baseline
        if b.accuracy is not None:
            return b.accuracy
        if b.first_labeled is not None and self.baseline_n >= b.first_labeled:
            return self.baseline_correct / self.baseline_n
        return float("nan")

    def window_stats(self, i: int) -> WindowStats:
        pa: PredictionAggregate = self.predictions.aggregates[i]  # type: ignore[assignment]
        oa: OutcomeAggregate = self.outcomes.aggregates[i]  # type: ignore[assignment]
        ca: CountAggregate = self.coverage.aggregates[i]  # type: ignore[assignment]
        t = self.model.thresholds
        metrics = classification_metrics(oa.cm)
        lo, hi = wilson_interval(metrics.correct, metrics.n)
        baseline = self.baseline_accuracy
        drop = baseline - metrics.accuracy
        if np.isnan(drop) or metrics.n == 0:
            p_value = float("nan")
        elif self.model.baseline.accuracy is not None:
            p_value = binomial_drop_p_value(metrics.correct, metrics.n, baseline)
        else:
            p_value = two_proportion_drop_p_value(metrics.correct, metrics.n, self.baseline_correct, self.baseline_n)
        detected = bool(not np.isnan(drop) and drop > t.drift and metrics.n >= t.min_samples)
        n_pred = pa.n
        return WindowStats(
            window=self.windows[i].name,
            predictions=n_pred,
            labeled=metrics.n,
            labeled_by_prediction_time=ca.n,
            metrics=metrics,
            accuracy_lower=lo,
            accuracy_upper=hi,
            coverage=ca.n / n_pred if n_pred else float("nan"),
            confidence=confidence_stats(pa.confidence.values, t.confidence),
            calibration_error=oa.calibration_error(),
            accuracy_drop=float(drop),
            drop_p_value=p_value,
            drift_detected=detected,
            severity=drift_severity(float(drop), t.severity.high, t.severity.critical),
            predicted_class_counts=pa.class_counts.copy(),
        )
