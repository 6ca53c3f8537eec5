"""The status page on ``/`` (issue 16): numbers, health, bounded history, self-containment,
TLS + basic auth, never blocking ingestion, and a real browser (Debian's chromium, headless)
reading it through the DOM while the demo model drifts on a fake clock.

Locally a missing chromium skips the browser tests; under CI=true it fails.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
from scipy.stats import binomtest

from exporter.config import Config, GlobalConfig, Window, load_config
from exporter.demo import DRIFT_AFTER_SECONDS, Simulator, demo_config
from exporter.http import status_page
from exporter.http.status_page import StatusTracker, WindowStatus, health_of, render_page, sparkline
from exporter.http.webconfig import apply_web_config, load_web_config
from exporter.report.model import Report
from exporter.runtime.app import Exporter
from tests.helpers import FakeClock, free_port, missing, version_report, wait_for, window_report
from tests.http.pki import PASSWORD, basic, bcrypt_hash, make_pki, tls_config, write_config

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


# --------------------------------------------------------------------------------------------
# Health rules
# --------------------------------------------------------------------------------------------
def window(name: str = "1h", seconds: float = 3600.0, *, labeled: int = 500, accuracy: float = 0.9,
           drift: bool = False, severity: str = "low") -> WindowStatus:
    return WindowStatus(name, seconds, labeled, labeled, accuracy, accuracy - 0.01, accuracy + 0.01,
                        0.0, drift, severity, 1.0, (), ())


@pytest.mark.parametrize(("windows", "expected"), [
    ([window()], ["ok"]),
    ([window(drift=True, severity="high")], ["drifting (high)"]),
    # the worst tier over the windows
    ([window("1h", drift=True, severity="low"), window("1d", 86400, drift=True, severity="critical")],
     ["drifting (critical)"]),
    ([window(accuracy=0.79)], ["accuracy below threshold"]),
    ([window(accuracy=0.80)], ["ok"]),  # at the threshold is not below it
    ([window(accuracy=0.5, labeled=99)], ["ok"]),  # below min_samples: no judgement
    ([window(accuracy=0.5, labeled=100)], ["accuracy below threshold"]),
    # no label in the shortest window, whatever the longer one holds
    ([window("1d", 86400), window("1h", labeled=0, accuracy=math.nan)], ["no labels lately"]),
    ([window(drift=True, severity="critical", accuracy=0.7), window("5m", 300, labeled=0, accuracy=math.nan)],
     ["drifting (critical)", "accuracy below threshold", "no labels lately"]),
])
def test_health(windows: list[WindowStatus], expected: list[str]) -> None:
    assert [h.text for h in health_of(windows, threshold=0.80, min_samples=100)] == expected


# --------------------------------------------------------------------------------------------
# The tracker on hand-built Reports: bounded memory, newest label
# --------------------------------------------------------------------------------------------
def report(versions: dict[str, tuple[float, int]], now: float) -> Report:
    """versions: version -> (accuracy in window 1h, labelled total)."""
    return Report(now, True, tuple(
        version_report("m", v, [window_report("1h", 3600.0, accuracy=a)], labeled_total=((0, 0), (0, total)))
        for v, (a, total) in versions.items()))


def config_with(windows: tuple[Window, ...], poll: float) -> Config:
    base = demo_config(Path("/nonexistent"))
    return dataclasses.replace(base, global_=GlobalConfig(poll_interval=poll, windows=windows))


def test_history_is_bounded_and_spans_the_window() -> None:
    cfg = config_with((Window("1h", 3600.0),), poll=5.0)
    tracker = StatusTracker(points=120)
    now = T0
    for i in range(5000):  # ~7 h of 5 s cycles, three versions
        tracker.update(report({"1": (0.9, i), "2": (0.8, i), "3": (0.7, 0)}, now), cfg, now)
        now += 5.0
    assert len(tracker.history) == 3
    assert tracker.history.size() == 3 * 120
    series = tracker.view.versions[0].windows[0].history
    assert len(series) == 120
    assert series[-1][0] - series[0][0] == pytest.approx(119 * 30.0)  # one point per 30 s: the hour
    # version 3 expires: its ring and its label state go with it
    tracker.update(report({"1": (0.9, 1), "2": (0.8, 1)}, now), cfg, now)
    assert len(tracker.history) == 2
    assert [v.version for v in tracker.view.versions] == ["1", "2"]
    assert set(tracker._labels) == {("m", "1"), ("m", "2")}


def test_newest_label_is_when_the_joined_counter_last_grew() -> None:
    cfg = config_with((Window("1h", 3600.0),), poll=5.0)
    tracker = StatusTracker()
    tracker.update(report({"1": (0.9, 10)}, T0), cfg, T0)
    assert tracker.view.versions[0].newest_label is None  # counted before this process looked
    tracker.update(report({"1": (0.9, 12)}, T0 + 5), cfg, T0 + 5)
    tracker.update(report({"1": (0.9, 12)}, T0 + 600), cfg, T0 + 600)
    view = tracker.view
    assert view.versions[0].newest_label == T0 + 5
    assert "newest label 10m ago" in render_page(view).decode()


# --------------------------------------------------------------------------------------------
# A real exporter on a fake clock
# --------------------------------------------------------------------------------------------
def lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture
def handmade(tmp_path: Path) -> Iterator[tuple[Exporter, FakeClock]]:
    """Version 7: 150 of 200 right (0.75, below the 0.80 threshold, 15 points under the 0.90
    baseline: critical drift). Version 8: 60 of 300 labelled, all right (coverage 20%, too few
    to judge). Version 9: predictions, no label yet."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
global: {{poll_interval: 1s, windows: [5m, 1h]}}
models:
  - name: fraud
    task: binary
    classes: ["0", "1"]
    thresholds: {{min_samples: 100, accuracy: 0.8}}
    baseline: {{accuracy: 0.9}}
sources:
  - {{name: p, kind: predictions, type: file, path: "{tmp_path / 'p.jsonl'}", model: fraud}}
  - {{name: l, kind: labels, type: file, path: "{tmp_path / 'l.jsonl'}"}}
""")
    (tmp_path / "p.jsonl").touch()
    (tmp_path / "l.jsonl").touch()
    clock = FakeClock(T0)
    ex = Exporter(load_config(cfg), "127.0.0.1:0", clock=clock)
    ex.cycle()  # an empty first cycle: every label after it is seen arriving
    preds, labels = [], []
    for version, n, n_labelled, n_wrong in (("7", 200, 200, 50), ("8", 300, 60, 0), ("9", 40, 0, 0)):
        for i in range(n):
            rid = f"{version}-{i}"
            preds.append({"id": rid, "model_version": version, "timestamp": T0, "prediction": i % 2,
                          "confidence": 0.9})
            if i < n_labelled:
                labels.append({"id": rid, "label": (1 - i % 2) if i < n_wrong else i % 2, "timestamp": T0})
    (tmp_path / "p.jsonl").write_text(lines(preds))
    (tmp_path / "l.jsonl").write_text(lines(labels))
    clock.t += 1
    ex.cycle()
    clock.t += 30
    ex.cycle()
    try:
        yield ex, clock
    finally:
        ex.server.server_close()
        for src in ex.pipeline.sources:
            src.close()
        ex.retraining.close()


def versions_by_name(ex: Exporter) -> dict[str, status_page.VersionStatus]:
    return {v.version: v for v in ex.status.view.versions}


def test_numbers_match_an_independent_reference(handmade: tuple[Exporter, FakeClock]) -> None:
    ex, _ = handmade
    v = versions_by_name(ex)
    assert set(v) == {"7", "8", "9"}
    w7 = v["7"].windows[0]
    assert (w7.window, w7.labeled, w7.predictions) == ("5m", 200, 200)
    assert w7.accuracy == pytest.approx(0.75)
    ci = binomtest(150, 200).proportion_ci(confidence_level=0.95, method="wilson")
    assert (w7.lower, w7.upper) == (pytest.approx(ci.low, abs=1e-9), pytest.approx(ci.high, abs=1e-9))
    assert w7.drop == pytest.approx(0.15)
    assert [h.text for h in v["7"].health] == ["drifting (critical)", "accuracy below threshold"]
    w8 = v["8"].windows[0]
    assert (w8.labeled, w8.predictions, w8.coverage) == (60, 300, pytest.approx(0.2))
    assert [h.text for h in v["8"].health] == ["ok"]
    assert [h.text for h in v["9"].health] == ["no labels lately"]
    assert v["7"].newest_label == T0 + 1 and v["9"].newest_label is None

    page = render_page(ex.status.view).decode()
    assert f"75.0% <span class=\"ci\">[{ci.low * 100:.1f}% &ndash; {ci.high * 100:.1f}%]</span>" in page
    assert "-15.0 pts (critical)" in page
    assert "60 / 300" in page and "20.0%" in page
    assert "newest label 30s ago" in page


def test_the_page_is_self_contained_and_escapes_labels(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    ex = Exporter(demo_config(tmp_path), "127.0.0.1:0", clock=clock)
    try:
        evil = '<script>alert("x")</script>'
        (tmp_path / "predictions.jsonl").write_text(lines(
            [{"id": f"e{i}", "model_version": evil, "timestamp": T0, "prediction": 1, "confidence": 0.9,
              "features": {"amount": 1.0, "country": "DE"}} for i in range(5)]))
        ex.cycle()
        page = ex.server.landing().decode()
    finally:
        ex.server.server_close()
        for src in ex.pipeline.sources:
            src.close()
        ex.retraining.close()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    # nothing is fetched: no external URL, no script, stylesheet link, @import, url() or src=
    for needle in ("http://", "https://", "//cdn", "<link", "@import", "url(", "src=", "<iframe"):
        assert needle not in page.lower(), needle
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', page)
    for link in ("/metrics", "/-/healthy", "/-/ready"):
        assert f'href="{link}"' in page


def test_sparkline_draws_gaps_and_reference_lines() -> None:
    pts = [(0.0, 0.9), (1.0, 0.92), (2.0, math.nan), (3.0, 0.8), (4.0, 0.78)]
    svg = sparkline(pts, baseline=0.93, threshold=0.8)
    assert svg.count("<polyline") == 2  # split at the unknown point
    assert svg.count("<line") == 2  # baseline and threshold
    xs = [float(p.split(",")[0]) for p in re.findall(r"[\d.]+,[\d.]+", svg)]
    assert min(xs) == pytest.approx(1.0) and max(xs) == pytest.approx(159.0)
    assert "collecting" in sparkline([(0.0, 0.9)], 0.9, 0.8)


# --------------------------------------------------------------------------------------------
# Over HTTP: TLS and basic auth like every endpoint, and never in ingestion's way
# --------------------------------------------------------------------------------------------
def test_served_behind_tls_and_basic_auth(handmade: tuple[Exporter, FakeClock], tmp_path: Path) -> None:
    ex, _ = handmade
    pki = make_pki(tmp_path / "pki")
    cfg = write_config(tmp_path, tls_config(pki) + f"basic_auth_users:\n  prometheus: '{bcrypt_hash(PASSWORD)}'\n")
    apply_web_config(ex.server, load_web_config(cfg))
    ex.server.serve_in_thread()
    try:
        url = f"https://127.0.0.1:{ex.port}/"
        assert requests.get(url, verify=str(pki.ca), timeout=5).status_code == 401
        assert requests.get(url, verify=str(pki.ca), timeout=5,
                            headers=basic("prometheus", PASSWORD + "x")).status_code == 401
        with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP
            requests.get(url.replace("https", "http"), timeout=5)
        r = requests.get(url, verify=str(pki.ca), timeout=5, headers=basic("prometheus", PASSWORD))
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert r.headers["Cache-Control"] == "no-store"
        assert 'data-version="7"' in r.text and "drifting (critical)" in r.text
    finally:
        ex.server.shutdown()


def test_a_slow_page_never_blocks_ingestion(handmade: tuple[Exporter, FakeClock], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering is held up on purpose; cycles and scrapes go on meanwhile."""
    ex, clock = handmade
    release, rendering = threading.Event(), threading.Event()
    real = status_page.render_page

    def slow(view: status_page.StatusView, links: tuple[tuple[str, str], ...] = status_page.LINKS) -> bytes:
        rendering.set()
        assert release.wait(20)
        return real(view, links)

    monkeypatch.setattr(status_page, "render_page", slow)
    ex.server.serve_in_thread()
    base = f"http://127.0.0.1:{ex.port}"
    got: list[requests.Response] = []
    t = threading.Thread(target=lambda: got.append(requests.get(f"{base}/", timeout=30)))
    try:
        clock.t += 1
        ex.cycle()  # a new view, so the page must be rendered again
        t.start()
        assert rendering.wait(10)
        started = time.monotonic()
        for _ in range(3):
            clock.t += 1
            ex.cycle()
        metrics = requests.get(f"{base}/metrics", timeout=5)
        assert time.monotonic() - started < 5
        assert metrics.status_code == 200 and "mlmon_accuracy_ratio" in metrics.text
        assert not got  # the page is still rendering
    finally:
        release.set()
        t.join(30)
        ex.server.shutdown()
    assert got and got[0].status_code == 200 and 'data-version="8"' in got[0].text


# --------------------------------------------------------------------------------------------
# A real browser
# --------------------------------------------------------------------------------------------
def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    missing("chromium (apt-get install -y chromium)")


def browser(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless chromium, isolated: a fresh profile, no background network, no QUIC, no sync."""
    profile = tmp / f"profile-{time.monotonic_ns()}"
    argv = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", *args, url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


class VersionSections(HTMLParser):
    """Each version section of the DOM: its data-* attributes, its visible title and the text
    of its health badges."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[dict[str, str]] = []
        self._field: str | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section" and "data-version" in a:
            self.sections.append({"model": a["data-model"], "version": a["data-version"],
                                  "health": a["data-health"], "badges": "", "title": ""})
        elif self._field is not None:
            self._depth += 1
        elif self.sections and (tag == "h2" or (tag == "span" and a.get("class") == "health")):
            self._field, self._depth = ("title" if tag == "h2" else "badges"), 1

    def handle_endtag(self, tag: str) -> None:
        if self._field is not None:
            self._depth -= 1
            if self._depth == 0:
                self._field = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self.sections[-1][self._field] += data


def dom_versions(url: str, tmp: Path) -> dict[tuple[str, str], dict[str, str]]:
    dom = browser(url, tmp, "--dump-dom").stdout
    parser = VersionSections()
    parser.feed(dom)
    return {(s["model"], s["version"]): s for s in parser.sections}


def test_browser_sees_the_demo_drift(tmp_path: Path) -> None:
    """The demo model on a fake clock: both versions ok before the drift, version 1 drifting
    after it, version 2 still ok; chromium reads it through the DOM and takes a screenshot."""
    chromium_path()
    logs = tmp_path / "logs"
    logs.mkdir()
    clock = FakeClock(T0)
    sim = Simulator(logs)
    sim.started = clock.t
    ex = Exporter(demo_config(logs), "127.0.0.1:0", clock=clock)
    ex.server.serve_in_thread()
    url = f"http://127.0.0.1:{ex.port}/"

    def run(seconds: float) -> None:
        for _ in range(int(seconds)):
            sim.step(clock.t, 1.0)
            ex.cycle()
            clock.t += 1.0

    try:
        run(DRIFT_AFTER_SECONDS - 5)
        before = dom_versions(url, tmp_path)
        assert set(before) == {("fraud-demo", "1"), ("fraud-demo", "2")}
        for (model, version), section in before.items():  # what the reader sees, not only attributes
            assert section["title"] == f"{model} / version {version}", section
        assert before[("fraud-demo", "1")]["health"] == "ok", before
        assert before[("fraud-demo", "2")]["health"] == "ok", before
        assert [s["badges"] for s in before.values()] == ["ok", "ok"]

        run(100)  # the 1m window is entirely after the drift now
        after = dom_versions(url, tmp_path)
        assert set(after) == {("fraud-demo", "1"), ("fraud-demo", "2")}
        v1, v2 = after[("fraud-demo", "1")], after[("fraud-demo", "2")]
        assert v1["health"].split()[0] == "drifting", after
        assert re.fullmatch(r"drifting \((high|critical)\)(accuracy below threshold)?", v1["badges"]), v1
        assert v2["health"] == "ok" and v2["badges"] == "ok", after

        shot = Path(os.environ.get("MLMON_STATUS_SCREENSHOT") or tmp_path / "status-page.png")
        browser(url, tmp_path, "--hide-scrollbars", "--window-size=1200,620", f"--screenshot={shot}")
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (1200, 620)
    finally:
        ex.server.shutdown()
        ex.server.server_close()
        for src in ex.pipeline.sources:
            src.close()
        ex.retraining.close()


def test_browser_during_the_real_demo(tmp_path: Path) -> None:
    """`mlmon-exporter demo` itself, as a user starts it: the page lists both versions."""
    chromium_path()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "exporter", "demo", f"--web.listen-address=127.0.0.1:{port}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: 'data-version="2"' in requests.get(url, timeout=2).text, 30, "both demo versions on /")
        seen = dom_versions(url, tmp_path)
        assert {("fraud-demo", "1"), ("fraud-demo", "2")} <= set(seen)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_page_links_to_the_configured_telemetry_path() -> None:
    page = status_page.StatusPage(StatusTracker(), lambda: "/internal/metrics").html().decode()
    assert 'href="/internal/metrics"' in page and 'href="/metrics"' not in page
