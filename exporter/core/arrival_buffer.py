"""Columnar entries in arrival order, found by id: what the join keeps waiting (predictions for their
label, labels for their prediction).

Entries live in columnar arrays in arrival order, so expiry and the ``max_pending`` bound are a
prefix cut, and are found by id through a vectorised open-addressing hash table (``id_table``): no
Python object per entry. They keep their ids (as UTF-8 bytes) and match them exactly; the 64-bit
hash only narrows the search.

About 450 lines, over the house's 400, on purpose: storage, removal, compaction and expiry all
renumber or mark the same rows the table points at, and are only checkable together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from exporter.core.id_table import IdTable, size_for
from exporter.foundation.arrays import FloatArray, HashArray, IntArray, ObjArray
from exporter.ingest.batch_ops import factorize
from exporter.ingest.ids import decode_ids, encode_ids, object_array, stable_id_hashes

_ROW_LIMIT = (1 << 31) - (1 << 24)  # rows are int32 in the table: renumber before they overflow


class _Segment:
    """Consecutive entries (sequence numbers ``start .. start + n - 1``) in arrival order."""

    __slots__ = ("alive", "cols", "expires", "ids", "n", "start")

    def __init__(self, start: int, ids: pa.Array, expires: FloatArray, cols: dict[str, npt.NDArray[Any]],
                 alive: npt.NDArray[np.bool_] | None = None) -> None:
        self.start = start
        self.n = len(ids)
        self.ids = ids
        self.expires = _RunLength.of(expires)
        self.cols = cols
        self.alive = np.ones(self.n, dtype=bool) if alive is None else alive

    @property
    def end(self) -> int:
        return self.start + self.n

    def concat(self, other: _Segment) -> _Segment:
        seg = _Segment.__new__(_Segment)
        seg.start, seg.n = self.start, self.n + other.n
        seg.ids = pa.concat_arrays([self.ids, other.ids])
        seg.expires = self.expires.concat(other.expires, self.n)
        seg.cols = {k: np.concatenate((c, other.cols[k])) for k, c in self.cols.items()}
        seg.alive = np.concatenate((self.alive, other.alive))
        return seg


class _RunLength:
    """A float column stored as runs of equal values (expiry times come in whole batches)."""

    __slots__ = ("pos", "val")

    def __init__(self, pos: IntArray, val: FloatArray) -> None:
        self.pos = pos  # first row of each run
        self.val = val

    @classmethod
    def of(cls, values: FloatArray) -> _RunLength:
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0:
            return cls(np.zeros(0, dtype=np.int64), v)
        change = np.flatnonzero(v[1:] != v[:-1]) + 1  # NaN never equals: fine, just more runs
        pos = np.concatenate(([0], change)).astype(np.int64)
        return cls(pos, v[pos].copy())

    def concat(self, other: _RunLength, offset: int) -> _RunLength:
        return _RunLength(np.concatenate((self.pos, other.pos + offset)), np.concatenate((self.val, other.val)))

    def at(self, rows: IntArray) -> FloatArray:
        out: FloatArray = self.val[np.searchsorted(self.pos, rows, side="right") - 1]
        return out

    def first_after(self, now: float) -> int | None:
        """First row whose value is above ``now`` (values are non-decreasing), None if none."""
        i = int(np.searchsorted(self.val, now, side="right"))
        return int(self.pos[i]) if i < self.val.size else None


class ArrivalBuffer:
    """Entries keyed by id, in arrival order, with FIFO expiry and a size bound.

    Storage is a few segments of columnar arrays (merged as they accumulate, so there are about
    log2(n) + 1 of them and appending never copies the whole buffer), the ids as UTF-8 bytes, object
    columns (versions, class text) dictionary-encoded, expiry times run-length encoded. Removed
    entries leave holes that are compacted away once they outnumber the live ones, so memory
    stays proportional to what is buffered. Rows returned by ``lookup`` are valid until the
    buffer changes.
    """

    def __init__(self, columns: Mapping[str, npt.DTypeLike]) -> None:
        self._dtypes = {n: np.dtype(d) for n, d in columns.items()}
        self._segs: list[_Segment] = []
        self._starts: IntArray = np.zeros(0, dtype=np.int64)
        self._next = 0  # sequence number of the next entry
        self._base = 0  # row = sequence number - base
        self._live = 0
        self._stored = 0  # entries in segments, live or not
        self._codes: dict[str, dict[Any, int]] = {n: {} for n, d in self._dtypes.items() if d.kind == "O"}
        self._values: dict[str, list[Any]] = {n: [] for n in self._codes}
        self._table = IdTable()  # finds entries by the hash of their id (``id_table``)

    def __len__(self) -> int:
        return self._live

    def __contains__(self, key: object) -> bool:
        return bool(self.contains(np.array([key], dtype=object))[0])

    # -- the hash table -------------------------------------------------------------------------------
    def _probe(self, h: HashArray, ids: ObjArray, encoded: pa.Array | None = None) -> tuple[IntArray, IntArray]:
        """Row and table slot of every id, or -1 where it is not buffered. ``encoded``: the ids'
        ``encode_ids``, when the caller has it: candidates are then compared as bytes, in C,
        instead of decoding the buffered ids into Python strings."""
        if self._live == 0:
            none = np.full(int(h.size), -1, dtype=np.int64)
            return none, none.copy()

        def same(rows: IntArray, at: IntArray) -> npt.NDArray[np.bool_]:
            if encoded is not None:
                return self._same_ids(rows, encoded, at)
            return np.asarray(self._ids_at(rows) == ids[at], dtype=bool)

        return self._table.probe(h, same)

    def _same_ids(self, rows: IntArray, encoded: pa.Array, at: IntArray) -> npt.NDArray[np.bool_]:
        """Whether the buffered id of each row equals ``encoded[at]``, byte for byte.

        Compared segment by segment (the rows of one segment against their queries), so the
        buffered ids are never concatenated and put back in query order first."""
        seg_idx, off = self._locate(rows)
        out = np.zeros(rows.size, dtype=bool)
        if len(self._segs) == 1 or bool((seg_idx == seg_idx[0]).all()):
            parts = [(int(seg_idx[0]), np.arange(rows.size))]
        else:
            parts = [(j, np.flatnonzero(seg_idx == j)) for j in np.unique(seg_idx).tolist()]
        for j, sel in parts:
            mine = self._segs[j].ids.take(pa.array(off[sel]))
            out[sel] = pc.equal(mine, encoded.take(pa.array(at[sel]))).to_numpy(zero_copy_only=False)
        return out

    def _reserve(self, extra: int) -> None:
        """Make room for ``extra`` more keys, rebuilding (and dropping tombstones) when needed."""
        if self._table.needs_room(extra):
            self._rebuild_table(size_for(self._live + extra))

    def _rebuild_table(self, size: int) -> None:
        self._table = IdTable(size)
        for seg in self._segs:
            idx = np.flatnonzero(seg.alive)
            if idx.size:
                self._table.insert(stable_id_hashes(seg.ids.take(pa.array(idx))), idx + (seg.start - self._base))

    # -- rows ------------------------------------------------------------------------------------------
    def _locate(self, rows: IntArray) -> tuple[IntArray, IntArray]:
        """Segment index and offset in it of each row."""
        seq = rows + self._base
        seg = np.searchsorted(self._starts, seq, side="right") - 1
        return seg, seq - self._starts[seg]

    def _plan(self, rows: IntArray) -> tuple[IntArray, IntArray, IntArray]:
        """Where the rows are: their offsets in their segments, the order that groups them by
        segment, and each segment's range in that order (``_gather`` of several columns of the
        same rows shares one plan)."""
        seg_idx, off = self._locate(rows)
        if seg_idx.size and bool((seg_idx == seg_idx[0]).all()):  # the usual case: one segment
            order = np.arange(rows.size)
            bounds = np.full(len(self._segs) + 1, rows.size, dtype=np.int64)
            bounds[:int(seg_idx[0]) + 1] = 0
            return off, order, bounds
        order = np.argsort(seg_idx, kind="stable")
        bounds = np.searchsorted(seg_idx[order], np.arange(len(self._segs) + 1))
        return off, order, bounds

    def _gather(self, rows: IntArray, what: str, plan: tuple[IntArray, IntArray, IntArray] | None = None) -> Any:
        """Values of ``ids`` (``raw``: as Arrow binary), ``expires``, ``alive`` or a column for the rows
        (``plan``: ``_plan(rows)``, when the caller gathers several columns of them)."""
        off, order, bounds = self._plan(rows) if plan is None else plan
        parts: list[Any] = []
        for j, seg in enumerate(self._segs):
            lo, hi = int(bounds[j]), int(bounds[j + 1])
            if lo == hi:
                continue
            o = off[order[lo:hi]]
            if what == "ids":
                parts.append(decode_ids(seg.ids.take(pa.array(o))))
            elif what == "raw":
                parts.append(seg.ids.take(pa.array(o)))
            elif what == "expires":
                parts.append(seg.expires.at(o))
            elif what == "alive":
                parts.append(seg.alive[o])
            else:
                parts.append(seg.cols[what][o])
        in_order = len(parts) == 1  # one segment: ``order`` is the identity
        if what == "raw":
            if not parts:
                return pa.array([], type=pa.binary())
            if in_order:
                return parts[0]
            merged_raw = pa.concat_arrays(parts)
            return merged_raw.take(pa.array(np.argsort(order, kind="stable")))
        if not parts:
            dtype = object if what == "ids" else np.float64 if what == "expires" else \
                bool if what == "alive" else self._stored_dtype(what)
            return np.empty(0, dtype=dtype)
        if in_order:
            return parts[0]
        merged = np.concatenate(parts)
        out = np.empty_like(merged)
        out[order] = merged
        return out

    def _ids_at(self, rows: IntArray) -> ObjArray:
        out: ObjArray = self._gather(rows, "ids")
        return out

    def _stored_dtype(self, name: str) -> np.dtype[Any]:
        return np.dtype(np.int32) if self._dtypes[name].kind == "O" else self._dtypes[name]

    def _decode(self, name: str, stored: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self._dtypes[name].kind != "O":
            return stored
        values = np.empty(len(self._values[name]), dtype=object)
        values[:] = self._values[name]
        out: npt.NDArray[Any] = values[stored]
        return out

    def _encode(self, name: str, values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self._dtypes[name].kind != "O":
            return np.asarray(values).astype(self._dtypes[name], copy=True)
        codes, table = self._codes[name], self._values[name]
        # per distinct value (a C hash table), broadcast back: a column holds few of them
        inverse, uniques = factorize(np.asarray(values, dtype=object))
        for v in uniques.tolist():
            if v not in codes:
                codes[v] = len(table)
                table.append(v)
        lut = np.fromiter(map(codes.__getitem__, uniques.tolist()), dtype=np.int32, count=uniques.size)
        out: npt.NDArray[Any] = lut[inverse]
        return out

    # -- the interface -----------------------------------------------------------------------------------
    def lookup(self, ids: Sequence[str] | ObjArray, h: HashArray | None = None,
               encoded: pa.Array | None = None) -> IntArray:
        """Row of each id, or -1 when it is not buffered (``h``, ``encoded``: the ids' hashes and
        ``encode_ids``, when the caller has them)."""
        arr = ids if isinstance(ids, np.ndarray) else object_array(list(ids))
        rows, _ = self._probe(stable_id_hashes(arr) if h is None else h, arr, encoded)
        return rows

    def lookup_slots(self, ids: ObjArray, h: HashArray, encoded: pa.Array | None = None) -> tuple[IntArray, IntArray]:
        """Row and table slot of each id (-1 when it is not buffered), for ``_take`` of the found
        rows without finding them again; both valid until the buffer changes."""
        return self._probe(h, ids, encoded)

    def contains(self, ids: ObjArray, h: HashArray | None = None,
                 encoded: pa.Array | None = None) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = self.lookup(ids, h, encoded) >= 0
        return out

    def add(self, ids: npt.NDArray[np.object_], expires: FloatArray, cols: Mapping[str, npt.NDArray[Any]],
            h: HashArray | None = None, encoded: pa.Array | None = None) -> None:
        """Append entries (ids must be new and distinct; ``encoded`` their ``_encode_ids``)."""
        n = int(ids.size)
        if n == 0:
            return
        if self._next + n - self._base > _ROW_LIMIT:
            self._compact()
        encoded = encode_ids(ids) if encoded is None else encoded
        h = stable_id_hashes(encoded) if h is None else h
        self._reserve(n)
        start = self._next
        self._table.insert(h, np.arange(start - self._base, start - self._base + n, dtype=np.int64))
        seg = _Segment(start, encoded, np.asarray(expires, dtype=np.float64),
                       {name: self._encode(name, cols[name]) for name in self._dtypes})
        self._next += n
        self._live += n
        self._stored += n
        # merge the older segments while the newest of them is at least half the one before (about
        # log2(n) remain), then append: the batch before this one stays a segment of its own, so
        # when its entries all leave next (a label for every prediction, in order) it is dropped
        # whole instead of being copied into a merge and out again by a compaction
        while len(self._segs) >= 2 and 2 * self._segs[-1].n >= self._segs[-2].n and \
                self._segs[-2].ids.nbytes + self._segs[-1].ids.nbytes < (1 << 30):
            b = self._segs.pop()
            self._segs[-1] = self._segs[-1].concat(b)
        self._segs.append(seg)
        self._starts = np.array([s.start for s in self._segs], dtype=np.int64)

    def take(self, rows: IntArray) -> dict[str, npt.NDArray[Any]]:
        """Remove the given live rows, returning their columns (and ``id``)."""
        out, _ = self._take(np.asarray(rows, dtype=np.int64))
        return out

    def _take(self, rows: IntArray, slots: IntArray | None = None, h: HashArray | None = None,
              with_ids: bool = True) -> tuple[dict[str, npt.NDArray[Any]], HashArray]:
        """Remove live rows; their columns (with ``id`` and ``expires`` unless ``with_ids`` is
        False) and the ids' hashes. ``slots`` and ``h``: the rows' table slots (``lookup_slots``)
        and hashes, when the caller found the rows by id: the ids then need neither hashing nor
        finding again. ``with_ids=False`` spares decoding the ids into Python strings."""
        plan = self._plan(rows)
        out = {n: self._decode(n, self._gather(rows, n, plan)) for n in self._dtypes}
        raw: pa.Array | None = None
        if with_ids:
            raw = self._gather(rows, "raw", plan)
            out["id"] = decode_ids(raw)
            out["expires"] = self._gather(rows, "expires", plan)
        if h is None:
            h = stable_id_hashes(self._gather(rows, "raw", plan) if raw is None else raw)
        if rows.size:
            if slots is None:
                raw = self._gather(rows, "raw", plan) if raw is None else raw
                _, slots = self._probe(h, np.empty(0, dtype=object), raw)
            self._table.remove(slots)
            off, order, bounds = plan
            for j, seg in enumerate(self._segs):
                lo, hi = int(bounds[j]), int(bounds[j + 1])
                if lo < hi:
                    seg.alive[off[order[lo:hi]]] = False
            self._live -= int(rows.size)
            self._maybe_compact()
        return out, h

    def expire(self, now: float, max_size: int | None = None) -> dict[str, npt.NDArray[Any]]:
        """Remove entries whose expiry passed, then the oldest beyond ``max_size``."""
        rows: list[IntArray] = []
        n_due = 0
        excess = 0
        cut_seg = len(self._segs)
        cut_off = 0
        for j, seg in enumerate(self._segs):
            first = seg.expires.first_after(now)
            hi = seg.n if first is None else first
            due = np.flatnonzero(seg.alive[:hi])
            if due.size:
                rows.append(due + (seg.start - self._base))
                n_due += int(due.size)
            if first is not None:
                cut_seg, cut_off = j, first
                break
        if max_size is not None:
            excess = self._live - n_due - max_size
        if excess > 0:
            for j in range(cut_seg, len(self._segs)):
                seg = self._segs[j]
                later = np.flatnonzero(seg.alive[cut_off if j == cut_seg else 0:])[:excess]
                later += cut_off if j == cut_seg else 0
                rows.append(later + (seg.start - self._base))
                excess -= int(later.size)
                if excess <= 0:
                    break
        taken = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return self.take(taken)

    def _maybe_compact(self) -> None:
        # leading segments without a live entry (the FIFO case) go at once; others wait for the
        # compaction below, so that segments always cover consecutive sequence numbers
        drop = 0
        while drop < len(self._segs) and not self._segs[drop].alive.any():
            drop += 1
        if drop:
            self._stored -= sum(s.n for s in self._segs[:drop])
            del self._segs[:drop]
            self._starts = self._starts[drop:]
        if self._live == 0 and self._table.size > 16:  # emptied (labels all joined): drop the table too
            self._table = IdTable()
        dead = self._stored - self._live
        bloated = any(len(v) > 2 * self._live + 1024 for v in self._values.values())
        if bloated or (dead > 1024 and dead >= self._live):
            self._compact()

    def _compact(self) -> None:
        """Keep only live entries, renumbered from a new base, and rebuild the table."""
        ids: list[pa.Array] = []
        expires: list[FloatArray] = []
        cols: dict[str, list[npt.NDArray[Any]]] = {n: [] for n in self._dtypes}
        for seg in self._segs:
            idx = np.flatnonzero(seg.alive)
            ids.append(seg.ids.take(pa.array(idx)))
            expires.append(seg.expires.at(idx))
            for n in self._dtypes:
                cols[n].append(seg.cols[n][idx])
        stored = {n: np.concatenate(c) if c else np.empty(0, dtype=self._stored_dtype(n)) for n, c in cols.items()}
        new_rows = self._compacted_rows()
        for n in self._codes:  # forget dictionary values no live entry uses any more
            values = self._values[n]
            used = np.flatnonzero(np.bincount(stored[n], minlength=len(values)))  # codes in use, ascending
            recode = np.zeros(len(values), dtype=np.int32)
            recode[used] = np.arange(used.size, dtype=np.int32)
            self._values[n] = [values[i] for i in used.tolist()]
            self._codes[n] = {v: i for i, v in enumerate(self._values[n])}
            stored[n] = recode[stored[n]]
        self._base = self._next
        live = int(stored[next(iter(stored))].size) if stored else sum(int(a.size) for a in expires)
        self._segs = []
        if live:
            self._segs.append(_Segment(self._next, pa.concat_arrays(ids) if ids else pa.array([], pa.binary()),
                                       np.concatenate(expires), stored))
        self._starts = np.array([s.start for s in self._segs], dtype=np.int64)
        self._next += live
        self._live = self._stored = live
        size = size_for(live)
        if self._table.size > 4 * size:  # the buffer shrank a lot: a table of its new size
            self._rebuild_table(size)
        else:  # renumber the rows in place: no id hashed or placed again (tombstones stay counted)
            self._table.renumber(new_rows)

    def _compacted_rows(self) -> Callable[[IntArray], npt.NDArray[np.int32]]:
        """Before a compaction: the function from a live row to its row after it (live entries
        renumbered from 0 in arrival order)."""
        # segments cover consecutive sequence numbers: one rank over all of them
        first = int(self._segs[0].start) if self._segs else 0
        rank = (np.cumsum(np.concatenate([seg.alive for seg in self._segs]), dtype=np.int64) - 1
                if self._segs else np.zeros(0, dtype=np.int64))
        offset = self._base - first

        def renumber(rows: IntArray) -> npt.NDArray[np.int32]:
            out: npt.NDArray[np.int32] = rank[rows + offset].astype(np.int32)
            return out

        return renumber

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Re-add entries returned by ``export`` (in their original arrival order)."""
        self.add(np.asarray(saved["id"], dtype=object), np.asarray(saved["expires"], dtype=np.float64),
                 {n: saved[n] for n in self._dtypes})

    def export(self) -> dict[str, Any]:
        """Live entries in arrival order: every column, ``id`` and ``expires``."""
        out: dict[str, Any] = {n: [] for n in self._dtypes}
        out["id"], out["expires"] = [], []
        for seg in self._segs:
            idx = np.flatnonzero(seg.alive)
            for n in self._dtypes:
                out[n].append(self._decode(n, seg.cols[n][idx]))
            out["id"].append(decode_ids(seg.ids.take(pa.array(idx))))
            out["expires"].append(seg.expires.at(idx))
        empty = {n: np.empty(0, dtype=d) for n, d in self._dtypes.items()}
        empty["id"], empty["expires"] = np.empty(0, dtype=object), np.empty(0, dtype=np.float64)
        return {k: np.concatenate(v) if v else empty[k] for k, v in out.items()}

    def column(self, name: str, rows: IntArray) -> npt.NDArray[Any]:
        """One column's values at the rows (e.g. the model an orphan label names)."""
        return self._decode(name, self._gather(np.asarray(rows, dtype=np.int64), name))
