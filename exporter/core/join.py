"""Joining late labels to the predictions they belong to, in bounded memory.

Labels arrive minutes to days after their prediction. Per model, three structures remember what
the join needs, and each holds at most ``join.max_pending`` entries, the oldest going first:

* predictions waiting for their label (evicted ones count as expired predictions);
* labels waiting for their prediction (evicted ones count as orphan labels);
* ids already joined, kept for the TTL so that a second label or a repeated prediction is
  recognised as a duplicate (evicted ones are simply forgotten, and counted).

Waiting entries live in columnar arrays in arrival order, so expiry is a prefix cut, and are
found by id through a vectorised open-addressing hash table: no Python object per entry. They
keep their ids (as UTF-8 bytes) and match them exactly; the 64-bit hash only narrows the search.

Joined ids keep only that hash (``stable_id_hashes``: the same in every process, so it can be
checkpointed), sorted for lookup, with their arrival position and run-length-encoded expiry:
about 12 bytes each. A genuinely new id whose hash equals a remembered one (probability about
n / 2^64) is taken for a duplicate; an id forgotten early (by the bound) is not recognised any
more, so a late second label for it waits as an orphan and a repeated prediction is new.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from exporter.core.joined_ids import JoinedIds
from exporter.foundation.arrays import FloatArray, HashArray, IntArray, ObjArray
from exporter.ingest.ids import decode_ids, encode_ids, object_array, stable_id_hashes

__all__ = ["ArrivalBuffer", "JoinedIds", "Joiner", "Matched", "ModelJoin", "stable_id_hashes"]


_EMPTY = -1  # table slot never used
_TOMB = -2  # table slot whose entry was removed (probing goes on past it)
_MAX_LOAD = 0.75  # rebuild the table when live + removed slots exceed this share
_NEW_LOAD = 0.5  # share of slots a rebuilt table starts with in use
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
    log2(n) of them and appending never copies the whole buffer), the ids as UTF-8 bytes, object
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
        # the table: row of the entry in each slot, and 16 more bits of its hash to skip most
        # non-matching slots without looking at the id (the slot itself comes from h % size)
        self._slots: npt.NDArray[np.int32] = np.full(16, _EMPTY, dtype=np.int32)
        self._tags: npt.NDArray[np.uint16] = np.zeros(16, dtype=np.uint16)
        self._used = 0  # live + tombstone slots

    def __len__(self) -> int:
        return self._live

    def __contains__(self, key: object) -> bool:
        return bool(self.contains(np.array([key], dtype=object))[0])

    # -- the hash table -------------------------------------------------------------------------------
    def _probe(self, h: HashArray, ids: ObjArray, encoded: pa.Array | None = None) -> tuple[IntArray, IntArray]:
        """Row and table slot of every id, or -1 where it is not buffered. ``encoded``: the ids'
        ``encode_ids``, when the caller has it: candidates are then compared as bytes, in C,
        instead of decoding the buffered ids into Python strings."""
        k = int(h.size)
        rows = np.full(k, -1, dtype=np.int64)
        slots = np.full(k, -1, dtype=np.int64)
        if k == 0 or self._live == 0:
            return rows, slots
        size = self._slots.size
        pos = (h % np.uint64(size)).astype(np.int64)
        tag = (h >> np.uint64(48)).astype(np.uint16)
        active = np.arange(k)
        while active.size:
            p = pos[active]
            s = self._slots[p]
            cand = (s >= 0) & (self._tags[p] == tag[active])
            if cand.any():
                ci = np.flatnonzero(cand)
                if encoded is not None:
                    same = pc.equal(self._gather(s[ci].astype(np.int64), "raw"),
                                    encoded.take(pa.array(active[ci]))).to_numpy(zero_copy_only=False)
                else:
                    same = self._ids_at(s[ci].astype(np.int64)) == ids[active[ci]]
                hit = ci[same.astype(bool)]
                rows[active[hit]] = s[hit]
                slots[active[hit]] = p[hit]
                done = s == _EMPTY
                done[hit] = True
            else:
                done = s == _EMPTY
            active = active[~done]
            pos[active] = (pos[active] + 1) % size
        return rows, slots

    def _insert(self, h: HashArray, rows: IntArray) -> None:
        """Put new (distinct, absent) keys into the table; it has room (see ``_reserve``)."""
        size = self._slots.size
        pos = (h % np.uint64(size)).astype(np.int64)
        tag = (h >> np.uint64(48)).astype(np.uint16)
        todo = np.arange(h.size)
        while todo.size:
            p = pos[todo]
            free = self._slots[p] < 0  # empty or tombstone: the key is known to be absent
            cand = todo[free]
            if cand.size:
                # one key per slot per round: every candidate writes its row, the one that stayed won
                at = pos[cand]
                self._slots[at] = rows[cand]
                win = cand[self._slots[at] == rows[cand]]
                self._tags[pos[win]] = tag[win]
                placed = np.zeros(h.size, dtype=bool)
                placed[win] = True
                todo = todo[~placed[todo]]
            pos[todo] = (pos[todo] + 1) % size
        self._used += int(h.size)

    def _reserve(self, extra: int) -> None:
        """Make room for ``extra`` more keys, rebuilding (and dropping tombstones) when needed."""
        if self._used + extra <= _MAX_LOAD * self._slots.size:
            return
        self._rebuild_table(max(16, int((self._live + extra) / _NEW_LOAD) + 1))

    def _rebuild_table(self, size: int) -> None:
        self._slots = np.full(size, _EMPTY, dtype=np.int32)
        self._tags = np.zeros(size, dtype=np.uint16)
        self._used = 0
        for seg in self._segs:
            idx = np.flatnonzero(seg.alive)
            if idx.size:
                self._insert(stable_id_hashes(seg.ids.take(pa.array(idx))), idx + (seg.start - self._base))

    # -- rows ------------------------------------------------------------------------------------------
    def _locate(self, rows: IntArray) -> tuple[IntArray, IntArray]:
        """Segment index and offset in it of each row."""
        seq = rows + self._base
        seg = np.searchsorted(self._starts, seq, side="right") - 1
        return seg, seq - self._starts[seg]

    def _gather(self, rows: IntArray, what: str) -> Any:
        """Values of ``ids`` (``raw``: as Arrow binary), ``expires``, ``alive`` or a column for the rows."""
        seg_idx, off = self._locate(rows)
        parts: list[Any] = []
        order = np.argsort(seg_idx, kind="stable")
        bounds = np.searchsorted(seg_idx[order], np.arange(len(self._segs) + 1))
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
        if what == "raw":
            if not parts:
                return pa.array([], type=pa.binary())
            merged_raw = pa.concat_arrays(parts) if len(parts) > 1 else parts[0]
            return merged_raw.take(pa.array(np.argsort(order, kind="stable")))
        if not parts:
            dtype = object if what == "ids" else np.float64 if what == "expires" else \
                bool if what == "alive" else self._stored_dtype(what)
            return np.empty(0, dtype=dtype)
        merged = np.concatenate(parts) if len(parts) > 1 else parts[0]
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
        items = np.asarray(values, dtype=object).tolist()
        for v in set(items) - codes.keys():
            codes[v] = len(table)
            table.append(v)
        return np.fromiter(map(codes.__getitem__, items), dtype=np.int32, count=len(items))

    # -- the interface -----------------------------------------------------------------------------------
    def lookup(self, ids: Sequence[str] | ObjArray, h: HashArray | None = None,
               encoded: pa.Array | None = None) -> IntArray:
        """Row of each id, or -1 when it is not buffered (``h``, ``encoded``: the ids' hashes and
        ``encode_ids``, when the caller has them)."""
        arr = ids if isinstance(ids, np.ndarray) else object_array(list(ids))
        rows, _ = self._probe(stable_id_hashes(arr) if h is None else h, arr, encoded)
        return rows

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
        self._insert(h, np.arange(start - self._base, start - self._base + n, dtype=np.int64))
        seg = _Segment(start, encoded, np.asarray(expires, dtype=np.float64),
                       {name: self._encode(name, cols[name]) for name in self._dtypes})
        self._next += n
        self._live += n
        self._stored += n
        self._segs.append(seg)
        # merge while the newest segment is at least half the one before (about log2(n) remain)
        while len(self._segs) >= 2 and 2 * self._segs[-1].n >= self._segs[-2].n and \
                self._segs[-2].ids.nbytes + self._segs[-1].ids.nbytes < (1 << 30):
            b = self._segs.pop()
            self._segs[-1] = self._segs[-1].concat(b)
        self._starts = np.array([s.start for s in self._segs], dtype=np.int64)

    def take(self, rows: IntArray) -> dict[str, npt.NDArray[Any]]:
        """Remove the given live rows, returning their columns (and ``id``)."""
        out, _ = self._take(np.asarray(rows, dtype=np.int64))
        return out

    def _take(self, rows: IntArray) -> tuple[dict[str, npt.NDArray[Any]], HashArray]:
        out = {n: self._decode(n, self._gather(rows, n)) for n in self._dtypes}
        raw: pa.Array = self._gather(rows, "raw")
        ids = decode_ids(raw)
        out["id"] = ids
        out["expires"] = self._gather(rows, "expires")
        h = stable_id_hashes(raw)
        if rows.size:
            _, slots = self._probe(h, ids, raw)
            self._slots[slots[slots >= 0]] = _TOMB
            seg_idx, off = self._locate(rows)
            for j in np.unique(seg_idx).tolist():
                self._segs[j].alive[off[seg_idx == j]] = False
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
        if self._live == 0 and self._slots.size > 16:  # emptied (labels all joined): drop the table too
            self._slots = np.full(16, _EMPTY, dtype=np.int32)
            self._tags = np.zeros(16, dtype=np.uint16)
            self._used = 0
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
        for n in self._codes:  # forget dictionary values no live entry uses any more
            used, codes = np.unique(stored[n], return_inverse=True)
            values = self._values[n]
            self._values[n] = [values[i] for i in used.tolist()]
            self._codes[n] = {v: i for i, v in enumerate(self._values[n])}
            stored[n] = codes.astype(np.int32).reshape(-1)
        self._base = self._next
        live = int(stored[next(iter(stored))].size) if stored else sum(int(a.size) for a in expires)
        self._segs = []
        if live:
            self._segs.append(_Segment(self._next, pa.concat_arrays(ids) if ids else pa.array([], pa.binary()),
                                       np.concatenate(expires), stored))
        self._starts = np.array([s.start for s in self._segs], dtype=np.int64)
        self._next += live
        self._live = self._stored = live
        self._rebuild_table(max(16, int(live / _NEW_LOAD) + 1))

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


PENDING_COLUMNS: dict[str, npt.DTypeLike] = {
    "version": object, "pred_idx": np.int32, "confidence": np.float64, "pred_ts": np.float64,
}
# a waiting label: its model is the buffer it waits in (labels that name none share one)
WAITING_COLUMNS: dict[str, npt.DTypeLike] = {"label": object, "label_ts": np.float64, "source": object}


@dataclass
class ModelJoin:
    """One model's pending predictions, the labels waiting for them, and the ids it already joined."""

    ttl: float
    max_pending: int

    def __post_init__(self) -> None:
        self.pending = ArrivalBuffer(PENDING_COLUMNS)
        self.waiting = ArrivalBuffer(WAITING_COLUMNS)
        self.joined = JoinedIds()
        self.forgotten_total = 0  # joined ids forgotten before their TTL, to respect max_pending


@dataclass
class Matched:
    """Predictions of one model that met their labels."""

    pred: dict[str, npt.NDArray[Any]]  # PENDING_COLUMNS + id
    label: npt.NDArray[np.object_]
    label_ts: FloatArray


class Joiner:
    """Labels meet predictions by id, whichever arrives first (ids are unique across models).

    A label naming a model waits in that model's buffer, up to its ``max_pending``; labels that
    name none (a label source without ``model``, records without one) wait in a shared buffer, up
    to the sum of the models' ``max_pending``, because they may belong to any model. Every
    waiting label waits for the longest TTL of all models (as in earlier releases).
    """

    def __init__(self, models: Mapping[str, tuple[float, int]]) -> None:
        self.models: dict[str, ModelJoin] = {}
        self.unnamed = ArrivalBuffer(WAITING_COLUMNS)
        self.configure(models)

    def configure(self, models: Mapping[str, tuple[float, int]]) -> None:
        """Apply (ttl, max_pending) per model, keeping the buffers of models that remain."""
        old = self.models
        self.models = {}
        for name, (ttl, max_pending) in models.items():
            mj = old.get(name) or ModelJoin(ttl, max_pending)
            mj.ttl, mj.max_pending = ttl, max_pending
            self.models[name] = mj
        self.orphan_ttl = max((t for t, _ in models.values()), default=0.0)
        self.unnamed_max = sum(m for _, m in models.values())

    def is_known(self, model: str, ids: npt.NDArray[np.object_],
                 hashes: HashArray | None = None, encoded: pa.Array | None = None) -> npt.NDArray[np.bool_]:
        """Ids already pending or joined for this model: a repeated prediction is a duplicate.
        ``hashes``, ``encoded``: their ``stable_id_hashes`` and ``encode_ids`` when the caller
        has them already."""
        mj = self.models[model]
        h = stable_id_hashes(ids) if hashes is None else hashes
        return mj.pending.contains(ids, h, encoded) | mj.joined.contains(h)

    def add_predictions(
        self, model: str, ids: npt.NDArray[np.object_], cols: Mapping[str, npt.NDArray[Any]], now: float,
        accepts: Callable[[npt.NDArray[np.object_]], npt.NDArray[np.bool_]] | None = None,
        keys: tuple[pa.Array, HashArray] | None = None,
    ) -> tuple[npt.NDArray[np.bool_], Matched, npt.NDArray[np.object_]]:
        """Buffer new predictions (already de-duplicated); those whose label waited join at once.

        ``accepts`` says which waiting label values this model can score; a waiting label it
        cannot (a class outside its fixed classes) is dropped as invalid and the prediction keeps
        waiting for a valid one, exactly as if the label had come second. Returns the mask of
        predictions that joined, the matches, and the source of each dropped label. ``keys``:
        ``encode_ids(ids)`` and their ``stable_id_hashes`` when the caller has them already
        (the pipeline hashed the ids to find duplicates: encoding them again cost as much).
        """
        mj = self.models[model]
        if keys is None:
            encoded = encode_ids(ids)
            h = stable_id_hashes(encoded)
        else:
            encoded, h = keys
        n = int(ids.size)
        hit = np.zeros(n, dtype=bool)
        labels = np.empty(n, dtype=object)
        label_ts = np.zeros(n, dtype=np.float64)
        rejected: list[ObjArray] = []
        for buf in (mj.waiting, self.unnamed):
            if len(buf) == 0:
                continue
            rows = buf.lookup(ids, h, encoded)
            rows[hit] = -1
            idx = np.flatnonzero(rows >= 0)
            if idx.size == 0:
                continue
            if accepts is not None:
                good = accepts(buf.column("label", rows[idx]))
                if not good.all():
                    rejected.append(buf.take(rows[idx[~good]])["source"])
                    idx = idx[good]
            if idx.size:
                taken = buf.take(rows[idx])
                hit[idx] = True
                labels[idx] = taken["label"]
                label_ts[idx] = taken["label_ts"]
        waiting = ~hit
        mj.pending.add(ids[waiting], np.full(int(waiting.sum()), now + mj.ttl),
                       {c: np.asarray(v)[waiting] for c, v in cols.items()}, h[waiting],
                       encoded if not hit.any() else encoded.filter(pa.array(waiting)))
        mj.joined.add(h[hit], now + mj.ttl)
        pred = {c: np.asarray(v)[hit] for c, v in cols.items()}
        pred["id"] = ids[hit]
        rejected_sources = np.concatenate(rejected) if rejected else np.empty(0, dtype=object)
        return hit, Matched(pred, labels[hit], label_ts[hit]), rejected_sources

    def locate_labels(
        self, ids: npt.NDArray[np.object_], models: npt.NDArray[np.object_], hashes: HashArray | None = None,
        encoded: pa.Array | None = None,
    ) -> tuple[dict[str, npt.NDArray[np.int64]], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Find which model's pending prediction each label belongs to, without changing state.

        Returns {model: row of pending per label (-1 elsewhere)}, a mask of labels found, and a
        mask of labels that are duplicates: their id was already joined (and is still
        remembered) by a model the label may belong to, or a label with that id already waits.
        ``hashes``, ``encoded``: the ids' ``stable_id_hashes`` and ``encode_ids`` when the caller
        has them already.
        """
        found = np.zeros(ids.size, dtype=bool)
        dup = np.zeros(ids.size, dtype=bool)
        rows_by_model: dict[str, npt.NDArray[np.int64]] = {}
        h = stable_id_hashes(ids) if hashes is None else hashes
        restrict = models.tolist()
        unrestricted = all(m is None for m in restrict)
        for name, mj in self.models.items():
            allowed = np.ones(ids.size, dtype=bool) if unrestricted else np.fromiter(
                (m is None or m == name for m in restrict), dtype=bool, count=ids.size)
            rows = mj.pending.lookup(ids, h, encoded)
            rows[~allowed | found] = -1
            if (rows >= 0).any():
                rows_by_model[name] = rows
                found |= rows >= 0
            dup |= allowed & mj.joined.contains(h)
        dup &= ~found
        for buf in self._waiting_buffers():
            if len(buf):
                dup |= ~found & buf.contains(ids, h, encoded)
        return rows_by_model, found, dup

    def take_pending(self, model: str, rows: npt.NDArray[np.int64], now: float) -> dict[str, npt.NDArray[Any]]:
        """Remove the pending predictions at ``rows`` (their labels came) and remember their ids."""
        mj = self.models[model]
        pred, h = mj.pending._take(np.asarray(rows, dtype=np.int64))
        mj.joined.add(h, now + mj.ttl)
        return pred

    def add_orphans(self, ids: npt.NDArray[np.object_], labels: npt.NDArray[np.object_], label_ts: FloatArray,
                    models: npt.NDArray[np.object_], now: float, source: str = "",
                    keys: tuple[pa.Array, HashArray] | None = None) -> None:
        """Labels with no prediction yet, each in the buffer of the model it names (or the shared one).

        ``source`` is charged if the label later proves invalid. A label naming a model that is
        not configured is the caller's to refuse; here it is dropped. ``keys``: ``encode_ids(ids)``
        and their ``stable_id_hashes`` when the caller has them already.
        """
        groups = _model_groups(models)
        for name, rows in groups:
            if name is None:
                buf = self.unnamed
            elif name in self.models:
                buf = self.models[name].waiting
            else:
                continue
            encoded, h = (None, None) if keys is None else \
                (keys[0], keys[1]) if len(groups) == 1 else (keys[0].take(pa.array(rows)), keys[1][rows])
            buf.add(ids[rows], np.full(rows.size, now + self.orphan_ttl),
                    {"label": labels[rows], "label_ts": np.asarray(label_ts)[rows],
                     "source": np.full(rows.size, source, dtype=object)}, h, encoded)

    def expire(self, now: float) -> tuple[dict[str, dict[str, npt.NDArray[Any]]], npt.NDArray[np.object_]]:
        """Apply the TTLs and the ``max_pending`` bounds, oldest first.

        Returns the predictions that expired or were pushed out, per model, and the model named
        by each label that expired or was pushed out (None for a label naming none): both are
        counted by the caller. Joined ids forgotten early are counted here (``forgotten_total``).
        """
        expired = {}
        orphans: list[ObjArray] = []
        for name, mj in self.models.items():
            gone = mj.pending.expire(now, mj.max_pending)
            if gone["id"].size:
                expired[name] = gone
            n_orphans = int(mj.waiting.expire(now, mj.max_pending)["id"].size)
            if n_orphans:
                orphans.append(np.full(n_orphans, name, dtype=object))
            _, forgotten = mj.joined.expire(now, mj.max_pending)
            mj.forgotten_total += forgotten
        n_unnamed = int(self.unnamed.expire(now, self.unnamed_max)["id"].size)
        if n_unnamed:
            orphans.append(np.full(n_unnamed, None, dtype=object))
        return expired, np.concatenate(orphans) if orphans else np.empty(0, dtype=object)

    def _waiting_buffers(self) -> list[ArrivalBuffer]:
        return [*(mj.waiting for mj in self.models.values()), self.unnamed]

    def state(self) -> dict[str, Any]:
        """Everything to continue joining exactly where this joiner is (see ``restore``).

        ``models`` holds what depends on the model's classes (pending predictions carry class
        indices) and may be dropped by the caller when they changed; waiting labels are text
        and live apart, under ``waiting`` (per model) and ``unnamed``.
        """
        return {
            "models": {name: {"pending": mj.pending.export(), "joined": mj.joined.export(),
                              "forgotten_total": mj.forgotten_total}
                       for name, mj in self.models.items()},
            "waiting": {name: mj.waiting.export() for name, mj in self.models.items()},
            "unnamed": self.unnamed.export(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Reinstate buffers of models that are still configured (others are dropped).

        Also reads the state of earlier releases (one orphan buffer with a ``model`` column,
        joined ids kept whole), so a checkpoint can be migrated.
        """
        for name, saved in state["models"].items():
            mj = self.models.get(name)
            if mj is not None:
                mj.pending.restore(saved["pending"])
                mj.joined.restore(saved["joined"])
                mj.forgotten_total = int(saved.get("forgotten_total", 0))
        if "orphans" in state:  # earlier releases: one buffer, the model in a column
            self._restore_orphans(state["orphans"])
            return
        for name, saved in state["waiting"].items():
            if name in self.models:
                self.models[name].waiting.restore(saved)
        self.unnamed.restore(state["unnamed"])

    def _restore_orphans(self, saved: Mapping[str, Any]) -> None:
        for name, rows in _model_groups(np.asarray(saved["model"], dtype=object)):
            buf = self.unnamed if name is None else self.models[name].waiting if name in self.models else None
            if buf is not None:
                buf.restore({k: np.asarray(v)[rows] for k, v in saved.items()})

    def pending_count(self, model: str) -> int:
        """Predictions of the model waiting for their label."""
        return len(self.models[model].pending)

    def waiting_count(self, model: str | None) -> int:
        """Labels waiting for their prediction: naming ``model``, or (None) naming no model."""
        return len(self.unnamed if model is None else self.models[model].waiting)

    def joined_count(self, model: str) -> int:
        """Ids the model joined and still remembers."""
        return len(self.models[model].joined)

    def forgotten_total(self, model: str) -> int:
        """Joined ids the model forgot before their TTL, to stay within ``max_pending``."""
        return self.models[model].forgotten_total


def _model_groups(models: npt.NDArray[np.object_]) -> list[tuple[str | None, npt.NDArray[np.int64]]]:
    """Row indices per distinct model value (None first, then names in order)."""
    distinct = set(models.tolist())
    if len(distinct) == 1:
        return [(distinct.pop(), np.arange(models.size))]
    none = np.fromiter((m is None for m in models.tolist()), dtype=bool, count=models.size)
    out: list[tuple[str | None, npt.NDArray[np.int64]]] = [(None, np.flatnonzero(none))] if none.any() else []
    return out + [(v, np.flatnonzero(models == v)) for v in sorted(str(v) for v in distinct if v is not None)]
