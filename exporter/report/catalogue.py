"""The metric names users type (DESIGN §4), filled from the pipeline's state once per cycle.

This is the only module that knows metric names and help texts; the pipeline hands it its
state and gets back families in the snapshot. What it reads of that state is ``CycleState``
(the pipeline satisfies it), so this module does not import the pipeline that calls it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

from exporter.config import Config
from exporter.core.join import Joiner
from exporter.core.source_stats import SourceStats
from exporter.core.versions import VersionState
from exporter.foundation.reject_reasons import reasons_for
from exporter.foundation.severities import SEVERITIES
from exporter.report.build_info import build_labels
from exporter.report.snapshot import LabelPairs, SnapshotBuilder
from exporter.sources.base import Source
from exporter.sources.file_tail import FileTailSource


class CycleState(Protocol):
    """The pipeline state the families are built from (read-only here)."""

    @property
    def config(self) -> Config: ...
    @property
    def sources(self) -> Sequence[Source]: ...
    @property
    def source_stats(self) -> Mapping[str, SourceStats]: ...
    @property
    def versions(self) -> Mapping[tuple[str, str], VersionState]: ...
    @property
    def orphans_total(self) -> Mapping[str, int]: ...
    @property
    def joiner(self) -> Joiner: ...


def _ratio(x: float) -> float:
    return float(x) if x is not None else math.nan


def build_families(p: CycleState, b: SnapshotBuilder, now: float) -> None:
    _model_families(p, b)
    _self_families(p, b, now)


def _model_families(p: CycleState, b: SnapshotBuilder) -> None:
    g = b.family
    info = g("mlmon_model", "info", "Model version seen by the exporter (value 1), with its task.")
    first_seen = g("mlmon_model_version_first_seen_timestamp_seconds", "gauge",
                   "When the exporter first saw a prediction or outcome of this model version.")
    baseline = g("mlmon_baseline_accuracy_ratio", "gauge",
                 "Baseline accuracy of the version: fixed by config or frozen after the first N labelled predictions.")
    thr_acc = g("mlmon_accuracy_threshold_ratio", "gauge", "Configured minimum acceptable accuracy.")
    thr_drift = g("mlmon_drift_threshold_ratio", "gauge", "Configured accuracy drop that counts as drift.")
    thr_conf = g("mlmon_confidence_threshold_ratio", "gauge",
                 "Configured confidence below which a prediction is low-confidence.")
    thr_min = g("mlmon_min_samples", "gauge", "Labelled predictions a window needs before drift is judged.")
    predictions = g("mlmon_predictions", "counter", "Prediction records ingested.")
    labeled = g("mlmon_labeled_predictions", "counter",
                "Predictions joined with their label: the cells of the confusion matrix.")
    correct = g("mlmon_correct_predictions", "counter", "Joined predictions where prediction == label.")
    expired = g("mlmon_expired_predictions", "counter", "Predictions whose label never came within the join TTL.")
    orphans = g("mlmon_orphan_labels", "counter",
                "Labels that matched no prediction within the join TTL (label model, empty when unknown).")
    conf_hist = g("mlmon_prediction_confidence", "histogram", "Confidence of ingested predictions.")
    delay_hist = g("mlmon_label_delay_seconds", "histogram", "Time from a prediction to its label.")
    invalid_features = g("mlmon_invalid_feature_values", "counter",
                         "Feature values left out of data drift, by reason (missing, not_finite, wrong_type).")

    windowed = {
        "accuracy": g("mlmon_accuracy_ratio", "gauge", "Accuracy of labelled predictions in the window."),
        "acc_lo": g("mlmon_accuracy_lower_ratio", "gauge", "Lower end of the 95% Wilson interval of accuracy."),
        "acc_hi": g("mlmon_accuracy_upper_ratio", "gauge", "Upper end of the 95% Wilson interval of accuracy."),
        "precision": g("mlmon_precision_ratio", "gauge", "Precision per class in the window."),
        "recall": g("mlmon_recall_ratio", "gauge", "Recall per class in the window."),
        "f1": g("mlmon_f1_ratio", "gauge", "F1 score per class in the window."),
        "macro_p": g("mlmon_macro_precision_ratio", "gauge", "Macro-averaged precision over classes seen."),
        "macro_r": g("mlmon_macro_recall_ratio", "gauge", "Macro-averaged recall over classes seen."),
        "macro_f1": g("mlmon_macro_f1_ratio", "gauge", "Macro-averaged F1 over classes seen."),
        "n_pred": g("mlmon_window_predictions", "gauge", "Predictions in the window (by prediction time)."),
        "n_lab": g("mlmon_window_labeled_predictions", "gauge", "Labelled predictions in the window (by label time)."),
        "coverage": g("mlmon_label_coverage_ratio", "gauge",
                      "Share of the window's predictions that have received their label."),
        "c_mean": g("mlmon_confidence_mean_ratio", "gauge", "Mean prediction confidence in the window."),
        "c_median": g("mlmon_confidence_median_ratio", "gauge", "Median prediction confidence in the window."),
        "c_std": g("mlmon_confidence_stddev_ratio", "gauge", "Population standard deviation of confidence."),
        "c_min": g("mlmon_confidence_min_ratio", "gauge", "Lowest prediction confidence in the window."),
        "c_max": g("mlmon_confidence_max_ratio", "gauge", "Highest prediction confidence in the window."),
        "low": g("mlmon_low_confidence_ratio", "gauge", "Share of predictions below the confidence threshold."),
        "drop": g("mlmon_accuracy_drop_ratio", "gauge", "Baseline accuracy minus window accuracy."),
        "p": g("mlmon_accuracy_drop_p_value", "gauge",
               "One-sided p-value that window accuracy is below baseline "
               "(exact binomial vs a fixed baseline, two-proportion z-test vs a learned one)."),
        "detected": g("mlmon_accuracy_drift_detected", "gauge",
                      "1 when the accuracy drop exceeds the drift threshold with at least min_samples labels."),
        "severity": g("mlmon_accuracy_drift_severity", "gauge",
                      "Accuracy drift tier: 1 for the current severity, 0 for the others."),
        "ece": g("mlmon_calibration_error_ratio", "gauge",
                 "Expected calibration error (10 equal-width bins) of labelled predictions in the window."),
    }

    for (model_name, version), vs in sorted(p.versions.items()):
        m = vs.model
        base: LabelPairs = (("model", model_name), ("model_version", version))
        info.add((*base, ("task", m.task)), 1)
        first_seen.add(base, vs.first_seen)
        baseline.add(base, vs.baseline_accuracy)
        thr_acc.add(base, m.thresholds.accuracy)
        thr_drift.add(base, m.thresholds.drift)
        thr_conf.add(base, m.thresholds.confidence)
        thr_min.add(base, m.thresholds.min_samples)
        names = vs.classes.names
        for i, cls in enumerate(names):
            predictions.add((*base, ("predicted_class", cls)), float(vs.predicted_total[i]))
        for t, true_cls in enumerate(names):
            for q, pred_cls in enumerate(names):
                labeled.add((*base, ("predicted_class", pred_cls), ("true_class", true_cls)),
                            float(vs.labeled_total[t, q]))
        correct.add(base, vs.correct_total)
        expired.add(base, vs.expired_total)
        h = vs.confidence_hist
        conf_hist.histogram(base, h.bounds.tolist(), h.cumulative().tolist(), h.total, h.count)
        h = vs.delay_hist
        delay_hist.histogram(base, h.bounds.tolist(), h.cumulative().tolist(), h.total, h.count)

        for i in range(len(vs.windows)):
            s = vs.window_stats(i)
            wl: LabelPairs = (*base, ("window", s.window))
            mt = s.metrics
            windowed["accuracy"].add(wl, mt.accuracy)
            windowed["acc_lo"].add(wl, s.accuracy_lower)
            windowed["acc_hi"].add(wl, s.accuracy_upper)
            for c, cls in enumerate(names):
                cl: LabelPairs = (*wl, ("class", cls))
                windowed["precision"].add(cl, mt.precision[c])
                windowed["recall"].add(cl, mt.recall[c])
                windowed["f1"].add(cl, mt.f1[c])
            windowed["macro_p"].add(wl, mt.macro_precision)
            windowed["macro_r"].add(wl, mt.macro_recall)
            windowed["macro_f1"].add(wl, mt.macro_f1)
            windowed["n_pred"].add(wl, s.predictions)
            windowed["n_lab"].add(wl, s.labeled)
            windowed["coverage"].add(wl, s.coverage)
            cs = s.confidence
            windowed["c_mean"].add(wl, cs.mean)
            windowed["c_median"].add(wl, cs.median)
            windowed["c_std"].add(wl, cs.stddev)
            windowed["c_min"].add(wl, cs.min)
            windowed["c_max"].add(wl, cs.max)
            windowed["low"].add(wl, cs.low_share)
            windowed["drop"].add(wl, s.accuracy_drop)
            windowed["p"].add(wl, s.drop_p_value)
            windowed["detected"].add(wl, 1.0 if s.drift_detected else 0.0)
            for tier in SEVERITIES:
                windowed["severity"].add((*wl, ("severity", tier)), 1.0 if s.severity == tier else 0.0)
            windowed["ece"].add(wl, s.calibration_error)
        vs.drift.families(b, base)
        for (feature, reason), n in sorted(vs.drift.invalid_feature_values.items()):
            invalid_features.add((*base, ("feature", feature), ("reason", reason)), n)

    # at 0 from the start for every configured model (and for labels naming none, when a labels
    # source may carry such), so the series exist before the first orphan
    orphan_models = {m.name for m in p.config.models} | set(p.orphans_total)
    if any(s.config.kind == "labels" and s.config.model is None for s in p.sources):
        orphan_models.add("")
    for model_name in sorted(orphan_models):
        orphans.add((("model", model_name),), p.orphans_total.get(model_name, 0))


def _self_families(p: CycleState, b: SnapshotBuilder, now: float) -> None:
    g = b.family
    g("mlmon_exporter_build", "info",
      "Exporter build information: version, git revision (unknown when not recorded), Python version.").add(
        build_labels(), 1)
    up = g("mlmon_exporter_source_up", "gauge", "1 when the source's last poll succeeded.")
    records = g("mlmon_exporter_records", "counter", "Records read from the source, valid or not.")
    invalid = g("mlmon_exporter_invalid_records", "counter", "Records skipped as invalid, by reason.")
    errors = g("mlmon_exporter_source_errors", "counter", "Failed reads or requests of the source, retries included.")
    last_ok = g("mlmon_exporter_source_last_success_timestamp_seconds", "gauge",
                "When the source was last read successfully.")
    lag = g("mlmon_exporter_source_lag_seconds", "gauge", "Now minus the newest record timestamp of the source.")
    poll = g("mlmon_exporter_poll_duration_seconds", "histogram", "Time to poll, parse and apply one source batch.")
    pending = g("mlmon_exporter_join_pending", "gauge", "Predictions waiting for their label.")
    waiting = g("mlmon_exporter_join_waiting_labels", "gauge",
                "Labels waiting for their prediction (model empty: labels that name no model).")
    forgotten = g("mlmon_exporter_join_forgotten_ids", "counter",
                  "Joined ids forgotten before the join TTL to stay within max_pending; "
                  "a later label or prediction with such an id is no longer recognised as a duplicate.")
    files = g("mlmon_exporter_source_files", "gauge",
              "Regular files the file source's path matched at its last poll (0: a wrong path, or no file yet).")
    for src in p.sources:
        sl: LabelPairs = (("source", src.name),)
        st = p.source_stats[src.name]
        up.add(sl, 1.0 if src.health.up else 0.0)
        if isinstance(src, FileTailSource):
            files.add(sl, src.files_matched)
        records.add(sl, st.records)
        # every reason this source can produce, at 0 until it happens, so increase() works from the start
        for reason in sorted(set(reasons_for(src.config)) | set(st.invalid)):
            invalid.add((*sl, ("reason", reason)), st.invalid.get(reason, 0))
        errors.add(sl, src.health.errors_total)
        if src.health.last_success is not None:
            last_ok.add(sl, src.health.last_success)
        if st.newest_timestamp is not None:
            lag.add(sl, max(0.0, now - st.newest_timestamp))
        h = st.poll_duration
        poll.histogram(sl, h.bounds.tolist(), h.cumulative().tolist(), h.total, h.count)
    for model in p.config.models:
        pending.add((("model", model.name),), p.joiner.pending_count(model.name))
        waiting.add((("model", model.name),), p.joiner.waiting_count(model.name))
        forgotten.add((("model", model.name),), p.joiner.forgotten_total(model.name))
    if p.joiner.waiting_count(None) or any(s.config.kind == "labels" and s.config.model is None for s in p.sources):
        waiting.add((("model", ""),), p.joiner.waiting_count(None))
