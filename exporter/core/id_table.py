"""The open-addressing hash table that finds an ``ArrivalBuffer``'s entries by id, vectorised.

A slot holds the row of an entry (int32; ``EMPTY`` never used, ``TOMB`` removed: probing goes on
past it) and 16 more bits of the id's 64-bit hash (its tag), so most slots of other ids are
skipped without looking at an id. The home slot is ``hash % size``, then linear probing. The
table never sees an id: whether a candidate row holds the id searched for is asked of the
buffer (``same``), so matches are exact, the hash only narrows the search.

Kept apart from ``arrival_buffer`` (which owns the entries, their storage and expiry) because
the probing is a piece of its own. Where the compiled kernels (``_kernels.c``, built by setup.py)
are there, a query probes slot by slot in C and a key is placed in C, one after the other; the
numpy rounds below (every query of a batch advances one slot per round, compacted to the queries
still searching) are the fallback without them and the reference the tests check them against.
Both find the same rows; the slots a batch of keys lands in can differ (the rounds settle
contention for a slot by the last writer, C by the first key in order), which nothing reads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from exporter.foundation.arrays import HashArray, IntArray

try:
    from exporter.core import _kernels  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the numpy rounds do the work
    _kernels = None

AVAILABLE: bool = _kernels is not None

EMPTY = -1  # slot never used
TOMB = -2  # slot whose entry was removed (probing goes on past it)
MAX_LOAD = 0.75  # rebuild when live + removed slots exceed this share
NEW_LOAD = 0.5  # share of slots a rebuilt table starts with in use
MIN_SIZE = 16

#: ``same(rows, queries)``: whether the entry at each row has the id of the query at that index.
Same = Callable[[IntArray, IntArray], npt.NDArray[np.bool_]]


class IdTable:
    """Rows of entries by the hash of their id (see the module docstring)."""

    __slots__ = ("slots", "tags", "used")

    def __init__(self, size: int = MIN_SIZE) -> None:
        self.slots: npt.NDArray[np.int32] = np.full(size, EMPTY, dtype=np.int32)
        self.tags: npt.NDArray[np.uint16] = np.zeros(size, dtype=np.uint16)
        self.used = 0  # live + tombstone slots

    @property
    def size(self) -> int:
        return int(self.slots.size)

    def probe(self, h: HashArray, same: Same) -> tuple[IntArray, IntArray]:
        """Row and slot of every hashed id, or -1 where it is not in the table.

        The queries still probing are kept compacted (index, position, tag). A slot whose tag
        matches stops a query's probe for now; the ids of all those candidates are compared
        once at the end (``same``), and a query whose candidate was another id (about one in
        65,536 occupied slots) probes on from the next slot in another pass."""
        k = int(h.size)
        rows = np.full(k, -1, dtype=np.int64)
        slots = np.full(k, -1, dtype=np.int64)
        if k == 0:
            return rows, slots
        if _kernels is not None:
            return self._probe_compiled(h, same, rows, slots)
        size = self.size
        p = (h % np.uint64(size)).astype(np.int64)
        tag = (h >> np.uint64(48)).astype(np.uint16)
        active = np.arange(k)
        while active.size:
            cand_q: list[IntArray] = []
            cand_p: list[IntArray] = []
            cand_s: list[IntArray] = []
            while active.size:
                s = self.slots[p]
                cand = self.tags[p] == tag
                cand &= s >= 0
                going = s != EMPTY  # an empty slot ends the search; a tombstone or another key does not
                if cand.any():
                    ci = np.flatnonzero(cand)
                    cand_q.append(active[ci])
                    cand_p.append(p[ci])
                    cand_s.append(s[ci].astype(np.int64))
                    going[ci] = False
                active, p, tag = active[going], p[going], tag[going]
                p += 1
                p[p == size] = 0
            if not cand_q:
                break
            q, at, row = np.concatenate(cand_q), np.concatenate(cand_p), np.concatenate(cand_s)
            hit = np.asarray(same(row, q), dtype=bool)
            rows[q[hit]] = row[hit]
            slots[q[hit]] = at[hit]
            miss = ~hit  # another id with the same tag: probe on past it
            active = q[miss]
            p = at[miss] + 1
            p[p == size] = 0
            tag = (h[active] >> np.uint64(48)).astype(np.uint16)
        return rows, slots

    def _probe_compiled(self, h: HashArray, same: Same, rows: IntArray, slots: IntArray) -> tuple[IntArray, IntArray]:
        """``probe`` in C: the first candidate of every query, their ids compared at once (``same``),
        and the queries whose candidate was another id probing on from the next slot, as above."""
        h = np.ascontiguousarray(h, dtype=np.uint64)
        _kernels.probe(self.slots, self.tags, h, None, rows, slots)
        q = np.flatnonzero(rows >= 0)
        while q.size:
            hit = np.asarray(same(rows[q], q), dtype=bool)
            if bool(hit.all()):
                break
            q = q[~hit]
            more_rows = np.empty(q.size, dtype=np.int64)
            more_slots = np.empty(q.size, dtype=np.int64)
            _kernels.probe(self.slots, self.tags, h[q], slots[q] + 1, more_rows, more_slots)  # wraps at the end
            rows[q] = more_rows
            slots[q] = more_slots
            q = q[more_rows >= 0]
        return rows, slots

    def insert(self, h: HashArray, rows: IntArray) -> None:
        """Put new (distinct, absent) keys into the table; it has room (see ``needs_room``)."""
        if _kernels is not None:
            self.used += int(_kernels.insert(self.slots, self.tags, np.ascontiguousarray(h, dtype=np.uint64),
                                             np.ascontiguousarray(rows, dtype=np.int64)))
            return
        size = self.size
        # the keys not placed yet: their row, table position and tag, compacted every round
        p = (h % np.uint64(size)).astype(np.int64)
        tag = (h >> np.uint64(48)).astype(np.uint16)
        row = np.asarray(rows, dtype=np.int64)
        while row.size:
            free = self.slots[p] < 0  # empty or tombstone: the key is known to be absent
            if free.any():
                # one key per slot per round: every candidate writes its row, the one that stayed won
                at, mine = p[free], row[free]
                was_empty = self.slots[at] == EMPTY
                self.slots[at] = mine
                won = self.slots[at] == mine
                # a tombstone taken again was counted in ``used`` already: only empty slots add to it
                self.used += int(np.count_nonzero(was_empty[won]))
                self.tags[at[won]] = tag[free][won]
                left = ~free
                left[np.flatnonzero(free)[~won]] = True
                p, tag, row = p[left], tag[left], row[left]
            p += 1
            p[p == size] = 0

    def needs_room(self, extra: int) -> bool:
        """Whether ``extra`` more keys would load the table beyond ``MAX_LOAD``."""
        return self.used + extra > MAX_LOAD * self.size

    def remove(self, slots: IntArray) -> None:
        """Mark the slots (-1: none) of removed entries as tombstones."""
        self.slots[slots[slots >= 0]] = TOMB

    def renumber(self, new_rows: Callable[[IntArray], npt.NDArray[np.int32]]) -> None:
        """Give every live slot the row ``new_rows`` maps its row to (the entries were compacted)."""
        at = np.flatnonzero(self.slots >= 0)
        self.slots[at] = new_rows(self.slots[at].astype(np.int64))


def size_for(live: int) -> int:
    """Slots of a table rebuilt for ``live`` keys."""
    return max(MIN_SIZE, int(live / NEW_LOAD) + 1)
