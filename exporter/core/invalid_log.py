"""The log line of skipped invalid records, rate-limited per source and reason."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class RateLimitedLog:
    """Log each (source, reason) at most once per interval, so a flood of bad lines stays readable.

    A line's ``count`` is the number of records skipped for that source and reason since the
    previous line for them (so the log adds up to the counter), and ``where`` locates the first
    record skipped in the poll that wrote the line (``path:byte offset``, an HTTP page and record,
    a CloudEvent id).
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._unlogged: Counter[tuple[str, str]] = Counter()

    def warn(self, source: str, reason: str, count: int, now: float, where: str | None = None) -> None:
        key = (source, reason)
        self._unlogged[key] += count
        if now - self._last.get(key, -np.inf) >= self.interval:
            self._last[key] = now
            extra: dict[str, Any] = {"source": source, "reason": reason, "count": self._unlogged.pop(key)}
            if where:
                extra["where"] = where
            log.warning("invalid records skipped", extra=extra)
