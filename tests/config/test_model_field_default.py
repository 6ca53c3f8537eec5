"""`fields.model` defaults to `model` (DESIGN §8): one log holding two models' predictions, end to end.

The real exporter process tails one predictions file whose records name their model in the
canonical `model` field; the source sets neither `model:` nor `fields.model`. Each model gets its
own series with hand-computed accuracy, and records naming no model or an unknown one are
counted by reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import load_config
from tests.helpers import free_port, wait_for


def test_two_models_in_one_log_without_a_model_key(tmp_path: Path) -> None:
    preds, labels = tmp_path / "predictions.jsonl", tmp_path / "labels.jsonl"
    rows = []
    # fraud (binary): 10 predictions of 1; labels 1 for the first 7 -> accuracy 0.7
    rows += [{"id": f"f{i}", "model": "fraud", "model_version": "2", "prediction": 1, "confidence": 0.9}
             for i in range(10)]
    # digits (multiclass): predictions i % 3, labels 0 for all -> correct for i % 3 == 0: 4 of 12
    rows += [{"id": f"d{i}", "model": "digits", "model_version": "5", "prediction": i % 3, "confidence": 0.8}
             for i in range(12)]
    rows += [{"id": "x1", "prediction": 1}, {"id": "x2", "model": "nosuch", "prediction": 1}]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels.write_text("".join(json.dumps({"id": f"f{i}", "label": int(i < 7)}) + "\n" for i in range(10))
                      + "".join(json.dumps({"id": f"d{i}", "label": 0}) + "\n" for i in range(12)))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
global: {{poll_interval: 1s, windows: [1h]}}
models:
  - {{name: fraud, classes: ["0", "1"]}}
  - {{name: digits, task: multiclass, classes: ["0", "1", "2"]}}
sources:
  - {{name: preds, kind: predictions, type: file, path: "{preds}"}}
  - {{name: labels, kind: labels, type: file, path: "{labels}"}}
""")
    assert [s.model for s in load_config(cfg).sources] == [None, None]
    port = free_port()
    with (tmp_path / "exporter.log").open("wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "exporter", f"--config.file={cfg}",
                              f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        def scraped() -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            fams = {f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples}
                    for f in text_string_to_metric_families(text)}
            labeled = fams.get("mlmon_window_labeled_predictions", {})
            return fams if sum(labeled.values()) == 22 else None

        fams = wait_for(scraped, 30, "both models' outcomes")
        acc = {dict(k)["model"]: (dict(k)["model_version"], v) for k, v in fams["mlmon_accuracy_ratio"].items()}
        assert acc == {"fraud": ("2", 0.7), "digits": ("5", 4 / 12)}
        invalid = {dict(k)["reason"]: v for k, v in fams["mlmon_exporter_invalid_records"].items()
                   if dict(k)["source"] == "preds" and v}
        assert invalid == {"missing_model": 1, "unknown_model": 1}
    finally:
        p.terminate()
        assert p.wait(15) == 0, (tmp_path / "exporter.log").read_text()
