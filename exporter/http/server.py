"""HTTP endpoints: /metrics, health, readiness, the page on /, and pluggable POST receivers.

Scrapes only read the latest Snapshot (pre-rendered once per cycle), so they never wait for
ingestion; ``scrape.RenderedSnapshot`` picks the format (text or OpenMetrics, gzip or not) from
the request headers. Receivers (KServe CloudEvents, the Alertmanager webhook) register a handler
for a path; the server reads their bodies (``Content-Length`` or chunked, keep-alive and
pipelining intact) and enforces the body-size limit and timeouts for all of them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

from exporter.config.listen import ListenAddressError as ListenAddressError
from exporter.config.listen import resolve_listen_address, split_listen_address
from exporter.foundation.http_messages import PostHandler as PostHandler
from exporter.foundation.http_messages import Response as Response
from exporter.http.scrape import RenderedSnapshot as RenderedSnapshot  # its home before scrape.py

log = logging.getLogger(__name__)
CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_TELEMETRY_PATH = "/metrics"
MAX_CHUNK_LINE = 4096  # a chunk-size line or a trailer line
MAX_TRAILERS = 100
_CHUNK_SIZE_RE = re.compile(rb"[0-9A-Fa-f]{1,15}")


Authenticator = Callable[[str | None], bool]


class BodyTooLarge(Exception):
    pass


def read_chunked(rfile: IO[bytes] | io.BufferedIOBase, limit: int) -> bytes:
    """A ``Transfer-Encoding: chunked`` body, trailers consumed, so the next pipelined request
    starts right after it. ``BodyTooLarge`` past ``limit`` bytes of data (reading stops there),
    ``ValueError`` for a malformed or truncated body."""
    parts: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        if not line.endswith(b"\n"):
            raise ValueError("truncated chunk-size line" if len(line) <= MAX_CHUNK_LINE else "chunk-size line too long")
        size_text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
        if not _CHUNK_SIZE_RE.fullmatch(size_text):
            raise ValueError(f"invalid chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise BodyTooLarge
        data = rfile.read(size)
        if len(data) != size:
            raise ValueError(f"truncated chunk: {len(data)} of {size} bytes")
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise ValueError("chunk data not followed by CRLF")
        parts.append(data)
    for _ in range(MAX_TRAILERS + 1):
        line = rfile.readline(MAX_CHUNK_LINE + 1)
        if line in (b"\r\n", b"\n"):
            return b"".join(parts)
        if not line.endswith(b"\n"):
            raise ValueError("truncated trailer")
    raise ValueError("too many trailer lines")


LANDING = """<!doctype html><html><head><title>mlmon-exporter</title></head><body>
<h1>mlmon-exporter</h1><p>Prometheus exporter for machine-learning model quality.</p>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/-/healthy">/-/healthy</a></li>
<li><a href="/-/ready">/-/ready</a></li></ul></body></html>
"""


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], rendered: RenderedSnapshot, *,
                 max_body_bytes: int = 10 << 20, request_timeout: float = 30.0,
                 telemetry_path: str = DEFAULT_TELEMETRY_PATH) -> None:
        """``address`` is (host, port) as ``parse_listen_address`` gives it: host ``''`` is every
        interface, a hostname is resolved. ``ListenAddressError`` (a ValueError) when it does not
        resolve, ``OSError`` when it cannot be bound."""
        self.rendered = rendered
        self.post_handlers: dict[str, PostHandler] = {}
        self.max_body_bytes = max_body_bytes
        self.request_timeout = request_timeout
        self.telemetry_path = telemetry_path
        self.authenticate: Authenticator | None = None
        # the body of `/`: the app plugs in the status page (exporter.http.status_page)
        self.landing: Callable[[], bytes] = LANDING.encode
        bind = resolve_listen_address(*address)
        self.address_family = bind.family
        self._dual_stack = bind.dual_stack
        super().__init__((bind.host, bind.port), _Handler)

    def server_bind(self) -> None:
        if self._dual_stack:  # '::' serving IPv4 too, as Go's ':9741' does
            with contextlib.suppress(OSError, AttributeError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

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
        if path == self.server.telemetry_path:
            exp = self.server.rendered.exposition(self.headers.get("Accept"), self.headers.get("Accept-Encoding"))
            headers = (("Content-Encoding", exp.content_encoding), ("Vary", "Accept-Encoding")) \
                if exp.content_encoding else ()
            self._send(Response(HTTPStatus.OK, exp.body, exp.content_type, headers))
        elif path == "/-/healthy":
            self._send(Response(HTTPStatus.OK, b"OK\n"))
        elif path == "/-/ready":
            ready = self.server.rendered.snapshot.ready
            self._send(Response(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                                b"Ready\n" if ready else b"Not ready: sources not read yet\n"))
        elif path == "/":
            self._send(Response(HTTPStatus.OK, self.server.landing(), "text/html; charset=utf-8",
                                (("Cache-Control", "no-store"),)))
        elif path in self.server.post_handlers:  # e.g. GET /-/reload: the path exists, the method does not
            self._send(Response(HTTPStatus.METHOD_NOT_ALLOWED, b"Method not allowed: use POST\n",
                                headers=(("Allow", "POST"),)))
        else:
            self._send(Response(HTTPStatus.NOT_FOUND, b"Not found\n"))

    do_HEAD = do_GET

    def _read_body(self) -> bytes | None:
        """The request body (``Content-Length`` or chunked); None once an error was answered.

        Any error closes the connection: the rest of the stream can no longer be framed.
        """
        limit = self.server.max_body_bytes
        too_large = Response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request body too large\n")
        transfer_encoding = self.headers.get("Transfer-Encoding")
        if transfer_encoding is not None:
            if self.headers.get("Content-Length") is not None:
                self.close_connection = True  # both framings: chunked wins (RFC 9112 6.3), no reuse
            if [c.strip().lower() for c in transfer_encoding.split(",")] != ["chunked"]:
                self.close_connection = True
                self._send(Response(HTTPStatus.BAD_REQUEST,
                                    f"unsupported Transfer-Encoding {transfer_encoding[:64]!r}: "
                                    "only chunked\n".encode()))
                return None
            try:
                return read_chunked(self.rfile, limit)
            except BodyTooLarge:
                self.close_connection = True
                self._send(too_large)
            except ValueError as e:
                self.close_connection = True
                self._send(Response(HTTPStatus.BAD_REQUEST, f"malformed chunked body: {e}\n".encode()))
            return None
        raw_length = (self.headers.get("Content-Length") or "0").strip()
        if not raw_length.isascii() or not raw_length.isdigit():
            self.close_connection = True
            self._send(Response(HTTPStatus.BAD_REQUEST, b"invalid Content-Length\n"))
            return None
        length = int(raw_length)
        if length > limit:
            self.close_connection = True
            self._send(too_large)
            return None
        return self.rfile.read(length)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if not self._authorised():
            return
        handler = self.server.post_handlers.get(path)
        if handler is None:
            self._send(Response(HTTPStatus.NOT_FOUND, b"Not found\n"))
            return
        body = self._read_body()
        if body is None:
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            resp = handler(headers, body)
        except Exception:  # a receiver bug must answer 500, not kill the connection silently
            log.exception("handler failed", extra={"path": path})
            resp = Response(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n")
        self._send(resp)


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:9741`` -> ('', 9741) (every interface); ``127.0.0.1:0``, ``[::1]:9741``, ``localhost:9741``.

    Syntax only (``ListenAddressError``, a ValueError, with a one-line message); the server
    resolves hostnames when it binds.
    """
    return split_listen_address(address)


def receiver_listener(address: str, max_body_bytes: int) -> ExporterHTTPServer:
    """A server for POST receivers only, on its own address (an ``http_messages.ListenerFactory``):
    its ``/metrics`` serves an empty snapshot. Bound, not yet serving."""
    return ExporterHTTPServer(parse_listen_address(address), RenderedSnapshot(), max_body_bytes=max_body_bytes)
