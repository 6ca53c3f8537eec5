"""Streaming change detectors on the 0/1 error stream of labelled predictions.

The window metrics say *how good* a model is; these detectors say *when* it changed, from the
sequence of outcomes in arrival order (1 = wrong prediction, 0 = right). They reproduce
river's ``drift.PageHinkley`` and ``drift.binary.DDM`` (same parameters, same decisions, same
restart after a detection) but take a whole batch per call and evaluate it with numpy instead
of a Python loop per event.

Batch semantics: ``update(errors)`` feeds the values in order and returns how many change
points were detected inside the batch; after each detection the statistics restart from the
next value, exactly as river's detectors do on the update following a detection.

``state`` is 0 (stable), 1 (warning; DDM only) or 2 (drift). The drift state is *latched*: it
is entered in the batch that detects a change and holds until the owner calls ``clear_drift()``
(un-latch, keep the statistics, which restarted at the detection anyway) or ``reset()``
(un-latch and forget the statistics too, e.g. for a new model version); a gauge therefore cannot
miss a detection that happened between two scrapes. The warning state reflects the last value
processed.

Numerical note: river updates its running mean incrementally (``m += (x - m) / n``) and its
Page-Hinkley sum sequentially; here the mean is ``cumsum / n`` (exact for 0/1 input) and the
sum a parallel prefix scan. The two differ in the last bits, so a statistic lying within
~1e-12 of a threshold could be decided differently; on 0/1 streams this does not occur in
practice (the tests compare every detection index with river on seeded streams).
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from exporter.foundation.arrays import FloatArray

STABLE = 0
WARNING = 1
DRIFT = 2

_CHUNK = 4096


def _as_stream(errors: npt.ArrayLike) -> FloatArray:
    x = np.asarray(errors, dtype=np.float64).ravel()
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError("change detector input must be finite")
    return x


def _linear_scan(alpha: float, s0: float, u: FloatArray) -> FloatArray:
    """``y_k = alpha * y_{k-1} + u_k`` with ``y_{-1} = s0``, as a Hillis-Steele prefix scan.

    Why a scan and not ``alpha^k * cumsum(alpha^-k u)``: the closed form overflows or loses
    precision for long chunks or small ``alpha``; the scan combines terms pairwise (log2 L
    vectorised passes), has no growth and works for any ``alpha`` in [0, 1].
    """
    y = u.copy()
    y[0] += alpha * s0
    a = alpha
    d = 1
    size = y.size
    while d < size:
        y[d:] = y[d:] + a * y[:-d]
        a = a * a
        d *= 2
    return y


class _ChunkedDetector:
    """What Page-Hinkley and DDM share: the latched drift state, the totals, the chunked update
    loop (restart after each detection, as river does) and the checkpoint envelope. Subclasses
    hold their statistics and say how to run one chunk and how to save them."""

    kind = ""

    def __init__(self) -> None:
        self._drift = False
        self.detections = 0
        self.seen = 0
        self._restart()

    def _restart(self) -> None:
        """Forget the statistics (river's ``_reset``), keeping the latch and the totals."""
        raise NotImplementedError

    def _process(self, seg: FloatArray) -> int:
        """Run one chunk; return the offset of its first detection or -1 (state committed)."""
        raise NotImplementedError

    def _check(self, x: FloatArray) -> None:
        """Refuse input the detector is not defined for (default: anything goes)."""

    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _stats(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_stats(self, st: dict[str, Any]) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Clear the latched drift state and the statistics (totals are kept)."""
        self._drift = False
        self._restart()

    def clear_drift(self) -> None:
        """Un-latch the drift state only; the statistics already restarted at the detection."""
        self._drift = False

    def update(self, errors: npt.ArrayLike) -> int:
        """Feed values in order; return the number of change points detected among them."""
        x = _as_stream(errors)
        self._check(x)
        found = 0
        pos = 0
        while pos < x.size:
            seg = x[pos : pos + _CHUNK]
            hit = self._process(seg)
            if hit < 0:
                pos += seg.size
            else:
                found += 1
                self._restart()
                pos += hit + 1
        self.seen += int(x.size)
        if found:
            self.detections += found
            self._drift = True
        return found

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe checkpoint (unset minima are ``None``, not ``inf``/``nan``)."""
        return {
            "kind": self.kind,
            "params": self._params(),
            "state": {**self._stats(), "drift": self._drift, "detections": self.detections, "seen": self.seen},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a detector from ``to_dict`` output; raises ``ValueError`` on a wrong kind."""
        if data.get("kind") != cls.kind:
            raise ValueError(f"not a {cls.kind} checkpoint: kind={data.get('kind')!r}")
        det = cls(**data["params"])
        st = data["state"]
        det._load_stats(st)
        det._drift = bool(st["drift"])
        det.detections = int(st["detections"])
        det.seen = int(st["seen"])
        return det


class PageHinkley(_ChunkedDetector):
    """Page-Hinkley test for an increase in the error rate (river ``drift.PageHinkley``).

    Parameters and their defaults are river's: ``min_instances=30`` (no detection before that
    many values since the last restart), ``delta=0.005`` (tolerated drift of the mean),
    ``threshold=50`` (lambda), ``alpha=1 - 1e-4`` (fading factor of the cumulative sum). The
    one different default is ``mode="up"`` (river: ``"both"``): on an error stream only an
    increase is bad news. ``"down"`` and ``"both"`` are supported with river's semantics,
    including its initial ``max_decrease = -1``.

    Page-Hinkley has no warning zone, so ``state`` is 0 or 2.
    """

    kind = "page_hinkley"

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "up",
    ) -> None:
        if mode not in ("up", "down", "both"):
            raise ValueError(f"mode must be 'up', 'down' or 'both', got {mode!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.min_instances = int(min_instances)
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.alpha = float(alpha)
        self.mode = mode
        super().__init__()

    def _restart(self) -> None:
        """Forget the statistics (river's ``_reset``), keeping the latch and the totals."""
        self._n = 0
        self._sum = 0.0
        self._sum_increase = 0.0
        self._min_increase = math.inf
        self._sum_decrease = 0.0
        self._max_decrease = -1.0

    @property
    def state(self) -> int:
        return DRIFT if self._drift else STABLE

    def _process(self, seg: FloatArray) -> int:
        """Run one chunk; return the offset of its first detection or -1 (state committed)."""
        size = seg.size
        n = self._n + np.arange(1, size + 1, dtype=np.float64)
        sums = self._sum + np.cumsum(seg)
        dev = seg - sums / n
        active = n >= self.min_instances
        hit = np.zeros(size, dtype=bool)
        s_inc = s_dec = min_inc = max_dec = None
        if self.mode in ("up", "both"):
            s_inc = _linear_scan(self.alpha, self._sum_increase, dev - self.delta)
            min_inc = np.minimum(self._min_increase, np.minimum.accumulate(s_inc))
            hit |= active & (s_inc - min_inc > self.threshold)
        if self.mode in ("down", "both"):
            s_dec = _linear_scan(self.alpha, self._sum_decrease, dev + self.delta)
            max_dec = np.maximum(self._max_decrease, np.maximum.accumulate(s_dec))
            hit |= active & (max_dec - s_dec > self.threshold)
        first = int(np.argmax(hit)) if hit.any() else -1
        if first >= 0:
            return first
        self._n = int(n[-1])
        self._sum = float(sums[-1])
        if s_inc is not None and min_inc is not None:
            self._sum_increase = float(s_inc[-1])
            self._min_increase = float(min_inc[-1])
        if s_dec is not None and max_dec is not None:
            self._sum_decrease = float(s_dec[-1])
            self._max_decrease = float(max_dec[-1])
        return -1

    def _params(self) -> dict[str, Any]:
        return {"min_instances": self.min_instances, "delta": self.delta, "threshold": self.threshold,
                "alpha": self.alpha, "mode": self.mode}

    def _stats(self) -> dict[str, Any]:
        return {
            "n": self._n,
            "sum": self._sum,
            "sum_increase": self._sum_increase,
            "min_increase": None if math.isinf(self._min_increase) else self._min_increase,
            "sum_decrease": self._sum_decrease,
            "max_decrease": self._max_decrease,
        }

    def _load_stats(self, st: dict[str, Any]) -> None:
        self._n = int(st["n"])
        self._sum = float(st["sum"])
        self._sum_increase = float(st["sum_increase"])
        self._min_increase = math.inf if st["min_increase"] is None else float(st["min_increase"])
        self._sum_decrease = float(st["sum_decrease"])
        self._max_decrease = float(st["max_decrease"])


class DDM(_ChunkedDetector):
    """Drift Detection Method of Gama et al. (2004), as river ``drift.binary.DDM``.

    With ``p`` the error rate and ``s = sqrt(p (1-p) / n)`` since the last restart, and
    ``(p_min, s_min)`` recorded where ``p + s`` was smallest (ties take the later value, river's
    ``<=``): once more than ``warm_start`` values were seen, ``p + s > p_min +
    warning_threshold * s_min`` is a warning and ``p + s > p_min + drift_threshold * s_min`` a
    change, after which the statistics restart. Defaults are river's (30, 2.0, 3.0). Input
    values are 0 (correct) or 1 (error); like river, a run of error-free predictions makes
    ``s_min == 0`` and the first error afterwards a change.
    """

    kind = "ddm"

    def __init__(
        self,
        warm_start: int = 30,
        warning_threshold: float = 2.0,
        drift_threshold: float = 3.0,
    ) -> None:
        self.warm_start = int(warm_start)
        self.warning_threshold = float(warning_threshold)
        self.drift_threshold = float(drift_threshold)
        super().__init__()

    def _restart(self) -> None:
        """Forget the statistics (river's ``_reset``), keeping the latch and the totals."""
        self._n = 0
        self._errors = 0.0
        self._p_min = math.nan
        self._s_min = math.nan
        self._ps_min = math.inf
        self._warning = False

    @property
    def state(self) -> int:
        if self._drift:
            return DRIFT
        return WARNING if self._warning else STABLE

    def _check(self, x: FloatArray) -> None:
        if x.size and not np.all((x == 0.0) | (x == 1.0)):
            raise ValueError("DDM input must be 0 (correct) or 1 (error)")

    def _process(self, seg: FloatArray) -> int:
        """Run one chunk; return the offset of its first detection or -1 (state committed)."""
        size = seg.size
        idx = np.arange(size)
        n = self._n + np.arange(1, size + 1, dtype=np.float64)
        sums = self._errors + np.cumsum(seg)
        p = sums / n
        s = np.sqrt(p * (1.0 - p) / n)
        ps = p + s
        active = n > self.warm_start
        ps_active = np.where(active, ps, math.inf)
        running = np.minimum.accumulate(np.concatenate(([self._ps_min], ps_active)))
        updated = active & (ps <= running[:-1])
        last = np.maximum.accumulate(np.where(updated, idx, -1))
        has = last >= 0
        safe = np.where(has, last, 0)
        p_min = np.where(has, p[safe], self._p_min)
        s_min = np.where(has, s[safe], self._s_min)
        with np.errstate(invalid="ignore"):  # p_min is NaN only where inactive
            drift = active & (ps > p_min + self.drift_threshold * s_min)
            warning = active & (ps > p_min + self.warning_threshold * s_min)
        first = int(np.argmax(drift)) if drift.any() else -1
        if first >= 0:
            return first
        self._n = int(n[-1])
        self._errors = float(sums[-1])
        if has[-1]:
            self._p_min = float(p_min[-1])
            self._s_min = float(s_min[-1])
            self._ps_min = float(running[-1])
        self._warning = bool(warning[-1])
        return -1

    def _params(self) -> dict[str, Any]:
        return {"warm_start": self.warm_start, "warning_threshold": self.warning_threshold,
                "drift_threshold": self.drift_threshold}

    def _stats(self) -> dict[str, Any]:
        return {
            "n": self._n,
            "errors": self._errors,
            "p_min": None if math.isnan(self._p_min) else self._p_min,
            "s_min": None if math.isnan(self._s_min) else self._s_min,
            "ps_min": None if math.isinf(self._ps_min) else self._ps_min,
            "warning": self._warning,
        }

    def _load_stats(self, st: dict[str, Any]) -> None:
        self._n = int(st["n"])
        self._errors = float(st["errors"])
        self._p_min = math.nan if st["p_min"] is None else float(st["p_min"])
        self._s_min = math.nan if st["s_min"] is None else float(st["s_min"])
        self._ps_min = math.inf if st["ps_min"] is None else float(st["ps_min"])
        self._warning = bool(st["warning"])


def detector_from_dict(data: dict[str, Any]) -> PageHinkley | DDM:
    """Rebuild whichever detector a checkpoint holds, by its ``kind``."""
    kind = data.get("kind")
    if kind == PageHinkley.kind:
        return PageHinkley.from_dict(data)
    if kind == DDM.kind:
        return DDM.from_dict(data)
    raise ValueError(f"unknown change detector kind {kind!r}")
