"""Data drift, label-free performance estimates and change detection for one model version.

``VersionDrift`` sits beside ``VersionState`` (one per model version) and owns:

* **The reference** (DESIGN §2 "Data drift"): the model's reference file when configured (loaded
  once per model by ``exporter.core.reference.ReferenceStore`` and shared by its versions), else the
  version's first ``drift.reference_size`` predictions in arrival order, frozen and persisted with
  ``state()``. Until the reference is complete every drift gauge is NaN.
* **Data drift** of each configured feature plus ``confidence`` (numeric) and ``predicted_class``
  (categorical), per window, current window vs reference.
* **Estimated performance** without labels (CBPE): the window's mean top-class probability, and
  for binary models with probabilities the expected precision / recall / F1 of the positive class.
* **Change detection** on the version's 0/1 error stream: Page-Hinkley and DDM.

Feature typing. A value is *missing* (absent or ``null``), *not finite* (NaN / infinite number),
a *number* (int or float; bool excluded), a *string* or a *bool*. A feature's type is the most
common valid kind among its reference values (ties: number, then string, then bool): numbers make
it numeric, strings or booleans categorical (booleans as the categories ``true``/``false``). A
current value of another kind is ``wrong_type``. Every ingested value of a configured feature
that is not usable is counted once in ``invalid_feature_values[(feature, reason)]`` with reason ``missing``,
``not_finite`` or ``wrong_type``; it is left out of the window's distribution, never fatal. A
feature without any valid reference value has no type: its drift gauges stay NaN and only
``missing``/``not_finite`` values are counted for it.

Binning, the KS statistic from counts, and what a window bucket holds: ``exporter.core.drift_features``.

``mlmon_data_drift_detected`` uses the first method of ``drift.methods`` that applies to the
feature's type (numeric: psi, ks, js; categorical: psi, js, chi2), else PSI; it is 1 when
PSI > ``thresholds.psi``, KS statistic > ``thresholds.ks``, JS distance > ``thresholds.js`` or
chi-square p-value < ``thresholds.chi2_p_value``, 0 otherwise, NaN while the statistic is (no
reference yet, or no valid value in the window). It has no sample-count guard of its own: the
shipped alert guards with ``mlmon_window_predictions``.

Windows. One ``BucketedStream`` per version (``exporter.core.windows``) of ``DriftBucket`` s. While a
learned reference is incomplete the stream carries only the estimation sums; when it completes,
the stream is rebuilt from the held-back reference rows (which are all the version's predictions
so far) with the now-known bins. A checkpoint keeps the buckets; a feature whose reference (type,
categories, values) changed meanwhile restarts empty, as its counts would mean other bins.

Change detection: ``exporter.stats.change`` detectors with river's default parameters --
Page-Hinkley ``min_instances=30, delta=0.005, threshold=50, alpha=1-1e-4``, mode ``up`` (an
increase of the error rate); DDM ``warm_start=30, warning_threshold=2, drift_threshold=3``. Fed the
outcomes in arrival order (1 = wrong). ``mlmon_change_detector_state`` is 0 stable, 1 warning
(DDM only), 2 drift; the drift state holds for the shortest configured window after the last
change point and then returns to the detector's live state (the statistics are not reset by that,
they already restarted at the change point).

About 430 lines, over the house's 400: the reference's life (held back, frozen, restored) and the
windows rebuilt from it are one state machine.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.config import ModelConfig, Window
from exporter.core.drift_features import (
    DriftBucket,
    FeatureModel,
    build_feature_model,
    detection_method,
    ks_from_ranks,
    merged_estimates,
)
from exporter.core.reference import (
    LEARNED,
    MISSING,
    NOT_FINITE,
    OTHER,
    RawColumn,
    Reference,
)
from exporter.core.windows import BucketedStream
from exporter.foundation.arrays import BoolArray, FloatArray, Int32Array, ObjArray
from exporter.report.model import (
    CATEGORICAL,
    NUMERIC,
    UNTYPED,
    ChangeDetectorValues,
    DriftReport,
    Estimates,
    FeatureDrift,
    InvalidFeatureValues,
    WindowDrift,
)
from exporter.stats.change import DDM, DRIFT, PageHinkley, detector_from_dict
from exporter.stats.drift import chi2_p_value, js_distance, psi

CONFIDENCE = "confidence"
PREDICTED_CLASS = "predicted_class"
BUILTIN_FEATURES = (CONFIDENCE, PREDICTED_CLASS)

# invalid feature value reasons
MISSING_VALUE = "missing"
NOT_FINITE_VALUE = "not_finite"
WRONG_TYPE = "wrong_type"

_STATE_VERSION = 2


@dataclass
class _Rows:
    """Predictions held while a learned reference fills up (raw values, arrival order)."""

    ts: FloatArray
    confidence: FloatArray
    p_pos: FloatArray
    pred_pos: BoolArray
    raw: dict[str, RawColumn]  # configured features + confidence + predicted_class

    def __len__(self) -> int:
        return int(self.ts.size)

    def take(self, rows: slice) -> _Rows:
        return _Rows(self.ts[rows], self.confidence[rows], self.p_pos[rows], self.pred_pos[rows],
                     {k: v.take(rows) for k, v in self.raw.items()})

    @classmethod
    def concat(cls, parts: Sequence[_Rows], names: Sequence[str]) -> _Rows:
        return _Rows(
            np.concatenate([p.ts for p in parts]) if parts else np.empty(0),
            np.concatenate([p.confidence for p in parts]) if parts else np.empty(0),
            np.concatenate([p.p_pos for p in parts]) if parts else np.empty(0),
            np.concatenate([p.pred_pos for p in parts]) if parts else np.empty(0, dtype=bool),
            {n: RawColumn.concat([p.raw[n] for p in parts]) for n in names},
        )

    def base_columns(self) -> dict[str, npt.NDArray[Any]]:
        return {"confidence": self.confidence, "p_pos": self.p_pos, "pred_pos": self.pred_pos}

    def state(self) -> dict[str, Any]:
        return {"ts": self.ts.copy(), "confidence": self.confidence.copy(), "p_pos": self.p_pos.copy(),
                "pred_pos": self.pred_pos.copy(), "raw": {k: v.state() for k, v in self.raw.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], names: Sequence[str]) -> _Rows:
        ts = np.asarray(state["ts"], dtype=np.float64)
        raw = {n: RawColumn.from_state(state["raw"][n]) if n in state["raw"] else RawColumn.from_values(None, ts.size)
               for n in names}
        return cls(ts, np.asarray(state["confidence"], dtype=np.float64), np.asarray(state["p_pos"], dtype=np.float64),
                   np.asarray(state["pred_pos"], dtype=bool), raw)


def _kind_counts(col: RawColumn) -> list[int]:
    """How many values of each kind (``MISSING`` .. ``OTHER``) the column holds, in one pass."""
    out: list[int] = np.bincount(col.kind, minlength=OTHER + 1).tolist()
    return out


def _clear_latch(det: PageHinkley | DDM) -> PageHinkley | DDM:
    """The detector with its latched drift state cleared and its statistics kept."""
    data = det.to_dict()
    data["state"]["drift"] = False
    return detector_from_dict(data)


class VersionDrift:
    """Data drift, label-free estimates and change detection for one model version."""

    def __init__(self, model: ModelConfig, windows: Sequence[Window], reference: Reference | None,
                 class_names: Callable[[], list[str]], window_buckets: int = 60) -> None:
        self.model = model
        self.windows = tuple(windows)
        self.window_buckets = window_buckets
        self.class_names = class_names
        self.file_reference = reference
        self.reference: Reference | None = None
        self.feature_names: tuple[str, ...] = (*model.drift.features, *BUILTIN_FEATURES)
        self.features: dict[str, FeatureModel] = {}
        self.invalid_feature_values: Counter[tuple[str, str]] = Counter()
        self._pending: list[_Rows] = []
        self._pending_n = 0
        self.detectors: dict[str, PageHinkley | DDM] = {PageHinkley.kind: PageHinkley(), DDM.kind: DDM()}
        self._hold = min((w.seconds for w in self.windows), default=0.0)
        self._seen_detections = dict.fromkeys(self.detectors, 0)
        self._last_change: dict[str, float | None] = dict.fromkeys(self.detectors)
        self.stream = self._make_stream()
        if reference is not None:
            self._freeze(reference, now=-math.inf)

    # -- reference ----------------------------------------------------------------------------------
    @property
    def reference_complete(self) -> bool:
        return self.reference is not None

    @property
    def reference_samples(self) -> int:
        return len(self.reference) if self.reference is not None else self._pending_n

    def _make_stream(self) -> BucketedStream[DriftBucket]:
        feats = [f for f in self.features.values() if f.kind != UNTYPED]
        return BucketedStream([w.seconds for w in self.windows], self.window_buckets, lambda: DriftBucket(feats),
                              totals=True)

    def _freeze(self, reference: Reference, now: float) -> None:
        """Fix the reference and the bins; rebuild the windows from the held-back predictions."""
        d = self.model.drift
        forced = {CONFIDENCE: NUMERIC, PREDICTED_CLASS: CATEGORICAL}
        cols = dict(reference.features)
        cols[CONFIDENCE] = RawColumn.from_numbers(reference.confidence)
        cols[PREDICTED_CLASS] = RawColumn.from_texts(reference.predicted_class)
        self.reference = reference
        self.features = {
            name: build_feature_model(name, cols[name] if name in cols else RawColumn.from_values(None, len(reference)),
                                      d.max_categories, d.methods, forced.get(name))
            for name in self.feature_names
        }
        self.stream = self._make_stream()
        if self._pending:
            rows = _Rows.concat(self._pending, self.feature_names)
            self._pending = []
            self._pending_n = 0
            self._count_wrong_type(rows)
            self.stream.add(rows.ts, self._encode(rows), now)

    def _learned_reference(self, rows: _Rows) -> Reference:
        return Reference(
            features={n: rows.raw[n] for n in self.model.drift.features},
            confidence=rows.confidence.copy(),
            predicted_class=rows.raw[PREDICTED_CLASS].text.copy(),
            origin=LEARNED,
        )

    # -- ingest -------------------------------------------------------------------------------------
    def add_predictions(self, ts: FloatArray, features: Mapping[str, ObjArray], confidence: FloatArray,
                        pred_idx: Int32Array, p_positive: FloatArray, now: float) -> None:
        """A batch of one version's predictions (after dedupe/validation), in arrival order."""
        n = int(ts.size)
        if n == 0:
            self.stream.advance(now)
            return
        names = self.class_names()
        name_arr = np.empty(len(names), dtype=object)
        name_arr[:] = names
        idx: npt.NDArray[np.int64] = np.asarray(pred_idx, dtype=np.int64)
        positive = self.model.positive_class
        pos_idx = names.index(positive) if self.model.task == "binary" and positive in names else -1
        raw = {name: RawColumn.from_values(features.get(name), n) for name in self.model.drift.features}
        raw[CONFIDENCE] = RawColumn.from_numbers(confidence)
        if self.reference is None:  # held back for the reference: the class as its text
            raw[PREDICTED_CLASS] = RawColumn.from_texts(name_arr[idx])
        self._count_arrival(raw)
        rows = _Rows(np.asarray(ts, dtype=np.float64), np.asarray(confidence, dtype=np.float64),
                     np.asarray(p_positive, dtype=np.float64), idx == pos_idx, raw)
        if self.reference is not None:  # the usual batch: the class is binned from its index
            self._count_wrong_type(rows)
            self.stream.add(rows.ts, self._encode(rows, (idx, name_arr)), now)
            return
        need = self.model.drift.reference_size - self._pending_n
        head = rows.take(slice(0, need))
        self._pending.append(head)
        self._pending_n += len(head)
        if self._pending_n < self.model.drift.reference_size:
            self.stream.add(head.ts, head.base_columns(), now)
            return
        self._freeze(self._learned_reference(_Rows.concat(self._pending, self.feature_names)), now)
        rows = rows.take(slice(need, None))
        if len(rows) == 0:
            return
        self._count_wrong_type(rows)
        self.stream.add(rows.ts, self._encode(rows), now)

    def _count_arrival(self, raw: Mapping[str, RawColumn]) -> None:
        """Invalid values whose reason does not depend on the feature's type (configured features
        only: a missing confidence is allowed by the record format and is no feature problem)."""
        for name, col in raw.items():
            if name in BUILTIN_FEATURES:
                continue
            tally = _kind_counts(col)
            for kind, reason in ((MISSING, MISSING_VALUE), (NOT_FINITE, NOT_FINITE_VALUE), (OTHER, WRONG_TYPE)):
                k = tally[kind]
                if k:
                    self.invalid_feature_values[(name, reason)] += k

    def _count_wrong_type(self, rows: _Rows) -> None:
        for name, fm in self.features.items():
            if name not in rows.raw:  # the predicted class given by index: a text, never of a wrong type
                continue
            k = fm.wrong_type(rows.raw[name])
            if k:
                self.invalid_feature_values[(name, WRONG_TYPE)] += k

    def _encode(self, rows: _Rows, classes: tuple[npt.NDArray[np.int64], ObjArray] | None = None,
                ) -> dict[str, npt.NDArray[Any]]:
        """What the window buckets count; ``classes``: the predicted class index of each row and
        the class names, when ``rows`` holds no text column for the predicted class."""
        cols = rows.base_columns()
        for f in self.features.values():
            if f.kind == UNTYPED:
                continue
            if f.name == PREDICTED_CLASS and classes is not None and f.name not in rows.raw:
                cols.update(f.encode_texts_at(*classes))
            else:
                cols.update(f.encode(rows.raw[f.name]))
        return cols

    def add_outcomes(self, correct: BoolArray) -> None:
        """Joined outcomes of this version in arrival order: the detectors' error stream."""
        errors = (~np.asarray(correct, dtype=bool)).astype(np.float64)
        if errors.size:
            for det in self.detectors.values():
                det.update(errors)

    def advance(self, now: float) -> None:
        self.stream.advance(now)
        for name, det in list(self.detectors.items()):
            if det.detections != self._seen_detections[name]:
                self._seen_detections[name] = det.detections
                self._last_change[name] = now
            last = self._last_change[name]
            if det.state == DRIFT and last is not None and now - last >= self._hold:
                self.detectors[name] = _clear_latch(det)

    # -- read ---------------------------------------------------------------------------------------
    def estimates(self, i: int) -> Estimates:
        return merged_estimates([self.stream.total(i)])

    def window_drift(self, i: int) -> list[FeatureDrift]:
        """Every feature's drift statistics in window ``i``."""
        total = self.stream.total(i)  # the window's buckets, summed as events came and went
        t = self.model.drift.thresholds
        nan = math.nan
        out: list[FeatureDrift] = []
        for name in self.feature_names:
            fm = self.features.get(name)
            if fm is None or fm.kind == UNTYPED:
                kind = NUMERIC if name == CONFIDENCE else CATEGORICAL if name == PREDICTED_CLASS else UNTYPED
                method = detection_method(kind, self.model.drift.methods) if kind != UNTYPED else "psi"
                out.append(FeatureDrift(name, kind, 0, nan, nan, nan, nan, nan, method, nan))
                continue
            counts = total.counts[name].copy()
            p = psi(fm.ref_counts, counts)
            js = js_distance(fm.ref_counts, counts)
            ks_d = ks_p = chi_p = nan
            if fm.kind == NUMERIC:
                slot_counts = total.slots[name].counts.astype(np.int64)
                left, right = fm.window_ranks(slot_counts)
                ks_d, ks_p = ks_from_ranks(fm.ref_sorted, fm.ref_left, fm.ref_right, left, right,
                                           int(slot_counts.sum()))
            else:
                chi_p = chi2_p_value(fm.ref_counts, counts)
            stat, crossed = {
                "psi": (p, p > t.psi),
                "ks": (ks_d, ks_d > t.ks),
                "js": (js, js > t.js),
                "chi2": (chi_p, chi_p < t.chi2_p_value),
            }[fm.method]
            detected = nan if math.isnan(stat) else (1.0 if crossed else 0.0)
            out.append(FeatureDrift(name, fm.kind, int(counts.sum()), p, js, ks_d, ks_p, chi_p, fm.method, detected))
        return out

    def report(self) -> DriftReport:
        """This version's drift, estimates and change detection, for the cycle's Report."""
        return DriftReport(
            reference_samples=self.reference_samples,
            windows=tuple(WindowDrift(w.name, self.estimates(i), tuple(self.window_drift(i)))
                          for i, w in enumerate(self.windows)),
            change_detectors=tuple(ChangeDetectorValues(name, det.detections, det.state)
                                   for name, det in self.detectors.items()),
            invalid_feature_values=tuple(InvalidFeatureValues(feature, reason, n)
                                         for (feature, reason), n in sorted(self.invalid_feature_values.items())),
        )

    # -- checkpoint ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Checkpoint: str/int/float/list/dict and numpy arrays only."""
        out: dict[str, Any] = {
            "version": _STATE_VERSION,
            "windows": self.stream.state(),
            "fingerprints": {f.name: f.fingerprint() for f in self.features.values() if f.kind != UNTYPED},
            "detectors": {name: det.to_dict() for name, det in self.detectors.items()},
            "last_change": {name: (-1.0 if t is None else t) for name, t in self._last_change.items()},
            "invalid_feature_values": [[f, r, n] for (f, r), n in sorted(self.invalid_feature_values.items())],
        }
        if self.reference is not None and self.file_reference is None:
            out["reference"] = self.reference.state()  # a learned one: frozen across restarts
        if self._pending:
            out["pending"] = _Rows.concat(self._pending, self.feature_names).state()
        return out

    def restore(self, state: dict[str, Any], now: float) -> None:
        """Reinstate ``state()`` output; the config may have changed (features, reference file).

        A learned reference is reinstated unless the model now has a reference file (the file
        wins). A feature's window counts are kept when its reference (type, categories, values)
        is unchanged, else they restart empty.
        """
        if int(state.get("version", 0)) != _STATE_VERSION:
            return
        self.invalid_feature_values = Counter(
            {(str(f), str(r)): int(n) for f, r, n in state.get("invalid_feature_values", [])})
        self._pending = []
        self._pending_n = 0
        if self.file_reference is None:
            self.reference = None
            self.features = {}
            pending = state.get("pending")
            if pending is not None:
                rows = _Rows.from_state(pending, self.feature_names)
                self._pending = [rows]
                self._pending_n = len(rows)
            ref_state = state.get("reference")
            if ref_state is not None:
                self._freeze(Reference.from_state(ref_state), now)
            elif self._pending_n >= self.model.drift.reference_size:  # reference_size was lowered
                rows = _Rows.concat(self._pending, self.feature_names)
                self._pending = [rows.take(slice(0, self.model.drift.reference_size))]
                self._freeze(self._learned_reference(self._pending[0]), now)
        self.stream = self._make_stream()
        prints = state.get("fingerprints", {})
        stale = {f.name for f in self.features.values() if list(prints.get(f.name, [])) != f.fingerprint()}
        windows = [{**w, "fields": {k: v for k, v in dict(w["fields"]).items()
                                    if k.partition(":")[2] not in stale or ":" not in k}}
                   for w in state["windows"]]
        self.stream.restore(windows, now)
        for name, data in state.get("detectors", {}).items():
            if name in self.detectors:
                self.detectors[name] = detector_from_dict(data)
                self._seen_detections[name] = self.detectors[name].detections
        for name, t in state.get("last_change", {}).items():
            if name in self._last_change:
                self._last_change[name] = None if t < 0 else float(t)
