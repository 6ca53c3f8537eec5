"""The real exporter process on an ephemeral port: exposition, health, readiness, the demo, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import free_port, require_tool, spawn_exporter, wait_for


def stop(p: subprocess.Popen[bytes]) -> int:
    p.terminate()
    return p.wait(15)


@pytest.fixture
def served_config(tmp_path: Path) -> Path:
    preds, labels = tmp_path / "preds.jsonl", tmp_path / "labels.jsonl"
    preds.write_text("".join(json.dumps({"id": f"r{i}", "model_version": "3", "prediction": i % 2,
                                         "confidence": 0.6 + (i % 4) / 10}) + "\n" for i in range(40)))
    labels.write_text("".join(json.dumps({"id": f"r{i}", "label": 1}) + "\n" for i in range(30))
                      + "not json\n" + json.dumps({"label": 1}) + "\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
global: {{poll_interval: 1s, windows: [1h]}}
models:
  - name: fraud
    classes: ["0", "1"]
    baseline: {{accuracy: 0.9}}
    thresholds: {{min_samples: 10}}
sources:
  - {{name: preds, kind: predictions, type: file, path: "{preds}", model: fraud}}
  - {{name: labels, kind: labels, type: file, path: "{labels}"}}
""")
    return cfg


@pytest.fixture
def served(served_config: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cfg = served_config
    port = free_port()
    p = spawn_exporter([f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "exporter.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 20, "exporter ready")
        yield url, tmp_path
    finally:
        assert stop(p) == 0, (tmp_path / "exporter.log").read_text()


def test_metrics_parse_and_lint_clean(served: tuple[str, Path]) -> None:
    url, _ = served
    body = requests.get(f"{url}/metrics", timeout=5)
    assert body.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in text_string_to_metric_families(body.text)}
    acc = {s.labels["model_version"]: s.value for s in fams["mlmon_accuracy_ratio"].samples}
    assert acc == {"3": 15 / 30}  # labels all 1, predictions alternate
    invalid = {s.labels["reason"]: s.value for s in fams["mlmon_exporter_invalid_records"].samples if s.value}
    assert invalid == {"invalid_json": 1, "missing_id": 1}  # the other reasons are exported at 0
    records = {s.labels["source"]: s.value for s in fams["mlmon_exporter_records"].samples}
    assert records == {"preds": 40, "labels": 32}
    promtool = require_tool("promtool")
    r = subprocess.run([promtool, "check", "metrics"], input=body.content, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()


def test_health_ready_landing(served: tuple[str, Path]) -> None:
    url, _ = served
    assert requests.get(f"{url}/-/healthy", timeout=2).status_code == 200
    assert requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    landing = requests.get(f"{url}/", timeout=2)
    assert 'href="/metrics"' in landing.text
    assert requests.get(f"{url}/nope", timeout=2).status_code == 404


def test_config_check_exit_codes(tmp_path: Path) -> None:
    good = Path(__file__).resolve().parents[1] / "data" / "config" / "design-example.yaml"
    r = subprocess.run([sys.executable, "-m", "exporter", "--config.check", f"--config.file={good}"],
                       capture_output=True, text=True, env={"LABELS_TOKEN": "t", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [{name: m, thresholds: {drift: 1.5}}]\n")
    r = subprocess.run([sys.executable, "-m", "exporter", "--config.check", f"--config.file={bad}"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "models[0].thresholds.drift: must be between 0 and 1, got 1.5" in r.stderr


def test_demo_detects_drift_within_60_seconds(tmp_path: Path) -> None:
    port = free_port()
    p = spawn_exporter(["demo", f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "demo.log")
    started = time.monotonic()
    try:
        def drifted() -> str | None:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            return text if 'mlmon_accuracy_drift_detected{model="fraud-demo",model_version="1",window="1m"} 1.0' \
                in text else None

        text = wait_for(drifted, 60, "demo drift detected", interval=1.0)
        assert time.monotonic() - started < 60
        # the healthy canary does not drift
        assert 'mlmon_accuracy_drift_detected{model="fraud-demo",model_version="2",window="1m"} 0.0' in text
    finally:
        assert stop(p) == 0, (tmp_path / "demo.log").read_text()


def test_kserve_events_reach_metrics_through_the_exporter(tmp_path: Path) -> None:
    """The kserve source wired into the real exporter: a v1 response with probability rows, joined
    with labels from a file."""
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"id": "ev-1#0", "label": "pos"}) + "\n" + json.dumps({"id": "ev-1#1", "label": "pos"})
                      + "\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
global: {{poll_interval: 200ms, windows: [1h]}}
models:
  - {{name: sentiment, classes: [neg, pos], positive_class: pos, baseline: {{accuracy: 0.9}}}}
sources:
  - {{name: kserve, kind: predictions, type: kserve, model_from: inferenceservicename}}
  - {{name: labels, kind: labels, type: file, path: "{labels}"}}
""")
    port = free_port()
    p = spawn_exporter([f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "exporter.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 20, "ready")
        headers = {"ce-id": "ev-1", "ce-specversion": "1.0", "ce-type": "org.kubeflow.serving.inference.response",
                   "ce-source": "http://localhost:9081/", "ce-inferenceservicename": "sentiment",
                   "ce-namespace": "default", "ce-component": "predictor", "ce-endpoint": "sentiment-predictor-00002",
                   "Content-Type": "application/json"}
        r = requests.post(f"{url}/api/v1/kserve", headers=headers,
                          data=json.dumps({"predictions": [[0.2, 0.8], [0.7, 0.3]]}), timeout=5)
        assert r.status_code == 200, r.text
        r = requests.post(f"{url}/api/v1/kserve", headers={**headers, "ce-id": "bad"}, data=b"{not json", timeout=5)
        assert r.status_code == 400

        def accuracy() -> str | None:
            text = requests.get(f"{url}/metrics", timeout=2).text
            line = [s for s in text.splitlines() if s.startswith('mlmon_accuracy_ratio{model="sentiment"')]
            return line[0] if line else None

        assert wait_for(accuracy, 10, "kserve outcome").endswith(" 0.5")  # one of two right
    finally:
        assert stop(p) == 0, (tmp_path / "exporter.log").read_text()


def test_web_config_flag_protects_the_real_exporter(served_config: Path, tmp_path: Path) -> None:
    import bcrypt

    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)
    web.write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
    port = free_port()
    p = spawn_exporter([f"--config.file={served_config}", f"--web.listen-address=127.0.0.1:{port}",
               f"--web.config.file={web}"], tmp_path / "exporter.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 20, "ready without credentials")
        assert requests.get(f"{url}/metrics", timeout=2).status_code == 401
        assert requests.get(f"{url}/metrics", auth=("prom", "wrong"), timeout=2).status_code == 401
        ok = requests.get(f"{url}/metrics", auth=("prom", "s3cret"), timeout=2)
        assert ok.status_code == 200 and "mlmon_exporter_build_info" in ok.text
    finally:
        assert stop(p) == 0, (tmp_path / "exporter.log").read_text()
    bad = tmp_path / "bad-web.yml"
    bad.write_text("basic_auth_users: [nope]\n")
    r = subprocess.run([sys.executable, "-m", "exporter", f"--config.file={served_config}", "--config.check",
                        f"--web.config.file={bad}"], capture_output=True, text=True)
    assert r.returncode == 1 and "basic_auth_users" in r.stderr
