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


# --- routes that sources declare follow a reload ----------------------------------------------------------

_KSERVE_HEADERS = {"ce-id": "ev-1", "ce-specversion": "1.0", "ce-type": "org.kubeflow.serving.inference.response",
                   "ce-source": "http://localhost:9081/", "ce-inferenceservicename": "sentiment",
                   "Content-Type": "application/json"}


def _routes_config(tmp: Path, kserve: str | None, extra_model: bool = False) -> str:
    models = "  - {name: sentiment, classes: [neg, pos], positive_class: pos}\n"
    if extra_model:
        models += "  - {name: added, classes: [a, b], positive_class: b}\n"
    sources = f'  - {{name: labels, kind: labels, type: file, path: "{tmp}/labels.jsonl"}}\n'
    if kserve is not None:
        sources += f"  - {{name: ks, kind: predictions, type: kserve, model_from: inferenceservicename{kserve}}}\n"
    return f"global: {{poll_interval: 100ms, windows: [1h]}}\nmodels:\n{models}sources:\n{sources}"


def _post_event(url: str, ce_id: str) -> int:
    r = requests.post(f"{url}/api/v1/kserve", headers={**_KSERVE_HEADERS, "ce-id": ce_id},
                      data=json.dumps({"predictions": [[0.2, 0.8]]}), timeout=5)
    return r.status_code


def test_reload_registers_and_removes_source_routes(tmp_path: Path) -> None:
    """POST /api/v1/kserve exists exactly while a kserve source without its own address is
    configured; a reload adds and removes it, the shared body limit follows the source's
    ``max_body_bytes``, and a source kept across a reload looks models up in the new config."""
    from exporter.config import load_config
    from exporter.runtime.app import Exporter
    from exporter.sources.kserve import KServeSource

    (tmp_path / "labels.jsonl").write_text("")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(_routes_config(tmp_path, None))
    ex = Exporter(load_config(cfg), "127.0.0.1:0", config_path=cfg)
    ex.start()
    url = f"http://127.0.0.1:{ex.port}"
    big = b"{" + b" " * (12 << 20)  # over the default 10 MiB, under the 16 MiB configured below

    def reload() -> None:
        r = requests.post(f"{url}/-/reload", timeout=30)
        assert r.status_code == 200, r.text

    try:
        assert _post_event(url, "before") == 404  # no kserve source: no route

        cfg.write_text(_routes_config(tmp_path, ", max_body_bytes: 16777216"))
        reload()
        assert _post_event(url, "added") == 200
        # the shared server lets the body through to the source (which refuses it as bad JSON)
        assert requests.post(f"{url}/api/v1/kserve", headers=_KSERVE_HEADERS, data=big, timeout=30).status_code == 400
        kserve = ex.pipeline.sources[1]
        assert isinstance(kserve, KServeSource) and kserve.models is not None
        assert kserve.models("added") is None

        cfg.write_text(_routes_config(tmp_path, ", max_body_bytes: 16777216", extra_model=True))
        reload()
        assert ex.pipeline.sources[1] is kserve  # unchanged source config: the same source, kept
        added = kserve.models("added")
        assert added is not None and added.classes == ("a", "b")  # it sees the reloaded models
        assert _post_event(url, "kept") == 200

        cfg.write_text(_routes_config(tmp_path, None))
        reload()
        assert _post_event(url, "removed") == 404
        # the limit is back to 10 MiB (checked before any handler runs: nothing is reloaded)
        assert requests.post(f"{url}/-/reload", data=big, timeout=30).status_code == 413

        # with an address of its own it serves there, not on the shared server
        own_port = free_port()
        cfg.write_text(_routes_config(tmp_path, f', listen_address: "127.0.0.1:{own_port}"'))
        reload()
        assert _post_event(url, "shared") == 404
        assert _post_event(f"http://127.0.0.1:{own_port}", "own") == 200
        assert requests.post(f"{url}/-/reload", timeout=30).status_code == 200  # reload itself still served
    finally:
        ex.stop()
