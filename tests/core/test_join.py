"""The join buffer: whichever side comes first, TTL expiry, the size bound, duplicates."""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from exporter.core.arrival_buffer import ArrivalBuffer
from exporter.core.join import Joiner
from exporter.core.joined_ids import JoinedIds
from exporter.ingest.batch_ops import first_occurrences
from exporter.ingest.ids import encode_ids, stable_id_hashes
from tests.helpers import obj


def pred_cols(n: int, version: str = "1") -> dict[str, np.ndarray]:
    return {"version": np.full(n, version, dtype=object), "pred_idx": np.arange(n, dtype=np.int32) % 2,
            "confidence": np.full(n, 0.9), "pred_ts": np.arange(n, dtype=np.float64)}


def test_first_occurrences() -> None:
    assert first_occurrences(obj(["a", "b", "a", "c", "b"])).tolist() == [True, True, False, True, False]


def test_arrival_buffer_expiry_bound_and_compaction() -> None:
    buf = ArrivalBuffer({"x": np.int64})
    ids = obj([f"id{i}" for i in range(5000)])
    buf.add(ids, np.arange(5000, dtype=np.float64), {"x": np.arange(5000)})
    taken = buf.take(buf.lookup([f"id{i}" for i in range(0, 4000, 2)]))  # holes in the middle
    assert taken["x"].tolist() == list(range(0, 4000, 2))
    assert len(buf) == 3000
    gone = buf.expire(now=999.5)  # expires <= 999.5: ids 1,3,...,999 remain alive among 0..999
    assert gone["x"].tolist() == list(range(1, 1000, 2))
    gone = buf.expire(now=0.0, max_size=100)  # oldest first beyond the bound
    assert len(buf) == 100
    assert gone["x"][0] == 1001 and gone["x"][-1] == 4899
    assert sorted(buf.export()["x"].tolist()) == list(range(4900, 5000))
    assert buf.lookup(["id4950", "id1", "nope"]).tolist()[1:] == [-1, -1]
    row = buf.lookup(["id4950"])
    assert buf.take(row)["x"].tolist() == [4950]


def test_arrival_buffer_matches_a_dict_through_takes_compactions_and_rebuilds() -> None:
    """Random batches added, taken by id (found once, taken by the slots found), expired and
    bounded: every lookup, every take and the export must be what an ordered dict of the same
    entries gives, across table rebuilds, tombstones taken again and compactions that renumber
    the rows in the table in place."""
    rng = np.random.default_rng(17)
    buf = ArrivalBuffer({"x": np.int64, "v": object})
    model: dict[str, tuple[float, int, str]] = {}  # id -> (expires, x, v), in arrival order
    next_id = 0
    for step in range(300):
        n = int(rng.integers(0, 400))
        ids = obj([f"k{next_id + i}" for i in range(n)])
        xs = np.arange(next_id, next_id + n)
        vs = obj([f"v{int(i) % 3}" for i in xs])
        buf.add(ids, np.full(n, float(step)), {"x": xs, "v": vs})
        for i, x, v in zip(ids.tolist(), xs.tolist(), vs.tolist(), strict=True):
            model[i] = (float(step), int(x), v)
        next_id += n
        if model:  # take a random share, mostly the oldest (labels come in order) and some missing ids
            keys = list(model)
            k = int(rng.integers(0, len(keys) + 1))
            pick = keys[:k // 2] + [keys[int(i)] for i in rng.integers(0, len(keys), k // 4)] + ["nope", "k-1"]
            query = obj(list(dict.fromkeys(pick)))
            h = stable_id_hashes(query)
            rows, slots = buf.lookup_slots(query, h, encode_ids(query))
            expected = [q in model for q in query.tolist()]
            assert (rows >= 0).tolist() == expected
            found = rows >= 0
            taken, _ = buf._take(rows[found], slots[found], h[found], with_ids=False)
            gone = [model.pop(q) for q in query[found].tolist()]
            assert taken["x"].tolist() == [g[1] for g in gone] and taken["v"].tolist() == [g[2] for g in gone]
        if step % 23 == 22:
            out = buf.expire(now=float(step - 20), max_size=int(rng.integers(50, 2000)))
            for i in out["id"].tolist():
                del model[i]
        assert len(buf) == len(model)
    assert buf.export()["id"].tolist() == list(model)
    left = obj(list(model))
    assert buf.lookup(left).tolist() == buf.lookup_slots(left, stable_id_hashes(left))[0].tolist()
    assert (buf.lookup(left) >= 0).all()


def test_an_id_whose_hash_shares_a_buffered_ids_slot_and_tag_is_told_apart() -> None:
    """"x1932296" and "x1954346" have the same 16-bit tag and the same home slot in a table of 16:
    the tag makes the buffered one a candidate for the other, and only comparing the ids tells
    them apart (the probe then goes on past it). Found with ``stable_id_hashes`` by brute force."""
    a, b = "x1932296", "x1954346"
    ha, hb = stable_id_hashes(obj([a, b])).tolist()
    assert ha >> 48 == hb >> 48 and ha % 16 == hb % 16
    buf = ArrivalBuffer({"x": np.int64})
    buf.add(obj([a]), np.zeros(1), {"x": np.array([7])})
    assert buf._table.size == 16
    assert buf.lookup([b, a]).tolist()[0] == -1 and buf.lookup([a]).tolist()[0] >= 0
    query = obj([b, a])
    rows, _ = buf.lookup_slots(query, stable_id_hashes(query), encode_ids(query))
    assert rows[0] == -1 and rows[1] >= 0
    buf.add(obj([b]), np.zeros(1), {"x": np.array([8])})  # both buffered: each finds its own
    assert buf.take(buf.lookup([b, a]))["x"].tolist() == [8, 7]


def test_label_after_prediction_and_before_it() -> None:
    j = Joiner({"m": (100.0, 1000)})
    hit, matched, _ = j.add_predictions("m", obj(["a", "b"]), pred_cols(2), now=0.0)
    assert not hit.any() and matched.label.size == 0
    rows, found, dup = j.locate_labels(obj(["b", "z"]), obj([None, None]))
    assert found.tolist() == [True, False] and not dup.any()
    pred = j.take_pending("m", rows["m"][found], now=1.0)
    assert pred["id"].tolist() == ["b"]
    j.add_orphans(obj(["z"]), obj(["1"]), np.array([5.0]), obj([None]), now=1.0)
    hit, matched, _ = j.add_predictions("m", obj(["z"]), pred_cols(1), now=2.0)
    assert hit.tolist() == [True] and matched.label.tolist() == ["1"] and matched.pred["id"].tolist() == ["z"]
    # a second label for an id already joined is a duplicate, and a repeated prediction too
    _, found, dup = j.locate_labels(obj(["b", "z"]), obj([None, None]))
    assert not found.any() and dup.tolist() == [True, True]
    assert j.is_known("m", obj(["a", "b", "q"])).tolist() == [True, True, False]


def test_ttl_expiry_and_orphans() -> None:
    j = Joiner({"m": (10.0, 1000), "n": (50.0, 1000)})
    j.add_predictions("m", obj(["a"]), pred_cols(1), now=0.0)
    j.add_predictions("n", obj(["b"]), pred_cols(1), now=0.0)
    j.add_orphans(obj(["x"]), obj(["1"]), np.array([0.0]), obj(["m"]), now=0.0)
    expired, orphan_models = j.expire(now=10.0)
    assert expired["m"]["id"].tolist() == ["a"] and "n" not in expired
    assert orphan_models.tolist() == []  # orphans wait for the longest TTL (50 s)
    expired, orphan_models = j.expire(now=50.0)
    assert expired["n"]["id"].tolist() == ["b"] and orphan_models.tolist() == ["m"]


def test_label_restricted_to_other_model_does_not_join() -> None:
    j = Joiner({"m": (10.0, 100), "n": (10.0, 100)})
    j.add_predictions("m", obj(["a"]), pred_cols(1), now=0.0)
    rows, found, _ = j.locate_labels(obj(["a"]), obj(["n"]))
    assert not found.any() and rows == {}
    j.add_orphans(obj(["q"]), obj(["1"]), np.array([0.0]), obj(["n"]), now=0.0)
    hit, _, _ = j.add_predictions("m", obj(["q"]), pred_cols(1), now=0.0)
    assert not hit.any()


def test_max_pending_bound_counts_oldest() -> None:
    j = Joiner({"m": (1e9, 3)})
    j.add_predictions("m", obj(["a", "b", "c", "d", "e"]), pred_cols(5), now=0.0)
    expired, _ = j.expire(now=1.0)
    assert expired["m"]["id"].tolist() == ["a", "b"]
    assert j.pending_count("m") == 3


def test_waiting_label_the_model_cannot_score_is_rejected_and_the_prediction_waits() -> None:
    j = Joiner({"m": (100.0, 1000)})
    j.add_orphans(obj(["a"]), obj(["7"]), np.array([1.0]), obj([None]), now=0.0, source="labels")
    hit, matched, rejected = j.add_predictions("m", obj(["a"]), pred_cols(1), now=1.0,
                                              accepts=lambda labels: np.array([v in ("0", "1") for v in labels]))
    assert not hit.any() and matched.label.size == 0 and rejected.tolist() == ["labels"]
    _, found, dup = j.locate_labels(obj(["a"]), obj([None]))  # a valid label later still joins
    assert found.tolist() == [True] and not dup.any()


# --- stable id hashes -------------------------------------------------------------------------------

_MASK = (1 << 64) - 1


def _mix_ref(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _hash_ref(b: bytes) -> int:
    """The documented algorithm, one id at a time with Python integers (no numpy, no Arrow)."""
    total = 0
    for j in range(0, len(b), 8):
        word = int.from_bytes(b[j:j + 8].ljust(8, b"\0"), "little")
        total = (total + _mix_ref(word ^ _mix_ref(((j // 8 + 1) * 0x9E3779B97F4A7C15) & _MASK))) & _MASK
    return _mix_ref((total + (len(b) + 1) * 0x9E3779B97F4A7C15) & _MASK)


def test_stable_hash_matches_a_per_id_reference_at_every_length_and_alignment() -> None:
    rng = random.Random(11)
    # lengths around word boundaries, ids starting at every byte alignment of the data buffer
    ids = [bytes(rng.randrange(256) for _ in range(n)) for n in [*range(0, 34), *rng.choices(range(200), k=300)]]
    arr = pa.array(ids, type=pa.binary())
    assert stable_id_hashes(arr).tolist() == [_hash_ref(b) for b in ids]
    for start in (1, 3, 7, 100):  # a sliced array: its offsets do not start at 0
        assert stable_id_hashes(arr.slice(start)).tolist() == [_hash_ref(b) for b in ids[start:]]


@pytest.mark.parametrize("width", [1, 7, 8, 9, 14, 16, 36, 70])
def test_stable_hash_of_ids_of_one_width_matches_the_per_id_reference(width: int) -> None:
    """A batch whose ids all have one length (uuids, zero-padded counters) is hashed as a matrix
    of words: the same bits as the per-id reference, also for a sliced array."""
    rng = random.Random(width)
    ids = [bytes(rng.randrange(256) for _ in range(width)) for _ in range(200)]
    arr = pa.array(ids, type=pa.binary())
    assert stable_id_hashes(arr).tolist() == [_hash_ref(b) for b in ids]
    assert stable_id_hashes(arr.slice(3, 150)).tolist() == [_hash_ref(b) for b in ids[3:153]]
    texts = [f"req-{i:010d}" for i in range(300)]
    assert stable_id_hashes(obj(texts)).tolist() == [_hash_ref(t.encode()) for t in texts]


def test_stable_hash_is_the_same_for_every_input_form_and_process() -> None:
    texts = ["req-0000000001", "", "a", "a\0", "é", "\ud800lone", "x" * 70]
    h = stable_id_hashes(obj(texts))
    utf8 = [t.encode("utf-8", "surrogatepass") for t in texts]
    assert h.dtype == np.uint64 and h.tolist() == [_hash_ref(b) for b in utf8]
    assert stable_id_hashes(texts).tolist() == h.tolist()
    assert stable_id_hashes(pa.array(texts[:5], type=pa.string())).tolist() == h[:5].tolist()
    assert stable_id_hashes(pa.array(texts[:5], type=pa.large_string())).tolist() == h[:5].tolist()
    assert stable_id_hashes(pa.array(utf8, type=pa.large_binary())).tolist() == h.tolist()
    chunked = pa.chunked_array([pa.array(texts[:2]), pa.array(texts[2:5])])
    assert stable_id_hashes(chunked).tolist() == h[:5].tolist()
    assert stable_id_hashes(pa.chunked_array([], type=pa.string())).tolist() == []
    # another interpreter, with another string-hash salt, computes the same values (checkpoints)
    code = ("import json, sys; from exporter.ingest.ids import encode_ids, stable_id_hashes; "
            "print(json.dumps(stable_id_hashes(json.loads(sys.argv[1])).tolist()))")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code, json.dumps(texts[:5])], check=True, capture_output=True,
                             text=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert json.loads(out) == h[:5].tolist()
    # pinned: a change of the algorithm would silently break the joined ids of every checkpoint
    assert h[0] == 0xF923DC59A967408F and h[1] == _hash_ref(b"")


def test_stable_hash_has_no_collisions_on_a_million_similar_ids() -> None:
    ids = obj([f"req-{i:010d}" for i in range(1_000_000)])
    h = stable_id_hashes(ids)
    assert np.unique(h).size == ids.size
    # nor on ids differing only in one bit anywhere, or only in trailing zero bytes
    base = b"0123456789abcdefXYZ"
    flips = [base[:i] + bytes([base[i] ^ (1 << k)]) + base[i + 1:] for i in range(len(base)) for k in range(8)]
    pads = [base + b"\0" * k for k in range(1, 10)]
    allh = stable_id_hashes(pa.array([base, *flips, *pads], type=pa.binary()))
    assert np.unique(allh).size == 1 + len(flips) + len(pads)


def test_stable_hash_refuses_non_text_arrow_arrays() -> None:
    with pytest.raises(TypeError, match="strings or bytes"):
        stable_id_hashes(pa.array([1, 2]))


# --- joined ids -------------------------------------------------------------------------------------------


def test_joined_ids_expire_by_ttl_and_forget_oldest_beyond_the_bound() -> None:
    j = JoinedIds()
    h = np.arange(1, 101, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # arbitrary distinct values
    for t in range(10):  # 10 batches of 10, joined at t, expiring at t + 100
        j.add(h[10 * t:10 * t + 10], t + 100.0)
    assert len(j) == 100 and j.contains(h).all()
    assert j.expire(now=102.5, max_size=1000) == (30, 0)  # batches 0, 1, 2 expired (<= now)
    assert j.contains(h).tolist() == [False] * 30 + [True] * 70
    assert j.expire(now=102.5, max_size=25) == (0, 45)  # the oldest 45 forgotten, exactly
    assert j.contains(h).tolist() == [False] * 75 + [True] * 25
    assert len(j) == 25
    # an id forgotten and joined again is remembered (the old copy must not hide it)
    j.add(h[:1], 200.0)
    assert j.contains(h[:1]).tolist() == [True]
    assert j.expire(now=109.0, max_size=1000) == (25, 0)
    assert j.contains(h).tolist() == [True] + [False] * 99


def test_joined_ids_forget_exactly_in_arrival_order_across_segments() -> None:
    rng = np.random.default_rng(5)
    h = rng.integers(0, 2**63, 60_000, dtype=np.int64).astype(np.uint64)
    j = JoinedIds()
    sizes = rng.integers(1, 900, 60)
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    for lo, hi in itertools.pairwise(bounds.tolist()):
        j.add(h[lo:hi], 1e9)
    n = int(bounds[-1])
    for keep in (n - 1, n // 2, 3000, 1500, 7, 0):
        j.expire(now=0.0, max_size=keep)
        assert j.contains(h[:n]).tolist() == [False] * (n - keep) + [True] * keep
        assert len(j) == keep
    assert j.nbytes <= 16 * 8 + 32  # what is left: nothing but the small arrays' overhead


def test_joined_ids_runs_merge_to_a_later_expiry_never_an_earlier_one() -> None:
    j = JoinedIds()
    h = np.arange(1, 5001, dtype=np.uint64)
    for i in range(5000):  # one id per batch, each with its own expiry: 5000 runs would cost 80 kB
        j.add(h[i:i + 1], float(i))
    assert j._run_val.size <= 1025
    expired, _ = j.expire(now=2499.0, max_size=10_000)
    # ids 0..2499 are due; rounding may keep some a little longer (the step stays near
    # 5000 / 512), but never forgets a later one
    assert 2500 - 40 <= expired <= 2500
    assert j.contains(h[2500:]).all()
    assert j.expire(now=5000.0, max_size=10_000) == (5000 - expired, 0)


def test_joined_ids_runs_are_exact_below_the_run_limit() -> None:
    j = JoinedIds()
    h = np.arange(1, 1001, dtype=np.uint64)
    for i in range(1000):
        j.add(h[i:i + 1], float(i) + 0.5)
    assert j.expire(now=499.4, max_size=10_000) == (499, 0)
    assert j.contains(h).tolist() == [False] * 499 + [True] * 501


def test_joined_ids_export_restore_round_trip() -> None:
    j = JoinedIds()
    h = np.arange(1, 301, dtype=np.uint64) * np.uint64(7919)
    for t in range(3):
        j.add(h[100 * t:100 * t + 100], 10.0 * (t + 1))
    j.expire(now=0.0, max_size=250)
    saved = j.export()
    back = JoinedIds()
    back.restore(saved)
    assert len(back) == 250 and back.contains(h).tolist() == j.contains(h).tolist()
    assert back.export()["hashes"].tolist() == saved["hashes"].tolist()
    assert back.expire(now=20.0, max_size=1000) == j.expire(now=20.0, max_size=1000) == (150, 0)


def test_restore_reads_the_state_of_earlier_releases() -> None:
    """0.1.0 kept one orphan buffer (model in a column) and joined ids whole: both still restore."""
    old = {
        "models": {"m": {
            "pending": {"id": obj(["p"]), "expires": np.array([50.0]), "version": obj(["1"]),
                        "pred_idx": np.array([1], dtype=np.int32), "confidence": np.array([0.9]),
                        "pred_ts": np.array([1.0])},
            "joined": {"id": obj(["j1", "j2"]), "expires": np.array([40.0, 60.0])},
        }},
        "orphans": {"id": obj(["o1", "o2"]), "expires": np.array([50.0, 50.0]), "label": obj(["1", "0"]),
                    "label_ts": np.array([2.0, 3.0]), "model": obj(["m", None]), "source": obj(["l", "l"])},
    }
    j = Joiner({"m": (100.0, 1000)})
    j.restore(old)
    assert (j.pending_count("m"), j.waiting_count("m"), j.waiting_count(None), j.joined_count("m")) == (1, 1, 1, 2)
    _, found, dup = j.locate_labels(obj(["p", "j1", "j2", "o1", "new"]), obj([None, None, None, None, None]))
    assert found.tolist() == [True, False, False, False, False]
    assert dup.tolist() == [False, True, True, True, False]
    assert j.expire(now=45.0)[1].tolist() == [] and j.joined_count("m") == 1  # j1 expired at 40, by its TTL
    hit, matched, _ = j.add_predictions("m", obj(["o2", "o1"]), pred_cols(2), now=46.0)
    assert hit.tolist() == [True, True] and matched.label.tolist() == ["0", "1"]
