"""/metrics in every format it speaks, against the references: prometheus-client's own writers
byte for byte, promtool, and a real Prometheus scraping with gzip and OpenMetrics and without.

Prometheus 2.42 (Debian bookworm) has no ``scrape_protocols`` or ``enable_compression``: it always
asks for OpenMetrics first and always offers gzip. The text-format scrape therefore goes through
``proxy_url``: a real forward proxy (below) that rewrites ``Accept`` to the text format and drops
``Accept-Encoding``, and records what each side sent.

promtool 2.42's ``check metrics`` reads only the text format (an OpenMetrics body fails it with
``unknown metric type "info"``, and ``<name>_total no help text`` for counters), so it lints the
text format here; OpenMetrics is checked by prometheus-client's strict OpenMetrics parser and by
Prometheus' own OpenMetrics scrape (``up == 1``, the same series as the text scrape).
"""

from __future__ import annotations

import gzip
import http.client
import json
import math
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from prometheus_client import PlatformCollector, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as om_exposition
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.registry import Collector, CollectorRegistry

from exporter.config import parse_config
from exporter.http.scrape import RenderedSnapshot
from exporter.report.snapshot import Snapshot, SnapshotBuilder, render
from exporter.runtime.app import Exporter
from tests.helpers import require_tool
from tests.stack import running_stack

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.42 sends


class SnapshotCollector(Collector):
    """The reference: the snapshot's families handed to prometheus-client's own writers."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        for fam in self.snapshot.families:
            if fam.samples:  # the renderer leaves empty families out, as client_golang does
                metric = Metric(fam.name, fam.help, fam.type)
                for s in fam.samples:
                    metric.add_sample(s.name, dict(s.labels), s.value)
                yield metric


def edge_snapshot(seed: int = 14) -> Snapshot:
    """Every family type, awkward values and label texts, and 600 seeded random values."""
    rng = np.random.default_rng(seed)
    b = SnapshotBuilder()
    g = b.family("mlmon_edge_values", "gauge", 'Help with a backslash \\ and a\nnewline and "quotes".')
    specials = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-300, 5e-324, 123456.0, 1234567.0, 1764892655.123,
                1.5e20, -1764892655.5, 1e16, 12345678901234567.0, 0.1 + 0.2, 1 / 3]
    for i, v in enumerate(specials):
        g.add((("z", "last"), ("a", f"v{i}"), ("model", 'we"ird\\na\nme ü')), v)
    r = b.family("mlmon_random_values", "gauge", "Random magnitudes.")
    for i, (mant, exp) in enumerate(zip(rng.uniform(-10, 10, 600), rng.integers(-30, 30, 600), strict=True)):
        r.add((("i", str(i)),), float(mant) * 10.0 ** int(exp))
    c = b.family("mlmon_things", "counter", "A counter.")
    c.add((("model", "m"), ("model_version", "3")), 42)
    c.add((("model", "m"), ("model_version", "4")), 1e9)
    b.family("mlmon_build", "info", "Info.").add((("version", "1.2.3"), ("branch", "main")), 1)
    h = b.family("mlmon_delay_seconds", "histogram", "A histogram.")
    h.histogram((("model", "m"),), [0.1, 1.0, 60.0, 3600.0, 1e7], [1, 3, 3, 7, 9, 10], 123456789.25, 10)
    b.family("mlmon_empty", "gauge", "No samples: left out.")
    return b.build(1.0, True)


@pytest.mark.parametrize("openmetrics", [False, True])
def test_render_equals_prometheus_client_byte_for_byte(openmetrics: bool) -> None:
    snap = edge_snapshot()
    reference = (om_exposition.generate_latest if openmetrics else generate_latest)(SnapshotCollector(snap))
    assert render(snap.families, openmetrics=openmetrics) == reference
    # the second render comes from the label-prefix cache, which the other format filled too
    assert render(snap.families, openmetrics=not openmetrics) != reference
    assert render(snap.families, openmetrics=openmetrics) == reference


def _deterministic_runtime() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    PlatformCollector(registry=registry)  # python_info: the same at every collection
    return registry


def _reference_registry(snap: Snapshot) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    PlatformCollector(registry=registry)
    return registry


@pytest.mark.parametrize("accept,expected_type", [
    (None, "text/plain; version=0.0.4; charset=utf-8"),
    ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", "text/plain; version=0.0.4; charset=utf-8"),
    (PROMETHEUS_ACCEPT, "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"),
    ("application/openmetrics-text", "application/openmetrics-text; version=1.0.0; charset=utf-8"),
])
@pytest.mark.parametrize("encoding", [None, "gzip", "identity", "br, gzip;q=0.9"])
def test_exposition_equals_prometheus_client_for_every_negotiation(accept: str | None, expected_type: str,
                                                                   encoding: str | None) -> None:
    snap = edge_snapshot()
    rendered = RenderedSnapshot(runtime=_deterministic_runtime())
    rendered.publish(snap)
    om = expected_type.startswith("application/openmetrics-text")
    reference = (om_exposition.generate_latest if om else generate_latest)(_reference_registry(snap))
    for _ in range(2):  # the second answer comes from the per-snapshot caches
        exp = rendered.exposition(accept, encoding)
        assert exp.content_type == expected_type
        if encoding is not None and "gzip" in encoding:
            assert exp.content_encoding == "gzip"
            assert gzip.decompress(exp.body) == reference
        else:
            assert exp.content_encoding is None
            assert exp.body == reference
    if om:
        fams = {f.name: f for f in parse_openmetrics(reference.decode())}  # the strict OpenMetrics parser
        assert fams["mlmon_build"].type == "info" and fams["mlmon_things"].type == "counter"


def test_a_new_snapshot_is_served_at_once_in_every_format() -> None:
    rendered = RenderedSnapshot(runtime=_deterministic_runtime())
    for value in (1.0, 2.0):
        b = SnapshotBuilder()
        b.family("mlmon_x", "gauge", "X.").add((), value)
        rendered.publish(b.build(value, True))
        for accept in (None, PROMETHEUS_ACCEPT):
            body = gzip.decompress(rendered.exposition(accept, "gzip").body).decode()
            assert f"mlmon_x {value}\n" in body


def test_process_and_python_metrics_are_served() -> None:
    rendered = RenderedSnapshot()
    text = rendered.exposition(None, None).body.decode()
    fams = {f.name: f for f in parse_text(text)}
    assert fams["process_resident_memory_bytes"].samples[0].value > 1e6
    assert fams["process_open_fds"].samples[0].value >= 3
    assert fams["process_start_time_seconds"].samples[0].value > 1.7e9
    assert "process_cpu_seconds" in fams and "python_gc_objects_collected" in fams
    assert fams["python_info"].samples[0].labels["implementation"] == "CPython"


def test_promtool_lints_the_text_format_plain_and_gzipped(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rendered = RenderedSnapshot()
    rendered.publish(_pipeline_exporter_snapshot(tmp_path))
    plain = rendered.exposition("text/plain;version=0.0.4", None).body
    unzipped = gzip.decompress(rendered.exposition("text/plain;version=0.0.4", "gzip").body)
    for body in (plain, unzipped):
        r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert b"process_resident_memory_bytes" in plain and b"mlmon_accuracy_ratio" in plain


def _write_inputs(tmp: Path) -> dict[str, Any]:
    preds, labels = tmp / "preds.jsonl", tmp / "labels.jsonl"
    preds.write_text("".join(json.dumps({"id": f"r{i}", "model_version": "3", "prediction": i % 2,
                                         "confidence": 0.6 + (i % 4) / 10, "features": {"amount": i * 1.5}}) + "\n"
                             for i in range(60)))
    labels.write_text("".join(json.dumps({"id": f"r{i}", "label": 1}) + "\n" for i in range(45)) + "not json\n")
    return {
        "global": {"poll_interval": "1s", "windows": ["1h"]},
        "models": [{"name": "fraud", "classes": ["0", "1"], "baseline": {"accuracy": 0.9},
                    "thresholds": {"min_samples": 10}, "drift": {"features": ["amount"], "reference_size": 20}}],
        "sources": [{"name": "preds", "kind": "predictions", "type": "file", "path": str(preds), "model": "fraud"},
                    {"name": "labels", "kind": "labels", "type": "file", "path": str(labels)}],
    }


def _pipeline_exporter_snapshot(tmp: Path) -> Snapshot:
    exporter = Exporter(parse_config(_write_inputs(tmp)), "127.0.0.1:0")
    try:
        exporter.cycle()
        exporter.cycle()
        return exporter.rendered.snapshot
    finally:
        exporter.server.server_close()


# --- a real Prometheus ---------------------------------------------------------------------------------


class RewritingProxy:
    """A forward proxy for Prometheus' ``proxy_url``: forces the text format without gzip when
    ``text_only``, and records the request headers Prometheus sent and the answer it got."""

    def __init__(self, text_only: bool) -> None:
        self.text_only = text_only
        self.seen: list[tuple[dict[str, str], dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)  # absolute form: http://127.0.0.1:port/metrics
                sent = {k.lower(): v for k, v in self.headers.items()}
                forward = {k: v for k, v in sent.items() if k not in ("proxy-connection", "connection", "host")}
                if owner.text_only:
                    forward["accept"] = "text/plain;version=0.0.4"
                    forward.pop("accept-encoding", None)
                conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
                try:
                    conn.request("GET", url.path, headers=forward)
                    resp = conn.getresponse()
                    body = resp.read()
                    answered = {k.lower(): v for k, v in resp.getheaders()}
                finally:
                    conn.close()
                owner.seen.append((sent, answered))
                self.send_response(resp.status)
                for k in ("content-type", "content-encoding"):
                    if k in answered:
                        self.send_header(k, answered[k])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    exp = Exporter(parse_config(_write_inputs(tmp_path)), "127.0.0.1:0")
    exp.start()
    yield exp
    exp.stop()


def test_real_prometheus_scrapes_openmetrics_gzip_and_text_alike(exporter: Exporter, tmp_path: Path) -> None:
    target = f"127.0.0.1:{exporter.port}"
    as_asked, text_only = RewritingProxy(text_only=False), RewritingProxy(text_only=True)
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": "openmetrics", "proxy_url": as_asked.url, "static_configs": [{"targets": [target]}]},
        {"job_name": "text", "proxy_url": text_only.url, "static_configs": [{"targets": [target]}]},
        {"job_name": "direct", "static_configs": [{"targets": [target]}]},
    ]}
    try:
        with running_stack(tmp_path) as stack:
            stack.start_prometheus(json.dumps(config))
            for job in ("openmetrics", "text", "direct"):
                stack.wait_until_scraping(job)

            def series(job: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], str]:
                return {(s["metric"]["__name__"], tuple(sorted((k, v) for k, v in s["metric"].items()
                                                               if k not in ("__name__", "job")))): s["value"][1]
                        for s in stack.query(f'{{job="{job}"}}')}

            def converged() -> tuple[dict[Any, str], dict[Any, str]] | None:
                om, text = series("openmetrics"), series("text")
                return (om, text) if om.keys() == text.keys() and len(om) > 100 else None

            om, text = stack.wait(converged, 30, "the same series from both formats")
            assert om.keys() == series("direct").keys()
            names = {name for name, _ in om}
            assert {"mlmon_accuracy_ratio", "mlmon_model_info", "mlmon_predictions_total",
                    "mlmon_prediction_confidence_bucket", "process_resident_memory_bytes",
                    "python_info", "up"} <= names
            steady = [k for k in om if k[0] in ("mlmon_predictions_total", "mlmon_accuracy_ratio",
                                                 "mlmon_exporter_records_total", "mlmon_prediction_confidence_bucket")]
            assert steady and all(om[k] == text[k] for k in steady)
            assert len(stack.query('up{job=~"openmetrics|text|direct"} == 1')) == 3
    finally:
        as_asked.close()
        text_only.close()
    sent, answered = as_asked.seen[-1]
    assert sent["accept"].startswith("application/openmetrics-text") and "gzip" in sent["accept-encoding"]
    assert answered["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert answered["content-encoding"] == "gzip"
    _, answered = text_only.seen[-1]
    assert answered["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "content-encoding" not in answered


def test_http_answer_headers(exporter: Exporter) -> None:
    url = f"http://127.0.0.1:{exporter.port}/metrics"
    r = requests.get(url, headers={"Accept": PROMETHEUS_ACCEPT}, timeout=5)  # requests sends gzip and decodes
    assert r.headers["Content-Encoding"] == "gzip" and r.headers["Vary"] == "Accept-Encoding"
    assert r.text.endswith("# EOF\n")
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=5)
    assert "Content-Encoding" not in plain.headers
    assert plain.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    head = requests.head(url, timeout=5)
    assert head.status_code == 200 and head.content == b""
