"""The bounded recent history behind the status page's sparklines (exporter/core/recent.py)."""

from __future__ import annotations

import pytest

from exporter.core.recent import RecentHistory, sample_step


def test_one_point_per_step_and_never_more_than_the_capacity() -> None:
    h = RecentHistory(points=10)
    taken = [h.observe("k", float(t), t / 100, step=5.0) for t in range(0, 1000)]
    assert sum(taken) == 200  # t = 0, 5, 10, ... 995
    series = h.series("k")
    assert len(series) == 10  # the ring is full, the oldest fell out
    assert [t for t, _ in series] == [950.0 + 5 * i for i in range(10)]
    assert series[-1] == (995.0, 9.95)


def test_memory_does_not_grow_with_uptime_or_keys_that_left() -> None:
    h = RecentHistory(points=7)
    for t in range(20_000):
        for v in ("1", "2", "3"):
            h.observe(("m", v, "1h"), float(t), 0.9, step=1.0)
    assert len(h) == 3 and h.size() == 21
    h.retain([("m", "2", "1h")])  # versions 1 and 3 expired
    assert len(h) == 1 and h.size() == 7
    assert h.series(("m", "1", "1h")) == ()


def test_a_clock_going_backwards_restarts_the_ring() -> None:
    h = RecentHistory(points=5)
    for t in (100.0, 110.0, 120.0):
        h.observe("k", t, 0.5, step=10.0)
    assert h.observe("k", 50.0, 0.7, step=10.0)
    assert h.series("k") == ((50.0, 0.7),)


def test_sample_step_spans_a_window_but_not_faster_than_a_cycle() -> None:
    assert sample_step(3600.0, 5.0, 120) == 30.0
    assert sample_step(60.0, 1.0, 120) == 1.0  # 0.5 s would be faster than the pipeline runs
    assert sample_step(86400.0, 5.0, 120) == 720.0


def test_a_ring_needs_two_points() -> None:
    with pytest.raises(ValueError):
        RecentHistory(points=1)
