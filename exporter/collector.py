"""A prometheus-client Collector over the latest Snapshot, for embedding in another registry.

The exporter's own ``/metrics`` renders the snapshot directly (it is faster); this collector
exists so the same families can be registered anywhere prometheus-client is used. It only reads
the snapshot reference it is given and never raises: a failing collector would take every
other metric of the scrape down with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.snapshot import Snapshot

log = logging.getLogger(__name__)


class SnapshotCollector(Collector):
    def __init__(self, current: Callable[[], Snapshot]) -> None:
        self._current = current

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = self._current()
            metrics = []
            for fam in snapshot.families:
                metric = Metric(fam.name, fam.help, fam.type)
                for s in fam.samples:
                    metric.add_sample(s.name, dict(s.labels), s.value)
                metrics.append(metric)
        except Exception:  # never fail the scrape; the error is logged with its traceback
            log.exception("snapshot collection failed")
            return
        yield from metrics
