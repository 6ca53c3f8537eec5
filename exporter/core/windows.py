"""Sliding time windows that hold bucketed statistics, never events (DESIGN §2 "Windows").

A window of length ``L`` is cut into ``B`` buckets of width ``r = L / B`` aligned to the Unix
epoch: bucket ``k`` covers ``[k·r, (k+1)·r)``, so two replicas, or a process before and after a
restart, put every event in the same bucket. At time ``now`` the window holds the buckets
``floor(now / r) - B + 1 .. floor(now / r)`` -- exactly the buckets whose index is greater than
``floor((now - L) / r)`` -- so between ``L - r`` and ``L`` of history, and a bucket leaves
on the clock at its boundary, also when nothing arrives. An event stamped in the future counts
as ``now``; one older than the window is simply not in it.

A bucket is the sufficient statistic of its events (counts, fixed-point sums, min, max, bin
counts); what a window reports is the merge of its live buckets. Memory is therefore bounded by
``B`` buckets per window whatever the traffic, and a bucket costs the same for one event as for a
million. Buckets exist only once an event lands in them, so an idle version holds nothing.

Sums of values in [0, 1] are kept in fixed point (``to_fixed_point``: integers of 2**-32), so a
merge is exact and independent of arrival order: a replica that saw the same events in another
order, or a restart that restores the buckets, reports bit-identical numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from exporter.foundation.arrays import FloatArray, IntArray

Columns = Mapping[str, npt.NDArray[Any]]

#: Fixed-point quantum for sums of values in [0, 1]: 2**-32 keeps 2**31 events per int64 and an
#: error below 1.2e-10 per value, while making sums independent of the order of additions.
FIXED_POINT_SCALE = float(1 << 32)
_HALF = 1 << 16


def to_fixed_point(values: FloatArray) -> IntArray:
    """Quantise values in [0, 1] so sums of them are exact integers."""
    return np.rint(np.asarray(values, dtype=np.float64) * FIXED_POINT_SCALE).astype(np.int64)


def fixed_point_square_sums(q: IntArray) -> tuple[int, int, int]:
    """Sum of ``q**2`` for fixed-point values ``q <= 2**32``, as three int64-safe limbs.

    ``q = a·2**16 + b`` gives ``q**2 = a²·2**32 + 2ab·2**16 + b²`` with every term below 2**33, so
    the three sums stay exact in int64 for up to 2**30 values; ``square_sum`` puts them together in
    Python's unbounded integers. This is what makes the window's standard deviation exact to the
    fixed-point quantum instead of suffering ``E[x²] - E[x]²`` cancellation in floats.
    """
    a, b = np.divmod(q, _HALF)
    return int((a * a).sum()), int((a * b).sum()), int((b * b).sum())


_EXACT_WEIGHTS = 1 << 20  # fixed-point values (each at most 2**32) whose float sum stays below 2**53


def fixed_point_bin_sums(q: IntArray, bins: IntArray, n_bins: int) -> IntArray:
    """Exact int64 sum of the fixed-point values ``q`` (each in [0, 2**32]) per bin.

    ``np.bincount``'s weights are float64, whose sums round once they pass 2**53; but a sum of
    at most 2**20 such values is an integer below 2**53, where every partial sum is exact, so
    the values are summed in chunks of that many and the chunk sums added as integers."""
    out = np.zeros(n_bins, dtype=np.int64)
    for i in range(0, int(q.size), _EXACT_WEIGHTS):
        part = np.bincount(bins[i:i + _EXACT_WEIGHTS], weights=q[i:i + _EXACT_WEIGHTS].astype(np.float64),
                           minlength=n_bins)
        out += part.astype(np.int64)
    return out


def square_sum(limbs: tuple[int, int, int]) -> int:
    """``sum(q**2)`` from ``fixed_point_square_sums`` limbs."""
    aa, ab, bb = limbs
    return aa * (1 << 32) + 2 * ab * _HALF + bb


class Bucket(Protocol):
    """The sufficient statistics of the events of one time bucket."""

    def add(self, cols: Columns) -> None: ...

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Every field as an array (scalars as 0-d arrays), for the checkpoint."""
        ...

    def load(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        """Reinstate ``arrays()`` output; missing keys leave the field empty."""
        ...


B = TypeVar("B", bound=Bucket)


class Mergeable(Protocol):
    """A bucket that can take in another bucket's statistics (``BucketedStream.add`` then
    computes each group of events once for all windows)."""

    def merge(self, other: Any) -> None:
        """Add ``other``'s statistics, as if its events had been added here."""
        ...


class Summable(Protocol):
    """A bucket whose every field adds and subtracts (no min or max): a window can keep a total."""

    def absorb(self, other: Any, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) another bucket's statistics."""
        ...


class BucketedWindow(Generic[B]):
    """One window: its live buckets by index, and for ``Summable`` buckets their running total.

    The total is what a reader wants when a bucket is large (a drift feature's KS counts have
    thousands of slots): events are added to it as they arrive and an expiring bucket is taken
    away, so reading the window costs one bucket, not ``n_buckets`` of them.
    """

    __slots__ = ("buckets", "length", "make", "n_buckets", "now_index", "total", "width")

    def __init__(self, length: float, n_buckets: int, make: Callable[[], B], total: bool = False) -> None:
        if not (length > 0 and n_buckets >= 1):
            raise ValueError("a window needs a positive length and at least one bucket")
        self.length = float(length)
        self.n_buckets = int(n_buckets)
        self.width = self.length / self.n_buckets
        self.make = make
        self.buckets: dict[int, B] = {}
        self.now_index: int | None = None
        self.total: B | None = make() if total else None

    @property
    def cutoff(self) -> int:
        """Buckets with an index at or below this have left the window."""
        return -(1 << 62) if self.now_index is None else self.now_index - self.n_buckets

    def index(self, ts: FloatArray) -> IntArray:
        out: IntArray = np.floor(ts / self.width).astype(np.int64)
        return out

    def advance(self, now: float) -> None:
        k = math.floor(now / self.width)
        if self.now_index is not None and k <= self.now_index:
            return
        self.now_index = k
        cutoff = self.cutoff
        for gone in [i for i in self.buckets if i <= cutoff]:
            b = self.buckets.pop(gone)
            if self.total is not None:
                self.total.absorb(b, -1)  # type: ignore[attr-defined]

    def add(self, ts: FloatArray, cols: Columns, now: float) -> None:
        """Events (any order); ``ts`` must already be clamped to ``now``."""
        self.advance(now)
        idx = self.index(ts)
        inside = idx > self.cutoff
        if not inside.any():
            return
        if not inside.all():
            idx = idx[inside]
            cols = {name: c[inside] for name, c in cols.items()}
        if self.total is not None:
            self.total.add(cols)
        first = int(idx[0])
        if (idx == first).all():
            self._bucket(first).add(cols)
            return
        keys, inverse = np.unique(idx, return_inverse=True)
        for j, key in enumerate(keys.tolist()):
            sel = inverse == j
            self._bucket(int(key)).add({name: c[sel] for name, c in cols.items()})

    def merge(self, key: int, delta: B) -> None:
        """Add the statistics of events of bucket ``key`` (inside the window), gathered in ``delta``."""
        self._bucket(key).merge(delta)  # type: ignore[attr-defined]
        if self.total is not None:
            self.total.merge(delta)  # type: ignore[attr-defined]

    def _bucket(self, key: int) -> B:
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = self.make()
        return b

    def live(self) -> list[B]:
        """The buckets in the window, oldest first."""
        return [self.buckets[k] for k in sorted(self.buckets)]

    def state(self) -> dict[str, Any]:
        keys = sorted(self.buckets)
        per_bucket = [self.buckets[k].arrays() for k in keys]
        names = sorted({n for arrays in per_bucket for n in arrays})
        return {
            "length": self.length,
            "n_buckets": self.n_buckets,
            "now_index": -(1 << 62) if self.now_index is None else self.now_index,
            "keys": np.asarray(keys, dtype=np.int64),
            "fields": {n: np.stack([np.asarray(a[n]) for a in per_bucket]) for n in names} if keys else {},
        }

    def restore(self, state: Mapping[str, Any], now: float) -> bool:
        """Reinstate ``state()`` of a window of the same length and bucket count; False if it differs."""
        if float(state["length"]) != self.length or int(state["n_buckets"]) != self.n_buckets:
            return False
        self.buckets = {}
        saved_now = int(state["now_index"])
        self.now_index = None if saved_now == -(1 << 62) else saved_now
        fields = {str(n): np.asarray(a) for n, a in dict(state["fields"]).items()}
        if self.total is not None:
            self.total = self.make()
        for row, key in enumerate(np.asarray(state["keys"], dtype=np.int64).tolist()):
            b = self.make()
            b.load({n: a[row] for n, a in fields.items()})
            self.buckets[int(key)] = b
            if self.total is not None:
                self.total.absorb(b, 1)  # type: ignore[attr-defined]
        self.advance(now)
        return True


class BucketedStream(Generic[B]):
    """One event stream (e.g. a model version's predictions) seen through several windows."""

    def __init__(self, lengths: Sequence[float], n_buckets: int, make: Callable[[], B], totals: bool = False) -> None:
        self.windows = [BucketedWindow(length, n_buckets, make, totals) for length in lengths]
        self._mergeable = bool(self.windows) and hasattr(make(), "merge")

    def advance(self, now: float) -> None:
        for w in self.windows:
            w.advance(now)

    def add(self, ts: FloatArray, cols: Columns, now: float) -> None:
        """A batch of events in any order; future-stamped ones count as ``now``.

        Buckets that can ``merge`` (``Mergeable``) take each group of events that shares a
        bucket in every window once: its statistics are computed into one fresh bucket, which
        is then merged into that bucket of each window and into each window's total, instead
        of being computed again for every window and total. The sums, counts, minima and maxima
        a bucket keeps do not depend on how its events were split, so the result is the same."""
        ts = np.minimum(np.asarray(ts, dtype=np.float64), now)
        if not self._mergeable or ts.size == 0:
            for w in self.windows:
                w.add(ts, cols, now)
            return
        for w in self.windows:
            w.advance(now)
        keys = [w.index(ts) for w in self.windows]
        for rows, where in _shared_buckets(keys, [w.cutoff for w in self.windows], [w.n_buckets for w in self.windows]):
            if not any(k is not None for k in where):
                continue
            delta = self.windows[0].make()
            delta.add(cols if rows is None else {name: c[rows] for name, c in cols.items()})
            for w, key in zip(self.windows, where, strict=True):
                if key is not None:
                    w.merge(key, delta)

    def live(self, i: int) -> list[B]:
        return self.windows[i].live()

    def total(self, i: int) -> B:
        """Window ``i``'s running total (streams made with ``totals=True``)."""
        t = self.windows[i].total
        if t is None:
            raise ValueError("this stream keeps no totals")
        return t

    def bucket_count(self) -> int:
        """Buckets held over all windows (what memory is proportional to)."""
        return sum(len(w.buckets) for w in self.windows)

    def state(self) -> list[dict[str, Any]]:
        return [w.state() for w in self.windows]

    def restore(self, saved: Iterable[Mapping[str, Any]], now: float) -> None:
        """Windows whose length and bucket count were saved come back; a new window starts empty."""
        by_shape = {(float(s["length"]), int(s["n_buckets"])): s for s in saved}
        for w in self.windows:
            s = by_shape.get((w.length, w.n_buckets))
            if s is not None:
                w.restore(s, now)
            w.advance(now)


def _shared_buckets(keys: Sequence[IntArray], cutoffs: Sequence[int], n_buckets: Sequence[int],
                    ) -> list[tuple[IntArray | None, list[int | None]]]:
    """The events grouped by the bucket they fall in in every window: per group its rows (None:
    all of them) and its bucket key in each window (None where it is outside that window).

    Usually a batch is one group (all its events in one bucket of each window); else the groups
    come from one stable sort of a combined code (bucket relative to the cutoff, 0 outside), so
    the rows of a group stay in arrival order."""
    lo = [int(k.min()) for k in keys]
    hi = [int(k.max()) for k in keys]
    if all(a == b for a, b in zip(lo, hi, strict=True)):
        return [(None, [a if a > c else None for a, c in zip(lo, cutoffs, strict=True)])]
    code = np.zeros(keys[0].size, dtype=np.int64)
    span = 1
    for k, c, nb in zip(keys, cutoffs, n_buckets, strict=True):
        rel = np.maximum(k - c, 0)  # 1..nb inside the window (keys never pass now), 0 outside
        code += rel * span
        span *= nb + 1
        if span > 1 << 40:  # many windows of many buckets: renumber before the code overflows
            code = np.unique(code, return_inverse=True)[1].reshape(-1).astype(np.int64)
            span = int(code.max()) + 1
    # a small code sorts as int16, which numpy's stable sort does by radix (linear) instead of merging
    order = np.argsort(code.astype(np.int16) if span <= 1 << 15 else code, kind="stable")
    sorted_code = code[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_code[1:] != sorted_code[:-1])))
    ends = np.append(starts[1:], code.size)
    out: list[tuple[IntArray | None, list[int | None]]] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        first = int(order[a])
        where = [int(k[first]) if int(k[first]) > c else None for k, c in zip(keys, cutoffs, strict=True)]
        out.append((order[a:b], where))
    return out


def merged_sum(parts: Sequence[npt.NDArray[Any]], shape: tuple[int, ...]) -> IntArray:
    """Element-wise sum of equally shaped count arrays as int64 (zeros when there are none)."""
    if not parts:
        return np.zeros(shape, dtype=np.int64)
    out: IntArray = np.add.reduce([np.asarray(p, dtype=np.int64) for p in parts])
    return out


class WideningCounts:
    """Counts per slot in the smallest unsigned dtype that holds them (uint16, then uint32, int64).

    A window bucket of a numeric drift feature keeps one count per reference point and gap
    between points (thousands of slots) but often few events per slot: two bytes per slot are
    enough until a slot passes 65,535, when the array is widened in place.
    """

    __slots__ = ("_top", "counts")
    _LIMITS = ((np.uint16, 0xFFFF), (np.uint32, 0xFFFFFFFF))

    def __init__(self, size: int) -> None:
        self.counts: npt.NDArray[Any] = np.zeros(size, dtype=np.uint16)
        self._top = 0  # at least the largest count (exact after a widening ``add``)

    def add(self, inc: IntArray, inc_top: int | None = None) -> None:
        """Add counts. ``inc_top``: ``inc.max()`` when the caller knows it and ``inc`` is
        non-negative; while the counts then provably stay within uint16 they are added in
        place, without the int64 round trip (the dtype is the same either way: the smallest
        that holds the largest count)."""
        if inc_top is not None and self.counts.dtype == np.uint16 and self._top + inc_top <= 0xFFFF:
            np.add(self.counts, inc, out=self.counts, casting="unsafe")
            self._top += inc_top
            return
        total = self.counts.astype(np.int64) + inc
        top = int(total.max()) if total.size else 0
        self._top = top
        for dtype, limit in self._LIMITS:
            if top <= limit:
                self.counts = total.astype(dtype)
                return
        self.counts = total
