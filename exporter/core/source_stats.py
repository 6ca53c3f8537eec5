"""The cumulative self-metrics the pipeline keeps per source (and checkpoints).

Their own module so the Report builder (``exporter.core.reporting``) can copy their numbers
without importing the pipeline that updates them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from exporter.core.versions import Histogram

POLL_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)


@dataclass
class SourceStats:
    """Cumulative self-metrics of one source (persisted with the checkpoint)."""

    records: int = 0
    bytes_read: int = 0  # of lines, for pacing labels (not checkpointed: relearnt after a restart)
    invalid: Counter[str] = field(default_factory=Counter)
    newest_timestamp: float | None = None
    poll_duration: Histogram = field(default_factory=lambda: Histogram(POLL_BUCKETS, 1e6))
