"""The snapshot's families as prometheus-client metrics: the OpenMetrics path of ``/metrics``.

The text format is rendered by ``snapshot.render`` (cached label prefixes, about ten times
faster); OpenMetrics is left to prometheus-client's own writer, fed by this collector, so the
exporter does not carry a second implementation of that format. The same collector is the
reference the text renderer is tested against (``generate_latest`` of the same families).
It can also be registered in any other prometheus-client registry.

It only reads the snapshot reference it is given and never raises: a failing collector would
take every other metric of the scrape down with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.snapshot import Family, Snapshot

log = logging.getLogger(__name__)


def to_metrics(families: Iterable[Family]) -> list[Metric]:
    """prometheus-client ``Metric`` objects for the families; empty families are left out,
    as the text renderer leaves them out (OpenMetrics would otherwise print a bare TYPE line)."""
    metrics = []
    for fam in families:
        if not fam.samples:
            continue
        metric = Metric(fam.name, fam.help, fam.type)
        for s in fam.samples:
            metric.add_sample(s.name, dict(s.labels), s.value)
        metrics.append(metric)
    return metrics


class SnapshotCollector(Collector):
    """Collects whatever snapshot ``current()`` returns at collection time."""

    def __init__(self, current: Callable[[], Snapshot]) -> None:
        self._current = current

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = to_metrics(self._current().families)
        except Exception:  # never fail the scrape; the error is logged with its traceback
            log.exception("snapshot collection failed")
            return
        yield from metrics
