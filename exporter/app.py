"""The running exporter: the pipeline thread, the HTTP server, and a clean shutdown.

The pipeline thread runs one cycle every ``poll_interval`` and publishes the snapshot; the
HTTP server only reads what was published. Stopping (SIGTERM, SIGINT) finishes the current
cycle, then shuts the server down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from exporter.config import Config
from exporter.pipeline import Pipeline
from exporter.server import ExporterHTTPServer, RenderedSnapshot, parse_listen_address

log = logging.getLogger(__name__)


class Exporter:
    def __init__(self, config: Config, listen_address: str = ":9741", *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.pipeline = Pipeline(config, clock)
        self.rendered = RenderedSnapshot()
        self.server = ExporterHTTPServer(parse_listen_address(listen_address), self.rendered)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.on_cycle: list[Callable[[], None]] = []

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._threads.append(self.server.serve_in_thread())
        t = threading.Thread(target=self._loop, name="pipeline", daemon=True)
        t.start()
        self._threads.append(t)
        host = self.server.server_address[0]
        log.info("listening", extra={"address": f"{host!s}:{self.port}"})

    def cycle(self) -> None:
        self.rendered.publish(self.pipeline.run_cycle())
        for hook in self.on_cycle:
            hook()

    def _loop(self) -> None:
        interval = self.config.global_.poll_interval
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.cycle()
            except Exception:  # one bad cycle must not stop monitoring; it is logged loudly
                log.exception("pipeline cycle failed")
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def wait(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        for t in self._threads:
            t.join(timeout=10)
        for src in self.pipeline.sources:
            src.close()
