"""The join buffer: whichever side comes first, TTL expiry, the size bound, duplicates."""

from __future__ import annotations

import numpy as np

from exporter.join import ArrivalBuffer, Joiner, first_occurrences


def obj(*xs: object) -> np.ndarray:
    return np.array(xs, dtype=object)


def pred_cols(n: int, version: str = "1") -> dict[str, np.ndarray]:
    return {"version": np.full(n, version, dtype=object), "pred_idx": np.arange(n, dtype=np.int32) % 2,
            "confidence": np.full(n, 0.9), "pred_ts": np.arange(n, dtype=np.float64)}


def test_first_occurrences() -> None:
    assert first_occurrences(obj("a", "b", "a", "c", "b")).tolist() == [True, True, False, True, False]


def test_arrival_buffer_expiry_bound_and_compaction() -> None:
    buf = ArrivalBuffer({"x": np.int64})
    ids = obj(*[f"id{i}" for i in range(5000)])
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


def test_label_after_prediction_and_before_it() -> None:
    j = Joiner({"m": (100.0, 1000)})
    hit, matched, _ = j.add_predictions("m", obj("a", "b"), pred_cols(2), now=0.0)
    assert not hit.any() and matched.label.size == 0
    rows, found, dup = j.locate_labels(obj("b", "z"), obj(None, None))
    assert found.tolist() == [True, False] and not dup.any()
    pred = j.take_pending("m", rows["m"][found], now=1.0)
    assert pred["id"].tolist() == ["b"]
    j.add_orphans(obj("z"), obj("1"), np.array([5.0]), obj(None), now=1.0)
    hit, matched, _ = j.add_predictions("m", obj("z"), pred_cols(1), now=2.0)
    assert hit.tolist() == [True] and matched.label.tolist() == ["1"] and matched.pred["id"].tolist() == ["z"]
    # a second label for an id already joined is a duplicate, and a repeated prediction too
    _, found, dup = j.locate_labels(obj("b", "z"), obj(None, None))
    assert not found.any() and dup.tolist() == [True, True]
    assert j.is_known("m", obj("a", "b", "q")).tolist() == [True, True, False]


def test_ttl_expiry_and_orphans() -> None:
    j = Joiner({"m": (10.0, 1000), "n": (50.0, 1000)})
    j.add_predictions("m", obj("a"), pred_cols(1), now=0.0)
    j.add_predictions("n", obj("b"), pred_cols(1), now=0.0)
    j.add_orphans(obj("x"), obj("1"), np.array([0.0]), obj("m"), now=0.0)
    expired, orphan_models = j.expire(now=10.0)
    assert expired["m"]["id"].tolist() == ["a"] and "n" not in expired
    assert orphan_models.tolist() == []  # orphans wait for the longest TTL (50 s)
    expired, orphan_models = j.expire(now=50.0)
    assert expired["n"]["id"].tolist() == ["b"] and orphan_models.tolist() == ["m"]


def test_label_restricted_to_other_model_does_not_join() -> None:
    j = Joiner({"m": (10.0, 100), "n": (10.0, 100)})
    j.add_predictions("m", obj("a"), pred_cols(1), now=0.0)
    rows, found, _ = j.locate_labels(obj("a"), obj("n"))
    assert not found.any() and rows == {}
    j.add_orphans(obj("q"), obj("1"), np.array([0.0]), obj("n"), now=0.0)
    hit, _, _ = j.add_predictions("m", obj("q"), pred_cols(1), now=0.0)
    assert not hit.any()


def test_max_pending_bound_counts_oldest() -> None:
    j = Joiner({"m": (1e9, 3)})
    j.add_predictions("m", obj("a", "b", "c", "d", "e"), pred_cols(5), now=0.0)
    expired, _ = j.expire(now=1.0)
    assert expired["m"]["id"].tolist() == ["a", "b"]
    assert j.pending_count("m") == 3


def test_waiting_label_the_model_cannot_score_is_rejected_and_the_prediction_waits() -> None:
    j = Joiner({"m": (100.0, 1000)})
    j.add_orphans(obj("a"), obj("7"), np.array([1.0]), obj(None), now=0.0, source="labels")
    hit, matched, rejected = j.add_predictions("m", obj("a"), pred_cols(1), now=1.0,
                                              accepts=lambda labels: np.array([v in ("0", "1") for v in labels]))
    assert not hit.any() and matched.label.size == 0 and rejected.tolist() == ["labels"]
    _, found, dup = j.locate_labels(obj("a"), obj(None))  # a valid label later still joins
    assert found.tolist() == [True] and not dup.any()
