"""Sliding time windows over event streams, updated incrementally.

Every window of a stream shares one time-ordered columnar log of events. A window ``w`` of
length ``L`` covers the events with ``now - L < timestamp`` (events stamped in the future count
as now). Its aggregate is updated with the events that enter (``add``) and reverted with the
events that leave as the clock moves (``remove``), so a poll costs time proportional to what
changed, not to what the window holds. The clock drives expiry: ``advance(now)`` is called every
cycle even when nothing arrived.

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


class WindowedStream:
    """One event stream (e.g. a model version's predictions) and all its windows.

    ``make_aggregate`` builds a fresh aggregate for a window; ``columns`` names the columns
    every event carries (besides the timestamp) and their dtypes.
    """

    def __init__(
        self,
        lengths: Sequence[float],
        make_aggregate: Callable[[], Aggregate],
        columns: Mapping[str, npt.DTypeLike],
    ) -> None:
        self.lengths = tuple(float(x) for x in lengths)
        self._dtypes = {name: np.dtype(dt) for name, dt in columns.items()}
        self.ts: FloatArray = np.empty(0, dtype=np.float64)
        self.cols: dict[str, npt.NDArray[Any]] = {n: np.empty(0, dtype=d) for n, d in self._dtypes.items()}
        self.aggregates = [make_aggregate() for _ in self.lengths]
        self._start = [0] * len(self.lengths)
        self._cutoff = [-np.inf] * len(self.lengths)

    def __len__(self) -> int:
        return int(self.ts.size)

    def window_size(self, i: int) -> int:
        return int(self.ts.size) - self._start[i]

    def _slice(self, lo: int, hi: int) -> dict[str, npt.NDArray[Any]]:
        return {n: c[lo:hi] for n, c in self.cols.items()}

    def advance(self, now: float) -> None:
        """Let the clock expire events that fell out of each window."""
        for i, length in enumerate(self.lengths):
            cutoff = now - length
            if cutoff <= self._cutoff[i]:
                continue
            new_start = int(np.searchsorted(self.ts, cutoff, side="right"))
            if new_start > self._start[i]:
                self.aggregates[i].remove(self._slice(self._start[i], new_start))
                self._start[i] = new_start
            self._cutoff[i] = cutoff
        self._compact()

    def add(self, ts: FloatArray, cols: Columns, now: float) -> None:
        """Insert a batch of events (any order) and update every window they fall into."""
        self.advance(now)
        if ts.size == 0:
            return
        order = np.argsort(ts, kind="stable")
        ts = ts[order]
        batch = {n: np.asarray(cols[n])[order].astype(d, copy=False) for n, d in self._dtypes.items()}
        for i, cutoff in enumerate(self._cutoff):
            inside = ts > cutoff
            if inside.all():
                self.aggregates[i].add(batch)
            elif inside.any():
                self.aggregates[i].add({n: c[inside] for n, c in batch.items()})
        if self.ts.size == 0 or ts[0] >= self.ts[-1]:
            self.ts = np.concatenate((self.ts, ts))
            for n in self.cols:
                self.cols[n] = np.concatenate((self.cols[n], batch[n]))
        else:
            positions = np.searchsorted(self.ts, ts, side="right")
            self.ts = np.insert(self.ts, positions, ts)
            for n in self.cols:
                self.cols[n] = np.insert(self.cols[n], positions, batch[n])
        for i, cutoff in enumerate(self._cutoff):
            self._start[i] = int(np.searchsorted(self.ts, cutoff, side="right"))

    def _compact(self) -> None:
        """Drop events no window holds any more, once they are a good share of the log."""
        keep_from = min(self._start) if self._start else 0
        if keep_from == 0 or keep_from * 2 < self.ts.size:
            return
        self.ts = self.ts[keep_from:].copy()
        for n in self.cols:
            self.cols[n] = self.cols[n][keep_from:].copy()
        self._start = [s - keep_from for s in self._start]

    def rebuild(self, ts: FloatArray, cols: Columns, now: float) -> None:
        """Replace the log (e.g. after a restore) and rebuild every aggregate from scratch."""
        self.ts = np.empty(0, dtype=np.float64)
        self.cols = {n: np.empty(0, dtype=d) for n, d in self._dtypes.items()}
        self._start = [0] * len(self.lengths)
        self._cutoff = [now - length for length in self.lengths]
        self.add(ts, cols, now)

    def export(self) -> tuple[FloatArray, dict[str, npt.NDArray[Any]]]:
        """The events still inside the longest window, for the checkpoint."""
        lo = min(self._start) if self._start else 0
        return self.ts[lo:], self._slice(lo, int(self.ts.size))
