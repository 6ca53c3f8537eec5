"""A file source whose path matches no file must not look like "no traffic yet" (issue 15, point 1)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import Config, FileSourceConfig, GlobalConfig, ModelConfig, Window
from exporter.core.pipeline import Pipeline
from exporter.report import catalogue
from exporter.report.snapshot import render
from exporter.sources.file_tail import NO_FILES_WARN_INTERVAL, FileTailSource
from tests.helpers import FakeClock

T0 = 1_800_000_000.0


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "matches no file" in
            r.getMessage()]


def test_no_match_is_counted_and_warned_rate_limited(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.sources.file_tail")
    pattern = str(tmp_path / "predictions-*.jsonl")
    src = FileTailSource(FileSourceConfig(name="preds", kind="predictions", path=pattern, model="m"))
    src.poll(T0)
    assert src.files_matched == 0
    assert warnings_of(caplog) == [f"source preds: path {pattern} matches no file yet"]
    src.poll(T0 + 5)  # still none: not repeated every poll
    src.poll(T0 + NO_FILES_WARN_INTERVAL - 1)
    assert len(warnings_of(caplog)) == 1
    src.poll(T0 + NO_FILES_WARN_INTERVAL)  # ... but repeated while it stays so
    assert len(warnings_of(caplog)) == 2

    (tmp_path / "predictions-1.jsonl").write_text("")
    (tmp_path / "predictions-2.jsonl").write_text("")
    (tmp_path / "predictions-3.jsonl").mkdir()  # a directory is not a file
    src.poll(T0 + NO_FILES_WARN_INTERVAL + 1)
    assert src.files_matched == 2
    assert f"source preds: path {pattern} now matches 2 file(s)" in caplog.messages
    src.poll(T0 + 3 * NO_FILES_WARN_INTERVAL)
    assert len(warnings_of(caplog)) == 2
    src.close()


def files_gauge(p: Pipeline) -> dict[str, float]:
    text = render(catalogue.families(p.report)).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    return {s.labels["source"]: s.value for s in fams["mlmon_exporter_source_files"].samples}


def test_files_gauge_per_file_source(tmp_path: Path) -> None:
    (tmp_path / "labels.jsonl").write_text("")
    config = Config(
        global_=GlobalConfig(poll_interval=1.0, windows=(Window("1h", 3600.0),)),
        models=(ModelConfig(name="m", classes=("0", "1")),),
        sources=(FileSourceConfig(name="preds", kind="predictions", path=str(tmp_path / "typo-*.jsonl"),
                                  model="m"),
                 FileSourceConfig(name="labels", kind="labels", path=str(tmp_path / "labels*.jsonl"))),
    )
    clock = FakeClock(T0)
    p = Pipeline(config, clock)
    p.run_cycle()
    assert files_gauge(p) == {"preds": 0.0, "labels": 1.0}
    (tmp_path / "typo-a.jsonl").write_text('{"id": "a", "prediction": 1}\n')
    clock.t += 1
    p.run_cycle()
    assert files_gauge(p) == {"preds": 1.0, "labels": 1.0}
    for s in p.sources:
        s.close()


def test_config_check_warns_but_exits_0(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
models: [{{name: m}}]
sources:
  - {{name: preds, kind: predictions, type: file, path: "/nonexistent/predictions-*.jsonl", model: m}}
  - {{name: labels, kind: labels, type: file, path: "{tmp_path}/*.yaml"}}
""")
    r = subprocess.run([sys.executable, "-m", "exporter", "--config.check", f"--config.file={cfg}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ("mlmon-exporter: warning: sources: 'preds': path '/nonexistent/predictions-*.jsonl' "
                        "matches no file yet (it is read once files appear)\n")
    assert "configuration is valid (1 model, 2 sources)" in r.stdout
