"""The running exporter: the pipeline thread, the HTTP server, checkpoints, reload, shutdown.

The pipeline thread runs one cycle every ``poll_interval``: the pipeline produces the cycle's
Report, ``publish`` adds the runtime's own numbers and the actions' counters to it, the
catalogue turns it into metric families (rendered once, for every scrape), and the Report goes
on to the actions (history, retraining evidence) and the status page. The HTTP server only
reads what was published. Checkpoints and config reloads happen on the pipeline thread between
cycles, so they always see a consistent state. Stopping (SIGTERM, SIGINT) finishes the current
cycle, writes a last checkpoint, then shuts the server down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path

from exporter.actions.evidence import evidence_from_pipeline
from exporter.actions.history import HistoryWriter
from exporter.actions.retrain import WEBHOOK_PATH, RetrainingService
from exporter.config import Config, ConfigError, ModelConfig, SourceConfig, load_config
from exporter.core import id_table
from exporter.core.pipeline import Pipeline
from exporter.foundation.clock import Clock
from exporter.http.server import ExporterHTTPServer, RenderedSnapshot, Response, parse_listen_address, receiver_listener
from exporter.http.status_page import StatusPage, StatusTracker
from exporter.ingest import compiled_columns, line_scanner
from exporter.report import catalogue
from exporter.report.model import EMPTY_REPORT, CheckpointStats, ExporterStats, Report
from exporter.runtime.checkpoint import Checkpointer
from exporter.sources import build_source
from exporter.sources.base import Source, SourceContext

log = logging.getLogger(__name__)
#: the shared server's body-size limit when no source route accepts more
DEFAULT_MAX_BODY_BYTES = 10 << 20


class Exporter:
    def __init__(self, config: Config, listen_address: str = ":9741", *, config_path: str | Path | None = None,
                 state_directory: str | Path | None = None, clock: Clock = time.time) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.clock = clock
        self.checkpointer = Checkpointer(Path(state_directory)) if state_directory else None
        self.rendered = RenderedSnapshot()
        self.server = ExporterHTTPServer(parse_listen_address(listen_address), self.rendered,
                                         max_body_bytes=DEFAULT_MAX_BODY_BYTES)
        self.server.post_handlers["/-/reload"] = self._http_reload
        #: POST paths the current sources declared (``Source.routes``), replaced on each reload
        self._source_routes: set[str] = set()
        # what every source is built with; `models` reads self.config, so it follows reloads
        self._source_context = SourceContext(models=self._model, listen=receiver_listener)
        #: the last Report published (complete: with the runtime's and the actions' numbers)
        self.report: Report = EMPTY_REPORT
        self.on_cycle: list[Callable[[], None]] = []
        # evidence comes from the published Report: `self.report` outlives pipelines swapped by reload
        self.retraining = RetrainingService(config.retraining, Path(state_directory) if state_directory else None,
                                            evidence_from_pipeline(self), clock)
        self.server.post_handlers[WEBHOOK_PATH] = self.retraining.handle
        self.history = HistoryWriter(config, clock, self.retraining.retraining_triggered)
        self.on_cycle.append(self._write_history)
        # the status page on `/`: its view is built here once per cycle, rendered on request
        self.status = StatusTracker()
        self.on_cycle.append(self._update_status)
        self.server.landing = StatusPage(self.status, lambda: self.server.telemetry_path).html
        self.reload_successful = True
        self.reload_success_time = clock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # cuts the wait between cycles short: stop or reload
        self._reload_requested = threading.Event()
        self._reload_done = threading.Condition()
        self._reload_result: tuple[bool, str] | None = None
        self._threads: list[threading.Thread] = []
        self._last_checkpoint = clock()
        self.pipeline = self._new_pipeline(config, [self._build_source(s) for s in config.sources])
        if self.checkpointer is not None:
            state = self.checkpointer.load()
            if state is not None:
                self.pipeline.restore_state(state, clock())

    def _model(self, name: str) -> ModelConfig | None:
        return self.config.model(name)

    def _build_source(self, config: SourceConfig) -> Source:
        return build_source(config, self._source_context)

    def _new_pipeline(self, config: Config, sources: list[Source]) -> Pipeline:
        pipeline = Pipeline(config, self.clock, sources=sources)
        for src in sources:
            src.start()  # e.g. a listener of its own (idempotent for a source kept across a reload)
        self._register_routes(sources)
        return pipeline

    def _register_routes(self, sources: list[Source]) -> None:
        """Serve the POST routes ``sources`` declare, in place of the previous sources' routes.

        The first source to declare a path serves it (as before: a second kserve source without
        an address of its own receives nothing). A path the runtime itself serves
        (``/-/reload``, the webhook) cannot be taken. The shared body-size limit is the largest
        any route accepts, as the server checks it before a handler sees the body.
        """
        handlers = self.server.post_handlers
        for path in self._source_routes:
            handlers.pop(path, None)
        self._source_routes = set()
        limit = DEFAULT_MAX_BODY_BYTES
        for src in sources:
            for path, handler in src.routes().items():
                if path in handlers:
                    if path not in self._source_routes:
                        log.error("source %s: POST %s is served by the exporter itself; not registered",
                                  src.name, path)
                    continue
                handlers[path] = handler
                self._source_routes.add(path)
            limit = max(limit, src.max_request_bytes())
        self.server.max_body_bytes = limit

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        # the first scrape gets the restored state and self-metrics, not an empty page
        self.publish(self.pipeline.build_report(self.clock()))
        self._threads.append(self.server.serve_in_thread())
        t = threading.Thread(target=self._loop, name="pipeline", daemon=True)
        t.start()
        self._threads.append(t)
        host = str(self.server.server_address[0])
        # which code ingest runs: the compiled modules are optional at install (setup.py)
        ingest = "compiled line scanner" if line_scanner.AVAILABLE else "msgspec (line scanner not built)"
        columns = "compiled" if compiled_columns.AVAILABLE else "numpy (not built)"
        kernels = "compiled" if id_table.AVAILABLE else "numpy (kernels not built)"
        log.info("listening", extra={"address": f"{host}:{self.port}", "json_reader": ingest,
                                     "ingest_columns": columns, "join_kernels": kernels})

    # -- the loop -------------------------------------------------------------------------------------
    def cycle(self) -> None:
        if self._reload_requested.is_set():
            self._reload_requested.clear()
            result = self.reload()
            with self._reload_done:
                self._reload_result = result
                self._reload_done.notify_all()
        self.publish(self.pipeline.run_cycle())
        for hook in self.on_cycle:
            hook()
        now = self.clock()
        if self.checkpointer is not None and now - self._last_checkpoint >= self.config.global_.checkpoint_interval:
            self.checkpoint(now)

    def publish(self, report: Report) -> None:
        """Complete the pipeline's Report with the runtime's and the actions' numbers, render its
        families for the scrapes, and keep it for the actions and the status page."""
        report = replace(report, exporter=self._exporter_stats(), retraining=self.retraining.stats(),
                         history=self.history.stats())
        self.rendered.publish(catalogue.snapshot(report))
        self.report = report

    def _write_history(self) -> None:
        self.history.maybe_write(self.report)

    def _update_status(self) -> None:
        self.status.update(self.report, self.config, self.clock())

    def checkpoint(self, now: float) -> None:
        if self.checkpointer is not None:
            self.checkpointer.save(self.pipeline.export_state(), now)
            self._last_checkpoint = now

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.cycle()
            except Exception:  # one bad cycle must not stop monitoring; it is logged loudly
                log.exception("pipeline cycle failed")
            wait = max(0.0, self.config.global_.poll_interval - (time.monotonic() - started))
            if self.pipeline.has_backlog:  # a source stopped at its byte budget: go on reading at once
                wait = 0.0
            self._wake.wait(wait)
            self._wake.clear()

    # -- reload -----------------------------------------------------------------------------------------
    def reload(self) -> tuple[bool, str]:
        """Re-read the config file; keep state for models and sources that remain. Pipeline thread only."""
        if self.config_path is None:
            return False, "no configuration file to reload (demo mode)"
        try:
            config = load_config(self.config_path)
        except ConfigError as e:
            self.reload_successful = False
            log.error("config reload refused, keeping the running configuration:\n%s", e)
            return False, str(e)
        now = self.clock()
        state = self.pipeline.export_state()
        old = {s.name: s for s in self.pipeline.sources}
        sources: list[Source] = []
        kept: set[str] = set()
        for cfg in config.sources:
            prev = old.get(cfg.name)
            if prev is not None and prev.config == cfg:
                sources.append(prev)
                kept.add(cfg.name)
            else:
                sources.append(self._build_source(cfg))
        for name, src in old.items():
            if name not in kept:
                src.close()
        pipeline = self._new_pipeline(config, sources)
        state["sources"] = {k: v for k, v in state["sources"].items() if k not in kept}
        pipeline.restore_state(state, now)
        self.pipeline, self.config = pipeline, config
        self.retraining.reconfigure(config.retraining)
        self.history.reconfigure(config)
        self.reload_successful = True
        self.reload_success_time = now
        log.info("configuration reloaded", extra={"models": len(config.models), "sources": len(config.sources)})
        return True, "configuration reloaded"

    def trigger_reload(self) -> None:
        """Reload at the next opportunity without waiting (safe from a signal handler)."""
        self._reload_requested.set()
        self._wake.set()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self, timeout: float = 30.0) -> tuple[bool, str]:
        """Ask the pipeline thread to reload and wait for the outcome (SIGHUP, POST /-/reload)."""
        with self._reload_done:
            self._reload_result = None
            self._reload_requested.set()
            self._wake.set()
            if not self._reload_done.wait_for(lambda: self._reload_result is not None, timeout):
                return False, "reload timed out"
            assert self._reload_result is not None
            return self._reload_result

    def _http_reload(self, _headers: dict[str, str], _body: bytes) -> Response:
        ok, message = self.request_reload()
        status = HTTPStatus.OK if ok else HTTPStatus.INTERNAL_SERVER_ERROR
        return Response(status, (message + "\n").encode())

    def _exporter_stats(self) -> ExporterStats:
        cp = self.checkpointer
        return ExporterStats(
            reload_successful=self.reload_successful,
            reload_success_time=self.reload_success_time,
            checkpoint=CheckpointStats(cp.last_success, cp.errors_total, cp.restore_failures_total)
            if cp is not None else None,
        )

    # -- shutdown ----------------------------------------------------------------------------------------
    def wait(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(0.5)

    def stop(self) -> None:
        self.request_stop()
        for t in self._threads:
            if t.name == "pipeline":
                t.join(timeout=30)
        self.checkpoint(self.clock())
        self.server.shutdown()
        self.server.server_close()
        for t in self._threads:
            t.join(timeout=10)
        for src in self.pipeline.sources:
            src.close()
        self.retraining.close()
