"""Joining late labels to the predictions they belong to, in bounded memory.

Labels arrive minutes to days after their prediction. Per model, three structures remember what
the join needs, and each holds at most ``join.max_pending`` entries, the oldest going first:

* predictions waiting for their label (evicted ones count as expired predictions);
* labels waiting for their prediction (evicted ones count as orphan labels);
* ids already joined, kept for the TTL so that a second label or a repeated prediction is
  recognised as a duplicate (evicted ones are simply forgotten, and counted).

Waiting entries live in columnar arrays in arrival order, so expiry is a prefix cut, and are
found by id through a vectorised open-addressing hash table (``arrival_buffer``): no Python object per entry. They
keep their ids (as UTF-8 bytes) and match them exactly; the 64-bit hash only narrows the search.

Joined ids keep only that hash (``stable_id_hashes``: the same in every process, so it can be
checkpointed), sorted for lookup, with their arrival position and run-length-encoded expiry:
about 12 bytes each. A genuinely new id whose hash equals a remembered one (probability about
n / 2^64) is taken for a duplicate; an id forgotten early (by the bound) is not recognised any
more, so a late second label for it waits as an orphan and a repeated prediction is new.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from exporter.core.arrival_buffer import ArrivalBuffer
from exporter.core.joined_ids import JoinedIds
from exporter.foundation.arrays import FloatArray, HashArray, ObjArray, repeated
from exporter.ingest.batch_ops import factorize
from exporter.ingest.ids import encode_ids, stable_id_hashes

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
            rows, slots = buf.lookup_slots(ids, h, encoded)
            rows[hit] = -1
            idx = np.flatnonzero(rows >= 0)
            if idx.size == 0:
                continue
            # one take of every waiting label found (found by id already: no second search)
            taken, _ = buf._take(rows[idx], slots[idx], h[idx], with_ids=False)
            label, label_at = taken["label"], taken["label_ts"]
            if accepts is not None:
                codes, uniques = factorize(label)  # accepts per distinct label, not per label
                good = accepts(uniques)[codes]
                if not good.all():
                    rejected.append(taken["source"][~good])
                    idx, label, label_at = idx[good], label[good], label_at[good]
            if idx.size:
                hit[idx] = True
                labels[idx] = label
                label_ts[idx] = label_at
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
        encoded: pa.Array | None = None, slots: dict[str, npt.NDArray[np.int64]] | None = None,
    ) -> tuple[dict[str, npt.NDArray[np.int64]], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Find which model's pending prediction each label belongs to, without changing state.

        Returns {model: row of pending per label (-1 elsewhere)}, a mask of labels found, and a
        mask of labels that are duplicates: their id was already joined (and is still
        remembered) by a model the label may belong to, or a label with that id already waits.
        ``hashes``, ``encoded``: the ids' ``stable_id_hashes`` and ``encode_ids`` when the caller
        has them already. ``slots``, when given, receives each model's table slots beside its
        rows, for ``take_pending`` to remove them without searching again.
        """
        found = np.zeros(ids.size, dtype=bool)
        dup = np.zeros(ids.size, dtype=bool)
        rows_by_model: dict[str, npt.NDArray[np.int64]] = {}
        h = stable_id_hashes(ids) if hashes is None else hashes
        # labels naming no model may belong to any; None compares unequal to every name, in C
        unnamed: npt.NDArray[np.bool_] = np.equal(models, cast(Any, None))
        unrestricted = bool(unnamed.all())
        allowed = {name: None if unrestricted else unnamed | np.equal(models, name) for name in self.models}
        for name, mj in self.models.items():
            rows, at = mj.pending.lookup_slots(ids, h, encoded)
            mine = allowed[name]
            rows[found if mine is None else ~mine | found] = -1
            if (rows >= 0).any():
                rows_by_model[name] = rows
                if slots is not None:
                    slots[name] = at
                found |= rows >= 0
        # only a label found nowhere can be a duplicate: the others are looked up no further
        rest = np.flatnonzero(~found)
        if rest.size:
            h_rest = h[rest]
            dup_rest = np.zeros(rest.size, dtype=bool)
            for name, mj in self.models.items():
                if len(mj.joined):
                    mine = allowed[name]
                    known = mj.joined.contains(h_rest)
                    dup_rest |= known if mine is None else mine[rest] & known
            waiting = [buf for buf in self._waiting_buffers() if len(buf)]
            if waiting:
                ids_rest = ids[rest]
                enc_rest = None if encoded is None else encoded.take(pa.array(rest))
                for buf in waiting:
                    dup_rest |= buf.contains(ids_rest, h_rest, enc_rest)
            dup[rest] = dup_rest
        return rows_by_model, found, dup

    def take_pending(self, model: str, rows: npt.NDArray[np.int64], now: float,
                     slots: npt.NDArray[np.int64] | None = None, hashes: HashArray | None = None,
                     with_ids: bool = True) -> dict[str, npt.NDArray[Any]]:
        """Remove the pending predictions at ``rows`` (their labels came) and remember their ids.

        ``slots`` and ``hashes``: the rows' slots from ``locate_labels`` and the ids' hashes, so
        the ids are neither hashed nor searched again; ``with_ids=False`` leaves out ``id`` and
        ``expires`` (decoding the ids costs more than the rest of the take)."""
        mj = self.models[model]
        pred, h = mj.pending._take(np.asarray(rows, dtype=np.int64), slots, hashes, with_ids)
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
                     "source": repeated(source, rows.size)}, h, encoded)

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
                orphans.append(repeated(name, n_orphans))
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
