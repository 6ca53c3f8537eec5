"""What ``/metrics`` answers: the published snapshot plus the process, in the format asked for.

The runtime publishes a Snapshot once per cycle (the catalogue's families of the cycle's
Report) and its text exposition is rendered right away (``snapshot.render``: cached label
prefixes, byte-identical to prometheus-client). A scrape then only picks a format and appends
the runtime metrics:

* **Format.** prometheus-client's ``choose_encoder`` reads ``Accept``: OpenMetrics 1.0 when the
  scraper asks for it (Prometheus does, first), else the text format. The snapshot's families
  are written by ``snapshot.render`` in either format (byte-identical to prometheus-client's
  writers, which the tests hold it to): prometheus-client's OpenMetrics writer took 160-300 ms
  for 10k series and 2.7 s for 100k, on the path of every Prometheus scrape after each cycle;
  the cached renderer about 15 ms and 150 ms. OpenMetrics is rendered once per snapshot, on the
  first scrape that wants it.
* **Runtime metrics.** ``process_*`` (CPU, resident memory, open fds, start time; Linux only),
  ``python_info`` and ``python_gc_*`` come from prometheus-client's own collectors, collected at
  every scrape (they are about now, not about the last cycle) and written by the same encoder.
* **Compression.** gzip when ``Accept-Encoding`` allows it, at level 1 (level 9, what
  prometheus-client uses, took 86 ms instead of 8 ms for 10k series, for 21% fewer bytes). The
  snapshot part is compressed once per snapshot and format; the compressor's state is kept, so a
  scrape compresses only the few runtime lines (``zlib`` ``copy()``) and still sends one
  ordinary gzip stream.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.report.snapshot import Snapshot, render

OPENMETRICS = "application/openmetrics-text"
GZIP_LEVEL = 1
_EOF = b"# EOF\n"


def runtime_registry() -> CollectorRegistry:
    """A registry of prometheus-client's process, platform and GC collectors (not the global one)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


@dataclass(frozen=True)
class Exposition:
    body: bytes
    content_type: str
    content_encoding: str | None = None


@dataclass
class _Published:
    """One snapshot and its renderings; OpenMetrics text and gzip state are made on first use."""

    snapshot: Snapshot
    text: bytes
    lock: threading.Lock = field(default_factory=threading.Lock)
    openmetrics: bytes | None = None  # without its "# EOF": the runtime metrics follow
    gzip: dict[bool, tuple[bytes, Any]] = field(default_factory=dict)  # openmetrics? -> (bytes, compressor)

    def openmetrics_head(self) -> bytes:
        with self.lock:
            if self.openmetrics is None:
                self.openmetrics = render(self.snapshot.families, openmetrics=True).removesuffix(_EOF)
            return self.openmetrics

    def gzip_state(self, openmetrics: bool, head: bytes) -> tuple[bytes, Any]:
        with self.lock:
            state = self.gzip.get(openmetrics)
            if state is None:
                compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip header
                state = self.gzip[openmetrics] = (compressor.compress(head), compressor)
            return state


class RenderedSnapshot:
    """The current snapshot and its renderings, swapped together atomically at ``publish``.

    ``runtime`` is the collector of the per-scrape metrics (``runtime_registry()`` by default;
    tests pass a deterministic one to compare bytes).
    """

    def __init__(self, runtime: Collector | None = None) -> None:
        self.runtime: Collector = runtime if runtime is not None else runtime_registry()
        self._current = _Published(Snapshot((), 0.0, False), b"")

    def publish(self, snapshot: Snapshot) -> None:
        self._current = _Published(snapshot, render(snapshot.families))

    @property
    def snapshot(self) -> Snapshot:
        return self._current.snapshot

    @property
    def text(self) -> bytes:
        """The snapshot's text exposition (without the runtime metrics)."""
        return self._current.text

    def exposition(self, accept: str | None = None, accept_encoding: str | None = None) -> Exposition:
        """The ``/metrics`` answer for these request headers."""
        current = self._current
        encoder, content_type = choose_encoder(accept or "")
        # the exporter's names are all legacy names, so every escaping scheme and text/plain
        # version=1.0.0 give the same bytes as the defaults the renderer writes
        openmetrics = content_type.startswith(OPENMETRICS)
        head = current.openmetrics_head() if openmetrics else current.text
        tail = encoder(self.runtime)
        if not gzip_accepted(accept_encoding or ""):
            return Exposition(head + tail, content_type)
        prefix, compressor = current.gzip_state(openmetrics, head)
        c = compressor.copy()
        return Exposition(prefix + c.compress(tail) + c.flush(), content_type, "gzip")
