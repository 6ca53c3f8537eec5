"""Ids already joined, remembered by their 64-bit hash only, in bounded memory.

The join remembers every id it joined for the TTL, so that a second label or a repeated
prediction is recognised as a duplicate. Only ``stable_id_hashes`` of the ids is kept (12 bytes
an id with its arrival position), never the ids themselves; see ``JoinedIds``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.foundation.arrays import FloatArray, HashArray, IntArray
from exporter.ingest.ids import stable_id_hashes

try:
    from exporter.core import _kernels  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: numpy's searchsorted
    _kernels = None

_SORT_QUERIES = 4096  # queries sorted first from this many on (see ``JoinedIds.contains``)
_MAX_RUNS = 1024  # expiry runs kept exact (beyond: an eighth of the ids)


def _searchsorted_right(a: HashArray, q: HashArray) -> IntArray:
    """``np.searchsorted(a, q, side="right")`` for ascending ``q``: in C (``_kernels``) each answer
    gallops on from the one before: 1.5 times faster for 14k queries in a million hashes."""
    if _kernels is None:
        found: IntArray = np.searchsorted(a, q, side="right")
        return found
    out = np.empty(q.size, dtype=np.int64)
    _kernels.searchsorted_right(np.ascontiguousarray(a), np.ascontiguousarray(q), out)
    return out


class _HashSegment:
    """Joined ids with sequence numbers ``start .. start + n - 1``: hashes sorted, with arrival offsets.

    Equal hashes are ordered by arrival, so the last of them is the newest (the one to check).
    """

    __slots__ = ("hashes", "n", "offsets", "start")

    def __init__(self, start: int, hashes: HashArray, offsets: npt.NDArray[np.uint32]) -> None:
        self.start = start
        self.n = int(hashes.size)
        self.hashes = hashes
        self.offsets = offsets

    @classmethod
    def of(cls, start: int, h: HashArray) -> _HashSegment:
        order = np.argsort(h)  # quicksort: faster; the same order as a stable sort unless two hashes are equal
        ordered = h[order]
        if ordered.size > 1 and bool((ordered[1:] == ordered[:-1]).any()):
            order = np.argsort(h, kind="stable")  # equal hashes keep their arrival order
            ordered = h[order]
        return cls(start, ordered, order.astype(np.uint32))

    def merge(self, newer: _HashSegment) -> _HashSegment:
        """One segment of both (``newer`` follows this one), sorted in one linear pass."""
        hashes = np.empty(self.n + newer.n, dtype=np.uint64)
        offsets = np.empty(self.n + newer.n, dtype=np.uint32)
        if _kernels is not None:  # one linear pass in C, without the GIL
            c = np.ascontiguousarray
            _kernels.merge_sorted(c(self.hashes), c(self.offsets), c(newer.hashes), c(newer.offsets),
                                  newer.start - self.start, hashes, offsets)
            return _HashSegment(self.start, hashes, offsets)
        at = np.searchsorted(self.hashes, newer.hashes, side="right") + np.arange(newer.n)
        mine = np.ones(self.n + newer.n, dtype=bool)
        mine[at] = False
        hashes[at], hashes[mine] = newer.hashes, self.hashes
        offsets[at] = newer.offsets + np.uint32(newer.start - self.start)
        offsets[mine] = self.offsets
        return _HashSegment(self.start, hashes, offsets)

    def drop_before(self, head: int) -> _HashSegment:
        """The same segment without the entries older than sequence number ``head``."""
        cut = head - self.start
        keep = self.offsets >= cut
        return _HashSegment(head, self.hashes[keep], self.offsets[keep] - np.uint32(cut))

    def in_arrival_order(self) -> HashArray:
        out = np.empty(self.n, dtype=np.uint64)
        out[self.offsets] = self.hashes
        return out


class JoinedIds:
    """Hashes of the ids already joined, oldest first, each remembered until its expiry.

    Storage is a few segments (about log2(n), merged as they accumulate) of sorted 64-bit hashes
    with their uint32 arrival offset, 12 bytes an id, plus the expiry times run-length encoded by
    arrival: one run (16 bytes) per batch joined. Runs are at most 1024 or an eighth of the ids,
    whichever is more (so never more than 16 KiB, or 2 bytes an id): beyond that, expiry times
    are rounded up to a coarser step (doubling, at most about a 256th of the span the runs cover,
    that is of the TTL) and equal ones merge, so at low traffic an id may be remembered a little
    longer than the TTL, never shorter. Expiry and the size bound both advance one cut,
    ``head``: every id older than it is forgotten. Expiry times are kept non-decreasing in
    arrival order (an id is never forgotten before an older one), which only matters when the
    TTL shrinks on reload or the clock steps back.
    """

    def __init__(self) -> None:
        self._segs: list[_HashSegment] = []
        self._head = 0  # sequence number of the oldest remembered id
        self._next = 0  # sequence number of the next id
        self._run_pos: IntArray = np.zeros(0, dtype=np.int64)  # first sequence number of each run
        self._run_val: FloatArray = np.zeros(0, dtype=np.float64)  # its expiry
        self._step = 0.0  # expiry times are rounded up to a multiple of this (0: exact)

    def __len__(self) -> int:
        return self._next - self._head

    @property
    def nbytes(self) -> int:
        """Bytes held in arrays (what a joined id costs, without the list and object headers)."""
        return sum(s.hashes.nbytes + s.offsets.nbytes for s in self._segs) + self._run_pos.nbytes + \
            self._run_val.nbytes

    def contains(self, h: HashArray) -> npt.NDArray[np.bool_]:
        """Which hashes are remembered."""
        found = np.zeros(h.size, dtype=bool)
        if h.size == 0:
            return found
        # searching in ascending order walks each segment once instead of jumping about it (the
        # segments are far larger than the cache): about twice as fast, the sort included
        order = np.argsort(h) if h.size >= _SORT_QUERIES else None
        q = h if order is None else h[order]
        hit_sorted = np.zeros(h.size, dtype=bool)
        for seg in self._segs:
            if seg.n == 0:
                continue
            i = (np.searchsorted(seg.hashes, q, side="right") if order is None
                 else _searchsorted_right(seg.hashes, q)) - 1
            valid = i >= 0
            i = np.maximum(i, 0)
            hit = valid & (seg.hashes[i] == q)
            if seg.start < self._head:  # only the oldest segment holds forgotten entries
                hit &= seg.offsets[i].astype(np.int64) + seg.start >= self._head
            hit_sorted |= hit
        if order is None:
            return hit_sorted
        found[order] = hit_sorted
        return found

    def add(self, h: HashArray, expires: float) -> None:
        """Remember ids (by hash) until ``expires`` (all joined at the same moment)."""
        n = int(h.size)
        if n == 0:
            return
        val = float(expires)
        if self._step:
            val = max(val, math.ceil(val / self._step) * self._step)
        if self._run_val.size:
            val = max(val, float(self._run_val[-1]))
        if not (self._run_val.size and self._run_val[-1] == val):
            self._run_pos = np.append(self._run_pos, self._next)
            self._run_val = np.append(self._run_val, val)
            limit = max(_MAX_RUNS, (len(self) + n) // 8)
            if self._run_val.size > limit:
                self._coarsen_runs(limit)
        self._segs.append(_HashSegment.of(self._next, np.asarray(h, dtype=np.uint64)))
        self._next += n
        while len(self._segs) >= 2 and 2 * self._segs[-1].n >= self._segs[-2].n:
            newer = self._segs.pop()
            self._segs[-1] = self._segs[-1].merge(newer)

    def _coarsen_runs(self, limit: int) -> None:
        """Round expiry times up to a coarser step until at most half of ``limit`` runs remain."""
        span = float(self._run_val[-1] - self._run_val[0])
        step = max(2 * self._step, span / (limit // 2))
        while step > 0 and math.isfinite(step):
            val = np.maximum(np.ceil(self._run_val / step) * step, self._run_val)
            val = np.maximum.accumulate(val)
            keep = np.concatenate(([True], val[1:] != val[:-1]))
            if int(keep.sum()) <= limit // 2 + 1:
                self._run_pos, self._run_val, self._step = self._run_pos[keep], val[keep], step
                return
            step *= 2

    def expire(self, now: float, max_size: int) -> tuple[int, int]:
        """Forget ids whose expiry passed, then the oldest beyond ``max_size``.

        Returns how many were forgotten at their expiry and how many early, by the bound.
        """
        head = self._head
        due = int(np.searchsorted(self._run_val, now, side="right"))  # runs [0, due) expired
        if due:
            head = max(head, int(self._run_pos[due]) if due < self._run_pos.size else self._next)
        expired = head - self._head
        forgotten = max(0, self._next - head - max_size)
        head += forgotten
        if head != self._head:
            self._advance_head(head)
        return expired, forgotten

    def _advance_head(self, head: int) -> None:
        self._head = head
        # runs: keep the one holding head and those after it
        first = max(0, int(np.searchsorted(self._run_pos, head, side="right")) - 1)
        if head >= self._next:
            first = self._run_pos.size
        self._run_pos, self._run_val = self._run_pos[first:], self._run_val[first:]
        while self._segs and self._segs[0].start + self._segs[0].n <= head:
            self._segs.pop(0)
        if self._segs:
            seg = self._segs[0]
            dead = head - seg.start
            if dead > 1024 and 2 * dead >= seg.n:
                self._segs[0] = seg.drop_before(head)

    def export(self) -> dict[str, Any]:
        """Remembered hashes in arrival order, and the expiry runs (first index, expiry)."""
        parts = [s.in_arrival_order() for s in self._segs]
        hashes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        if self._segs:
            hashes = hashes[self._head - self._segs[0].start:]
        return {"hashes": hashes, "run_start": np.maximum(self._run_pos - self._head, 0),
                "run_expires": self._run_val.copy()}

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Append what ``export`` returned (hashes, or the ``id`` and ``expires`` of older checkpoints)."""
        if "hashes" in saved:
            hashes = np.asarray(saved["hashes"], dtype=np.uint64)
            starts = np.asarray(saved["run_start"], dtype=np.int64)
            if hashes.size == 0:
                return
            ends = np.append(starts[1:], hashes.size)
            for lo, hi, val in zip(starts.tolist(), ends.tolist(), np.asarray(saved["run_expires"]).tolist(),
                                   strict=True):
                self.add(hashes[lo:hi], val)
            return
        ids = np.asarray(saved["id"], dtype=object)  # format 1: the ids themselves
        expires = np.asarray(saved["expires"], dtype=np.float64)
        h = stable_id_hashes(ids)
        for lo, hi in _runs(expires):
            self.add(h[lo:hi], float(expires[lo]))


def _runs(values: FloatArray) -> list[tuple[int, int]]:
    """(start, end) of each run of equal neighbouring values."""
    if values.size == 0:
        return []
    starts = np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1)).tolist()
    return list(zip(starts, [*starts[1:], int(values.size)], strict=True))
