"""End to end with the real binaries (issue 3): exporter -> Prometheus -> Alertmanager -> the
exporter's retraining webhook -> a pipeline endpoint.

The exporter (``python -m exporter``) tails JSONL logs of model ``fraud``: version 1's accuracy
is 12 points below its fixed baseline (0.80 vs 0.92), version 2 is healthy (0.95). Prometheus
scrapes it every second with the project's own rules (alerts/mlmon-exporter.rules.yaml, only
``for:`` shortened), Alertmanager routes ``action="retrain"`` to the exporter's webhook, and a
recording HTTP server stands in for the retraining pipeline. It must receive exactly one
CloudEvent, for version 1, none for version 2, none after the alert resolves, while
Alertmanager keeps re-notifying (``repeat_interval`` 2s) and the exporter deduplicates.

Everything binds 127.0.0.1 and lives in a temp dir. Readiness is real (target up, Alertmanager
discovered, counters scraped at 0 before any label arrives), never a fixed sleep; the one
bounded wait is the final "nothing more arrives" check. Missing binaries fail under CI=true and
skip elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.actions.history import read_history
from tests.helpers import free_port
from tests.stack import RecordingServer, Stack, prometheus_config, running_stack

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "alerts" / "mlmon-exporter.rules.yaml"
EXTRACT = REPO / "alerts" / "extract_rules.py"
JOB = "mlmon-exporter"
BASELINE = 0.92
N = 200  # labelled predictions per version; min_samples is 100
TRAINING = {"epochs": 50, "batch_size": 32, "learning_rate": 0.001, "early_stopping": True}


def records(version: str, n: int, wrong_every: int, now: float, prefix: str) -> tuple[bytes, bytes]:
    """Predictions and labels, every ``wrong_every``-th prediction wrong (0: none), errors spread
    evenly so any prefix the exporter happens to read already has the final accuracy."""
    preds, labels = [], []
    for i in range(n):
        rid = f"{prefix}-v{version}-{i}"
        pred = i % 2
        wrong = wrong_every > 0 and i % wrong_every == wrong_every - 1
        preds.append({"id": rid, "model_version": version, "timestamp": now, "prediction": pred,
                      "confidence": 0.9})
        labels.append({"id": rid, "label": 1 - pred if wrong else pred, "timestamp": now})
    return ("".join(json.dumps(p) + "\n" for p in preds).encode(),
            "".join(json.dumps(label) + "\n" for label in labels).encode())


def append(path: Path, data: bytes) -> None:
    """One write call, so the tailing exporter sees the batch at once (it reads whole lines only)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass
class Scenario:
    stack: Stack
    pipeline: RecordingServer
    exporter: str
    dir: Path
    preds: Path
    labels: Path
    history: Path
    state: Path

    def exporter_metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = requests.get(f"{self.exporter}/metrics", timeout=5).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(text) for s in fam.samples}

    def retraining(self, result: str) -> float:
        return self.exporter_metrics().get(("mlmon_retraining_requests_total", (("result", result),)), 0.0)

    def received(self, status: str) -> float:
        return self.exporter_metrics().get(("mlmon_retraining_alerts_received_total", (("status", status),)), 0.0)

    def events(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.pipeline.snapshot()]

    def first_event(self) -> dict[str, Any]:
        """Wait (bounded) for the retraining request for the drifting version."""
        self.stack.wait(lambda: self.pipeline.snapshot(), 90, "a retraining request at the pipeline endpoint")
        return self.events()[0]


def exporter_config(d: Path, pipeline_url: str) -> str:
    return f"""
global: {{poll_interval: 1s, windows: [1h, 24h]}}
models:
  - name: fraud
    task: binary
    classes: ["0", "1"]
    thresholds: {{min_samples: 100, accuracy: 0.5}}
    baseline: {{accuracy: {BASELINE}}}
sources:
  - {{name: predictions, kind: predictions, type: file, path: "{d / 'predictions.jsonl'}", model: fraud}}
  - {{name: labels, kind: labels, type: file, path: "{d / 'labels.jsonl'}"}}
retraining:
  endpoint: {pipeline_url}/api/v1/retrain
  cooldown: 1h
  timeout: 5s
  training_config: {json.dumps(TRAINING)}
history:
  directory: "{d / 'history'}"
  interval: 1s
"""


def alertmanager_config(exporter: str) -> str:
    return f"""
route:
  receiver: blackhole
  group_by: [alertname, model, model_version]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 2s
  routes:
    - receiver: mlmon-retrain
      matchers: ['action="retrain"']
receivers:
  - name: blackhole
  - name: mlmon-retrain
    webhook_configs:
      - url: {exporter}/api/v1/alertmanager
        send_resolved: true
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    d = tmp_path_factory.mktemp("e2e")
    with running_stack(d) as stack, RecordingServer() as pipeline:
        now = time.time()
        preds, labels = d / "predictions.jsonl", d / "labels.jsonl"
        p1, l1 = records("1", N, 5, now, "a")  # every 5th wrong: accuracy 0.80, drop 0.12
        p2, l2 = records("2", N, 20, now, "a")  # every 20th wrong: accuracy 0.95
        append(preds, p1 + p2)
        labels.touch()  # labels come once Prometheus has scraped the counters at 0
        cfg = d / "exporter.yaml"
        cfg.write_text(exporter_config(d, pipeline.url))
        check = subprocess.run([sys.executable, "-m", "exporter", f"--config.file={cfg}", "--config.check"],
                               capture_output=True, text=True, cwd=REPO)
        assert check.returncode == 0, check.stdout + check.stderr

        port = free_port()
        exporter = f"http://127.0.0.1:{port}"
        stack.spawn("exporter", [sys.executable, "-m", "exporter", f"--config.file={cfg}",
                                 f"--web.listen-address=127.0.0.1:{port}", f"--state.directory={d / 'state'}"],
                    cwd=REPO)
        stack.wait(lambda: requests.get(f"{exporter}/-/ready", timeout=1).ok, 30, "exporter ready")
        probe = requests.post(f"{exporter}/api/v1/alertmanager", json={"version": "4", "alerts": []}, timeout=5)
        assert probe.status_code == 200, (
            f"POST /api/v1/alertmanager answered {probe.status_code}: the retraining webhook is not wired "
            "into the exporter (exporter/runtime/app.py)")

        rules = d / "rules.yml"
        subprocess.run([sys.executable, str(EXTRACT), str(RULES), str(rules), "--for-override", "2s"], check=True)
        checked = subprocess.run([stack.bin.promtool, "check", "rules", str(rules)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        am = stack.start_alertmanager(alertmanager_config(exporter))
        stack.start_prometheus(prometheus_config({JOB: f"127.0.0.1:{port}"}, [rules], am))
        stack.wait_until_scraping(JOB)
        # both versions' counters scraped at 0, so increase() sees every label that follows
        stack.wait(lambda: len(stack.query("mlmon_correct_predictions_total == 0")) == 2, 30,
                   "zero counters scraped")
        append(labels, l1 + l2)
        yield Scenario(stack, pipeline, exporter, d, preds, labels, d / "history", d / "state")


def test_the_drifting_version_gets_exactly_one_retraining_request(scenario: Scenario) -> None:
    ev = scenario.first_event()
    req = scenario.pipeline.snapshot()[0]
    assert req.path == "/api/v1/retrain"
    assert req.headers["content-type"].startswith("application/cloudevents+json")
    assert ev["specversion"] == "1.0"
    assert ev["type"] == "io.mlmon.retraining.requested"
    assert ev["datacontenttype"] == "application/json"
    assert ev["source"] and ev["id"] and ev["time"]
    data = ev["data"]
    assert (data["model"], data["model_version"]) == ("fraud", "1")
    assert data["reason"] == "Accuracy drop: 12.00%"
    assert data["severity"] == "critical"  # drop 0.12 > 0.10: the exporter's tier
    evidence = data["evidence"]
    assert evidence["window"] in ("1h", "24h")
    assert evidence["accuracy"] == pytest.approx(0.80)
    assert evidence["baseline"] == BASELINE
    assert evidence["drop"] == pytest.approx(0.12)
    assert evidence["samples"] == N
    assert data["training_config"] == TRAINING
    assert {a["alertname"] for a in data["alerts"]} == {"MLModelAccuracyDrift"}

    # Alertmanager re-notifies every 2s while the alert fires; the exporter deduplicates them
    scenario.stack.wait(lambda: scenario.retraining("deduplicated") >= 2, 30, "deduplicated repeat notifications")
    assert scenario.retraining("sent") == 1
    assert [e["data"]["model_version"] for e in scenario.events()] == ["1"]
    # the cooldown is persisted in the state directory
    assert (scenario.state / "retraining.json").exists()


def test_the_healthy_version_never_alerts(scenario: Scenario) -> None:
    scenario.first_event()
    stack = scenario.stack
    assert stack.query('ALERTS{alertname="MLModelAccuracyDrift", model_version="1", alertstate="firing"}')
    assert not stack.query('count_over_time(ALERTS{alertname="MLModelAccuracyDrift", model_version="2"}[1h])')
    assert all(e["data"]["model_version"] == "1" for e in scenario.events())


def test_recording_rules_return_the_exporters_accuracy(scenario: Scenario) -> None:
    stack = scenario.stack

    def both() -> dict[str, tuple[float, float]] | None:
        out = {}
        for version in ("1", "2"):
            rec = stack.query(f'model_version:mlmon_accuracy:ratio_rate5m{{model="fraud", model_version="{version}"}}')
            gauge = stack.query(f'mlmon_accuracy_ratio{{model="fraud", model_version="{version}", window="1h"}}')
            if not rec or not gauge:
                return None
            out[version] = (float(rec[0]["value"][1]), float(gauge[0]["value"][1]))
        # the rule reads the counters a scrape later than the gauge; wait until both have settled
        return out if all(abs(r - g) < 1e-9 for r, g in out.values()) else None

    values = stack.wait(both, 30, "recording rule == mlmon_accuracy_ratio")
    assert values["1"][0] == pytest.approx(0.80)
    assert values["2"][0] == pytest.approx(0.95)
    assert values["1"][1] == pytest.approx(0.80)
    assert values["2"][1] == pytest.approx(0.95)
    precision = stack.query('model_version_class:mlmon_precision:ratio_rate5m{model="fraud", model_version="2"}')
    assert {r["metric"]["class"] for r in precision} == {"0", "1"}


def test_the_exposition_lints_clean(scenario: Scenario) -> None:
    body = requests.get(f"{scenario.exporter}/metrics", timeout=5).content
    assert b"mlmon_retraining_requests_total" in body
    r = subprocess.run([scenario.stack.bin.promtool, "check", "metrics"], input=body, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()


def test_nothing_is_sent_after_the_alert_resolves(scenario: Scenario) -> None:
    """Version 1 recovers: 600 new correct outcomes bring both windows to 0.95."""
    scenario.first_event()
    stack = scenario.stack
    resolved_before = scenario.received("resolved")
    p, labels = records("1", 600, 0, time.time(), "b")
    append(scenario.preds, p)
    append(scenario.labels, labels)
    stack.wait(lambda: not stack.query('ALERTS{alertname="MLModelAccuracyDrift"}'), 60,
               "MLModelAccuracyDrift resolved in Prometheus")
    stack.wait(lambda: not [a for a in stack.alertmanager_alerts(alertname="MLModelAccuracyDrift")
                            if a["status"]["state"] == "active"], 60, "resolved in Alertmanager")
    stack.wait(lambda: scenario.received("resolved") > resolved_before, 60,
               "the resolved notification at the exporter's webhook")
    with pytest.raises(TimeoutError):  # bounded quiet period: nothing more may arrive
        scenario.pipeline.wait_for_count(2, timeout=3.0)
    assert len(scenario.events()) == 1
    assert scenario.retraining("sent") == 1 and scenario.retraining("failed") == 0

    # the performance history recorded the request for version 1 only
    stack.wait(lambda: len(read_history(scenario.history)) > 0, 30, "history rows")
    df = read_history(scenario.history)
    triggered = df[df["retraining_triggered"]]
    assert set(triggered["version"]) == {"1"}
    assert set(df["version"]) == {"1", "2"}
    v1 = df[(df["version"] == "1") & (df["window"] == "1h")]
    assert "critical" in set(v1["drift_severity"])
    assert v1["drift_severity"].iloc[-1] == "low" and not v1["drift_detected"].iloc[-1]
