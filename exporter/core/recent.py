"""A bounded recent history of one number per key: the status page's sparklines.

Each key (model, version, window) keeps at most ``points`` (time, value) pairs in a ring: a new
point is taken only when ``step`` seconds have passed since the key's last one, and the oldest
point falls out when the ring is full. Keys the caller no longer reports are dropped by
``retain``. Memory is therefore ``keys * points`` pairs, whatever the traffic or the uptime.
Nothing here is persisted: after a restart the sparklines start empty and fill again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable

#: Points kept per key: enough for a readable sparkline, small enough to never matter.
DEFAULT_POINTS = 120


class RecentHistory:
    """Rings of (time, value) per key, sampled at most once per ``step`` seconds."""

    def __init__(self, points: int = DEFAULT_POINTS) -> None:
        if points < 2:
            raise ValueError("a sparkline needs at least 2 points")
        self.points = points
        self._rings: dict[Hashable, deque[tuple[float, float]]] = {}

    def observe(self, key: Hashable, t: float, value: float, step: float) -> bool:
        """Record ``value`` at ``t`` unless the key's last point is less than ``step`` old.

        Returns whether a point was taken. A clock that went backwards (``t`` before the last
        point) restarts the ring rather than drawing time out of order.
        """
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = deque(maxlen=self.points)
        elif ring:
            last = ring[-1][0]
            if t < last:
                ring.clear()
            elif t - last < step:
                return False
        ring.append((t, value))
        return True

    def series(self, key: Hashable) -> tuple[tuple[float, float], ...]:
        """The key's points, oldest first (empty for an unknown key)."""
        return tuple(self._rings.get(key, ()))

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every key not in ``keys`` (versions that expired, windows removed by reload)."""
        keep = set(keys)
        for key in [k for k in self._rings if k not in keep]:
            del self._rings[key]

    def __len__(self) -> int:
        """Number of keys."""
        return len(self._rings)

    def size(self) -> int:
        """Points held over all keys (at most ``len(self) * points``)."""
        return sum(len(r) for r in self._rings.values())


def sample_step(window_seconds: float, poll_interval: float, points: int = DEFAULT_POINTS) -> float:
    """Seconds between points so one ring spans about one window length, never more often
    than once per cycle (a 1h window with 120 points: one point every 30 s)."""
    return max(poll_interval, window_seconds / points)
