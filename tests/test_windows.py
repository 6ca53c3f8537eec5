"""Sliding windows against a brute-force recomputation on the same events."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.windows import Columns, SortedMultiset, WindowedStream


class SumAggregate:
    """Integer sum and count, plus the multiset of values: enough to detect any drift."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0
        self.values = SortedMultiset()

    def add(self, cols: Columns) -> None:
        self.n += len(cols["v"])
        self.total += int(cols["v"].sum())
        self.values.add(cols["v"].astype(np.float64))

    def remove(self, cols: Columns) -> None:
        self.n -= len(cols["v"])
        self.total -= int(cols["v"].sum())
        self.values.remove(cols["v"].astype(np.float64))


def test_sorted_multiset_matches_sorted_list() -> None:
    rng = np.random.default_rng(1)
    ms = SortedMultiset()
    ref: list[float] = []
    for _ in range(200):
        add = rng.integers(0, 20, rng.integers(0, 30)).astype(np.float64)  # many duplicates
        ms.add(add)
        ref.extend(add.tolist())
        if ref and rng.random() < 0.6:
            k = int(rng.integers(0, len(ref) + 1))
            idx = rng.choice(len(ref), k, replace=False)
            gone = np.array([ref[i] for i in idx])
            for i in sorted(idx, reverse=True):
                ref.pop(i)
            ms.remove(gone)
        assert ms.values.tolist() == sorted(ref)


def test_sorted_multiset_refuses_absent_value() -> None:
    ms = SortedMultiset(np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        ms.remove(np.array([3.0]))
    with pytest.raises(ValueError):
        ms.remove(np.array([2.0, 2.0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_windows_slide_and_expire_like_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = [10.0, 60.0, 300.0]
    stream = WindowedStream(lengths, SumAggregate, {"v": np.int64})
    events_ts: list[float] = []
    events_v: list[int] = []
    now = 1_000.0
    for _ in range(150):
        now += float(rng.exponential(4.0))
        n = int(rng.integers(0, 40))
        # mostly recent events, some late ones (out of order), some older than every window
        ts = now - rng.choice([0.0, 5.0, 50.0, 400.0], n, p=[0.6, 0.2, 0.15, 0.05]) * rng.random(n)
        v = rng.integers(-5, 100, n)
        if rng.random() < 0.2:
            ts = np.array([]); v = np.array([], dtype=np.int64)  # noqa: E702 - clock-only cycle
            stream.advance(now)
        else:
            stream.add(ts, {"v": v}, now)
        events_ts.extend(ts.tolist())
        events_v.extend(v.tolist())
        all_ts, all_v = np.array(events_ts), np.array(events_v, dtype=np.int64)
        for i, length in enumerate(lengths):
            inside = all_ts > now - length
            agg = stream.aggregates[i]
            assert isinstance(agg, SumAggregate)
            assert agg.n == int(inside.sum()) == stream.window_size(i)
            assert agg.total == int(all_v[inside].sum())
            assert agg.values.values.tolist() == sorted(all_v[inside].astype(float).tolist())


def test_export_and_rebuild_give_identical_windows() -> None:
    rng = np.random.default_rng(5)
    a = WindowedStream([30.0, 120.0], SumAggregate, {"v": np.int64})
    now = 0.0
    for _ in range(50):
        now += 3.0
        a.add(now - 40 * rng.random(20), {"v": rng.integers(0, 9, 20)}, now)
    ts, cols = a.export()
    b = WindowedStream([30.0, 120.0], SumAggregate, {"v": np.int64})
    b.rebuild(ts, cols, now)
    for x, y in zip(a.aggregates, b.aggregates, strict=True):
        assert isinstance(x, SumAggregate) and isinstance(y, SumAggregate)
        assert (x.n, x.total, x.values.values.tolist()) == (y.n, y.total, y.values.values.tolist())


def test_cut_counts_ranks_equal_searchsorted_on_the_multiset() -> None:
    from exporter.windows import CutCounts

    rng = np.random.default_rng(9)
    for _ in range(50):
        cuts = np.sort(rng.integers(0, 30, int(rng.integers(1, 40))).astype(np.float64))  # ties in the cuts
        cc, ms = CutCounts(cuts), SortedMultiset()
        for _ in range(10):
            batch = rng.integers(-5, 35, int(rng.integers(0, 50))).astype(np.float64)  # values at and off cuts
            cc.add(batch)
            ms.add(batch)
            if ms.values.size and rng.random() < 0.5:
                gone = rng.choice(ms.values, int(rng.integers(0, ms.values.size + 1)), replace=False)
                cc.remove(gone)
                ms.remove(gone)
            for side in ("left", "right"):
                assert cc.ranks(side).tolist() == np.searchsorted(ms.values, cuts, side=side).tolist()
            assert len(cc) == len(ms)
    with pytest.raises(ValueError):
        CutCounts(np.array([1.0])).remove(np.array([1.0]))
