"""HTTPSource against real label stores served on 127.0.0.1 from threads in the test.

The stores page, fail with 500 and recover, stall past the timeout, return garbage, demand a
token, speak TLS and sit behind a proxy: what a real label API does, done for real. The
numbers are checked exactly, and the commit protocol is checked so no page is lost or applied
twice, also across a checkpoint/restore.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from prometheus_client.utils import floatToGoString

from exporter.config import (
    BasicAuth,
    Config,
    FileSourceConfig,
    GlobalConfig,
    HTTPSourceConfig,
    ModelConfig,
    TLSClientConfig,
    Window,
)
from exporter.core.pipeline import Pipeline
from exporter.ingest.block_parser import BlockParser
from exporter.ingest.records import RecordSpec, parse_labels
from exporter.ingest.timestamps import parse_timestamp
from exporter.report import catalogue
from exporter.report.snapshot import render
from exporter.sources.base import Poll
from exporter.sources.file_tail import FileTailSource
from exporter.sources.http_poll import HTTPSource, HTTPToken, decode_body, safe_url
from tests.helpers import FakeClock as Clock

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def label(i: int, t: float | None = None) -> dict[str, Any]:
    return {"id": f"r{i}", "label": i % 2, "timestamp": iso(T0 + i if t is None else t)}


# --- a label store ------------------------------------------------------------------------------


@dataclass
class Store:
    """What the test server serves; tests change the fields while it runs."""

    records: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "paging"  # paging | since | jsonl | raw
    page_size: int = 10
    fail_next: int = 0
    fail_status: int = 500
    delay: float = 0.0
    raw: bytes = b""
    raw_type: str = "application/json"
    token: str | None = None
    basic: tuple[str, str] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def queries(self) -> list[dict[str, str]]:
        return [r["query"] for r in self.requests]

    def respond(self, h: BaseHTTPRequestHandler) -> tuple[int, bytes, str]:
        target = h.path if not h.path.startswith("http") else urlsplit(h.path)._replace(scheme="", netloc="").geturl()
        query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
        with self.lock:
            self.requests.append({"path": h.path, "query": query, "headers": dict(h.headers.items())})
        if self.delay:
            time.sleep(self.delay)
        if self.token is not None and h.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, b'{"error": "unauthorized"}', "application/json"
        if self.basic is not None:
            want = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if h.headers.get("Authorization") != want:
                return 401, b"{}", "application/json"
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                return self.fail_status, b"internal error", "text/plain"
            records = list(self.records)
        if self.mode == "raw":
            return 200, self.raw, self.raw_type
        if self.mode == "paging":
            start = int(query.get("cursor", "0"))
            items = records[start:start + self.page_size]
            body = {"items": items, "next_cursor": str(start + len(items))}
            return 200, json.dumps(body).encode(), "application/json"
        since = query.get("since")
        if since is not None:
            cut = parse_timestamp(since, 0.0)
            records = [r for r in records if parse_timestamp(r["timestamp"], 0.0) >= cut]  # inclusive
        if self.mode == "jsonl":
            return 200, b"".join(json.dumps(r).encode() + b"\n" for r in records), "application/x-ndjson"
        return 200, json.dumps(records).encode(), "application/json"


class _Handler(BaseHTTPRequestHandler):
    server: _StoreServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        try:
            status, body, ctype = self.server.store.respond(self)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _StoreServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, store: Store) -> None:
        self.store = store
        super().__init__(("127.0.0.1", 0), _Handler)


@pytest.fixture
def served() -> Iterator[tuple[Store, str, _StoreServer]]:
    store = Store()
    server = _StoreServer(store)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield store, f"http://127.0.0.1:{server.server_address[1]}/api/labels", server
    finally:
        server.shutdown()
        server.server_close()


def make(url: str, **kw: Any) -> HTTPSource:
    opts: dict[str, Any] = {"name": "labels", "kind": "labels", "url": url, "interval": 30.0, "timeout": 2.0}
    opts.update(kw)
    return HTTPSource(HTTPSourceConfig(**opts), rng=random.Random(7))


SPEC = RecordSpec()


def ids(poll: Poll) -> list[str]:
    return [str(i) for i in parse_labels(poll.lines, SPEC, T0, poll.objects).batch.id]


def drain(src: HTTPSource, now: float) -> list[str]:
    poll = src.poll(now)
    src.commit(poll.token)
    return ids(poll)


# --- body shapes ----------------------------------------------------------------------------------


def test_decode_body_shapes() -> None:
    assert decode_body(b'[{"id": 1}]').objects == [{"id": 1}]
    page = decode_body(b'{"items": [{"id": 1}], "next_cursor": "abc"}')
    assert page.objects == [{"id": 1}] and page.next_cursor == "abc"
    assert decode_body(b'{"items": [], "next_cursor": 17}').next_cursor == "17"
    assert decode_body(b'{"items": [], "next_cursor": null}').next_cursor is None
    assert decode_body(b'{"id": 1, "label": 0}').objects == [{"id": 1, "label": 0}]
    assert decode_body(b'{"id": 1}\n{"id": 2}\r\n\n').lines == [b'{"id": 1}', b'{"id": 2}']
    assert decode_body(b'{"id": 1}\nnot json\n', "application/x-ndjson").lines == [b'{"id": 1}', b"not json"]
    assert decode_body(b"  \n").objects == [] and decode_body(b"").lines == []
    assert decode_body(b'\xef\xbb\xbf[{"id": 1}]').objects == [{"id": 1}]
    for bad in (b"<html>oops</html>", b"<html>\n<body>\n", b'{"items": 3}', b'"text"', b"42",
                b'{"items": [], "next_cursor": [1]}', b"\xff\xfe garbage"):
        with pytest.raises(ValueError):
            decode_body(bad)


def test_safe_url_drops_credentials_and_query() -> None:
    assert safe_url("https://user:pw@labels.example:8443/api/x?token=abc#f") == "https://labels.example:8443/api/x"


# --- paging and commit ------------------------------------------------------------------------------


def test_pages_followed_in_one_poll_and_cursor_resumes(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(25)]
    src = make(url, cursor_param="cursor")
    assert src.due(T0)
    assert drain(src, T0) == [f"r{i}" for i in range(25)]
    # first request without a cursor; then each next_cursor; the empty page ends the poll
    assert store.queries() == [{}, {"cursor": "10"}, {"cursor": "20"}, {"cursor": "25"}]
    assert src.cursor == "25" and src.health.up and src.health.last_success == T0
    assert not src.due(T0 + 29.9) and src.due(T0 + 30)
    store.records += [label(i) for i in range(25, 28)]
    assert drain(src, T0 + 30) == ["r25", "r26", "r27"]
    assert store.queries()[4:] == [{"cursor": "25"}, {"cursor": "28"}]
    assert drain(src, T0 + 60) == []
    assert src.health.errors_total == 0


def test_page_limit_leaves_the_rest_for_the_next_cycle(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(25)]
    src = make(url, cursor_param="cursor", max_pages_per_poll=2)
    assert drain(src, T0) == [f"r{i}" for i in range(20)]
    assert src.due(T0)  # a backlog is worked off at the next cycle, not after the interval
    assert drain(src, T0 + 5) == [f"r{i}" for i in range(20, 25)]
    assert not src.due(T0 + 5)


def test_byte_budget_leaves_the_rest_for_the_next_cycle(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(25)]
    page = len(json.dumps({"items": store.records[:10], "next_cursor": "10"}).encode())
    src = make(url, cursor_param="cursor", max_bytes_per_poll=page + 1)  # a page and a bit: two pages
    assert drain(src, T0) == [f"r{i}" for i in range(20)]
    assert src.due(T0)  # the backlog is read at the next cycle
    assert drain(src, T0 + 5) == [f"r{i}" for i in range(20, 25)]


def test_a_poll_says_when_it_left_a_backlog(served: tuple[Store, str, _StoreServer]) -> None:
    """``Poll.backlog`` (the pipeline reads on in the same cycle while it is set): at the page
    limit and at the byte budget, not after the last page, not after an error."""
    store, url, _ = served
    store.records = [label(i) for i in range(25)]
    src = make(url, cursor_param="cursor", max_pages_per_poll=2)
    first = src.poll(T0)
    assert first.backlog
    src.commit(first.token)
    last = src.poll(T0)
    assert ids(last) == [f"r{i}" for i in range(20, 25)] and not last.backlog
    page = len(json.dumps({"items": store.records[:10], "next_cursor": "10"}).encode())
    budget = make(url, cursor_param="cursor", max_bytes_per_poll=page + 1)
    assert budget.poll(T0).backlog
    store.fail_next = 1
    failing = make(url, cursor_param="cursor", max_pages_per_poll=1)
    assert not failing.poll(T0).backlog


def test_one_cycle_reads_a_paged_backlog(served: tuple[Store, str, _StoreServer]) -> None:
    """Three pages, one page a poll: the pipeline's catch-up rounds read them all in one cycle."""
    store, url, _ = served
    store.records = [label(i) for i in range(25)]
    p = Pipeline(Config(models=(ModelConfig(name="fraud"),)), Clock(T0),
                 sources=[make(url, cursor_param="cursor", max_pages_per_poll=1)])
    p.run_cycle()
    assert p.source_stats["labels"].records == 25
    assert not p.has_backlog
    assert p.cycles == 1


def test_refused_records_are_located_by_page(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(25)]
    store.records[13] = {"id": "bad"}  # no label
    src = make(url, cursor_param="cursor")
    poll = src.poll(T0)
    assert poll.origins == [(0, "page 1"), (10, "page 2 of the poll (cursor '10')"),
                            (20, "page 3 of the poll (cursor '20')")]
    result, where = BlockParser("labels", SPEC).parse(poll.blocks, T0, poll.lines, poll.objects, poll.origins)
    assert result.invalid == {"missing_label": 1}
    assert where == {"missing_label": "page 2 of the poll (cursor '10'), record 4"}


def test_cursor_advances_only_on_commit(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(12)]
    src = make(url, cursor_param="cursor")
    first = src.poll(T0)
    assert ids(first) == [f"r{i}" for i in range(12)]
    assert src.cursor is None and src.state() == {"cursor": None, "cursor_kind": None}
    # not committed (the cycle failed): the same pages again, nothing skipped
    again = src.poll(T0 + 30)
    assert ids(again) == ids(first)
    src.commit(again.token)
    assert src.state() == {"cursor": "12", "cursor_kind": "next"}
    src.commit(None)  # a poll that failed before any page carries no position
    assert src.cursor == "12"
    with pytest.raises(TypeError):
        src.commit("12")


def test_restore_resumes_from_the_committed_cursor(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(15)]
    src = make(url, cursor_param="cursor")
    assert len(drain(src, T0)) == 15
    saved = json.loads(json.dumps(src.state()))
    # a poll whose commit never happened (crash) must not leak into the checkpoint
    store.records += [label(i) for i in range(15, 18)]
    uncommitted = src.poll(T0 + 30)
    assert ids(uncommitted) == ["r15", "r16", "r17"] and src.state() == saved
    src.close()

    restarted = make(url, cursor_param="cursor")
    restarted.restore(saved)
    assert drain(restarted, T0 + 60) == ["r15", "r16", "r17"]  # re-read, not lost
    assert drain(restarted, T0 + 90) == []  # and not applied twice
    restarted.restore({"cursor": 5})  # malformed: ignored
    assert restarted.cursor == "18"


# --- failures, backoff, health ---------------------------------------------------------------------


def test_fails_twice_with_500_then_recovers(served: tuple[Store, str, _StoreServer],
                                            caplog: pytest.LogCaptureFixture) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(7)]
    store.fail_next = 2
    caplog.set_level(logging.INFO)
    src = make(url, cursor_param="cursor", interval=10.0)
    now = T0
    poll = src.poll(now)
    assert poll.objects == [] and poll.lines == [] and poll.token == HTTPToken(None, None)
    assert not src.health.up and src.health.errors_total == 1 and src.health.polled_once
    assert src.health.last_success is None
    first_delay = src.next_due - now
    assert 10.0 <= first_delay <= 20.0  # d = 2 * interval, jitter in [d/2, d]
    assert not src.due(now + first_delay - 0.01) and src.due(now + first_delay)
    now += first_delay
    assert drain(src, now) == []
    assert src.health.errors_total == 2 and not src.health.up
    assert 20.0 <= src.next_due - now <= 40.0
    now = src.next_due
    assert drain(src, now) == [f"r{i}" for i in range(7)]
    assert src.health.up and src.health.errors_total == 2 and src.health.last_success == now
    assert src.next_due == now + 10.0 and src.failures == 0
    assert "HTTP 500" in caplog.text and "reachable again" in caplog.text


def test_backoff_is_exponential_jittered_and_capped() -> None:
    src = make("http://127.0.0.1:9/", interval=30.0)
    for n in range(1, 12):
        d = min(30.0 * 2**n, 300.0)
        delays = [src.backoff(n) for _ in range(200)]
        assert all(d / 2 <= x <= d for x in delays)
        assert max(delays) - min(delays) > d / 4  # jittered, not a constant
    assert max(src.backoff(1000) for _ in range(100)) <= 300.0


def test_connection_refused_is_an_error_not_an_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = make(f"http://127.0.0.1:{port}/labels")
    poll = src.poll(T0)
    assert poll.objects == [] and not src.health.up and src.health.errors_total == 1


def test_timeout(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.records = [label(1)]
    store.delay = 1.5
    src = make(url, timeout=0.3)
    started = time.monotonic()
    poll = src.poll(T0)
    assert time.monotonic() - started < 1.2
    assert poll.objects == [] and not src.health.up and src.health.errors_total == 1
    assert src.last_error is not None and "timeout" in src.last_error


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b"<html>\n<p>oops\n",
                                  b'{"items": "nope"}', b"\x00\x01\x02"])
def test_garbage_body_is_an_error(served: tuple[Store, str, _StoreServer], body: bytes) -> None:
    store, url, _ = served
    store.mode, store.raw, store.raw_type = "raw", body, "text/html"
    src = make(url)
    poll = src.poll(T0)
    assert poll.objects == [] and poll.lines == [] and not src.health.up and src.health.errors_total == 1
    assert src.last_error is not None and src.last_error.startswith("invalid body")


def test_oversized_response_is_an_error(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.mode = "since"
    store.records = [label(i) for i in range(200)]
    src = HTTPSource(HTTPSourceConfig(name="labels", kind="labels", url=url), max_response_bytes=1000)
    assert src.poll(T0).objects == [] and src.health.errors_total == 1
    assert src.last_error is not None and "larger than 1000" in src.last_error


def test_failure_mid_paging_keeps_the_pages_already_read(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(30)]
    src = make(url, cursor_param="cursor")

    orig = store.respond

    def second_page_fails(h: BaseHTTPRequestHandler) -> tuple[int, bytes, str]:
        if "cursor=10" in h.path and store.fail_next == 0 and not getattr(store, "_failed", False):
            store._failed = True  # type: ignore[attr-defined]
            return 503, b"busy", "text/plain"
        return orig(h)

    store.respond = second_page_fails  # type: ignore[method-assign]
    poll = src.poll(T0)
    assert ids(poll) == [f"r{i}" for i in range(10)]
    assert poll.token == HTTPToken("10", "next") and not src.health.up and src.health.errors_total == 1
    src.commit(poll.token)
    assert drain(src, src.next_due) == [f"r{i}" for i in range(10, 30)]


def test_bearer_token_required_and_never_logged(served: tuple[Store, str, _StoreServer],
                                                caplog: pytest.LogCaptureFixture) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(3)]
    store.token = "s3cr3t-t0ken"
    caplog.set_level(logging.DEBUG)
    without = make(url)
    assert without.poll(T0).objects == [] and without.health.errors_total == 1
    assert without.last_error == "HTTP 401"
    wrong = make(url, headers={"Authorization": "Bearer wrong-token-value"})
    assert wrong.poll(T0).objects == [] and wrong.last_error == "HTTP 401"
    # as the config loader leaves it after expanding "Bearer ${LABELS_TOKEN}"
    src = make(url, headers={"Authorization": "Bearer s3cr3t-t0ken", "X-Tenant": "ml"})
    assert drain(src, T0) == ["r0", "r1", "r2"] and src.health.up
    assert store.requests[-1]["headers"]["X-Tenant"] == "ml"
    assert "s3cr3t" not in caplog.text and "wrong-token-value" not in caplog.text


def test_basic_auth(served: tuple[Store, str, _StoreServer], caplog: pytest.LogCaptureFixture) -> None:
    store, url, _ = served
    store.records = [label(1)]
    store.basic = ("exporter", "pa55word")
    bad = make(url, basic_auth=BasicAuth("exporter", "nope-nope"))
    assert bad.poll(T0).objects == [] and bad.last_error == "HTTP 401"
    good = make(url, basic_auth=BasicAuth("exporter", "pa55word"))
    assert drain(good, T0) == ["r1"]
    assert "pa55word" not in caplog.text and "nope-nope" not in caplog.text


def test_proxy_from_environment(served: tuple[Store, str, _StoreServer], monkeypatch: pytest.MonkeyPatch) -> None:
    store, _, proxy = served  # the store server doubles as a forward proxy: it sees absolute URLs
    store.records = [label(1)]
    store.mode = "since"
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    src = make("http://labels.invalid/api/labels")  # unresolvable: only reachable through the proxy
    assert src.session.trust_env
    assert drain(src, T0) == ["r1"]
    assert store.requests[-1]["path"] == "http://labels.invalid/api/labels"


# --- timestamp cursors and JSON lines -----------------------------------------------------------------


def test_timestamp_cursor_from_newest_record(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.mode = "since"
    store.records = [label(3), label(1), label(2)]
    src = make(url, cursor_param="since")
    assert drain(src, T0) == ["r3", "r1", "r2"]
    assert src.state() == {"cursor": iso(T0 + 3), "cursor_kind": "timestamp"}
    # inclusive: the newest record comes back, the pipeline will call it a duplicate
    store.records.append(label(5))
    assert drain(src, T0 + 30) == ["r3", "r5"]
    assert store.queries()[-1] == {"since": iso(T0 + 3)}
    assert src.cursor == iso(T0 + 5)
    # a server that ignores the cursor and sends old records never moves it backwards
    store.records = [label(0)]
    assert drain(src, T0 + 60) == []
    assert src.cursor == iso(T0 + 5)


def test_json_lines_with_mapped_epoch_ms_timestamps(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.mode = "raw"
    store.raw_type = "application/x-ndjson"
    store.raw = (b'{"rid": "a", "y": 1, "meta": {"ts": 1767225601000}}\n'
                 b"this line is broken\n"
                 b'{"rid": "b", "y": 0, "meta": {"ts": 1767225605500}}\n')
    src = make(url, cursor_param="since", fields={"id": "rid", "label": "y", "timestamp": "meta.ts"})
    poll = src.poll(T0)
    src.commit(poll.token)
    assert poll.objects == [] and len(poll.lines) == 3
    spec = RecordSpec(fields={"id": "rid", "label": "y", "timestamp": "meta.ts"})
    result = parse_labels(poll.lines, spec, T0, poll.objects)
    assert list(result.batch.id) == ["a", "b"] and result.invalid == {"invalid_json": 1}
    assert src.cursor == "1767225605500" and src.cursor_kind == "timestamp"
    drain(src, T0 + 30)
    assert store.queries()[-1] == {"since": "1767225605500"}


def test_no_cursor_param_sends_no_cursor(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.records = [label(i) for i in range(15)]
    src = make(url)
    assert drain(src, T0) == [f"r{i}" for i in range(10)]  # pages cannot be followed without a param
    drain(src, T0 + 30)
    assert store.queries() == [{}, {}]


# --- TLS -------------------------------------------------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    import ipaddress

    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_ca_file_and_insecure_skip_verify(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    store = Store(records=[label(1)], mode="since")
    server = _StoreServer(store)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    url = f"https://127.0.0.1:{server.server_address[1]}/labels"
    try:
        untrusted = make(url)
        assert untrusted.poll(T0).objects == [] and untrusted.last_error == "TLS error"
        trusted = make(url, tls=TLSClientConfig(ca_file=str(cert_file)))
        assert drain(trusted, T0) == ["r1"]
        insecure = make(url, tls=TLSClientConfig(insecure_skip_verify=True))
        assert drain(insecure, T0) == ["r1"]  # and no InsecureRequestWarning (warnings are errors here)
    finally:
        server.shutdown()
        server.server_close()


# --- through the pipeline ------------------------------------------------------------------------------



def test_pipeline_accuracy_exact_with_failures_and_inclusive_cursor(
        served: tuple[Store, str, _StoreServer], tmp_path: Path) -> None:
    store, url, _ = served
    store.mode = "since"
    now = T0 + 600
    preds = tmp_path / "preds.jsonl"
    # 20 predictions; the labels (i % 2) disagree with them where i % 3 == 0 and i is even
    predicted = {f"r{i}": (1 if i % 3 == 0 else i % 2) for i in range(20)}
    preds.write_text("".join(json.dumps({"id": k, "model": "fraud", "prediction": v, "timestamp": iso(now - 300)})
                             + "\n" for k, v in predicted.items()))
    truth = {f"r{i}": i % 2 for i in range(20)}
    cfg = Config(global_=GlobalConfig(poll_interval=5.0, windows=(Window("1h", 3600.0),)),
                 models=(ModelConfig(name="fraud", classes=("0", "1")),))
    file_src = FileTailSource(FileSourceConfig(name="preds", kind="predictions", path=str(preds)))
    http_src = make(url, cursor_param="since", interval=30.0)
    clock = Clock(now)
    p = Pipeline(cfg, clock, sources=[file_src, http_src])

    store.records = [label(i, now - 200 + i) for i in range(12)]
    p.run_cycle()
    store.records += [label(i, now - 200 + i) for i in range(12, 20)]
    store.fail_next = 2
    for _ in range(40):  # cycles every 5 s; the http source polls on its interval / backoff
        clock.t += 5.0
        p.run_cycle()
    assert http_src.health.up and http_src.health.errors_total == 2
    vs = p.versions[("fraud", "unknown")]
    stats = vs.window_stats(0)
    correct = sum(predicted[k] == truth[k] for k in truth)
    assert stats.labeled == 20 and stats.metrics.correct == correct
    assert stats.metrics.accuracy == pytest.approx(correct / 20, abs=0)
    # each successful poll after the first re-reads the newest label (inclusive cursor): counted
    # as duplicates, never applied twice
    successes = sum(1 for r in store.requests) - 2
    assert p.source_stats["labels"].invalid == {"duplicate": successes - 1}
    assert vs.correct_total == correct
    text = render(catalogue.families(p.build_report(clock.t))).decode()
    assert 'mlmon_exporter_source_errors_total{source="labels"} 2.0' in text
    assert 'mlmon_exporter_source_up{source="labels"} 1.0' in text
    assert http_src.health.last_success is not None  # written as Go and prometheus-client write floats
    assert f'mlmon_exporter_source_last_success_timestamp_seconds{{source="labels"}} ' \
           f'{floatToGoString(http_src.health.last_success)}' in text


def test_pipeline_shows_a_down_source(served: tuple[Store, str, _StoreServer]) -> None:
    store, url, _ = served
    store.fail_next = 100
    cfg = Config(models=(ModelConfig(name="fraud"),))
    http_src = make(url, cursor_param="since")
    p = Pipeline(cfg, Clock(T0), sources=[http_src])
    p.run_cycle()
    assert p.ready  # a down label store must not keep the exporter unready
    text = render(catalogue.families(p.build_report(T0))).decode()
    assert 'mlmon_exporter_source_up{source="labels"} 0.0' in text
    assert 'mlmon_exporter_source_errors_total{source="labels"} 1.0' in text
