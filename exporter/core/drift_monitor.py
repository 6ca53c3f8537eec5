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

Binning. Numeric: the inner cut points of 10 equal-frequency bins of the reference
(``stats.drift.quantile_edges``; right-closed bins, duplicate cut points collapse). Categorical:
the ``drift.max_categories`` most frequent reference categories (ties by name), every other
value -- in the reference or in a window -- falls into ``__other__``. PSI (shares floored at 1e-4)
and the JS distance (base 2) compare these bin counts; KS compares the raw numeric values
(statistic exactly ``scipy.stats.ks_2samp(method="asymp")``'s, evaluated at the reference values
only -- see ``ks_against_reference`` -- and p-value its asymptotic one); the chi-square
p-value (``scipy.stats.chi2_contingency`` on the 2 x k table, categories empty on both sides
dropped) is computed for categorical features only, KS for numeric ones only.

``mlmon_data_drift_detected`` uses the first method of ``drift.methods`` that applies to the
feature's type (numeric: psi, ks, js; categorical: psi, js, chi2), else PSI; it is 1 when
PSI > ``thresholds.psi``, KS statistic > ``thresholds.ks``, JS distance > ``thresholds.js`` or
chi-square p-value < ``thresholds.chi2_p_value``, 0 otherwise, NaN while the statistic is (no
reference yet, or no valid value in the window). It has no sample-count guard of its own: the
shipped alert guards with ``mlmon_window_predictions``.

Windows. One ``BucketedStream`` per version (``exporter.core.windows``) whose time buckets hold only
order-independent sufficient statistics: integer bin counts for PSI, JS and chi-square, fixed-point
estimation sums, and for each numeric feature the counts of values below and at each distinct
reference value (``DriftBucket.slots``), from which the KS statistic is exact. A bucket of a
numeric feature with ``m`` distinct reference values costs ``2m + 1`` counts (two bytes each
until one passes 65,535), whatever the traffic. While a learned reference is incomplete the
stream carries only the estimation sums; when it completes, the stream is rebuilt from the held-back
reference rows (which are all the version's predictions so far) with the now-known bins. A
checkpoint keeps the buckets; a feature whose reference (type, categories, values) changed
meanwhile restarts empty, as its counts would mean other bins.

Change detection: ``exporter.stats.change`` detectors with river's default parameters --
Page-Hinkley ``min_instances=30, delta=0.005, threshold=50, alpha=1-1e-4``, mode ``up`` (an
increase of the error rate); DDM ``warm_start=30, warning_threshold=2, drift_threshold=3``. Fed the
outcomes in arrival order (1 = wrong). ``mlmon_change_detector_state`` is 0 stable, 1 warning
(DDM only), 2 drift; the drift state holds for the shortest configured window after the last
change point and then returns to the detector's live state (the statistics are not reset by that,
they already restarted at the change point).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.config import ModelConfig, Window
from exporter.core.reference import (
    BOOL,
    LEARNED,
    MISSING,
    NOT_FINITE,
    NUMBER,
    OTHER,
    STRING,
    RawColumn,
    Reference,
)
from exporter.core.windows import FIXED_POINT_SCALE, BucketedStream, Columns, WideningCounts, to_fixed_point
from exporter.foundation.arrays import BoolArray, FloatArray, Int32Array, IntArray, ObjArray
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
from exporter.stats.drift import bin_counts, chi2_p_value, js_distance, kstwo_sf, psi, quantile_edges

OTHER_CATEGORY = "__other__"
PSI_BINS = 10
CONFIDENCE = "confidence"
PREDICTED_CLASS = "predicted_class"
BUILTIN_FEATURES = (CONFIDENCE, PREDICTED_CLASS)
METHODS = {NUMERIC: ("psi", "ks", "js"), CATEGORICAL: ("psi", "js", "chi2")}

# invalid feature value reasons
MISSING_VALUE = "missing"
NOT_FINITE_VALUE = "not_finite"
WRONG_TYPE = "wrong_type"

_STATE_VERSION = 2


def ks_against_reference(ref_sorted: FloatArray, cur_sorted: FloatArray) -> tuple[float, float]:
    """``stats.drift.ks_2samp_sorted`` (bit for bit), in O(n_ref log n_cur) instead of O(n_cur log n_cur).

    scipy's statistic is the extreme of ``F_ref - F_cur`` over the pooled sample. Between two
    consecutive reference values ``F_ref`` is constant and ``F_cur`` non-decreasing, so the
    extremes are reached at a reference value or at the pooled point just below one, where the
    two ECDFs equal their left limits there; both are evaluated with the same integer counts and
    divisions as scipy's, so the same floats come out. Both inputs must be ascending and free of NaN.
    """
    return ks_from_ranks(
        ref_sorted, np.searchsorted(ref_sorted, ref_sorted, side="left"),
        np.searchsorted(ref_sorted, ref_sorted, side="right"),
        np.searchsorted(cur_sorted, ref_sorted, side="left"), np.searchsorted(cur_sorted, ref_sorted, side="right"),
        int(cur_sorted.size))


def ks_from_ranks(ref_sorted: FloatArray, ref_left: IntArray, ref_right: IntArray, cur_left: IntArray,
                  cur_right: IntArray, n_cur: int) -> tuple[float, float]:
    """The KS statistic and p-value from both samples' counts below / at-or-below each reference value.

    A window keeps its counts at the reference values (``DriftBucket.slots``), so reading them
    costs the same for a thousand predictions as for a million.
    """
    n1 = int(ref_sorted.size)
    n2 = n_cur
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan)
    at = ref_right / n1 - cur_right / n2
    below = ref_left / n1 - cur_left / n2
    # a "below" value without any pooled point below is 0 - 0: harmless, as D >= 0 anyway
    min_s = min(max(-min(float(at.min()), float(below.min())), 0.0), 1.0)
    max_s = max(float(at.max()), float(below.max()))
    d = min_s if min_s > max_s else max_s
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return (d, kstwo_sf(d, round(m * n / (m + n))))


_GUIDE_MIN = 64  # below this many distinct reference values (or batch values) a binary search is as cheap
_GUIDE_MAX = 8  # most distinct reference values in one cell before the guide is not worth it


def _column(name: str) -> str:
    return f"f:{name}"


def _bin_column(name: str) -> str:
    return f"b:{name}"


@dataclass(frozen=True)
class FeatureModel:
    """A feature's type and reference distribution, fixed when the reference is."""

    name: str
    kind: str  # numeric | categorical | unknown
    valid_kind: int  # the raw value kind that counts (NUMBER, STRING or BOOL); MISSING if untyped
    edges: FloatArray  # numeric: inner bin cut points
    ref_sorted: FloatArray  # numeric: reference values, ascending
    categories: tuple[str, ...]  # categorical: named categories; code len(categories) is __other__
    ref_counts: IntArray  # reference count per bin / category (__other__ last)
    method: str  # the detection method for this feature

    @functools.cached_property
    def ref_left(self) -> IntArray:
        return np.searchsorted(self.ref_sorted, self.ref_sorted, side="left")

    @functools.cached_property
    def _unique(self) -> tuple[FloatArray, IntArray]:
        uniq, inv = np.unique(self.ref_sorted, return_inverse=True)
        return uniq, inv.astype(np.int64)

    @property
    def n_slots(self) -> int:
        """Slots of a numeric window count: below each distinct reference value, at it, and above all."""
        return 2 * int(self._unique[0].size) + 1

    @functools.cached_property
    def _guide(self) -> tuple[float, float, IntArray, int] | None:
        """A cell table over the distinct reference values, so that ``slots`` finds a value's
        position with a few vector steps instead of a binary search per value (measured the
        largest single cost of a feature batch). None where it would not pay: few distinct
        values, or values so clustered that a cell holds more than ``_GUIDE_MAX`` of them.

        ``cell(x)`` is monotone in ``x`` (a subtraction, a product by a positive number, a clip and
        a truncation, each monotone under rounding), so every distinct value in a lower cell is
        below ``x`` and every one in a higher cell above it: ``guide[c]`` (the distinct values in
        cells below ``c``) is where the search for a value of cell ``c`` starts, exactly."""
        uniq = self._unique[0]
        if uniq.size < _GUIDE_MIN:
            return None
        lo, span = float(uniq[0]), float(uniq[-1]) - float(uniq[0])
        cells = 2 * int(uniq.size)
        if not (math.isfinite(span) and span > 0.0) or not math.isfinite(cells / span):
            return None
        scale = cells / span
        guide = np.searchsorted(self._cells(uniq, lo, scale, cells), np.arange(cells + 1), side="left")
        steps = int(np.diff(guide).max())
        return (lo, scale, guide, steps) if steps <= _GUIDE_MAX else None

    @staticmethod
    def _cells(values: FloatArray, lo: float, scale: float, cells: int) -> IntArray:
        with np.errstate(over="ignore"):  # a huge value overflows to inf, which the clip puts in the last cell
            out: IntArray = np.clip((values - lo) * scale, 0.0, float(cells - 1)).astype(np.int64)
        return out

    def _left(self, values: FloatArray) -> IntArray:
        """``np.searchsorted(distinct reference values, values, side="left")``, exactly."""
        uniq = self._unique[0]
        guide = self._guide
        if guide is None or values.size < _GUIDE_MIN:
            out: IntArray = np.searchsorted(uniq, values, side="left")
            return out
        lo, scale, table, steps = guide
        c = self._cells(values, lo, scale, int(table.size) - 1)
        b, end = table[c], table[c + 1]
        last = uniq.size - 1
        for _ in range(steps):  # step over the distinct values of the value's own cell that lie below it
            more = (b < end) & (uniq[np.minimum(b, last)] < values)
            if not more.any():
                break
            b = b + more
        return b

    @functools.cached_property
    def _bin_of_slot(self) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """The PSI bin of every slot, and the slots whose values can fall in different bins.

        A value at a distinct reference value has that value's bin. A value strictly between two
        adjacent distinct values has one bin unless a bin edge lies strictly between them too:
        those few slots (at most one per edge) are searched value by value in ``encode``."""
        uniq, edges = self._unique[0], self.edges
        lower = np.concatenate(([-np.inf], uniq))  # the open interval of slot 2j is (lower[j], upper[j])
        upper = np.concatenate((uniq, [np.inf]))
        below = np.searchsorted(edges, lower, side="right")
        lut = np.empty(2 * uniq.size + 1, dtype=np.int64)
        lut[0::2] = below
        lut[1::2] = np.searchsorted(edges, uniq, side="left")
        split = np.zeros(lut.size, dtype=np.bool_)
        split[0::2] = np.searchsorted(edges, upper, side="left") > below
        return lut, split

    def psi_bins(self, values: FloatArray, slots: IntArray) -> IntArray:
        """``np.searchsorted(edges, values, side="left")`` (right-closed bins), from the values' slots."""
        lut, split = self._bin_of_slot
        out: IntArray = lut[slots]
        odd = split[slots]
        if odd.any():
            out[odd] = np.searchsorted(self.edges, values[odd], side="left")
        return out

    def slots(self, values: FloatArray) -> IntArray:
        """Slot of each value: ``2j`` below the j-th distinct reference value, ``2j + 1`` at it."""
        uniq = self._unique[0]
        b = self._left(values)
        eq = b < uniq.size
        eq[eq] = uniq[b[eq]] == values[eq]
        out: IntArray = 2 * b + eq
        return out

    def window_ranks(self, slot_counts: IntArray) -> tuple[IntArray, IntArray]:
        """Window values below / at-or-below each reference value, from the merged slot counts."""
        cum = np.cumsum(slot_counts)
        inv = self._unique[1]
        return cum[0:-1:2][inv], cum[1::2][inv]

    @functools.cached_property
    def ref_right(self) -> IntArray:
        return np.searchsorted(self.ref_sorted, self.ref_sorted, side="right")

    @property
    def n_bins(self) -> int:
        return int(self.ref_counts.size)

    @property
    def dtype(self) -> npt.DTypeLike:
        return np.float64 if self.kind == NUMERIC else np.int32

    def fingerprint(self) -> list[str]:
        """What the window counts' meaning depends on (restored counts are kept only if equal)."""
        digest = hashlib.sha256(self.ref_sorted.tobytes() + self.edges.tobytes()).hexdigest()[:16]
        return [self.kind, str(self.valid_kind), digest, *self.categories]

    def encode(self, col: RawColumn) -> dict[str, npt.NDArray[Any]]:
        """What a window bucket counts, computed once per batch for every window (-1 unless valid).

        Numeric: the slot among the distinct reference values (``slots``) and the PSI bin
        (right-closed, as ``stats.drift.bin_counts``). Categorical: the category code.
        """
        valid = col.kind == self.valid_kind
        if self.kind == NUMERIC:
            v = col.number[valid]
            slot = np.full(len(col), -1, dtype=np.int64)
            slot[valid] = at = self.slots(v)
            psi_bin = np.full(len(col), -1, dtype=np.int64)
            psi_bin[valid] = self.psi_bins(v, at)
            return {_column(self.name): slot, _bin_column(self.name): psi_bin}
        codes = np.full(len(col), -1, dtype=np.int64)
        if self.kind == CATEGORICAL and valid.any():
            index = {c: i for i, c in enumerate(self.categories)}
            other = len(self.categories)
            uniq, inverse = np.unique(col.text[valid].astype(str), return_inverse=True)
            lut = np.fromiter((index.get(u, other) for u in uniq.tolist()), dtype=np.int64, count=uniq.size)
            codes[valid] = lut[inverse]
        return {_column(self.name): codes}

    def wrong_type(self, col: RawColumn) -> int:
        """Values of a valid kind other than this feature's (type-dependent invalid values)."""
        if self.kind == UNTYPED:
            return 0
        k = col.kind
        return int(np.count_nonzero(((k == NUMBER) | (k == STRING) | (k == BOOL)) & (k != self.valid_kind)))


def build_feature_model(name: str, col: RawColumn, max_categories: int, methods: Sequence[str],
                        forced: str | None = None) -> FeatureModel:
    """Type a feature from its reference values and fix its bins."""
    counts = {kind: int(np.count_nonzero(col.kind == kind)) for kind in (NUMBER, STRING, BOOL)}
    if forced == NUMERIC:
        valid_kind = NUMBER
    elif forced == CATEGORICAL:
        valid_kind = STRING
    else:
        best = max(counts.values())
        valid_kind = next(k for k in (NUMBER, STRING, BOOL) if counts[k] == best) if best else MISSING
    kind = UNTYPED if valid_kind == MISSING else (NUMERIC if valid_kind == NUMBER else CATEGORICAL)
    empty = np.empty(0, dtype=np.float64)
    if kind == NUMERIC:
        ref = np.sort(col.number[col.kind == NUMBER])
        edges = quantile_edges(ref, PSI_BINS)
        return FeatureModel(name, kind, valid_kind, edges, ref, (), bin_counts(ref, edges),
                            _method(kind, methods))
    if kind == CATEGORICAL:
        tally = Counter(col.text[col.kind == valid_kind].astype(str).tolist())
        ranked = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))
        named = ranked[:max_categories]
        rest = sum(n for _, n in ranked[max_categories:])
        ref_counts = np.array([n for _, n in named] + [rest], dtype=np.int64)
        return FeatureModel(name, kind, valid_kind, empty, empty, tuple(c for c, _ in named), ref_counts,
                            _method(kind, methods))
    return FeatureModel(name, kind, MISSING, empty, empty, (), np.zeros(1, dtype=np.int64), "psi")


def _method(kind: str, methods: Sequence[str]) -> str:
    return next((m for m in methods if m in METHODS[kind]), "psi")


_SUMS = ("n", "conf_n", "conf_fixed", "pos_n", "tp_fixed", "fn_fixed")


class DriftBucket:
    """What one time bucket holds: bin counts, slot counts of numeric values, estimation sums."""

    __slots__ = ("conf_fixed", "conf_n", "counts", "features", "fn_fixed", "n", "pos_n", "slots", "tp_fixed")

    def __init__(self, features: Sequence[FeatureModel]) -> None:
        self.features = tuple(f for f in features if f.kind != UNTYPED)
        self.n = 0
        self.conf_n = 0
        self.conf_fixed = 0
        self.pos_n = 0  # predicted positive with a known p_positive
        self.tp_fixed = 0  # sum p_positive over predicted positive
        self.fn_fixed = 0  # sum p_positive over predicted negative
        self.counts = {f.name: np.zeros(f.n_bins, dtype=np.int64) for f in self.features}
        # numeric values are only ever read through the KS statistic: counts at the reference points
        self.slots = {f.name: WideningCounts(f.n_slots) for f in self.features if f.kind == NUMERIC}

    def add(self, cols: Columns) -> None:
        conf = cols["confidence"]
        self.n += int(conf.size)
        known = ~np.isnan(conf)
        self.conf_n += int(np.count_nonzero(known))
        self.conf_fixed += int(to_fixed_point(conf[known]).sum())
        p = cols["p_pos"]
        has_p = ~np.isnan(p)
        if has_p.any():
            pos = cols["pred_pos"].astype(bool)
            q = to_fixed_point(np.where(has_p, p, 0.0))
            self.pos_n += int(np.count_nonzero(has_p & pos))
            self.tp_fixed += int(q[has_p & pos].sum())
            self.fn_fixed += int(q[has_p & ~pos].sum())
        for f in self.features:
            col = cols[_column(f.name)]
            col = col[col >= 0]
            if f.kind == NUMERIC:
                b = cols[_bin_column(f.name)]
                self.counts[f.name] += np.bincount(b[b >= 0], minlength=f.n_bins)
                self.slots[f.name].add(np.bincount(col, minlength=f.n_slots))
            else:
                self.counts[f.name] += np.bincount(col, minlength=f.n_bins)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        out: dict[str, npt.NDArray[Any]] = {
            name: np.array(getattr(self, name), dtype=np.int64) for name in _SUMS}
        out.update({f"counts:{k}": v for k, v in self.counts.items()})
        out.update({f"slots:{k}": v.counts for k, v in self.slots.items()})
        return out

    def absorb(self, other: DriftBucket, sign: int) -> None:
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))
        for k, v in self.counts.items():
            v += sign * other.counts[k]
        for k, w in self.slots.items():
            w.add(sign * other.slots[k].counts.astype(np.int64))

    def load(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        for name in _SUMS:
            setattr(self, name, int(arrays[name]))
        for k, v in self.counts.items():
            saved = arrays.get(f"counts:{k}")
            if saved is not None and saved.shape == v.shape:
                v[:] = saved
        for k, w in self.slots.items():
            saved = arrays.get(f"slots:{k}")
            if saved is not None and saved.shape == w.counts.shape:
                w.add(np.asarray(saved, dtype=np.int64))


def merged_estimates(buckets: Sequence[DriftBucket]) -> Estimates:
    """CBPE estimates of the window made of ``buckets``."""
    n = sum(b.n for b in buckets)
    conf_n = sum(b.conf_n for b in buckets)
    pos_n = sum(b.pos_n for b in buckets)
    accuracy = sum(b.conf_fixed for b in buckets) / FIXED_POINT_SCALE / conf_n if conf_n else math.nan
    tp = sum(b.tp_fixed for b in buckets) / FIXED_POINT_SCALE
    fp = pos_n - tp
    fn = sum(b.fn_fixed for b in buckets) / FIXED_POINT_SCALE
    precision = tp / pos_n if pos_n else math.nan
    recall = tp / (tp + fn) if tp + fn > 0 else math.nan
    f1_den = 2 * tp + fp + fn
    f1 = 2 * tp / f1_den if f1_den > 0 else math.nan
    return Estimates(n, accuracy, precision, recall, f1)


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
        pred_idx = np.asarray(pred_idx, dtype=np.int64)
        positive = self.model.positive_class
        pos_idx = names.index(positive) if self.model.task == "binary" and positive in names else -1
        raw = {name: RawColumn.from_values(features.get(name), n) for name in self.model.drift.features}
        raw[CONFIDENCE] = RawColumn.from_numbers(confidence)
        raw[PREDICTED_CLASS] = RawColumn.from_texts(name_arr[pred_idx])
        self._count_arrival(raw)
        rows = _Rows(np.asarray(ts, dtype=np.float64), np.asarray(confidence, dtype=np.float64),
                     np.asarray(p_positive, dtype=np.float64), pred_idx == pos_idx, raw)
        if self.reference is None:
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
            for kind, reason in ((MISSING, MISSING_VALUE), (NOT_FINITE, NOT_FINITE_VALUE), (OTHER, WRONG_TYPE)):
                k = int(np.count_nonzero(col.kind == kind))
                if k:
                    self.invalid_feature_values[(name, reason)] += k

    def _count_wrong_type(self, rows: _Rows) -> None:
        for name, fm in self.features.items():
            k = fm.wrong_type(rows.raw[name])
            if k:
                self.invalid_feature_values[(name, WRONG_TYPE)] += k

    def _encode(self, rows: _Rows) -> dict[str, npt.NDArray[Any]]:
        cols = rows.base_columns()
        for f in self.features.values():
            if f.kind != UNTYPED:
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
                method = _method(kind, self.model.drift.methods) if kind != UNTYPED else "psi"
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
