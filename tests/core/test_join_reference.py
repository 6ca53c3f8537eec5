"""The Joiner against a plain-dict reference join, on seeded random streams.

The reference keeps every structure as an insertion-ordered ``dict`` and applies the rules
one id at a time, exactly as documented: a prediction joins a label waiting for its model (or
naming none), else waits; a label joins the first model (in configuration order) with its
prediction pending, is a duplicate when its id was joined and is still remembered by a model it
may belong to, or already waits, and otherwise waits in its model's buffer (or the shared
one). Each cycle, TTLs expire (entries due at ``now`` or before), then every buffer keeps only
its newest ``max_pending`` (the shared one: their sum), counting what went. The Joiner is driven
the way the pipeline drives it, through a checkpoint (``exporter.runtime.checkpoint``: npz, no pickle) now
and then; every answer and every count must agree at every step.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest

from exporter.core.join import Joiner
from exporter.ingest.batch_ops import first_occurrences
from exporter.runtime import checkpoint
from tests.helpers import obj


@dataclass
class RefModel:
    ttl: float
    cap: int
    pending: dict[str, float] = field(default_factory=dict)  # id -> expiry, oldest first
    waiting: dict[str, tuple[float, str]] = field(default_factory=dict)  # id -> (expiry, label)
    joined: dict[str, float] = field(default_factory=dict)


class RefJoin:
    def __init__(self, models: dict[str, tuple[float, int]]) -> None:
        self.models = {name: RefModel(ttl, cap) for name, (ttl, cap) in models.items()}
        self.unnamed: dict[str, tuple[float, str]] = {}
        self.orphan_ttl = max(t for t, _ in models.values())
        self.unnamed_cap = sum(c for _, c in models.values())
        self.orphans: Counter[str | None] = Counter()
        self.forgotten: Counter[str] = Counter()

    def predictions(self, model: str, ids: list[str], now: float) -> tuple[list[bool], list[tuple[str, str]]]:
        m = self.models[model]
        dup, matched = [], []
        seen: set[str] = set()
        for i in ids:
            d = i in seen or i in m.pending or i in m.joined
            seen.add(i)
            dup.append(d)
            if d:
                continue
            for buf in (m.waiting, self.unnamed):
                if i in buf:
                    matched.append((i, buf.pop(i)[1]))
                    m.joined[i] = now + m.ttl
                    break
            else:
                m.pending[i] = now + m.ttl
        return dup, matched

    def labels(self, ids: list[str], names: list[str | None], labels: list[str], now: float
               ) -> tuple[dict[str, list[str]], list[bool]]:
        joined: dict[str, list[str]] = {}
        dups = []
        for i, name, label in zip(ids, names, labels, strict=True):
            allowed = [n for n in self.models if name is None or name == n]
            home = next((n for n in allowed if i in self.models[n].pending), None)
            if home is not None:
                m = self.models[home]
                del m.pending[i]
                m.joined[i] = now + m.ttl
                joined.setdefault(home, []).append(i)
                dups.append(False)
                continue
            dup = any(i in self.models[n].joined for n in allowed) or i in self.unnamed or \
                any(i in m.waiting for m in self.models.values())
            dups.append(dup)
            if not dup:
                buf = self.unnamed if name is None else self.models[name].waiting
                buf[i] = (now + self.orphan_ttl, label)
        return joined, dups

    def expire(self, now: float) -> dict[str, list[str]]:
        expired: dict[str, list[str]] = {}
        for name, m in self.models.items():
            gone = _cut(m.pending, now, m.cap, lambda v: v)
            if gone:
                expired[name] = gone
            self.orphans[name] += len(_cut(m.waiting, now, m.cap, lambda v: v[0]))
            ttl_gone = [k for k, v in m.joined.items() if v <= now]
            for k in ttl_gone:
                del m.joined[k]
            self.forgotten[name] += len(_cut(m.joined, float("-inf"), m.cap, lambda v: v))
        self.orphans[None] += len(_cut(self.unnamed, now, self.unnamed_cap, lambda v: v[0]))
        return expired


def _cut(d: dict[str, object], now: float, cap: int, expiry: object) -> list[str]:
    """Remove entries due at ``now``, then the oldest beyond ``cap``; their ids, oldest first."""
    gone = [k for k, v in d.items() if expiry(v) <= now]  # type: ignore[operator]
    for k in gone:
        del d[k]
    while len(d) > cap:
        k = next(iter(d))
        del d[k]
        gone.append(k)
    return gone


def cols(ids: list[str]) -> dict[str, np.ndarray]:
    n = len(ids)
    return {"version": obj(["v1"] * n), "pred_idx": np.zeros(n, dtype=np.int32),
            "confidence": np.full(n, 0.5), "pred_ts": np.zeros(n)}


def restart(j: Joiner, models: dict[str, tuple[float, int]], now: float) -> Joiner:
    saved, _ = checkpoint.decode(checkpoint.encode({"join": j.state()}, now))
    fresh = Joiner(models)
    fresh.restore(saved["join"])
    return fresh


@pytest.mark.parametrize("seed", range(8))
def test_joiner_matches_the_dict_reference(seed: int) -> None:
    rng = random.Random(seed)
    models = {"a": (rng.choice([15.0, 40.0, 90.0]), rng.choice([3, 8, 16])),
              "b": (rng.choice([15.0, 40.0]), rng.choice([5, 12]))}
    owner = {f"id{k}": ("a", "b")[k % 2] for k in range(80)}  # ids are unique across models
    pool = list(owner)
    j, ref = Joiner(models), RefJoin(models)
    now = 1000.0
    stats: Counter[str] = Counter()
    for step in range(250):
        now += rng.choice([0.0, 0.5, 1.0, 3.0, 7.0])
        for _ in range(rng.randint(0, 2)):  # prediction batches (a pipeline de-duplicates first)
            model = rng.choice(["a", "b"])
            ids = rng.choices([i for i in pool if owner[i] == model], k=rng.randint(0, 8))
            arr = obj(ids)
            dup = ~first_occurrences(arr) | j.is_known(model, arr) if ids else np.zeros(0, dtype=bool)
            want_dup, want_matched = ref.predictions(model, ids, now)
            assert dup.tolist() == want_dup, (seed, step)
            ok = arr[~dup]
            hit, matched, _ = j.add_predictions(model, ok, cols(ok.tolist()), now)
            assert int(hit.sum()) == len(want_matched)
            assert list(zip(matched.pred["id"].tolist(), matched.label.tolist(), strict=True)) == want_matched
            stats["joined_by_prediction"] += len(want_matched)
        for _ in range(rng.randint(0, 2)):  # label batches, each label naming its model, another or none
            ids = list(dict.fromkeys(rng.choices(pool, k=rng.randint(0, 8))))
            names = [rng.choices([None, owner[i], "b" if owner[i] == "a" else "a"], [5, 4, 1])[0] for i in ids]
            labels = [rng.choice(["0", "1"]) for _ in ids]
            want_joined, want_dup = ref.labels(ids, names, labels, now)
            if not ids:
                continue
            arr, arr_names = obj(ids), obj(names)
            rows_by_model, found, dup = j.locate_labels(arr, arr_names)
            assert dup.tolist() == want_dup, (seed, step)
            got_joined = {m: j.take_pending(m, rows[rows >= 0], now)["id"].tolist()
                          for m, rows in rows_by_model.items()}
            assert got_joined == want_joined, (seed, step)
            waiting = ~found & ~dup
            j.add_orphans(arr[waiting], obj(labels)[waiting], np.zeros(int(waiting.sum())), arr_names[waiting], now)
            stats["dup_labels"] += sum(want_dup)
        expired, orphan_models = j.expire(now)
        want_expired = ref.expire(now)
        assert {m: e["id"].tolist() for m, e in expired.items()} == want_expired, (seed, step)
        stats["expired"] += sum(len(v) for v in want_expired.values())
        got_orphans = Counter(orphan_models.tolist())
        assert sum(got_orphans.values()) == sum(ref.orphans.values()) - stats["orphans"]
        stats["orphans"] = sum(ref.orphans.values())
        for name, m in ref.models.items():
            assert j.pending_count(name) == len(m.pending)
            assert j.waiting_count(name) == len(m.waiting)
            assert j.joined_count(name) == len(m.joined)
            assert j.forgotten_total(name) == ref.forgotten[name]
        assert j.waiting_count(None) == len(ref.unnamed)
        if rng.random() < 0.05:
            j = restart(j, models, now)
            stats["restarts"] += 1
    # the stream exercised every path, or the comparison above proves little
    assert min(stats["joined_by_prediction"], stats["dup_labels"], stats["expired"], stats["orphans"],
               sum(ref.forgotten.values()), stats["restarts"]) > 0, stats
