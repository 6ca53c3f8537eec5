"""``KServeSource``: the POST handler for KServe's logger, the pairing of request and response
events by ``ce-id``, the bounded queue the pipeline drains, and forwarding. The package docstring
(``exporter.sources.kserve``) describes the behaviour as a user sees it."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import requests

from exporter.config import KServeSourceConfig, ModelConfig, SourceConfig
from exporter.foundation.clock import Clock
from exporter.foundation.http_messages import Listener, ListenerFactory, PostHandler, Response
from exporter.foundation.reject_reasons import (
    BODY_TOO_LARGE,
    INVALID_TIMESTAMP,
    MISSING_MODEL,
    QUEUE_FULL,
)
from exporter.ingest.timestamps import parse_timestamp
from exporter.sources.base import ModelLookup, Poll, Source, SourceContext
from exporter.sources.forwarder import Forwarder
from exporter.sources.kserve.cloudevents import (
    RESPONSE_TYPE,
    CloudEvent,
    Rejected,
    annotation_value,
    metadata_value,
    parse_cloudevent,
    revision_from_source,
)
from exporter.sources.kserve.payloads import parse_request, parse_response

log = logging.getLogger(__name__)

KSERVE_PATH = "/api/v1/kserve"
DEFAULT_REQUEST_TTL = 60.0
DEFAULT_MAX_PENDING_REQUESTS = 10_000


@dataclass
class _Queued:
    """One response event waiting for the next poll."""

    event_id: str
    records: list[dict[str, Any]]
    has_features: bool = False


@dataclass
class _Inflight:
    token: int
    objects: list[dict[str, Any]]
    rejected: Counter[str] = field(default_factory=Counter)


class KServeSource(Source):
    """A ``type: kserve`` source (``kind: predictions``).

    ``models`` looks a model's config up by name (pass ``Config.model``): it supplies the
    ``classes`` that probability rows map onto and the ``drift.features`` that request columns
    map onto; without it class ``i`` is ``str(i)`` and only named features are kept (the runtime
    passes, through ``build``, a lookup that follows config reloads). ``listen`` makes the
    listener ``start()`` opens when ``listen_address`` is set. ``clock`` gives arrival times.
    ``forward_session`` is the ``requests.Session`` the forwarder uses (tests).

    Without ``listen_address`` it serves ``POST /api/v1/kserve`` on the exporter's own server
    (``routes()``); with one, on that address only.
    """

    config_type = KServeSourceConfig
    config: KServeSourceConfig

    def __init__(self, config: KServeSourceConfig, models: ModelLookup | None = None, *,
                 listen: ListenerFactory | None = None,
                 clock: Clock = time.time, request_ttl: float = DEFAULT_REQUEST_TTL,
                 max_pending_requests: int = DEFAULT_MAX_PENDING_REQUESTS,
                 forward_session: requests.Session | None = None) -> None:
        super().__init__(config)
        if config.kind != "predictions":
            raise ValueError(f"source {config.name!r}: a kserve source receives predictions (kind: predictions)")
        self.models = models
        self._listen = listen
        self.clock = clock
        self.request_ttl = request_ttl
        self.max_pending_requests = max_pending_requests
        self.rejected_since_last_poll: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()  # events, records, late_requests, ... (for logs/tests)
        self._lock = threading.Lock()
        self._queue: deque[_Queued] = deque()
        self._queued: dict[str, _Queued] = {}  # ce-id -> its response event still in the queue
        self._pending: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self._drained: OrderedDict[str, float] = OrderedDict()  # ce-id -> until when a request is late
        self._inflight: _Inflight | None = None
        self._token = 0
        self._last_reject_log: dict[str, float] = {}
        self.forwarder = Forwarder(config.forward_to, forward_session) if config.forward_to else None
        self.listener: Listener | None = None
        self._listener_thread: threading.Thread | None = None
        self.health.up = True

    # --- receiving ---------------------------------------------------------------------------

    def handle(self, headers: dict[str, str], body: bytes) -> Response:
        """The POST handler: validate, enqueue, answer at once (never waits on the pipeline)."""
        if len(body) > self.config.max_body_bytes:
            self._reject(BODY_TOO_LARGE, f"body over {self.config.max_body_bytes} bytes")
            return Response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request body too large\n")
        now = self.clock()
        try:
            event = parse_cloudevent(headers, body)
            if event.type == RESPONSE_TYPE:
                resp = self._on_response(event, headers, now)
            else:
                resp = self._on_request(event, now)
        except Rejected as r:
            self._reject(r.reason, r.detail)
            resp = Response(HTTPStatus.BAD_REQUEST, f"{r.reason}: {r.detail}\n".encode())
        if self.forwarder is not None and resp.status != HTTPStatus.SERVICE_UNAVAILABLE:
            self.forwarder.submit(headers, body)
        return resp

    def _reject(self, reason: str, detail: str) -> None:
        with self._lock:
            self.rejected_since_last_poll[reason] += 1
        self._warn_limited(reason, "source %s: KServe event refused: %s: %s", self.name, reason, detail)

    def _warn_limited(self, key: str, msg: str, *args: Any) -> None:
        """Log at most once a minute per ``key``, so a flood of bad events stays readable."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_reject_log.get(key, -math.inf) < 60.0:
                return
            self._last_reject_log[key] = now
        log.warning(msg, *args)

    def _model(self, event: CloudEvent) -> str:
        model = self.config.model or event.attributes.get("inferenceservicename", "").strip()
        if not model:
            raise Rejected(MISSING_MODEL, "no ce-inferenceservicename and no model configured")
        return model

    def _model_config(self, model: str) -> ModelConfig | None:
        return self.models(model) if self.models is not None else None

    def _version(self, event: CloudEvent, headers: Mapping[str, str]) -> str | None:
        """The configured version (see the module doc); None lets the pipeline say ``unknown``."""
        value: str | None = self.config.model_version  # fixed: the pipeline would set it anyway
        wanted = self.config.version_from
        if value is None and wanted is not None:
            kind, key = wanted
            if kind == "metadata":
                value = metadata_value(event.attributes.get("metadata"), key)
            elif kind == "annotation":
                value = annotation_value(event.attributes.get("annotations"), key)
            elif kind == "header":
                value = headers.get(key.lower())
        elif value is None and self.config.version_header:
            key = self.config.version_header.lower()
            value = headers.get(key) or metadata_value(event.attributes.get("metadata"), key)
        if value and value.strip():
            return value.strip()
        revision = revision_from_source(event.attributes.get("source", ""))
        if revision is None:
            self.counters["version_unknown"] += 1
            self._warn_limited("version_unknown", "source %s: %s; the version is 'unknown'",
                               self.name, self._version_hint(event))
        return revision

    def _version_hint(self, event: CloudEvent) -> str:
        wanted = self.config.version_from
        source = event.attributes.get("source", "")
        if wanted is None or wanted[0] == "source_revision":
            return (f"no version_from configured and ce-source {source[:80]!r} names no predictor revision "
                    "(KServe sends http://localhost:9081/): see 'Using with KServe' in the README")
        where = {"metadata": "ce-metadata (list it in the InferenceService's logger.metadataHeaders)",
                 "annotation": "ce-annotations (list it in the InferenceService's logger.metadataAnnotations)",
                 "header": "the POST's headers"}[wanted[0]]
        return f"event {event.id[:64]!r} has no {wanted[1]!r} in {where}"

    def _timestamp(self, event: CloudEvent, now: float) -> float:
        raw = event.attributes.get("time") or event.attributes.get("recordedtime")
        if not raw:
            return now
        t = parse_timestamp(raw.strip(), now)
        if math.isnan(t):
            raise Rejected(INVALID_TIMESTAMP, f"ce-time {raw[:64]!r} is not an RFC 3339 time")
        return t

    def _on_response(self, event: CloudEvent, headers: Mapping[str, str], now: float) -> Response:
        model = self._model(event)
        mc = self._model_config(model)
        preds = parse_response(event.data, mc.classes if mc is not None else None)
        ts = self._timestamp(event, now)
        version = self._version(event, headers)
        n = len(preds)
        records: list[dict[str, Any]] = []
        for i, p in enumerate(preds):
            rec: dict[str, Any] = {"id": event.id if n == 1 else f"{event.id}#{i}", "model": model,
                                   "timestamp": ts, "prediction": p.prediction}
            if version is not None:
                rec["model_version"] = version
            if p.confidence is not None:
                rec["confidence"] = p.confidence
            if p.probabilities:
                rec["probabilities"] = p.probabilities
            records.append(rec)
        queued = _Queued(event.id, records)
        with self._lock:
            if len(self._queue) >= self.config.queue_size:
                self.rejected_since_last_poll[QUEUE_FULL] += 1
                self.counters["queue_full"] += 1
                full = True
            else:
                full = False
                pending = self._pending.pop(event.id, None)
                if pending is not None:
                    self._attach(queued, pending[1])
                self._queue.append(queued)
                self._queued[event.id] = queued
                self.counters["responses"] += 1
                self.counters["records"] += n
        if full:
            self._warn_limited(QUEUE_FULL, "source %s: KServe event queue full (%d events); answering 503",
                               self.name, self.config.queue_size)
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, b"queue full, retry later\n",
                            headers=(("Retry-After", "1"),))
        return Response(HTTPStatus.OK, b"ok\n")

    def _on_request(self, event: CloudEvent, now: float) -> Response:
        model = self._model(event)
        if self.models is None:
            names: tuple[str, ...] | None = None
        else:
            mc = self.models(model)
            names = mc.drift.features if mc is not None else ()
        rows = parse_request(event.data, names)
        with self._lock:
            self.counters["requests"] += 1
            queued = self._queued.get(event.id)
            if queued is not None:
                if not queued.has_features:
                    self._attach(queued, rows)
            elif event.id in self._drained:
                self.counters["late_requests"] += 1
            elif any(rows):
                self._expire(now)
                self._pending[event.id] = (now + self.request_ttl, rows)
                self._pending.move_to_end(event.id)
                while len(self._pending) > self.max_pending_requests:
                    self._pending.popitem(last=False)
                    self.counters["evicted_requests"] += 1
        return Response(HTTPStatus.OK, b"ok\n")

    def _attach(self, queued: _Queued, rows: list[dict[str, Any]]) -> None:
        """Put a request's feature rows onto its response's records (lock held)."""
        if len(rows) != len(queued.records):
            self.counters["feature_row_mismatch"] += 1
            return
        for rec, feats in zip(queued.records, rows, strict=True):
            if feats:
                rec["features"] = feats
        queued.has_features = True

    def _expire(self, now: float) -> None:
        """Drop pending requests and late-request markers past their time (lock held)."""
        while self._pending:
            key, (until, _) = next(iter(self._pending.items()))
            if until > now:
                break
            del self._pending[key]
            self.counters["expired_requests"] += 1
        while self._drained:
            key, until = next(iter(self._drained.items()))
            if until > now:
                break
            del self._drained[key]

    # --- Source interface ------------------------------------------------------------------------

    def poll(self, now: float) -> Poll:
        with self._lock:
            self._expire(self.clock())
            if self._inflight is None:
                events = list(self._queue)
                self._queue.clear()
                until = self.clock() + self.request_ttl
                for ev in events:
                    if self._queued.get(ev.event_id) is ev:
                        del self._queued[ev.event_id]
                    self._drained[ev.event_id] = until
                    self._drained.move_to_end(ev.event_id)
                while len(self._drained) > self.max_pending_requests:
                    self._drained.popitem(last=False)
                self._token += 1
                self._inflight = _Inflight(self._token, [r for ev in events for r in ev.records],
                                           self.rejected_since_last_poll)
                self.rejected_since_last_poll = Counter()
            inflight = self._inflight
        self.health.polled_once = True
        if self.health.up:
            self.health.last_success = now
        return Poll(objects=list(inflight.objects), rejected=Counter(inflight.rejected), token=inflight.token)

    def commit(self, token: Any) -> None:
        with self._lock:
            if self._inflight is not None and self._inflight.token == token:
                self._inflight = None

    @property
    def queued_events(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def pending_requests(self) -> int:
        with self._lock:
            return len(self._pending)

    # --- where it receives ---------------------------------------------------------------------------

    @classmethod
    def build(cls, config: SourceConfig, context: SourceContext) -> KServeSource:
        if not isinstance(config, KServeSourceConfig):
            raise TypeError(f"source {config.name!r}: a kserve source needs a KServeSourceConfig, got {config!r}")
        return cls(config, context.models, listen=context.listen)

    def routes(self) -> Mapping[str, PostHandler]:
        """``POST /api/v1/kserve`` on the shared server, unless it has an address of its own."""
        return {} if self.config.listen_address else {KSERVE_PATH: self.handle}

    def max_request_bytes(self) -> int:
        return self.config.max_body_bytes if self.routes() else 0

    def start(self) -> None:
        """Open the own listener when ``listen_address`` is set and a ``listen`` factory was
        given (idempotent: a source kept across a reload keeps its listener)."""
        if self.config.listen_address and self._listen is not None:
            self.start_listener(self._listen)

    def start_listener(self, listen: ListenerFactory) -> tuple[str, int]:
        """Serve ``handle`` on ``listen_address`` (POST ``/api/v1/kserve`` and ``/``), without auth.

        ``listen`` makes the listener (the runtime passes ``server.receiver_listener``; the source
        does not import the HTTP server above it). Returns the bound (host, port). Raises
        ``OSError`` when the address cannot be bound (the source is marked down and the error
        counted first), ``ValueError`` without an address.
        """
        if self.listener is not None:
            host, port = self.listener.server_address[:2]
            return str(host), int(port)
        if not self.config.listen_address:
            raise ValueError(f"source {self.name!r}: no listen_address configured")
        try:
            server = listen(self.config.listen_address, self.config.max_body_bytes)
        except OSError as e:
            self.health.up = False
            self.health.errors_total += 1
            log.error("source %s: cannot listen on %s: %s", self.name, self.config.listen_address, e)
            raise
        server.post_handlers[KSERVE_PATH] = self.handle
        server.post_handlers["/"] = self.handle
        self.listener = server
        self._listener_thread = server.serve_in_thread()
        host, port = server.server_address[:2]
        log.info("source %s: receiving KServe events on %s:%s", self.name, host, port)
        return str(host), int(port)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.shutdown()
            self.listener.server_close()
            if self._listener_thread is not None:
                self._listener_thread.join(timeout=5)
            self.listener = None
        if self.forwarder is not None:
            self.forwarder.close()


