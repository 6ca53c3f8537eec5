"""The metric names users type (DESIGN §4): the cycle's Report -> metric families.

This is the only module that knows metric names and HELP texts, also those of the runtime's
own numbers and of the actions' counters (retraining, history): each of those hands in typed
values (``exporter.report.model``), and they are named here. ``snapshot(report)`` builds the
families in their exposition order; the runtime renders them once per cycle for every scrape.
Nothing here reads live state: a Report is immutable, so rendering it needs no lock.
"""

from __future__ import annotations

from exporter.foundation.severities import SEVERITIES
from exporter.report.build_info import build_labels
from exporter.report.model import (
    CATEGORICAL,
    NUMERIC,
    DriftReport,
    ExporterStats,
    HistoryStats,
    Report,
    RetrainingStats,
)
from exporter.report.snapshot import Family, LabelPairs, Snapshot, SnapshotBuilder


def snapshot(report: Report) -> Snapshot:
    """Every family of ``report``, in exposition order (empty families are skipped when rendered)."""
    b = SnapshotBuilder()
    _model_families(report, b)
    _self_families(report, b)
    if report.exporter is not None:
        _exporter_families(report.exporter, b)
    if report.retraining is not None:
        _retraining_families(report.retraining, b)
    if report.history is not None:
        _history_families(report.history, b)
    return b.build(report.created, report.ready)


def families(report: Report) -> tuple[Family, ...]:
    return snapshot(report).families


def _model_families(r: Report, b: SnapshotBuilder) -> None:
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
    drift = _DriftFamilies(b)

    for v in r.versions:
        base: LabelPairs = (("model", v.model), ("model_version", v.version))
        info.add((*base, ("task", v.task)), 1)
        first_seen.add(base, v.first_seen)
        baseline.add(base, v.baseline_accuracy)
        thr_acc.add(base, v.thresholds.accuracy)
        thr_drift.add(base, v.thresholds.drift)
        thr_conf.add(base, v.thresholds.confidence)
        thr_min.add(base, v.thresholds.min_samples)
        names = v.classes
        for cls, n in zip(names, v.predicted_total, strict=True):
            predictions.add((*base, ("predicted_class", cls)), n)
        for true_cls, row in zip(names, v.labeled_total, strict=True):
            for pred_cls, n in zip(names, row, strict=True):
                labeled.add((*base, ("predicted_class", pred_cls), ("true_class", true_cls)), n)
        correct.add(base, v.correct_total)
        expired.add(base, v.expired_total)
        h = v.confidence_histogram
        conf_hist.histogram(base, h.bounds, h.cumulative, h.total, h.count)
        h = v.label_delay_histogram
        delay_hist.histogram(base, h.bounds, h.cumulative, h.total, h.count)

        for w in v.windows:
            wl: LabelPairs = (*base, ("window", w.window))
            windowed["accuracy"].add(wl, w.accuracy)
            windowed["acc_lo"].add(wl, w.accuracy_lower)
            windowed["acc_hi"].add(wl, w.accuracy_upper)
            for c, cls in enumerate(names):
                cl: LabelPairs = (*wl, ("class", cls))
                windowed["precision"].add(cl, w.precision[c])
                windowed["recall"].add(cl, w.recall[c])
                windowed["f1"].add(cl, w.f1[c])
            windowed["macro_p"].add(wl, w.macro_precision)
            windowed["macro_r"].add(wl, w.macro_recall)
            windowed["macro_f1"].add(wl, w.macro_f1)
            windowed["n_pred"].add(wl, w.predictions)
            windowed["n_lab"].add(wl, w.labeled)
            windowed["coverage"].add(wl, w.coverage)
            cs = w.confidence
            windowed["c_mean"].add(wl, cs.mean)
            windowed["c_median"].add(wl, cs.median)
            windowed["c_std"].add(wl, cs.stddev)
            windowed["c_min"].add(wl, cs.min)
            windowed["c_max"].add(wl, cs.max)
            windowed["low"].add(wl, cs.low_share)
            windowed["drop"].add(wl, w.accuracy_drop)
            windowed["p"].add(wl, w.drop_p_value)
            windowed["detected"].add(wl, 1.0 if w.drift_detected else 0.0)
            for tier in SEVERITIES:
                windowed["severity"].add((*wl, ("severity", tier)), 1.0 if w.severity == tier else 0.0)
            windowed["ece"].add(wl, w.calibration_error)
        drift.add(base, v.drift, v.positive_class if v.task == "binary" else None)
        for iv in v.drift.invalid_feature_values:
            invalid_features.add((*base, ("feature", iv.feature), ("reason", iv.reason)), iv.count)

    for model_name, n in r.orphan_labels:
        orphans.add((("model", model_name),), n)


class _DriftFamilies:
    """The data-drift, estimation and change-detection families, declared where they appear."""

    def __init__(self, b: SnapshotBuilder) -> None:
        g = b.family
        self.psi = g("mlmon_data_drift_psi", "gauge",
                     "Population stability index of the feature in the window vs the reference "
                     "(10 reference-quantile bins or categories, shares floored at 1e-4).")
        self.ks = g("mlmon_data_drift_ks_statistic", "gauge",
                    "Two-sample Kolmogorov-Smirnov statistic of a numeric feature, window vs reference.")
        self.ks_p = g("mlmon_data_drift_ks_p_value", "gauge",
                      "Two-sample Kolmogorov-Smirnov p-value (asymptotic, two-sided) of a numeric feature.")
        self.js = g("mlmon_data_drift_js_distance", "gauge",
                    "Jensen-Shannon distance (base 2) of the feature's binned distribution, window vs reference.")
        self.chi = g("mlmon_data_drift_chi2_p_value", "gauge",
                     "Chi-square test p-value of a categorical feature's counts, window vs reference.")
        self.detected = g("mlmon_data_drift_detected", "gauge",
                          "1 when the feature's configured drift method crosses its threshold, 0 if not, "
                          "NaN while unknown (no reference yet or no values in the window).")
        self.reference = g("mlmon_data_drift_reference_samples", "gauge",
                           "Predictions in the version's drift reference "
                           "(a learned one is complete at reference_size).")
        self.est_acc = g("mlmon_estimated_accuracy_ratio", "gauge",
                         "Label-free accuracy estimate (CBPE): mean top-class confidence of the window's predictions.")
        self.est_prec = g("mlmon_estimated_precision_ratio", "gauge",
                          "Label-free precision estimate of the positive class from predicted probabilities (binary).")
        self.est_rec = g("mlmon_estimated_recall_ratio", "gauge",
                         "Label-free recall estimate of the positive class from predicted probabilities (binary).")
        self.est_f1 = g("mlmon_estimated_f1_ratio", "gauge",
                        "Label-free F1 estimate of the positive class from predicted probabilities (binary).")
        self.change_points = g("mlmon_change_points", "counter",
                               "Change points found in the version's error stream by the detector "
                               "(Page-Hinkley, DDM).")
        self.change_state = g("mlmon_change_detector_state", "gauge",
                              "Change detector state on the error stream: 0 stable, 1 warning (DDM), 2 drift "
                              "(held for the shortest window after a change point).")

    def add(self, base: LabelPairs, d: DriftReport, positive_class: str | None) -> None:
        """One version's samples; ``positive_class`` for a binary model (its estimated P/R/F1)."""
        self.reference.add(base, d.reference_samples)
        for w in d.windows:
            wl: LabelPairs = (*base, ("window", w.window))
            est = w.estimates
            self.est_acc.add(wl, est.accuracy)
            if positive_class is not None:
                cl: LabelPairs = (*wl, ("class", positive_class))
                self.est_prec.add(cl, est.precision)
                self.est_rec.add(cl, est.recall)
                self.est_f1.add(cl, est.f1)
            for fd in w.features:
                fl: LabelPairs = (*wl, ("feature", fd.feature))
                self.psi.add(fl, fd.psi)
                self.js.add(fl, fd.js_distance)
                if fd.kind == NUMERIC:
                    self.ks.add(fl, fd.ks_statistic)
                    self.ks_p.add(fl, fd.ks_p_value)
                elif fd.kind == CATEGORICAL:
                    self.chi.add(fl, fd.chi2_p_value)
                self.detected.add(fl, fd.detected)
        for det in d.change_detectors:
            dl: LabelPairs = (*base, ("detector", det.detector))
            self.change_points.add(dl, det.change_points)
            self.change_state.add(dl, det.state)


def drift_families(base: LabelPairs, drift: DriftReport, positive_class: str | None) -> tuple[Family, ...]:
    """The drift families of one version alone (what ``snapshot`` writes for it)."""
    b = SnapshotBuilder()
    _DriftFamilies(b).add(base, drift, positive_class)
    return b.build(0.0, True).families


def _self_families(r: Report, b: SnapshotBuilder) -> None:
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
    for src in r.sources:
        sl: LabelPairs = (("source", src.name),)
        up.add(sl, 1.0 if src.up else 0.0)
        if src.files_matched is not None:
            files.add(sl, src.files_matched)
        records.add(sl, src.records)
        for reason, n in src.invalid:
            invalid.add((*sl, ("reason", reason)), n)
        errors.add(sl, src.errors)
        if src.last_success is not None:
            last_ok.add(sl, src.last_success)
        if src.lag_seconds is not None:
            lag.add(sl, src.lag_seconds)
        h = src.poll_duration
        poll.histogram(sl, h.bounds, h.cumulative, h.total, h.count)
    for j in r.join:
        ml: LabelPairs = (("model", j.model),)
        if j.pending is not None:
            pending.add(ml, j.pending)
        waiting.add(ml, j.waiting_labels)
        if j.forgotten_ids is not None:
            forgotten.add(ml, j.forgotten_ids)


def _exporter_families(e: ExporterStats, b: SnapshotBuilder) -> None:
    g = b.family
    g("mlmon_exporter_config_last_reload_successful", "gauge",
      "1 when the last configuration reload succeeded.").add((), 1.0 if e.reload_successful else 0.0)
    g("mlmon_exporter_config_last_reload_success_timestamp_seconds", "gauge",
      "When the configuration was last loaded successfully.").add((), e.reload_success_time)
    cp = e.checkpoint
    if cp is not None:
        if cp.last_success is not None:
            g("mlmon_exporter_checkpoint_last_success_timestamp_seconds", "gauge",
              "When the state was last checkpointed.").add((), cp.last_success)
        g("mlmon_exporter_checkpoint_errors", "counter",
          "Checkpoints that could not be written.").add((), cp.errors)
        g("mlmon_exporter_checkpoint_restore_failures", "counter",
          "Checkpoints found unusable at start and moved aside.").add((), cp.restore_failures)


def _retraining_families(rs: RetrainingStats, b: SnapshotBuilder) -> None:
    g = b.family
    req = g("mlmon_retraining_requests", "counter",
            "Retraining requests by result: sent, failed (given up after retries), deduplicated "
            "(inside the cooldown), logged (no endpoint configured), invalid (alert without model labels).")
    for result, n in rs.results:
        req.add((("result", result),), n)
    ts = g("mlmon_retraining_last_request_timestamp_seconds", "gauge",
           "Trigger time of the last retraining request sent (or logged) for the model version.")
    for model, version, t in rs.last_request:
        ts.add((("model", model), ("model_version", version)), t)
    rec = g("mlmon_retraining_alerts_received", "counter",
            "Alerts labelled action=retrain received on the Alertmanager webhook, by status.")
    for status, n in rs.alerts_received:
        rec.add((("status", status),), n)
    g("mlmon_retraining_pending_requests", "gauge",
      "Retraining requests accepted but not yet delivered (being sent or waiting to retry).").add((), rs.pending)
    g("mlmon_retraining_invalid_payloads", "counter",
      "Alertmanager webhook payloads refused as malformed (HTTP 400).").add((), rs.invalid_payloads)


def _history_families(hs: HistoryStats, b: SnapshotBuilder) -> None:
    g = b.family
    g("mlmon_exporter_history_rows_written", "counter",
      "Performance-history rows written to Parquet.").add((), hs.rows_written)
    g("mlmon_exporter_history_write_errors", "counter",
      "Failed performance-history writes.").add((), hs.write_errors)
    if hs.last_success is not None:
        g("mlmon_exporter_history_last_success_timestamp_seconds", "gauge",
          "When performance history was last written successfully.").add((), hs.last_success)
