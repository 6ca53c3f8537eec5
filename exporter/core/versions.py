"""Everything the exporter knows about one model version: counters, windows, baseline.

Counters are cumulative since the exporter first saw the version (PromQL windows them);
windowed statistics are kept in time buckets (``exporter.core.windows``) for each configured window.
Three streams per version, because DESIGN §2 places events in windows by different clocks:
predictions by their own timestamp, outcomes (labelled predictions) by the label's timestamp,
and labelled predictions again by the prediction's timestamp for label coverage.

Nothing here grows with traffic: counters are fixed-size arrays, a window holds at most
``window_buckets`` buckets of fixed size, the learned baseline is two integers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.config import ModelConfig, Window
from exporter.core.classes import ClassIndex
from exporter.core.drift_monitor import VersionDrift
from exporter.core.reference import Reference
from exporter.core.windows import (
    FIXED_POINT_SCALE,
    BucketedStream,
    Columns,
    fixed_point_bin_sums,
    fixed_point_square_sums,
    merged_sum,
    square_sum,
    to_fixed_point,
)
from exporter.foundation.arrays import FloatArray, IntArray
from exporter.stats.classification import ClassificationMetrics, classification_metrics, confusion_add
from exporter.stats.confidence import MEDIAN_BINS, ConfidenceStats, confidence_stats_from_sums, median_bins
from exporter.stats.estimation import ece_from_bins
from exporter.stats.significance import (
    binomial_drop_p_value,
    drift_severity,
    two_proportion_drop_p_value,
    wilson_interval,
)

CALIBRATION_BINS = 10


class PredictionBucket:
    """Predictions of one time bucket: per-class counts and the confidence statistics.

    Confidence is kept as exact fixed-point sums (mean, standard deviation), exact min and max,
    the count below the threshold, and a 0.001-wide histogram for the median.
    """

    __slots__ = ("class_counts", "hi", "hist", "lo", "low", "n_conf", "s1", "s2", "threshold")

    def __init__(self, n_classes: int, threshold: float) -> None:
        self.threshold = threshold
        self.class_counts = np.zeros(n_classes, dtype=np.int64)
        self.n_conf = 0
        self.s1 = 0
        self.s2 = (0, 0, 0)
        self.lo = math.inf
        self.hi = -math.inf
        self.low = 0
        self.hist = np.zeros(MEDIAN_BINS, dtype=np.int32)

    def add(self, cols: Columns) -> None:
        self.class_counts += np.bincount(cols["pred_idx"], minlength=self.class_counts.size)
        conf = cols["confidence"]
        conf = conf[~np.isnan(conf)]
        if conf.size == 0:
            return
        q = to_fixed_point(conf)
        self.n_conf += int(conf.size)
        self.s1 += int(q.sum())
        a, b, c = fixed_point_square_sums(q)
        self.s2 = (self.s2[0] + a, self.s2[1] + b, self.s2[2] + c)
        self.lo = min(self.lo, float(conf.min()))
        self.hi = max(self.hi, float(conf.max()))
        self.low += int(np.count_nonzero(conf < self.threshold))
        self.hist += np.bincount(median_bins(conf), minlength=MEDIAN_BINS).astype(np.int32)

    def merge(self, other: PredictionBucket) -> None:
        """Add another bucket's predictions (as if its events had been added here)."""
        self.class_counts += other.class_counts
        if other.n_conf == 0:
            return
        self.n_conf += other.n_conf
        self.s1 += other.s1
        self.s2 = (self.s2[0] + other.s2[0], self.s2[1] + other.s2[1], self.s2[2] + other.s2[2])
        self.lo = min(self.lo, other.lo)
        self.hi = max(self.hi, other.hi)
        self.low += other.low
        self.hist += other.hist

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        i64, f64 = np.int64, np.float64
        return {"class_counts": self.class_counts, "n_conf": np.array(self.n_conf, i64),
                "s1": np.array(self.s1, i64), "s2": np.asarray(self.s2, i64), "lo": np.array(self.lo, f64),
                "hi": np.array(self.hi, f64), "low": np.array(self.low, i64), "hist": self.hist,
                "threshold": np.array(self.threshold, f64)}

    def load(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        counts = np.asarray(arrays["class_counts"], dtype=np.int64)
        self.class_counts[:min(counts.size, self.class_counts.size)] = counts[:self.class_counts.size]
        self.n_conf = int(arrays["n_conf"])
        self.s1 = int(arrays["s1"])
        s2 = np.asarray(arrays["s2"], dtype=np.int64).tolist()
        self.s2 = (int(s2[0]), int(s2[1]), int(s2[2]))
        self.lo = float(arrays["lo"])
        self.hi = float(arrays["hi"])
        self.hist = np.asarray(arrays["hist"], dtype=np.int32).copy()
        if float(arrays["threshold"]) == self.threshold:
            self.low = int(arrays["low"])
        else:  # the threshold changed: count below it from the histogram (to within one 0.001 bin)
            self.low = int(self.hist[:round(self.threshold * MEDIAN_BINS)].sum())


def _merge_predictions(buckets: Sequence[PredictionBucket], n_classes: int, threshold: float,
                       ) -> tuple[IntArray, ConfidenceStats]:
    counts = merged_sum([b.class_counts for b in buckets], (n_classes,))
    n = sum(b.n_conf for b in buckets)
    limbs = (sum(b.s2[0] for b in buckets), sum(b.s2[1] for b in buckets), sum(b.s2[2] for b in buckets))
    stats = confidence_stats_from_sums(
        n, sum(b.s1 for b in buckets), square_sum(limbs), FIXED_POINT_SCALE,
        min((b.lo for b in buckets), default=math.nan), max((b.hi for b in buckets), default=math.nan),
        sum(b.low for b in buckets), merged_sum([b.hist for b in buckets], (MEDIAN_BINS,)))
    return counts, stats


class OutcomeBucket:
    """Labelled predictions of one time bucket: the confusion matrix and calibration bins."""

    __slots__ = ("bin_conf", "bin_correct", "bin_count", "cm")

    def __init__(self, n_classes: int) -> None:
        self.cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        self.bin_count = np.zeros(CALIBRATION_BINS, dtype=np.int64)
        self.bin_correct = np.zeros(CALIBRATION_BINS, dtype=np.int64)
        self.bin_conf = np.zeros(CALIBRATION_BINS, dtype=np.int64)  # fixed point

    def add(self, cols: Columns) -> None:
        confusion_add(self.cm, cols["true_idx"], cols["pred_idx"], 1)
        conf = cols["confidence"]
        has = ~np.isnan(conf)
        if has.any():
            c = conf[has]
            b = np.minimum((c * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
            correct = cols["true_idx"][has] == cols["pred_idx"][has]
            self.bin_count += np.bincount(b, minlength=CALIBRATION_BINS)
            self.bin_correct += np.bincount(b[correct], minlength=CALIBRATION_BINS)
            self.bin_conf += fixed_point_bin_sums(to_fixed_point(c), b, CALIBRATION_BINS)

    def merge(self, other: OutcomeBucket) -> None:
        """Add another bucket's outcomes (as if its events had been added here)."""
        self.cm += other.cm
        self.bin_count += other.bin_count
        self.bin_correct += other.bin_correct
        self.bin_conf += other.bin_conf

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"cm": self.cm, "bin_count": self.bin_count, "bin_correct": self.bin_correct,
                "bin_conf": self.bin_conf}

    def load(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        cm = np.asarray(arrays["cm"], dtype=np.int64)
        k = min(cm.shape[0], self.cm.shape[0])
        self.cm[:k, :k] = cm[:k, :k]
        for name in ("bin_count", "bin_correct", "bin_conf"):
            getattr(self, name)[:] = np.asarray(arrays[name], dtype=np.int64)


class CountBucket:
    """Only how many events fell in the bucket."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def add(self, cols: Columns) -> None:
        self.n += len(cols["pred_idx"])

    def merge(self, other: CountBucket) -> None:
        self.n += other.n

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"n": np.array(self.n, dtype=np.int64)}

    def load(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.n = int(arrays["n"])


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


class VersionState:
    """One (model, version): cumulative counters, windows and the baseline."""

    def __init__(self, model: ModelConfig, classes: ClassIndex, windows: Sequence[Window], now: float,
                 reference: Reference | None = None, window_buckets: int = 60) -> None:
        self.model = model
        self.classes = classes
        self.windows = tuple(windows)
        n = classes.capacity
        lengths = [w.seconds for w in windows]
        threshold = model.thresholds.confidence
        self.predictions = BucketedStream(lengths, window_buckets, lambda: PredictionBucket(n, threshold))
        self.outcomes = BucketedStream(lengths, window_buckets, lambda: OutcomeBucket(n))
        self.coverage = BucketedStream(lengths, window_buckets, CountBucket)
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
        self.drift = VersionDrift(model, windows, reference, lambda: list(classes.names), window_buckets)

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
        return {
            "first_seen": self.first_seen, "last_seen": self.last_seen,
            "predicted_total": self.predicted_total, "labeled_total": self.labeled_total,
            "expired_total": self.expired_total, "baseline_n": self.baseline_n,
            "baseline_correct": self.baseline_correct,
            "confidence_hist": self.confidence_hist.state(), "delay_hist": self.delay_hist.state(),
            "windows": {"predictions": self.predictions.state(), "outcomes": self.outcomes.state(),
                        "coverage": self.coverage.state()},
            "drift": self.drift.state(),
        }

    def restore(self, state: dict[str, Any], now: float) -> None:
        """Counters and window buckets as saved; a window whose length or bucket count changed starts empty."""
        self.first_seen = float(state["first_seen"])
        self.last_seen = float(state["last_seen"])
        self.predicted_total = np.asarray(state["predicted_total"], dtype=np.int64).copy()
        self.labeled_total = np.asarray(state["labeled_total"], dtype=np.int64).copy()
        self.expired_total = int(state["expired_total"])
        self.baseline_n = int(state["baseline_n"])
        self.baseline_correct = int(state["baseline_correct"])
        self.confidence_hist.restore(state["confidence_hist"])
        self.delay_hist.restore(state["delay_hist"])
        saved = state["windows"]
        self.predictions.restore(saved["predictions"], now)
        self.outcomes.restore(saved["outcomes"], now)
        self.coverage.restore(saved["coverage"], now)
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
        n_classes = self.classes.capacity
        t = self.model.thresholds
        class_counts, confidence = _merge_predictions(self.predictions.live(i), n_classes, t.confidence)
        outcomes = self.outcomes.live(i)
        cm = merged_sum([b.cm for b in outcomes], (n_classes, n_classes))
        covered = sum(b.n for b in self.coverage.live(i))
        metrics = classification_metrics(cm)
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
        n_pred = int(class_counts.sum())
        bins = [merged_sum([getattr(b, name) for b in outcomes], (CALIBRATION_BINS,))
                for name in ("bin_count", "bin_conf", "bin_correct")]
        return WindowStats(
            window=self.windows[i].name,
            predictions=n_pred,
            labeled=metrics.n,
            labeled_by_prediction_time=covered,
            metrics=metrics,
            accuracy_lower=lo,
            accuracy_upper=hi,
            coverage=covered / n_pred if n_pred else float("nan"),
            confidence=confidence,
            calibration_error=ece_from_bins(bins[0], bins[1] / FIXED_POINT_SCALE, bins[2]),
            accuracy_drop=float(drop),
            drop_p_value=p_value,
            drift_detected=detected,
            severity=drift_severity(float(drop), t.severity.high, t.severity.critical),
            predicted_class_counts=class_counts,
        )

    def bucket_count(self) -> int:
        """Window buckets this version holds (its windowed memory is proportional to this)."""
        return (self.predictions.bucket_count() + self.outcomes.bucket_count() + self.coverage.bucket_count()
                + self.drift.stream.bucket_count())
