"""How one feature of a model version is binned and compared with its reference, and what a
window bucket of the version's drift stream holds (``exporter.core.drift_monitor`` uses both).

Binning. Numeric: the inner cut points of 10 equal-frequency bins of the reference
(``stats.drift.quantile_edges``; right-closed bins, duplicate cut points collapse). Categorical:
the ``drift.max_categories`` most frequent reference categories (ties by name), every other
value -- in the reference or in a window -- falls into ``__other__``. PSI (shares floored at 1e-4)
and the JS distance (base 2) compare these bin counts; KS compares the raw numeric values
(statistic exactly ``scipy.stats.ks_2samp(method="asymp")``'s, evaluated at the reference values
only -- see ``ks_against_reference`` -- and p-value its asymptotic one); the chi-square
p-value (``scipy.stats.chi2_contingency`` on the 2 x k table, categories empty on both sides
dropped) is computed for categorical features only, KS for numeric ones only.

Windows. One ``BucketedStream`` per version (``exporter.core.windows``) whose time buckets hold only
order-independent sufficient statistics: integer bin counts for PSI, JS and chi-square, fixed-point
estimation sums, and for each numeric feature the counts of values below and at each distinct
reference value (``DriftBucket.slots``), from which the KS statistic is exact. A bucket of a
numeric feature with ``m`` distinct reference values costs ``2m + 1`` counts (two bytes each
until one passes 65,535), whatever the traffic.

A numeric value's slot and PSI bin come from the compiled kernels (``_kernels.c``: one binary
search per value, started from the guide cell) where setup.py built them; the numpy code below
(the guide steps and the per-slot bin table) is the fallback and the reference the tests check
them against.

About 470 lines, over the house's 400: a bucket's counts only mean something with the bins that
made them, so the binning and the bucket stay side by side.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.core.reference import BOOL, MISSING, NUMBER, STRING, RawColumn
from exporter.core.windows import FIXED_POINT_SCALE, Columns, WideningCounts, to_fixed_point
from exporter.foundation.arrays import FloatArray, IntArray, ObjArray
from exporter.ingest.batch_ops import factorize
from exporter.report.model import CATEGORICAL, NUMERIC, UNTYPED, Estimates
from exporter.stats.drift import bin_counts, kstwo_sf, quantile_edges

try:
    from exporter.core import _kernels  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the numpy code below does the work
    _kernels = None

OTHER_CATEGORY = "__other__"
PSI_BINS = 10
METHODS = {NUMERIC: ("psi", "ks", "js"), CATEGORICAL: ("psi", "js", "chi2")}


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
# most distinct reference values in one cell before the guide is not worth it (stepping touches only
# the values still stepping, so a few crowded cells cost little: a normal sample's densest cell holds 6-9)
_GUIDE_MAX = 32


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
        # int32 (positions among the distinct values): a smaller table stays in cache while a batch is looked up
        return (lo, scale, guide.astype(np.int32), steps) if steps <= _GUIDE_MAX else None

    @staticmethod
    def _cells(values: FloatArray, lo: float, scale: float, cells: int) -> IntArray:
        with np.errstate(over="ignore"):  # a huge value overflows to inf, which the clip puts in the last cell
            t = values - lo
            t *= scale  # in place: the same operations, one temporary
            np.clip(t, 0.0, float(cells - 1), out=t)
            out: IntArray = t.astype(np.int64)
        return out

    def _left(self, values: FloatArray) -> IntArray:
        """``np.searchsorted(distinct reference values, values, side="left")``, exactly."""
        uniq = self._unique[0]
        guide = self._guide
        if guide is None or values.size < _GUIDE_MIN:
            out: IntArray = np.searchsorted(uniq, values, side="left")
            return out
        lo, scale, table, _ = guide
        first, crowded = self._cell_heads
        c = self._cells(values, lo, scale, int(table.size) - 1)
        # step over the distinct values of the value's own cell that lie below it: the first of
        # them for every value at once, the others only for the values of crowded cells still stepping
        more = first[c] < values
        b = table[c]
        b += more
        act = np.flatnonzero(more & crowded[c])
        while act.size:
            end = table[c[act] + 1]
            act = act[b[act] < end]
            act = act[uniq[b[act]] < values[act]]
            b[act] += 1
        return b

    @functools.cached_property
    def _cell_heads(self) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """Per guide cell: its first distinct reference value (+inf for an empty cell, which no
        value passes), and whether it holds more than one."""
        guide = self._guide
        assert guide is not None
        table = guide[2]
        count = np.diff(table)
        first = np.append(self._unique[0], np.inf)[table[:-1]]
        first[count == 0] = np.inf
        return first, count > 1

    @functools.cached_property
    def _bin_of_slot(self) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.bool_]]:
        """The PSI bin of every slot, and the slots whose values can fall in different bins.

        A value at a distinct reference value has that value's bin. A value strictly between two
        adjacent distinct values has one bin unless a bin edge lies strictly between them too:
        those few slots (at most one per edge) are searched value by value in ``encode``."""
        uniq, edges = self._unique[0], self.edges
        lower = np.concatenate(([-np.inf], uniq))  # the open interval of slot 2j is (lower[j], upper[j])
        upper = np.concatenate((uniq, [np.inf]))
        below = np.searchsorted(edges, lower, side="right")
        lut = np.empty(2 * uniq.size + 1, dtype=np.int8)  # at most PSI_BINS bins: a table that stays in cache
        lut[0::2] = below
        lut[1::2] = np.searchsorted(edges, uniq, side="left")
        split = np.zeros(lut.size, dtype=np.bool_)
        split[0::2] = np.searchsorted(edges, upper, side="left") > below
        return lut, split

    @functools.cached_property
    def _kernel_args(self) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int8], npt.NDArray[np.bool_],
                                    tuple[float, float, npt.NDArray[np.int32], int] | None]:
        """The distinct reference values (and a NaN after them), the edges, the bin of each slot
        and the split slots, and the guide (lo, scale, table, most values in a cell), as
        ``_kernels.slots_bins`` reads them."""
        guide = self._guide
        lut, split = self._bin_of_slot
        return (np.ascontiguousarray(self._unique_padded, dtype=np.float64),
                np.ascontiguousarray(self.edges, dtype=np.float64),
                np.ascontiguousarray(lut, dtype=np.int8), np.ascontiguousarray(split, dtype=np.bool_),
                None if guide is None else (guide[0], guide[1], np.ascontiguousarray(guide[2], dtype=np.int32),
                                            guide[3]))

    def _slots_bins_compiled(self, values: FloatArray, want_bins: bool,
                             slots: IntArray | None = None) -> tuple[IntArray, npt.NDArray[np.int8]]:
        """``slots`` (unless given) and, if wanted, ``psi_bins`` in one C pass over the values (an
        unwanted one comes back empty)."""
        values = np.ascontiguousarray(values, dtype=np.float64)
        given = slots is not None
        slot = np.ascontiguousarray(slots, dtype=np.int64) if given else np.empty(values.size, dtype=np.int64)
        psi_bin = np.empty(values.size if want_bins else 0, dtype=np.int8)
        uniq, edges, lut, split, guide = self._kernel_args
        _kernels.slots_bins(uniq, edges, lut, split, guide, values, slot, psi_bin if want_bins else None, given)
        return slot, psi_bin

    def _slots_and_bins(self, values: FloatArray) -> tuple[IntArray, npt.NDArray[np.integer[Any]]]:
        """``slots`` and ``psi_bins`` of the values: one C pass where the kernels are built."""
        if _kernels is not None:
            return self._slots_bins_compiled(values, True)
        slot = self.slots(values)
        return slot, self.psi_bins(values, slot)

    def psi_bins(self, values: FloatArray, slots: IntArray) -> npt.NDArray[np.integer[Any]]:
        """``np.searchsorted(edges, values, side="left")`` (right-closed bins), from the values' slots
        (as int8: there are at most ``PSI_BINS``)."""
        if _kernels is not None:
            return self._slots_bins_compiled(values, True, slots)[1]
        lut, split = self._bin_of_slot
        out: npt.NDArray[np.integer[Any]] = lut[slots]
        odd = split[slots]
        if odd.any():
            out[odd] = np.searchsorted(self.edges, values[odd], side="left")
        return out

    def slots(self, values: FloatArray) -> IntArray:
        """Slot of each value: ``2j`` below the j-th distinct reference value, ``2j + 1`` at it."""
        if _kernels is not None:
            return self._slots_bins_compiled(values, False)[0]
        b = self._left(values)
        eq = self._unique_padded[b] == values
        b *= 2  # in place: ``b`` is this call's own array
        b += eq
        return b

    @functools.cached_property
    def _unique_padded(self) -> FloatArray:
        """The distinct reference values and a NaN after them, which no value equals (a value
        above them all has position ``size``)."""
        return np.append(self._unique[0], np.nan)

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
            if bool(valid.all()):  # the usual column: no value to leave out
                slot, bins = self._slots_and_bins(col.number)
                return {_column(self.name): slot, _bin_column(self.name): bins}
            slot = np.full(len(col), -1, dtype=np.int64)
            psi_bin = np.full(len(col), -1, dtype=np.int64)
            slot[valid], psi_bin[valid] = self._slots_and_bins(col.number[valid])
            return {_column(self.name): slot, _bin_column(self.name): psi_bin}
        codes = np.full(len(col), -1, dtype=np.int64)
        if self.kind == CATEGORICAL and valid.any():
            index = {c: i for i, c in enumerate(self.categories)}
            other = len(self.categories)
            # hashed per distinct value (pandas' C table), each looked up once as the text numpy makes of it
            inverse, uniq = factorize(col.text if bool(valid.all()) else col.text[valid])
            texts = uniq.astype(str).tolist()
            lut = np.fromiter((index.get(u, other) for u in texts), dtype=np.int64, count=len(texts))
            codes[valid] = lut[inverse]
        return {_column(self.name): codes}

    def encode_texts_at(self, idx: npt.NDArray[np.int64], texts: ObjArray) -> dict[str, npt.NDArray[Any]]:
        """``encode`` of the text column ``texts[idx]`` (a categorical feature, every value a
        string: the predicted class from its index), looking up each distinct text once."""
        index = {c: i for i, c in enumerate(self.categories)}
        other = len(self.categories)
        names = texts.astype(str).tolist()  # the text ``encode`` looks up for each value
        lut = np.fromiter((index.get(u, other) for u in names), dtype=np.int64, count=len(names))
        return {_column(self.name): lut[idx]}

    def wrong_type(self, col: RawColumn) -> int:
        """Values of a valid kind other than this feature's (type-dependent invalid values)."""
        if self.kind == UNTYPED:
            return 0
        tally = np.bincount(col.kind, minlength=max(NUMBER, STRING, BOOL) + 1)  # one pass over the kinds
        return sum(int(tally[k]) for k in (NUMBER, STRING, BOOL) if k != self.valid_kind)


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
                            detection_method(kind, methods))
    if kind == CATEGORICAL:
        tally = Counter(col.text[col.kind == valid_kind].astype(str).tolist())
        ranked = sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))
        named = ranked[:max_categories]
        rest = sum(n for _, n in ranked[max_categories:])
        ref_counts = np.array([n for _, n in named] + [rest], dtype=np.int64)
        return FeatureModel(name, kind, valid_kind, empty, empty, tuple(c for c, _ in named), ref_counts,
                            detection_method(kind, methods))
    return FeatureModel(name, kind, MISSING, empty, empty, (), np.zeros(1, dtype=np.int64), "psi")


def detection_method(kind: str, methods: Sequence[str]) -> str:
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
            # codes are -1 where the value is not valid: counted one place up, and the -1 place cut off
            col = cols[_column(f.name)]
            if f.kind == NUMERIC:
                self.counts[f.name] += np.bincount(cols[_bin_column(f.name)] + 1, minlength=f.n_bins + 1)[1:]
                inc = np.bincount(col + 1, minlength=f.n_slots + 1)[1:]
                self.slots[f.name].add(inc, int(inc.max()) if inc.size else 0)
            else:
                self.counts[f.name] += np.bincount(col + 1, minlength=f.n_bins + 1)[1:]

    def merge(self, other: DriftBucket) -> None:
        """Add another bucket's statistics (``absorb(other, 1)``, with the slot counts added in place)."""
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for k, v in self.counts.items():
            v += other.counts[k]
        for k, w in self.slots.items():
            o = other.slots[k]
            w.add(o.counts, o._top)

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
