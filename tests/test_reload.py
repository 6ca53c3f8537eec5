"""Live reload: SIGHUP and POST /-/reload swap a valid config in, keep state, refuse a bad one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.helpers import free_port, wait_for


def _config(tmp: Path, drift: str) -> str:
    return f"""
global: {{poll_interval: 100ms, windows: [1h]}}
models:
  - name: m
    classes: ["0", "1"]
    baseline: {{accuracy: 0.9}}
    thresholds: {{drift: {drift}, min_samples: 1}}
sources:
  - {{name: preds, kind: predictions, type: file, path: "{tmp}/preds.jsonl", model: m}}
  - {{name: labels, kind: labels, type: file, path: "{tmp}/labels.jsonl"}}
"""


def _value(url: str, line_start: str) -> float | None:
    for line in requests.get(f"{url}/metrics", timeout=3).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_reload_keeps_state_and_refuses_bad_config(tmp_path: Path) -> None:
    (tmp_path / "preds.jsonl").write_text("".join(
        json.dumps({"id": f"r{i}", "prediction": 1, "confidence": 0.9}) + "\n" for i in range(10)))
    (tmp_path / "labels.jsonl").write_text("".join(
        json.dumps({"id": f"r{i}", "label": i % 2}) + "\n" for i in range(10)))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(_config(tmp_path, "0.05"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "log").open("wb") as log:
        p = subprocess.Popen([sys.executable, "-m", "exporter", f"--config.file={cfg}",
                              f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        correct = 'mlmon_correct_predictions_total{model="m",model_version="unknown"}'
        wait_for(lambda: _value(url, correct) == 5.0, 20, "records applied")
        thr = 'mlmon_drift_threshold_ratio{model="m"'
        assert _value(url, thr) == 0.05

        cfg.write_text(_config(tmp_path, "1.5"))  # invalid: refused, old config keeps running
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: _value(url, "mlmon_exporter_config_last_reload_successful") == 0.0, 10, "reload refused")
        assert _value(url, thr) == 0.05
        r = requests.post(f"{url}/-/reload", timeout=30)
        assert r.status_code == 500 and "models[0].thresholds.drift: must be between 0 and 1" in r.text

        cfg.write_text(_config(tmp_path, "0.2"))
        r = requests.post(f"{url}/-/reload", timeout=30)
        assert r.status_code == 200, r.text
        wait_for(lambda: _value(url, thr) == 0.2, 10, "new threshold")
        assert _value(url, "mlmon_exporter_config_last_reload_successful") == 1.0
        assert _value(url, correct) == 5.0  # state kept: nothing re-read, nothing lost
        assert _value(url, 'mlmon_exporter_records_total{source="preds"}') == 10.0
        with (tmp_path / "labels.jsonl").open("a") as f:
            f.write(json.dumps({"id": "r0", "label": 1}) + "\n")  # a second label for r0: duplicate
        dup = 'mlmon_exporter_invalid_records_total{reason="duplicate",source="labels"}'
        wait_for(lambda: _value(url, dup) == 1.0, 10, "join state survived the reload")
    finally:
        p.terminate()
        assert p.wait(15) == 0, (tmp_path / "log").read_text()
