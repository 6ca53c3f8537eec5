"""The HTTP server as clients really talk to it: chunked bodies and pipelining on one raw socket,
listen addresses as users type them, and the command line's answer to bad ones."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from exporter.config.listen import ListenAddressError, split_listen_address
from exporter.http.server import ExporterHTTPServer, RenderedSnapshot, Response
from exporter.report.snapshot import SnapshotBuilder
from tests.helpers import free_port, wait_for


class Echo:
    """A POST handler that keeps every body it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, headers: dict[str, str], body: bytes) -> Response:
        self.bodies.append(body)
        return Response(200, b"got %d\n" % len(body))


@pytest.fixture
def server() -> Iterator[tuple[ExporterHTTPServer, Echo]]:
    rendered = RenderedSnapshot()
    b = SnapshotBuilder()
    b.family("mlmon_test", "gauge", "A test gauge.").add((("k", "v"),), 1.5)
    rendered.publish(b.build(0.0, True))
    srv = ExporterHTTPServer(("127.0.0.1", 0), rendered, max_body_bytes=1000, request_timeout=5)
    echo = Echo()
    srv.post_handlers["/in"] = echo
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv, echo
    srv.shutdown()
    srv.server_close()


def exchange(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """Send ``data`` in one write and read until the server closes the connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((host, port))
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each HTTP response in ``raw`` (every one carries Content-Length)."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        n = int(headers[b"content-length"])
        out.append((int(lines[0].split()[1]), rest[:n]))
        raw = rest[n:]
    return out


CHUNKED_POST = (b"POST /in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n"
                b"7;ext=1\r\n, world\r\n"  # a chunk extension, ignored
                b"0\r\nX-Trailer: t\r\n\r\n")


def test_chunked_post_then_pipelined_get_on_one_connection(server: tuple[ExporterHTTPServer, Echo]) -> None:
    srv, echo = server
    get = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    got = responses(exchange(srv.server_address[1], CHUNKED_POST + get + CHUNKED_POST + last))
    assert [s for s, _ in got] == [200, 200, 200, 200]
    assert got[0][1] == b"got 12\n" and got[2][1] == b"got 12\n"
    assert b'mlmon_test{k="v"} 1.5\n' in got[1][1]
    assert got[3][1] == b"OK\n"
    assert echo.bodies == [b"hello, world", b"hello, world"]


def test_content_length_post_then_pipelined_get(server: tuple[ExporterHTTPServer, Echo]) -> None:
    srv, echo = server
    post = b"POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    got = responses(exchange(srv.server_address[1], post + b"GET /-/healthy HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert got == [(200, b"got 3\n"), (200, b"OK\n")]
    assert echo.bodies == [b"abc"]


@pytest.mark.parametrize("body,status,message", [
    (b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n", 413, b"request body too large\n"),  # over max_body_bytes
    (b"1f4\r\n" + b"x" * 500 + b"\r\n1f4\r\n" + b"x" * 500 + b"\r\n1\r\nx\r\n0\r\n\r\n", 413,
     b"request body too large\n"),  # 1001 bytes in three chunks
    (b"zz\r\nhello\r\n0\r\n\r\n", 400, b"malformed chunked body: invalid chunk size b'zz'\n"),
    (b"0x5\r\nhello\r\n0\r\n\r\n", 400, b"malformed chunked body: invalid chunk size b'0x5'\n"),
    (b"5\r\nhelloXX0\r\n\r\n", 400, b"malformed chunked body: chunk data not followed by CRLF\n"),
    (b"5\r\nhel", 400, b"malformed chunked body: truncated chunk: 3 of 5 bytes\n"),
])
def test_bad_chunked_bodies_answer_and_close(server: tuple[ExporterHTTPServer, Echo], body: bytes, status: int,
                                              message: bytes) -> None:
    srv, echo = server
    head = b"POST /in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = head + body
    sock = socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=5)
    with sock:
        sock.sendall(data + (b"GET /-/healthy HTTP/1.1\r\n\r\n" if body.endswith(b"\r\n\r\n") else b""))
        if not body.endswith(b"\r\n\r\n"):
            sock.shutdown(socket.SHUT_WR)  # the client gives up mid-chunk
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    got = responses(raw)
    assert got == [(status, message)]  # one answer, then the connection is closed: no GET answered
    assert echo.bodies == []


@pytest.mark.parametrize("headers,message", [
    (b"Transfer-Encoding: gzip, chunked\r\n", b"unsupported Transfer-Encoding 'gzip, chunked': only chunked\n"),
    (b"Content-Length: -3\r\n", b"invalid Content-Length\n"),
    (b"Content-Length: 1_0\r\n", b"invalid Content-Length\n"),
])
def test_unusable_framing_is_a_400(server: tuple[ExporterHTTPServer, Echo], headers: bytes, message: bytes) -> None:
    srv, _ = server
    raw = exchange(srv.server_address[1], b"POST /in HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n0\r\n\r\n")
    assert responses(raw) == [(400, message)]


def test_chunked_event_reaches_the_kserve_source_through_requests() -> None:
    """A streamed body (a generator: requests sends it chunked), as a proxy would forward it."""
    from exporter.sources.kserve import KSERVE_PATH, RESPONSE_TYPE, KServeSource
    from tests.sources.kserve_models import CONFIG, T0, source_config

    src = KServeSource(source_config(model_version="5"), CONFIG.model)
    srv = ExporterHTTPServer(("127.0.0.1", 0), RenderedSnapshot())
    srv.post_handlers[KSERVE_PATH] = src.handle
    srv.serve_in_thread()
    try:
        def parts() -> Iterator[bytes]:
            yield b'{"predictions": '
            yield b'["setosa", "virginica"]}'

        r = requests.post(f"http://127.0.0.1:{srv.server_address[1]}{KSERVE_PATH}", data=parts(), timeout=5,
                          headers={"Ce-Id": "c1", "Ce-Type": RESPONSE_TYPE, "Ce-Specversion": "1.0",
                                   "Ce-Source": "http://localhost:9081/", "Ce-Inferenceservicename": "iris"})
        assert r.request.headers["Transfer-Encoding"] == "chunked"
        assert (r.status_code, r.text) == (200, "ok\n")
        poll = src.poll(T0)
        assert [(o["id"], o["prediction"], o["model_version"]) for o in poll.objects] == [
            ("c1#0", "setosa", "5"), ("c1#1", "virginica", "5")]
    finally:
        srv.shutdown()
        srv.server_close()
        src.close()


# --- listen addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    (":9741", ("", 9741)), ("127.0.0.1:9741", ("127.0.0.1", 9741)), ("[::1]:9741", ("::1", 9741)),
    ("[::]:0", ("::", 0)), ("localhost:80", ("localhost", 80)), ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ("[fe80::1%eth0]:9741", ("fe80::1%eth0", 9741)),
])
def test_listen_address_syntax(text: str, expected: tuple[str, int]) -> None:
    assert split_listen_address(text) == expected


@pytest.mark.parametrize("text,message", [
    ("localhost", "missing port"), ("127.0.0.1:99999", "port 99999 is over 65535"),
    ("::1:9741", "put an IPv6 address in brackets, e.g. [::1]:9741"), ("[::1]9741", "want host:port"),
    ("[nope]:9741", "'nope' is not an IPv6 address"), ("host:http", "port 'http' is not a number"),
    ("127.0.0.1:", "port '' is not a number"), ("a b:1", "bad host 'a b'"),
])
def test_bad_listen_address(text: str, message: str) -> None:
    with pytest.raises(ListenAddressError, match=message.replace("[", r"\[").replace("]", r"\]")):
        split_listen_address(text)


def _metrics_status(url: str) -> int:
    return requests.get(url, timeout=2).status_code


@pytest.mark.parametrize("address,reach", [
    (("::1", 0), ["[::1]"]),
    (("localhost", 0), ["127.0.0.1"]),  # a hostname: IPv4 first, as Go's net.Listen
    (("", 0), ["127.0.0.1", "[::1]"]),  # every interface, dual-stack
])
def test_servers_bind_what_the_address_says(address: tuple[str, int], reach: list[str]) -> None:
    srv = ExporterHTTPServer(address, RenderedSnapshot())
    srv.serve_in_thread()
    try:
        port = srv.server_address[1]
        for host in reach:
            assert _metrics_status(f"http://{host}:{port}/-/healthy") == 200
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("flag,message", [
    ("--web.listen-address=localhost", "invalid listen address 'localhost': missing port"),
    ("--web.listen-address=127.0.0.1:99999", "port 99999 is over 65535"),
    ("--web.listen-address=::1:9741", "put an IPv6 address in brackets"),
    ("--web.listen-address=no-such-host.invalid:9741", "cannot resolve 'no-such-host.invalid'"),
    ("--web.telemetry-path=metrics", "--web.telemetry-path: must be a path such as /metrics"),
])
def test_cli_bad_web_flags_are_one_line_and_exit_1(flag: str, message: str) -> None:
    r = subprocess.run([sys.executable, "-m", "exporter", "demo", flag], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_address_in_use_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "Address already in use" in r.stderr, r.stderr


def test_cli_hostname_and_telemetry_path(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "exporter", "demo", f"--web.listen-address=localhost:{port}",
                              "--web.telemetry-path=/internal/metrics"], stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{url}/-/healthy", timeout=1).ok, 20, "demo up")
        r = requests.get(f"{url}/internal/metrics", timeout=5)
        assert r.status_code == 200 and "mlmon_exporter_build_info" in r.text
        assert requests.get(f"{url}/metrics", timeout=5).status_code == 404
    finally:
        p.terminate()
        assert p.wait(15) == 0, log.read_text()
