"""Joining late labels to the predictions they belong to.

Labels arrive minutes to days after their prediction. Predictions wait in a bounded buffer
(per model: its own TTL and ``max_pending``); a label that comes first waits as an orphan for
its prediction. Entries are kept in columnar numpy arrays in arrival order, so expiry is a
prefix cut and the only per-event Python is one dict lookup per id.

Ids already joined are remembered for the TTL, so a repeated prediction or a second label for
the same id is recognised as a duplicate instead of being counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class ArrivalBuffer:
    """Entries keyed by id, in arrival order, with FIFO expiry and a size bound.

    ``columns`` are stored by sequence number; removed entries leave holes that are compacted
    away once they outnumber the live ones, so memory stays proportional to what is pending.
    """

    def __init__(self, columns: Mapping[str, npt.DTypeLike]) -> None:
        self._dtypes = {n: np.dtype(d) for n, d in columns.items()}
        self.index: dict[str, int] = {}  # id -> sequence number
        self._base = 0  # sequence number of row 0
        self._expires: FloatArray = np.empty(0, dtype=np.float64)
        self._alive: npt.NDArray[np.bool_] = np.empty(0, dtype=bool)
        self._ids: npt.NDArray[np.object_] = np.empty(0, dtype=object)
        self.cols: dict[str, npt.NDArray[Any]] = {n: np.empty(0, dtype=d) for n, d in self._dtypes.items()}

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def lookup(self, ids: Sequence[str]) -> IntArray:
        """Row of each id, or -1 when it is not buffered."""
        get = self.index.get
        seq = np.fromiter((get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        return np.where(seq >= 0, seq - self._base, -1)

    def add(self, ids: npt.NDArray[np.object_], expires: FloatArray, cols: Mapping[str, npt.NDArray[Any]]) -> None:
        """Append entries (ids must be new and distinct)."""
        n = ids.size
        if n == 0:
            return
        start = self._base + self._ids.size
        self.index.update(zip(ids.tolist(), range(start, start + n), strict=True))
        self._ids = np.concatenate((self._ids, ids))
        self._expires = np.concatenate((self._expires, expires.astype(np.float64)))
        self._alive = np.concatenate((self._alive, np.ones(n, dtype=bool)))
        for name, dtype in self._dtypes.items():
            self.cols[name] = np.concatenate((self.cols[name], np.asarray(cols[name]).astype(dtype, copy=False)))

    def take(self, rows: IntArray) -> dict[str, npt.NDArray[Any]]:
        """Remove the given live rows, returning their columns (and ``id``)."""
        out = {n: c[rows] for n, c in self.cols.items()}
        out["id"] = self._ids[rows]
        out["expires"] = self._expires[rows]
        self._alive[rows] = False
        pop = self.index.pop
        for i in out["id"].tolist():
            pop(i, None)
        self._maybe_compact()
        return out

    def expire(self, now: float, max_size: int | None = None) -> dict[str, npt.NDArray[Any]]:
        """Remove entries whose expiry passed, then the oldest beyond ``max_size``."""
        cut = int(np.searchsorted(self._expires, now, side="right"))
        rows = np.flatnonzero(self._alive[:cut])
        excess = len(self.index) - rows.size - max_size if max_size is not None else 0
        if excess > 0:
            later = np.flatnonzero(self._alive[cut:])[:excess] + cut
            rows = np.concatenate((rows, later))
        return self.take(rows.astype(np.int64))

    def _maybe_compact(self) -> None:
        dead = self._alive.size - len(self.index)
        if dead <= 1024 or dead < len(self.index):
            return
        keep = np.flatnonzero(self._alive)
        self._ids = self._ids[keep]
        self._expires = self._expires[keep]
        self._alive = np.ones(keep.size, dtype=bool)
        for n in self.cols:
            self.cols[n] = self.cols[n][keep]
        self._base += 1 << 40  # new, disjoint sequence range: stale rows can never alias
        self.index = dict(zip(self._ids.tolist(), range(self._base, self._base + keep.size), strict=True))

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Re-add entries returned by ``export`` (in their original arrival order)."""
        self.add(np.asarray(saved["id"], dtype=object), np.asarray(saved["expires"], dtype=np.float64),
                 {n: saved[n] for n in self._dtypes})

    def export(self) -> dict[str, Any]:
        keep = np.flatnonzero(self._alive)
        out: dict[str, Any] = {n: c[keep] for n, c in self.cols.items()}
        out["id"] = self._ids[keep]
        out["expires"] = self._expires[keep]
        return out



PENDING_COLUMNS: dict[str, npt.DTypeLike] = {
    "version": object, "pred_idx": np.int32, "confidence": np.float64, "pred_ts": np.float64,
}
ORPHAN_COLUMNS: dict[str, npt.DTypeLike] = {"label": object, "label_ts": np.float64, "model": object}


@dataclass
class ModelJoin:
    """One model's pending predictions and the ids it already joined."""

    ttl: float
    max_pending: int

    def __post_init__(self) -> None:
        self.pending = ArrivalBuffer(PENDING_COLUMNS)
        self.joined = ArrivalBuffer({})


@dataclass
class Matched:
    """Predictions of one model that met their labels."""

    pred: dict[str, npt.NDArray[Any]]  # PENDING_COLUMNS + id
    label: npt.NDArray[np.object_]
    label_ts: FloatArray


def first_occurrences(ids: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
    """Mask of the first occurrence of each id within a batch (later ones are duplicates)."""
    seen: set[str] = set()
    add = seen.add
    return np.fromiter((not (i in seen or add(i)) for i in ids.tolist()), dtype=bool, count=ids.size)


class Joiner:
    """Labels meet predictions by id, whichever arrives first (ids are unique across models)."""

    def __init__(self, models: Mapping[str, tuple[float, int]]) -> None:
        self.models: dict[str, ModelJoin] = {}
        self.orphans = ArrivalBuffer(ORPHAN_COLUMNS)
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

    def is_known(self, model: str, ids: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
        """Ids already pending or joined for this model: a repeated prediction is a duplicate."""
        mj = self.models[model]
        pend, joined = mj.pending.index, mj.joined.index
        return np.fromiter((i in pend or i in joined for i in ids.tolist()), dtype=bool, count=ids.size)

    def add_predictions(
        self, model: str, ids: npt.NDArray[np.object_], cols: Mapping[str, npt.NDArray[Any]], now: float
    ) -> tuple[npt.NDArray[np.bool_], Matched]:
        """Buffer new predictions (already de-duplicated); those whose label waited join at once.

        Returns the mask of predictions that joined an orphan label, and the matches.
        """
        mj = self.models[model]
        rows = self.orphans.lookup(ids.tolist())
        hit = rows >= 0
        if hit.any():
            # an orphan label restricted to another model does not join this one
            hit_models = self.orphans.cols["model"][rows[hit]]
            ok = np.array([m is None or m == model for m in hit_models.tolist()], dtype=bool)
            idx = np.flatnonzero(hit)
            hit[idx[~ok]] = False
        matched_rows = rows[hit]
        orphan = self.orphans.take(matched_rows) if matched_rows.size else None
        waiting = ~hit
        mj.pending.add(ids[waiting], np.full(int(waiting.sum()), now + mj.ttl),
                       {n: np.asarray(c)[waiting] for n, c in cols.items()})
        pred = {n: np.asarray(c)[hit] for n, c in cols.items()}
        pred["id"] = ids[hit]
        if orphan is not None:
            mj.joined.add(ids[hit], np.full(int(hit.sum()), now + mj.ttl), {})
            return hit, Matched(pred, orphan["label"], orphan["label_ts"])
        return hit, Matched(pred, np.empty(0, dtype=object), np.empty(0))

    def locate_labels(
        self, ids: npt.NDArray[np.object_], models: npt.NDArray[np.object_]
    ) -> tuple[dict[str, npt.NDArray[np.int64]], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Find which model's pending prediction each label belongs to, without changing state.

        Returns {model: row of pending per label (-1 elsewhere)}, a mask of labels found, and a
        mask of labels whose id was already joined (duplicates).
        """
        found = np.zeros(ids.size, dtype=bool)
        dup = np.zeros(ids.size, dtype=bool)
        rows_by_model: dict[str, npt.NDArray[np.int64]] = {}
        id_list = ids.tolist()
        restrict = models.tolist()
        for name, mj in self.models.items():
            allowed = np.fromiter((m is None or m == name for m in restrict), dtype=bool, count=ids.size)
            rows = mj.pending.lookup(id_list)
            rows[~allowed | found] = -1
            if (rows >= 0).any():
                rows_by_model[name] = rows
                found |= rows >= 0
            joined = mj.joined.index
            dup |= allowed & np.fromiter((i in joined for i in id_list), dtype=bool, count=ids.size)
        dup &= ~found
        orphan_index = self.orphans.index
        dup |= ~found & np.fromiter((i in orphan_index for i in id_list), dtype=bool, count=ids.size)
        return rows_by_model, found, dup

    def take_pending(self, model: str, rows: npt.NDArray[np.int64], now: float) -> dict[str, npt.NDArray[Any]]:
        mj = self.models[model]
        pred = mj.pending.take(rows)
        mj.joined.add(pred["id"], np.full(rows.size, now + mj.ttl), {})
        return pred

    def add_orphans(self, ids: npt.NDArray[np.object_], labels: npt.NDArray[np.object_], label_ts: FloatArray,
                    models: npt.NDArray[np.object_], now: float) -> None:
        self.orphans.add(ids, np.full(ids.size, now + self.orphan_ttl),
                         {"label": labels, "label_ts": label_ts, "model": models})

    def expire(self, now: float) -> tuple[dict[str, dict[str, npt.NDArray[Any]]], npt.NDArray[np.object_]]:
        """Expire predictions past their TTL or beyond max_pending, and orphan labels past theirs.

        Returns the expired predictions per model and the model named by each expired orphan.
        """
        expired = {}
        for name, mj in self.models.items():
            gone = mj.pending.expire(now, mj.max_pending)
            if gone["id"].size:
                expired[name] = gone
            mj.joined.expire(now, mj.max_pending)
        orphans = self.orphans.expire(now, sum(mj.max_pending for mj in self.models.values()))
        return expired, orphans["model"]

    def state(self) -> dict[str, Any]:
        return {
            "models": {name: {"pending": mj.pending.export(), "joined": mj.joined.export()}
                       for name, mj in self.models.items()},
            "orphans": self.orphans.export(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Reinstate buffers of models that are still configured (others are dropped)."""
        for name, saved in state["models"].items():
            mj = self.models.get(name)
            if mj is not None:
                mj.pending.restore(saved["pending"])
                mj.joined.restore(saved["joined"])
        self.orphans.restore(state["orphans"])

    def pending_count(self, model: str) -> int:
        return len(self.models[model].pending)

