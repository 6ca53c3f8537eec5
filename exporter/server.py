"""HTTP endpoints: /metrics, health, readiness, landing page, and pluggable POST receivers.

Scrapes only read the latest Snapshot (pre-rendered once per cycle), so they never wait for
ingestion. Receivers (KServe CloudEvents, the Alertmanager webhook) register a handler for a
path; the server enforces the body-size limit and timeouts for all of them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from exporter.snapshot import Snapshot, render

log = logging.getLogger(__name__)
CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


PostHandler = Callable[[dict[str, str], bytes], Response]
Authenticator = Callable[[str | None], bool]


class RenderedSnapshot:
    """The current snapshot and its text exposition, swapped together atomically."""

    def __init__(self) -> None:
        self._current: tuple[Snapshot, bytes] = (Snapshot((), 0.0, False), b"")

    def publish(self, snapshot: Snapshot) -> None:
        self._current = (snapshot, render(snapshot.families))

    @property
    def snapshot(self) -> Snapshot:
        return self._current[0]

    @property
    def text(self) -> bytes:
        return self._current[1]


LANDING = """<!doctype html><html><head><title>mlmon-exporter</title></head><body>
<h1>mlmon-exporter</h1><p>Prometheus exporter for machine-learning model quality.</p>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/-/healthy">/-/healthy</a></li>
<li><a href="/-/ready">/-/ready</a></li></ul></body></html>
"""


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], rendered: RenderedSnapshot, *,
                 max_body_bytes: int = 10 << 20, request_timeout: float = 30.0) -> None:
        self.rendered = rendered
        self.post_handlers: dict[str, PostHandler] = {}
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.authenticate: Authenticator | None = None
        super().__init__(address, _Handler)

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        t.start()
        return t


class _Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "mlmon-exporter"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.request_timeout)
        # headers and body go out in two writes: without NODELAY every keep-alive response waits
        # ~40 ms for the client's delayed ACK (Prometheus scrapes over keep-alive)
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http " + format, *args)

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def _authorised(self) -> bool:
        auth = self.server.authenticate
        if auth is None or self.path in ("/-/healthy", "/-/ready"):
            return True
        if auth(self.headers.get("Authorization")):
            return True
        self._send(Response(HTTPStatus.UNAUTHORIZED, b"Unauthorized\n",
                            headers=(("WWW-Authenticate", 'Basic realm="mlmon-exporter"'),)))
        return False

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if not self._authorised():
            return
        if path == "/metrics":
            self._send(Response(HTTPStatus.OK, self.server.rendered.text, CONTENT_TYPE_LATEST))
        elif path == "/-/healthy":
            self._send(Response(HTTPStatus.OK, b"OK\n"))
        elif path == "/-/ready":
            ready = self.server.rendered.snapshot.ready
            self._send(Response(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                                b"Ready\n" if ready else b"Not ready: sources not read yet\n"))
        elif path == "/":
            self._send(Response(HTTPStatus.OK, LANDING.encode(), "text/html; charset=utf-8"))
        elif path in self.server.post_handlers:  # e.g. GET /-/reload: the path exists, the method does not
            self._send(Response(HTTPStatus.METHOD_NOT_ALLOWED, b"Method not allowed: use POST\n",
                                headers=(("Allow", "POST"),)))
        else:
            self._send(Response(HTTPStatus.NOT_FOUND, b"Not found\n"))

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if not self._authorised():
            return
        handler = self.server.post_handlers.get(path)
        if handler is None:
            self._send(Response(HTTPStatus.NOT_FOUND, b"Not found\n"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._send(Response(HTTPStatus.BAD_REQUEST, b"invalid Content-Length\n"))
            return
        if length > self.server.max_body_bytes or length < 0:
            self.close_connection = True
            self._send(Response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request body too large\n"))
            return
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            resp = handler(headers, body)
        except Exception:  # a receiver bug must answer 500, not kill the connection silently
            log.exception("handler failed", extra={"path": path})
            resp = Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")
        self._send(resp)


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9741`` -> ('0.0.0.0', 9741); ``127.0.0.1:0`` -> ('127.0.0.1', 0); ``[::1]:9741`` too."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid listen address {address!r}: want host:port")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
