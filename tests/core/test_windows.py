"""Bucketed windows against a brute-force reading of DESIGN §2 "Windows" on the same events."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from exporter.core.windows import (
    FIXED_POINT_SCALE,
    BucketedStream,
    BucketedWindow,
    Columns,
    WideningCounts,
    fixed_point_bin_sums,
    fixed_point_square_sums,
    square_sum,
    to_fixed_point,
)
from exporter.stats.confidence import (
    MEDIAN_BINS,
    confidence_stats,
    confidence_stats_from_sums,
    histogram_median,
    median_bins,
)


class SumBucket:
    """Count, integer sum and the values themselves: enough to see any misplaced event."""

    def __init__(self) -> None:
        self.n = 0
        self.total = 0

    def add(self, cols: Columns) -> None:
        self.n += len(cols["v"])
        self.total += int(cols["v"].sum())

    def absorb(self, other: SumBucket, sign: int) -> None:
        self.n += sign * other.n
        self.total += sign * other.total

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"n": np.array(self.n), "total": np.array(self.total)}

    def load(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.n = int(arrays["n"])
        self.total = int(arrays["total"])


def _window_sum(w: BucketedWindow[SumBucket]) -> tuple[int, int]:
    live = w.live()
    return sum(b.n for b in live), sum(b.total for b in live)


def _oracle(ts: npt.NDArray[np.float64], v: npt.NDArray[np.int64], now: float, length: float,
            buckets: int) -> tuple[int, int]:
    """DESIGN §2, written from the text: bucket index > floor((now - L) / r) (``ts`` as placed on arrival)."""
    r = length / buckets
    k = np.floor(ts / r)
    inside = k > math.floor((now - length) / r)
    return int(inside.sum()), int(v[inside].sum())


def _one(ts: float, v: int = 1) -> tuple[npt.NDArray[np.float64], dict[str, npt.NDArray[np.int64]]]:
    return np.array([ts]), {"v": np.array([v])}


def test_an_event_leaves_exactly_at_the_boundary_after_its_bucket() -> None:
    # L = 60 s in 6 buckets of 10 s: an event at 105 s is in bucket 10 = [100, 110), which leaves the
    # window when floor((now - 60) / 10) reaches 10, at now = 160 -- not at 105 + 60, not a bucket later.
    w: BucketedWindow[SumBucket] = BucketedWindow(60.0, 6, SumBucket)
    ts, cols = _one(105.0, 7)
    w.add(ts, cols, now=105.0)
    for now, held in ((159.999, 1), (160.0, 0), (160.001, 0)):
        w.advance(now)
        assert _window_sum(w)[0] == held, now


def test_the_last_instant_of_a_bucket_leaves_with_it() -> None:
    w: BucketedWindow[SumBucket] = BucketedWindow(60.0, 6, SumBucket)
    w.add(*_one(109.999), now=110.0)
    w.add(*_one(110.0), now=110.0)  # the next bucket
    w.advance(159.999)
    assert _window_sum(w)[0] == 2
    w.advance(160.0)
    assert _window_sum(w)[0] == 1
    w.advance(169.999)
    assert _window_sum(w)[0] == 1
    w.advance(170.0)
    assert _window_sum(w)[0] == 0


def test_an_event_older_than_the_window_is_not_added() -> None:
    w: BucketedWindow[SumBucket] = BucketedWindow(60.0, 6, SumBucket)
    # at now = 200 the window holds buckets 15..20, i.e. [150, 210): 149.999 is out, 150 is in
    w.add(np.array([149.999, 150.0]), {"v": np.array([1, 10])}, now=200.0)
    assert _window_sum(w) == (1, 10)


def test_a_future_stamped_event_counts_as_now() -> None:
    s: BucketedStream[SumBucket] = BucketedStream([60.0], 6, SumBucket)
    s.add(np.array([1e9]), {"v": np.array([5])}, now=100.0)  # bucket of now: 10
    s.advance(159.999)
    assert _window_sum(s.windows[0]) == (1, 5)
    s.advance(160.0)
    assert _window_sum(s.windows[0]) == (0, 0)


def test_the_clock_expires_buckets_when_nothing_arrives() -> None:
    s: BucketedStream[SumBucket] = BucketedStream([60.0, 600.0], 6, SumBucket)
    s.add(np.array([5.0, 15.0, 25.0]), {"v": np.array([1, 2, 3])}, now=25.0)
    s.advance(75.0)  # 60 s window: buckets above floor(15 / 10) = 1 -> only the event at 25 s (bucket 2)
    assert _window_sum(s.windows[0]) == (1, 3)
    assert _window_sum(s.windows[1]) == (3, 6)
    s.advance(10_000.0)
    assert s.bucket_count() == 0


@pytest.mark.parametrize("lengths,buckets", [((60.0, 3600.0), 60), ((30.0, 45.0, 1000.0), 7), ((10.0,), 1)])
def test_sliding_windows_match_the_brute_force_rule(lengths: tuple[float, ...], buckets: int) -> None:
    rng = np.random.default_rng(11)
    s: BucketedStream[SumBucket] = BucketedStream(lengths, buckets, SumBucket)
    all_ts: list[float] = []
    all_v: list[int] = []
    now = 1_700_000_000.0
    for step in range(300):
        now += float(rng.exponential(4.0))
        if step % 37 == 0:
            now += lengths[-1] * 0.9  # long idle stretches: whole windows empty out
        k = int(rng.integers(0, 40))
        # in order, late (up to a long window back), and future-stamped events
        ts = now - rng.exponential(lengths[0], k) * rng.choice([0.0, 1.0, 3.0], k) + rng.choice(
            [0.0, 0.0, 0.0, 50.0], k)
        v = rng.integers(-5, 100, k)
        s.add(ts, {"v": v}, now)
        all_ts.extend(np.minimum(ts, now).tolist())  # a future stamp counts as the time it arrived
        all_v.extend(v.tolist())
        probe = now = now + float(rng.uniform(0, 30))  # the clock moves on without events
        s.advance(probe)
        for i, length in enumerate(lengths):
            assert _window_sum(s.windows[i]) == _oracle(np.array(all_ts), np.array(all_v), probe, length, buckets)
        assert all(len(w.buckets) <= buckets for w in s.windows)  # memory: never more than B buckets


def test_state_round_trip_and_a_changed_window_starts_empty() -> None:
    rng = np.random.default_rng(3)
    s: BucketedStream[SumBucket] = BucketedStream([60.0, 600.0], 12, SumBucket)
    ts = 1000.0 + rng.uniform(0, 600, 500)
    s.add(ts, {"v": rng.integers(0, 9, 500)}, now=1600.0)
    saved = s.state()
    again: BucketedStream[SumBucket] = BucketedStream([60.0, 600.0], 12, SumBucket)
    again.restore(saved, now=1630.0)
    s.advance(1630.0)
    for a, b in zip(s.windows, again.windows, strict=True):
        assert _window_sum(a) == _window_sum(b)
        assert sorted(a.buckets) == sorted(b.buckets)
    other: BucketedStream[SumBucket] = BucketedStream([60.0, 900.0], 12, SumBucket)
    other.restore(saved, now=1630.0)
    assert _window_sum(other.windows[0]) == _window_sum(s.windows[0])
    assert _window_sum(other.windows[1]) == (0, 0)  # 900 s was never saved


def test_widening_counts_keep_exact_counts_past_each_dtype() -> None:
    w = WideningCounts(3)
    assert w.counts.dtype == np.uint16
    w.add(np.array([65_535, 1, 0]))
    assert w.counts.dtype == np.uint16
    w.add(np.array([1, 0, 0]))
    assert w.counts.dtype == np.uint32 and w.counts.tolist() == [65_536, 1, 0]
    w.add(np.array([1 << 32, 0, 0]))
    assert w.counts.dtype == np.int64 and w.counts.tolist() == [(1 << 32) + 65_536, 1, 0]


def test_fixed_point_square_sums_are_exact() -> None:
    rng = np.random.default_rng(5)
    v = np.concatenate((rng.random(10_000), [0.0, 1.0, 1.0]))
    q = to_fixed_point(v)
    assert square_sum(fixed_point_square_sums(q)) == sum(int(x) * int(x) for x in q.tolist())


@pytest.mark.parametrize("n", [1, 2, 3, 4, 10, 999, 20_000])
def test_histogram_median_is_within_one_bin_of_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    for shape in (rng.random(n), rng.random(n) ** 6, np.round(rng.random(n), 2), rng.choice([0.1, 0.9], n)):
        hist = np.bincount(median_bins(shape), minlength=MEDIAN_BINS)
        got = histogram_median(hist, float(shape.min()), float(shape.max()))
        assert abs(got - float(np.median(shape))) <= 0.001 + 1e-12


def test_histogram_median_of_two_far_apart_values() -> None:
    # numpy averages the two middle values; a single-rank histogram quantile would say ~0.101
    v = np.array([0.1, 0.9])
    got = histogram_median(np.bincount(median_bins(v), minlength=MEDIAN_BINS), 0.1, 0.9)
    assert abs(got - 0.5) <= 0.001


def test_confidence_stats_from_sums_match_numpy() -> None:
    rng = np.random.default_rng(8)
    for v in (rng.beta(20, 2, 5000), np.full(7, 0.9), rng.random(2), np.array([0.75, 0.7499999, 0.0, 1.0])):
        q = to_fixed_point(v)
        got = confidence_stats_from_sums(
            v.size, int(q.sum()), square_sum(fixed_point_square_sums(q)), FIXED_POINT_SCALE, float(v.min()),
            float(v.max()), int((v < 0.75).sum()), np.bincount(median_bins(v), minlength=MEDIAN_BINS))
        ref = confidence_stats(np.sort(v), 0.75)
        assert got.mean == pytest.approx(float(np.mean(v)), abs=1e-9)
        assert got.stddev == pytest.approx(float(np.std(v)), abs=1e-9)
        assert (got.min, got.max) == (float(v.min()), float(v.max()))
        assert got.low_share == ref.low_share and got.high_share == ref.high_share
        assert abs(got.median - float(np.median(v))) <= 0.001


def test_running_totals_equal_the_sum_of_the_live_buckets() -> None:
    """A window's total gains events as they arrive and loses a bucket as it leaves: at every
    moment it must equal its live buckets summed (and survive a checkpoint)."""
    rng = np.random.default_rng(21)
    s: BucketedStream[SumBucket] = BucketedStream([60.0, 600.0], 6, SumBucket, totals=True)
    now = 10_000.0
    for _ in range(400):
        now += float(rng.exponential(5.0))
        k = int(rng.integers(0, 30))
        ts = now - rng.exponential(120.0, k) + rng.choice([0.0, 0.0, 40.0], k)
        s.add(ts, {"v": rng.integers(-3, 50, k)}, now)
        for i, w in enumerate(s.windows):
            assert (s.total(i).n, s.total(i).total) == _window_sum(w)
    again: BucketedStream[SumBucket] = BucketedStream([60.0, 600.0], 6, SumBucket, totals=True)
    again.restore(s.state(), now + 30.0)
    s.advance(now + 30.0)
    for i in range(2):
        assert (again.total(i).n, again.total(i).total) == (s.total(i).n, s.total(i).total) == _window_sum(
            s.windows[i])


class MergingSumBucket(SumBucket):
    """``SumBucket`` that can also merge: the stream then computes each group of events once."""

    def merge(self, other: MergingSumBucket) -> None:
        self.n += other.n
        self.total += other.total


@pytest.mark.parametrize("lengths,buckets", [((60.0, 3600.0), 60), ((30.0, 45.0, 1000.0), 7), ((10.0,), 1)])
def test_merging_buckets_give_exactly_what_adding_to_every_window_gives(lengths: tuple[float, ...],
                                                                        buckets: int) -> None:
    """``BucketedStream.add`` groups a batch by the bucket it falls in in every window and merges
    each group's statistics into every window: every bucket and every running total must equal
    what adding the events to each window separately (the reference path) gives."""
    rng = np.random.default_rng(5)
    plain: BucketedStream[SumBucket] = BucketedStream(lengths, buckets, SumBucket, totals=True)
    merging: BucketedStream[MergingSumBucket] = BucketedStream(lengths, buckets, MergingSumBucket, totals=True)
    now = 1_700_000_000.0
    for step in range(300):
        now += float(rng.exponential(4.0))
        if step % 41 == 0:
            now += lengths[-1] * 0.7
        k = int(rng.integers(0, 60))
        ts = now - rng.exponential(lengths[-1] / 3, k) * rng.choice([0.0, 0.1, 1.0, 3.0], k) + rng.choice(
            [0.0, 0.0, 20.0], k)
        v = rng.integers(-5, 1000, k)
        plain.add(ts, {"v": v}, now)
        merging.add(ts, {"v": v}, now)
        for i, (a, b) in enumerate(zip(plain.windows, merging.windows, strict=True)):
            assert {key: (x.n, x.total) for key, x in a.buckets.items()} == \
                {key: (x.n, x.total) for key, x in b.buckets.items()}
            assert (plain.total(i).n, plain.total(i).total) == (merging.total(i).n, merging.total(i).total)


def test_widening_counts_added_in_place_keep_the_dtype_rule() -> None:
    """With the increment's maximum given, counts that provably stay within uint16 are added in
    place; the values and the dtype (the smallest holding the largest count) must be what the
    plain widening add gives, also across the uint16 limit and after taking counts away."""
    rng = np.random.default_rng(8)
    fast, plain = WideningCounts(50), WideningCounts(50)
    for step in range(400):
        inc = rng.integers(0, 400 if step < 300 else 4000, 50)
        if step % 97 == 96:
            inc = -(fast.counts.astype(np.int64) // 2)  # a bucket leaving a total
            fast.add(inc)
        else:
            fast.add(inc, int(inc.max()))
        plain.add(inc)
        assert fast.counts.dtype == plain.counts.dtype
        assert fast.counts.tolist() == plain.counts.tolist()
    assert plain.counts.dtype != np.uint16  # the test crossed the limit


@pytest.mark.parametrize("n", [0, 1, 1000, (1 << 20) + 5])
def test_fixed_point_bin_sums_equal_integer_sums_per_bin(n: int) -> None:
    """Per-bin sums of fixed-point values through float weights must equal plain int64 sums,
    also for values at the top of the range and batches past one exact chunk."""
    rng = np.random.default_rng(n)
    q = to_fixed_point(rng.random(n))
    q[: min(n, 50)] = 1 << 32  # the largest fixed-point value (confidence 1.0)
    bins = rng.integers(0, 10, n)
    expected = np.array([int(q[bins == j].sum()) for j in range(10)], dtype=np.int64)
    assert fixed_point_bin_sums(q, bins, 10).tolist() == expected.tolist()
