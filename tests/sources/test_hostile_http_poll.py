"""Hostile input at the HTTP poll source: garbage pages, error statuses, huge lines and malformed
records in JSON arrays, ``{"items": ...}`` pages and JSON lines. The source stays up or reports
the page as an error, every bad record is counted exactly once by reason, and the valid records
around them give exact numbers.

A seeded (derandomized) hypothesis fuzzer serves pages from a real ``http.server`` polled by
``HTTPSource``, with the record vocabulary of ``tests.sources.hostile``, always through
``Pipeline``. Deeply nested JSON runs in a child process, since a crash there kills the
interpreter.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.core.pipeline import Pipeline
from exporter.sources import FileTailSource, HTTPSource
from tests.helpers import FakeClock
from tests.sources.hostile import (
    DEEP_CHILD,
    LABEL_BASE,
    LIMIT,
    T0,
    Bad,
    Truth,
    bad_labels,
    check,
    classify_raw,
    config,
    dumps,
    fuzz,
    short,
    valid_labels,
    valid_preds,
)


class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.pages: deque[tuple[int, str, bytes]] = deque()
        self.served = 0
        super().__init__(("127.0.0.1", 0), _PageHandler)


class _PageHandler(BaseHTTPRequestHandler):
    server: PageServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status, ctype, body = self.server.pages.popleft() if self.server.pages else (200, "application/json", b"[]")
        self.server.served += 1
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    srv = PageServer()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


HTTP_MAX_RESPONSE = 4 << 20  # pages of the fuzzer stay far below; one error page is above


def test_http_page_with_a_huge_line(page_server: PageServer) -> None:
    """A 10 MB line in a JSON-lines page: counted as too long; the poll holds the page (up to
    ``max_response_bytes``) and its decoded lines, a small multiple of the body, no more."""
    huge = dumps({"id": "huge", "label": 1, "pad": "x" * (10 << 20)})
    body = b'{"id": "a", "label": 1}\n' + huge + b'\n{"id": "b", "label": 0}\n'
    url = f"http://127.0.0.1:{page_server.server_address[1]}/labels"
    cfg = config([{"name": "lbl", "kind": "labels", "type": "http", "url": url, "interval": "1s"}], ["1h"])
    src = HTTPSource(cfg.sources[0])
    clock = FakeClock(T0)
    p = Pipeline(cfg, clock, sources=[src])
    page_server.pages.clear()
    page_server.pages.extend([(200, "application/json", b"[]"), (200, "application/x-ndjson", body)])
    try:
        p.run_cycle()  # warm-up
        clock.t += 100
        tracemalloc.start()
        try:
            p.run_cycle()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        src.close()
    assert src.health.up
    stats = p.source_stats["lbl"]
    assert (stats.records, dict(stats.invalid)) == (3, {"line_too_long": 1})
    assert peak < 5 * len(body), f"peak {peak / 2**20:.1f} MiB for a {len(body) / 2**20:.1f} MiB page"


def _label_item(bad: Bad, rid: str) -> tuple[str | None, Any] | None:
    """A malformed label as an item of a JSON array page, with its reason; None when it has no
    such form (bytes that are not JSON, and the size limit, exist only for lines)."""
    if bad.raw is not None:
        reason = classify_raw(bad.raw, 1 << 30)
        return (reason, json.loads(bad.raw.decode())) if reason == "not_an_object" else None
    if bad.pad:
        return None
    return bad.reason, json.loads(bad.line(rid, LABEL_BASE).decode())


HTTP_ERROR_BODIES = [
    b"42", b"true", b'"text"', b"null", b'{"items": 5}', b'{"items": {}}', b'{"items": [], "next_cursor": {"a": 1}}',
    b'{"items": [], "next_cursor": 1.5}', b'[{"id": "\xff"}]', b"\xff\xfe[]",
    b"[" * 100_000, b"[" + b'{"id": "big", "label": 1},' * 200_000 + b"1]",  # over max_response_bytes
]
HTTP_EMPTY_BODIES = [b"", b"  \n", b"\xef\xbb\xbf", b"[]", b'{"items": []}']


@dataclass
class Page:
    status: int
    ctype: str
    body: bytes
    error: bool

    def __repr__(self) -> str:  # falsifying examples stay readable
        return f"Page({self.status}, {self.ctype!r}, {short(self.body)}, error={self.error})"


@st.composite
def http_scenario(draw: st.DrawFn) -> tuple[Truth, list[bytes], list[Page]]:
    """Predictions for a file, and the label pages an HTTP store serves one per poll, with the
    truth of what a correct exporter makes of them."""
    truth = Truth("m")
    pred_lines = []
    for i, vp in enumerate(draw(st.lists(valid_preds, max_size=40))):
        pred_lines.append(vp.line(f"p{i}"))
        truth.preds[f"p{i}"] = (vp.version, vp.cls, vp.confidence(), vp.ts_ms / 1000)
        truth.count("preds", None)
    pred_ids = list(truth.preds)
    pages: list[Page] = []
    sent: list[dict[str, Any]] = []  # valid labels on pages that were read
    n = 0
    for kind in draw(st.lists(st.sampled_from(["array", "items", "lines", "ndjson", "error", "empty"]),
                              min_size=1, max_size=14)):
        if kind == "error":
            status, body = draw(st.one_of(
                st.tuples(st.sampled_from([400, 401, 404, 500, 503]), st.binary(max_size=50)),
                st.binary(max_size=200).map(lambda b: (200, b"<html>" + b)),
                st.sampled_from(HTTP_ERROR_BODIES).map(lambda b: (200, b)),
            ))
            pages.append(Page(status, "application/json", body, error=True))
            continue
        if kind == "empty":
            pages.append(Page(200, "application/json", draw(st.sampled_from(HTTP_EMPTY_BODIES)), error=False))
            continue
        items: list[Any] = []
        lines: list[bytes] = []
        if kind == "lines":  # plain JSON lines must start with a JSON line: a label that waits
            n += 1
            first = draw(valid_labels)
            lines.append(first.line(f"o{n}"))
            truth.labels[f"o{n}"] = (first.cls, first.ts_ms / 1000)
            truth.count("lbl", None)
            sent.append(json.loads(lines[0]))
        for what in draw(st.lists(st.sampled_from(["ok", "ok", "orphan", "bad", "bad", "dup"]), min_size=1,
                                  max_size=12)):
            n += 1
            if what == "bad":
                bad = draw(bad_labels)
                if kind in ("array", "items"):
                    item = _label_item(bad, f"xl{n}")
                    if item is not None:
                        items.append(item[1])
                        truth.count("lbl", item[0])
                else:
                    line = bad.line(f"xl{n}", LABEL_BASE).rstrip(b"\r")  # the source strips CRLF's CR
                    lines.append(line)
                    if line.strip():
                        truth.count("lbl", classify_raw(line) if bad.raw is not None else bad.reason)
                continue
            if what == "dup" and sent:
                rec = draw(st.sampled_from(sent))
                truth.count("lbl", "duplicate")
            else:
                free = [i for i in pred_ids if i not in truth.labels]
                rid = draw(st.sampled_from(free)) if what == "ok" and free else f"o{n}"
                vl = draw(valid_labels)
                rec = json.loads(vl.line(rid))
                truth.labels[rid] = (vl.cls, vl.ts_ms / 1000)
                truth.count("lbl", None)
                sent.append(rec)
            items.append(rec)
            lines.append(dumps(rec))
        if kind == "array":
            pages.append(Page(200, "application/json", dumps(items), False))
        elif kind == "items":
            pages.append(Page(200, "application/json", dumps({"items": items, "next_cursor": f"c{n}"}), False))
        else:
            ctype = "application/x-ndjson" if kind == "ndjson" else "application/json"
            pages.append(Page(200, ctype, b"\n".join(lines) + b"\n", False))
    return truth, pred_lines, pages


@fuzz(60)
@given(http_scenario())
def test_http_source_fuzzed(page_server: PageServer, scenario: tuple[Truth, list[bytes], list[Page]]) -> None:
    truth, pred_lines, pages = scenario
    windows = {"1h": 3600.0, "24h": 86400.0}
    with tempfile.TemporaryDirectory() as tmp:
        pf = Path(tmp) / "preds.jsonl"
        pf.write_bytes(b"".join(line + b"\n" for line in pred_lines))
        page_server.pages.clear()
        page_server.pages.extend((pg.status, pg.ctype, pg.body) for pg in pages)
        url = f"http://127.0.0.1:{page_server.server_address[1]}/labels"
        cfg = config([
            {"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m"},
            {"name": "lbl", "kind": "labels", "type": "http", "url": url, "interval": "1s", "timeout": "5s",
             "max_line_bytes": LIMIT},
        ], list(windows))
        clock = FakeClock(T0)
        http_src = HTTPSource(cfg.sources[1], rng=random.Random(1), max_response_bytes=HTTP_MAX_RESPONSE)
        sources = [FileTailSource(cfg.sources[0]), http_src]
        p = Pipeline(cfg, clock, sources=sources)
        try:
            served = page_server.served
            for pg in pages:
                p.run_cycle()
                assert http_src.health.up == (not pg.error), pg
                clock.t += 20  # past any backoff (at most 10 intervals)
            assert page_server.served - served == len(pages)
            assert http_src.health.errors_total == sum(pg.error for pg in pages)
            check(p, truth, windows, clock.t - 20, sources={"preds": "predictions", "lbl": "labels"})
        finally:
            for s in sources:
                s.close()



@pytest.mark.parametrize(("kind", "depth", "n_good"), [
    ("http", 100_000, 100),  # JSON lines from an HTTP source take the same path
])
def test_deeply_nested_json_is_invalid_json_not_a_crash(kind: str, depth: int, n_good: int) -> None:
    r = subprocess.run([sys.executable, "-c", DEEP_CHILD, kind, str(depth), str(n_good)],
                       capture_output=True, text=True, timeout=120)
    tail = r.stderr[-1500:]
    assert r.returncode == 0, f"{kind} source, nesting {depth}: child exited {r.returncode}\n{tail}"
    assert json.loads(r.stdout) == {"records": n_good + 1, "invalid": {"invalid_json": 1}, "pending": n_good}
