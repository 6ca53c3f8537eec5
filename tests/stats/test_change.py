"""Batch change detectors against river's PageHinkley and DDM on the same seeded streams."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from river.drift import PageHinkley as RiverPageHinkley
from river.drift.binary import DDM as RiverDDM

from exporter.stats.change import DDM, DRIFT, STABLE, WARNING, PageHinkley, detector_from_dict


def _error_stream(seed: int, n: int = 12_000, segments: int = 4) -> np.ndarray:
    """0/1 errors whose rate alternates between a low and a high level: changes up and down."""
    rng = np.random.default_rng(seed)
    rates = np.where(np.arange(segments) % 2 == 0, rng.uniform(0.02, 0.15, segments), rng.uniform(0.3, 0.6, segments))
    return np.concatenate([(rng.random(n // segments) < r) for r in rates]).astype(np.int64)


def _random_stream(seed: int, n: int = 12_000) -> np.ndarray:
    """Rates drawn at random, including streams on which nothing is detected."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.02, 0.5, 4)
    return np.concatenate([(rng.random(n // 4) < r) for r in rates]).astype(np.int64)


def _river_run(det: RiverPageHinkley | RiverDDM, xs: Sequence[float]) -> tuple[list[int], list[bool]]:
    drifts: list[int] = []
    warnings: list[bool] = []
    for i, x in enumerate(xs):
        det.update(x)  # type: ignore[no-untyped-call]
        if det.drift_detected:
            drifts.append(i)
        warnings.append(bool(getattr(det, "warning_detected", False)))
    return drifts, warnings


def _ours_one_by_one(det: PageHinkley | DDM, xs: np.ndarray) -> tuple[list[int], list[bool]]:
    drifts: list[int] = []
    warnings: list[bool] = []
    for i, x in enumerate(xs):
        if det.update(np.array([x])):
            drifts.append(i)
            assert det.state == DRIFT
            det.reset()  # un-latch so the warning state can be compared value by value
        warnings.append(det.state == WARNING)
    return drifts, warnings


def _ours_batched(det: PageHinkley | DDM, xs: np.ndarray, batch: int) -> int:
    return sum(det.update(xs[i : i + batch]) for i in range(0, xs.size, batch))


@pytest.mark.parametrize("seed", range(12))
def test_page_hinkley_matches_river(seed: int) -> None:
    xs = _error_stream(seed) if seed < 8 else _random_stream(seed)
    river_drifts, _ = _river_run(RiverPageHinkley(mode="up"), xs.tolist())
    assert river_drifts or seed >= 8, "the stream should contain detectable changes"
    ours, _ = _ours_one_by_one(PageHinkley(), xs)
    assert ours == river_drifts
    for batch in (7, 1000, 5000, xs.size):
        det = PageHinkley()
        assert _ours_batched(det, xs, batch) == len(river_drifts)
        assert det.detections == len(river_drifts) and det.seen == xs.size


@pytest.mark.parametrize("mode", ["up", "down", "both"])
def test_page_hinkley_modes_on_real_valued_stream(mode: str) -> None:
    # river's own docstring example: a mean shift from {0,1} to {4..7}, and back down
    rng = random.Random(12345)
    data = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000) + rng.choices([0, 1], k=1000)
    river_drifts, _ = _river_run(RiverPageHinkley(mode=mode), [float(v) for v in data])
    ours, _ = _ours_one_by_one(PageHinkley(mode=mode), np.array(data, dtype=np.float64))
    assert ours == river_drifts
    if mode == "both":
        assert river_drifts[0] == 1006  # the value river documents
    det = PageHinkley(mode=mode)
    assert det.update(np.array(data, dtype=np.float64)) == len(river_drifts)


def test_page_hinkley_custom_parameters() -> None:
    xs = _error_stream(99, n=8000)
    params: dict[str, Any] = {"min_instances": 100, "delta": 0.01, "threshold": 20.0, "alpha": 0.999}
    river_drifts, _ = _river_run(RiverPageHinkley(mode="up", **params), xs.tolist())
    ours, _ = _ours_one_by_one(PageHinkley(mode="up", **params), xs)
    assert ours == river_drifts and river_drifts


@pytest.mark.parametrize("seed", range(12))
def test_ddm_matches_river(seed: int) -> None:
    xs = _error_stream(seed) if seed < 8 else _random_stream(seed)
    river_drifts, river_warnings = _river_run(RiverDDM(), xs.tolist())
    assert river_drifts or seed >= 8
    ours, our_warnings = _ours_one_by_one(DDM(), xs)
    assert ours == river_drifts
    assert our_warnings == river_warnings
    for batch in (7, 1000, 5000, xs.size):
        det = DDM()
        assert _ours_batched(det, xs, batch) == len(river_drifts)


def test_ddm_river_docstring_example_and_parameters() -> None:
    rng = random.Random(42)
    data = rng.choices([0, 1], k=1000) + rng.choices([0, 1], k=1000, weights=[0.3, 0.7])
    river_drifts, river_warnings = _river_run(RiverDDM(), data)
    ours, our_warnings = _ours_one_by_one(DDM(), np.array(data))
    assert ours == river_drifts == [1334]
    assert our_warnings == river_warnings
    assert river_warnings.index(True) == 1084
    params: dict[str, Any] = {"warm_start": 100, "warning_threshold": 1.5, "drift_threshold": 2.5}
    river_drifts, river_warnings = _river_run(RiverDDM(**params), data)
    ours, our_warnings = _ours_one_by_one(DDM(**params), np.array(data))
    assert ours == river_drifts and our_warnings == river_warnings


def test_ddm_error_free_run_then_first_error_is_a_change() -> None:
    xs = np.zeros(100, dtype=np.int64)
    xs[60] = 1
    river_drifts, _ = _river_run(RiverDDM(), xs.tolist())
    det = DDM()
    assert det.update(xs) == len(river_drifts) == 1


def test_state_latches_until_reset() -> None:
    det = DDM()
    assert det.state == STABLE
    rng = np.random.default_rng(5)
    det.update((rng.random(2000) < 0.05).astype(np.int64))
    assert det.state in (STABLE, WARNING)
    found = det.update((rng.random(2000) < 0.6).astype(np.int64))
    assert found >= 1 and det.state == DRIFT
    det.update(np.zeros(5000, dtype=np.int64))  # good again: still latched
    assert det.state == DRIFT
    before = det.to_dict()["state"]
    det.clear_drift()
    after = det.to_dict()["state"]
    assert det.state == STABLE and after == {**before, "drift": False}
    again = det.update(np.ones(300, dtype=np.int64))  # a burst of errors: detected anew
    assert again >= 1 and det.state == DRIFT
    det.reset()
    assert det.state == STABLE
    assert det.detections == found + again and det.seen == 9300

    ph = PageHinkley()
    ph.update((rng.random(3000) < 0.05).astype(np.int64))
    assert ph.state == STABLE
    assert ph.update((rng.random(3000) < 0.8).astype(np.int64)) >= 1
    assert ph.state == DRIFT
    ph.reset()
    assert ph.state == STABLE


@pytest.mark.parametrize("cls", [PageHinkley, DDM])
def test_checkpoint_round_trip_continues_identically(cls: type[PageHinkley] | type[DDM]) -> None:
    xs = _error_stream(3, n=16_000)
    straight = cls()
    total = straight.update(xs)
    # interrupt at several points, serialise through JSON, resume
    resumed = cls()
    count = 0
    for lo, hi in ((0, 10), (10, 4321), (4321, 9000), (9000, xs.size)):
        count += resumed.update(xs[lo:hi])
        data = json.loads(json.dumps(resumed.to_dict(), allow_nan=False))
        resumed = detector_from_dict(data)
        assert isinstance(resumed, cls)
    assert count == total
    a, b = resumed.to_dict()["state"], straight.to_dict()["state"]
    for key in a:  # resuming changes only the rounding of the running sums
        assert a[key] == pytest.approx(b[key], rel=1e-12, abs=1e-12), key
    fresh = json.loads(json.dumps(cls().to_dict(), allow_nan=False))
    assert cls.from_dict(fresh).to_dict() == cls().to_dict()


def test_checkpoint_rejects_wrong_kind() -> None:
    with pytest.raises(ValueError):
        DDM.from_dict(PageHinkley().to_dict())
    with pytest.raises(ValueError):
        PageHinkley.from_dict(DDM().to_dict())
    with pytest.raises(ValueError):
        detector_from_dict({"kind": "adwin"})


def test_input_validation_and_empty_batches() -> None:
    for det in (PageHinkley(), DDM()):
        assert det.update(np.array([], dtype=np.int64)) == 0
        assert det.seen == 0 and det.state == STABLE
        with pytest.raises(ValueError):
            det.update(np.array([0.0, np.nan]))
    with pytest.raises(ValueError):
        DDM().update(np.array([0, 2]))
    with pytest.raises(ValueError):
        PageHinkley(mode="sideways")
    with pytest.raises(ValueError):
        PageHinkley(alpha=1.5)
    # booleans are accepted as errors
    assert DDM().update(np.zeros(50, dtype=bool)) == 0


def test_large_batch_is_fast_and_consistent() -> None:
    xs = (np.random.default_rng(11).random(400_000) < 0.1).astype(np.int64)
    xs[200_000:] |= (np.random.default_rng(12).random(200_000) < 0.2).astype(np.int64)
    river_drifts, _ = _river_run(RiverPageHinkley(mode="up"), xs.tolist())
    for cls in (PageHinkley, DDM):
        a, b = cls(), cls()
        assert a.update(xs) == _ours_batched(b, xs, 3333)
        sa, sb = a.to_dict()["state"], b.to_dict()["state"]
        assert sa.keys() == sb.keys()
        for key in sa:  # chunking changes only the rounding of the running sums
            assert sa[key] == pytest.approx(sb[key], rel=1e-9, abs=1e-9), key
    assert PageHinkley().update(xs) == len(river_drifts)
