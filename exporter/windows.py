"""Sliding time windows over event streams, updated incrementally.

Every window of a stream shares one columnar log of events (a few time-sorted runs, see
``WindowedStream``). A window ``w`` of length ``L`` covers the events with
``now - L < timestamp`` (events stamped in the future count as now). Its aggregate is updated
with the events that enter (``add``) and reverted with the events that leave as the clock moves
(``remove``), so a poll costs time proportional to what changed, not to what the window holds.
The clock drives expiry: ``advance(now)`` is called every cycle even when nothing arrived.

Aggregates must be deterministic functions of the set of events they hold (integer counts,
fixed-point sums, sorted multisets), never float sums that depend on arrival order, so that a
restart that rebuilds them from the checkpointed log gives bit-identical values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Columns = Mapping[str, npt.NDArray[Any]]

#: Fixed-point quantum for sums of values in [0, 1]: 2**-32 keeps 2**31 events per int64 and an
#: error below 1e-9 on a mean, while making sums independent of the order of additions.
FIXED_POINT_SCALE = float(1 << 32)


def to_fixed_point(values: FloatArray) -> npt.NDArray[np.int64]:
    """Quantise values in [0, 1] so sums of them are exact integers."""
    return np.rint(values * FIXED_POINT_SCALE).astype(np.int64)


class Aggregate(Protocol):
    """What a window keeps about the events inside it."""

    def add(self, cols: Columns) -> None: ...

    def remove(self, cols: Columns) -> None: ...


class SortedMultiset:
    """Ascending float values supporting batch insert and batch delete.

    Backed by one numpy array: inserting or deleting k values into n costs O(n + k log k) of
    memmove in C, which keeps the median, min, max and KS statistics of a window exact without
    re-sorting it every poll.
    """

    __slots__ = ("values",)

    def __init__(self, values: FloatArray | None = None) -> None:
        self.values: FloatArray = np.sort(values) if values is not None else np.empty(0, dtype=np.float64)

    def __len__(self) -> int:
        return int(self.values.size)

    def add(self, batch: FloatArray) -> None:
        if batch.size == 0:
            return
        batch = np.sort(batch)
        if self.values.size == 0:
            self.values = batch.astype(np.float64, copy=True)
            return
        positions = np.searchsorted(self.values, batch, side="right")
        self.values = np.insert(self.values, positions, batch)

    def remove(self, batch: FloatArray) -> None:
        """Remove one occurrence per value in ``batch``; every value must be present."""
        if batch.size == 0:
            return
        batch = np.sort(batch)
        left = np.searchsorted(self.values, batch, side="left")
        # equal values in the batch must hit distinct positions: offset by their rank in the run
        run_start = np.searchsorted(batch, batch, side="left")
        positions = left + (np.arange(batch.size) - run_start)
        if positions.size and (positions[-1] >= self.values.size or not np.array_equal(
            self.values[positions], batch
        )):
            raise ValueError("SortedMultiset.remove: value not present")
        self.values = np.delete(self.values, positions)


class CutCounts:
    """A multiset of floats seen only through fixed cut points: exact ranks in O(cuts) per read.

    ``ranks(side)`` equals ``numpy.searchsorted(sorted_values, cuts, side)`` for the sorted
    values the multiset holds -- the integer counts ``ks_against_reference`` evaluates the KS
    statistic from -- but is kept by updating per-gap counts with each batch (O(k log m) for k
    values and m distinct cuts) instead of holding and searching every value, so reading a
    window of a million values costs the same as one of a thousand. NaN values must not be
    passed. ``remove`` refuses a batch that would leave a gap with a negative count; unlike
    ``SortedMultiset`` it cannot tell two values of the same gap apart, which is enough for
    streams that only remove what they added.
    """

    __slots__ = ("_at", "_gap", "_inv", "_uniq", "n")

    def __init__(self, cuts: FloatArray) -> None:
        cuts = np.asarray(cuts, dtype=np.float64)
        self._uniq, self._inv = np.unique(cuts, return_inverse=True)
        m = int(self._uniq.size)
        self._gap = np.zeros(m + 1, dtype=np.int64)  # values in (u[b-1], u[b]); the last: above u[-1]
        self._at = np.zeros(m + 1, dtype=np.int64)  # values equal to u[b] (the last slot stays 0)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def _counts(self, batch: FloatArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        u = self._uniq
        b = np.searchsorted(u, batch, side="left")
        eq = b < u.size
        eq[eq] = u[b[eq]] == batch[eq]
        m = u.size + 1
        return (np.bincount(b[~eq], minlength=m).astype(np.int64, copy=False),
                np.bincount(b[eq], minlength=m).astype(np.int64, copy=False))

    def add(self, batch: FloatArray) -> None:
        if batch.size == 0:
            return
        gap, at = self._counts(np.asarray(batch, dtype=np.float64))
        self._gap += gap
        self._at += at
        self.n += int(batch.size)

    def remove(self, batch: FloatArray) -> None:
        if batch.size == 0:
            return
        gap, at = self._counts(np.asarray(batch, dtype=np.float64))
        if np.any(gap > self._gap) or np.any(at > self._at):
            raise ValueError("CutCounts.remove: value not present")
        self._gap -= gap
        self._at -= at
        self.n -= int(batch.size)

    def ranks(self, side: str = "left") -> npt.NDArray[np.int64]:
        """How many values lie below each cut (``side="left"``) or at or below it (``"right"``)."""
        below = np.cumsum(self._gap[:-1]) + np.concatenate(([0], np.cumsum(self._at[:-2]))) \
            if self._uniq.size else np.zeros(0, dtype=np.int64)
        if side == "right":
            below = below + self._at[:-1]
        elif side != "left":
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        out: npt.NDArray[np.int64] = below[self._inv]
        return out


class _Run:
    """A time-sorted stretch of a stream's log: ``ts[:n]`` ascending, the columns beside it.

    ``lo[i]`` is how many of its events window ``i`` has already let go (those stamped at or
    before the window's cutoff). Arrays may have spare capacity past ``n`` so that in-order
    batches append in amortised O(batch).
    """

    __slots__ = ("cols", "lo", "n", "ts")

    def __init__(self, ts: FloatArray, cols: dict[str, npt.NDArray[Any]], n_windows: int, spare: int = 0) -> None:
        n = int(ts.size)
        self.n = n
        self.ts = _with_capacity(ts, n + spare)
        self.cols = {name: _with_capacity(c, n + spare) for name, c in cols.items()}
        self.lo = [0] * n_windows

    @property
    def dead(self) -> int:
        """Events no window holds any more (a prefix)."""
        return min(self.lo) if self.lo else 0

    def live_ts(self) -> FloatArray:
        return self.ts[self.dead:self.n]

    def slice(self, lo: int, hi: int) -> dict[str, npt.NDArray[Any]]:
        return {name: c[lo:hi] for name, c in self.cols.items()}

    def recut(self, cutoffs: Sequence[float]) -> None:
        ts = self.ts[:self.n]
        self.lo = [int(np.searchsorted(ts, c, side="right")) for c in cutoffs]

    def append(self, ts: FloatArray, batch: Mapping[str, npt.NDArray[Any]]) -> None:
        """Add events stamped no earlier than the last one held."""
        k = int(ts.size)
        self._reserve(self.n + k)
        self.ts[self.n:self.n + k] = ts
        for name, c in self.cols.items():
            c[self.n:self.n + k] = batch[name]
        self.n += k

    def merge_tail(self, p: int, ts: FloatArray, batch: Mapping[str, npt.NDArray[Any]]) -> None:
        """Add events that belong after position ``p``: re-sort only the tail from ``p`` on."""
        k = int(ts.size)
        tail_ts = np.concatenate((self.ts[p:self.n], ts))
        order = np.argsort(tail_ts, kind="stable")  # held events before new ones of equal time
        self._reserve(self.n + k)
        end = self.n + k
        self.ts[p:end] = tail_ts[order]
        for name, c in self.cols.items():
            c[p:end] = np.concatenate((c[p:self.n], batch[name]))[order]
        self.n = end

    def _reserve(self, size: int) -> None:
        if size <= self.ts.size:
            return
        cap = max(size, self.ts.size + (self.ts.size >> 1), 1024)
        self.ts = _with_capacity(self.ts[:self.n], cap)
        self.cols = {name: _with_capacity(c[:self.n], cap) for name, c in self.cols.items()}

    def trim(self, keep_spare: bool) -> None:
        """Drop the dead prefix (copying what is left)."""
        d = self.dead
        live = self.n - d
        spare = max(live >> 1, 1024) if keep_spare else 0
        self.ts = _with_capacity(self.ts[d:self.n], live + spare)
        self.cols = {name: _with_capacity(c[d:self.n], live + spare) for name, c in self.cols.items()}
        self.n = live
        self.lo = [x - d for x in self.lo]


def _with_capacity(a: npt.NDArray[Any], capacity: int) -> npt.NDArray[Any]:
    """A new array of ``capacity`` elements starting with a copy of ``a``."""
    out = np.empty(max(capacity, a.size), dtype=a.dtype)
    out[:a.size] = a
    return out


#: A late batch re-sorts the tail of the newest run when that tail is at most this many events
#: (or a few times the batch); otherwise it starts a run of its own.
_TAIL_MERGE_MIN = 4096


class WindowedStream:
    """One event stream (e.g. a model version's predictions) and all its windows.

    ``make_aggregate`` builds a fresh aggregate for a window; ``columns`` names the columns
    every event carries (besides the timestamp) and their dtypes.

    The log is a short list of time-sorted runs (see ``_Run``), so that neither appending a
    batch nor expiring events ever copies the whole log: an in-order batch is appended to the
    newest run, a slightly late one re-sorts only that run's tail, and a very late one (labels
    of predictions made hours ago) starts a new run; runs are merged two at a time whenever the
    newer one has grown to half the older one, which keeps at most about log2(n) of them and
    costs O(log n) amortised copies per event. Each window expires a sorted prefix of every
    run, and runs drop their dead prefix once it is half of them.
    """

    def __init__(
        self,
        lengths: Sequence[float],
        make_aggregate: Callable[[], Aggregate],
        columns: Mapping[str, npt.DTypeLike],
    ) -> None:
        self.lengths = tuple(float(x) for x in lengths)
        self._dtypes = {name: np.dtype(dt) for name, dt in columns.items()}
        self.aggregates = [make_aggregate() for _ in self.lengths]
        self._runs: list[_Run] = []
        self._cutoff = [-np.inf] * len(self.lengths)

    def __len__(self) -> int:
        """Events held by at least one window."""
        return sum(r.n - r.dead for r in self._runs)

    def window_size(self, i: int) -> int:
        return sum(r.n - r.lo[i] for r in self._runs)

    def advance(self, now: float) -> None:
        """Let the clock expire events that fell out of each window."""
        for i, length in enumerate(self.lengths):
            cutoff = now - length
            if cutoff <= self._cutoff[i]:
                continue
            parts = []
            for run in self._runs:
                lo = run.lo[i]
                hi = lo + int(np.searchsorted(run.ts[lo:run.n], cutoff, side="right"))
                if hi > lo:
                    parts.append(run.slice(lo, hi))
                    run.lo[i] = hi
            if parts:
                gone = parts[0] if len(parts) == 1 else {
                    name: np.concatenate([p[name] for p in parts]) for name in self._dtypes}
                self.aggregates[i].remove(gone)
            self._cutoff[i] = cutoff
        self._compact()

    def add(self, ts: FloatArray, cols: Columns, now: float) -> None:
        """Insert a batch of events (any order) and update every window they fall into."""
        self.advance(now)
        if ts.size == 0:
            return
        ts = np.asarray(ts, dtype=np.float64)
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        batch = {n: np.asarray(cols[n])[order].astype(d, copy=False) for n, d in self._dtypes.items()}
        for i, cutoff in enumerate(self._cutoff):
            inside = ts > cutoff
            if inside.all():
                self.aggregates[i].add(batch)
            elif inside.any():
                self.aggregates[i].add({n: c[inside] for n, c in batch.items()})
        self._insert(ts, batch)

    def _insert(self, ts: FloatArray, batch: dict[str, npt.NDArray[Any]]) -> None:
        k = int(ts.size)
        last = self._runs[-1] if self._runs else None
        if last is None or last.n == 0:
            if last is not None:
                self._runs.pop()
            self._runs.append(_Run(ts, batch, len(self.lengths), spare=max(k, 1024)))
        elif ts[0] >= last.ts[last.n - 1]:
            last.append(ts, batch)
        else:
            p = int(np.searchsorted(last.ts[:last.n], ts[0], side="right"))
            if last.n - p <= max(_TAIL_MERGE_MIN, 4 * k):
                last.merge_tail(p, ts, batch)
            else:
                self._runs.append(_Run(ts, batch, len(self.lengths), spare=max(k, 1024)))
        self._runs[-1].recut(self._cutoff)
        while len(self._runs) >= 2 and 2 * (self._runs[-1].n - self._runs[-1].dead) >= (
                self._runs[-2].n - self._runs[-2].dead):
            self._merge_last_two()

    def _merge_last_two(self) -> None:
        b = self._runs.pop()
        a = self._runs.pop()
        ts = np.concatenate((a.live_ts(), b.live_ts()))
        order = np.argsort(ts, kind="stable")  # older run first among equal times
        cols = {name: np.concatenate((a.cols[name][a.dead:a.n], b.cols[name][b.dead:b.n]))[order]
                for name in self._dtypes}
        run = _Run(ts[order], cols, len(self.lengths), spare=max(ts.size >> 1, 1024))
        run.recut(self._cutoff)
        self._runs.append(run)

    def _compact(self) -> None:
        """Drop events no window holds any more, once they are a good share of a run."""
        last = len(self._runs) - 1
        keep: list[_Run] = []
        for j, run in enumerate(self._runs):
            d = run.dead
            if d == run.n and j != last:
                continue  # every event of this run has left every window
            if d and d * 2 >= run.n:
                run.trim(keep_spare=j == last)
            keep.append(run)
        self._runs = keep

    def rebuild(self, ts: FloatArray, cols: Columns, now: float) -> None:
        """Replace the log (e.g. after a restore) and rebuild every aggregate from scratch."""
        self._runs = []
        self._cutoff = [now - length for length in self.lengths]
        self.add(ts, cols, now)

    def export(self) -> tuple[FloatArray, dict[str, npt.NDArray[Any]]]:
        """The events still inside the longest window, in time order (copies, for the checkpoint)."""
        runs = [r for r in self._runs if r.n > r.dead]
        if not runs:
            return np.empty(0, dtype=np.float64), {n: np.empty(0, dtype=d) for n, d in self._dtypes.items()}
        ts = np.concatenate([r.live_ts() for r in runs])
        cols = {name: np.concatenate([r.cols[name][r.dead:r.n] for r in runs]) for name in self._dtypes}
        if len(runs) > 1:
            order = np.argsort(ts, kind="stable")
            ts = ts[order]
            cols = {name: c[order] for name, c in cols.items()}
        return ts, cols
