"""The demo keeps the README's promise: every metric family it lists moves, label-free estimates included."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.core.pipeline import Pipeline
from exporter.demo import Simulator, demo_config
from exporter.report import catalogue
from exporter.report.snapshot import render
from tests.helpers import FakeClock


def test_demo_records_carry_probabilities_and_estimates_are_finite(tmp_path: Path) -> None:
    sim = Simulator(tmp_path, seed=3)
    clock = FakeClock(sim.started)
    pipeline = Pipeline(demo_config(tmp_path), clock)
    for _ in range(40):  # 40 simulated seconds, past the drift at 25 s
        clock.t += 1.0
        sim.step(clock.t, 1.0)
        pipeline.run_cycle()

    first = json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])
    probs = first["probabilities"]
    assert set(probs) == {"0", "1"} and math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
    assert str(first["prediction"]) == max(probs, key=probs.__getitem__)  # the argmax is the prediction

    fams = {f.name: f for f in text_string_to_metric_families(render(catalogue.families(pipeline.report)).decode())}
    estimated = [n for n in fams if n.startswith("mlmon_estimated_")]
    assert sorted(estimated) == ["mlmon_estimated_accuracy_ratio", "mlmon_estimated_f1_ratio",
                                 "mlmon_estimated_precision_ratio", "mlmon_estimated_recall_ratio"]
    for name in [*estimated, "mlmon_calibration_error_ratio", "mlmon_confidence_mean_ratio"]:
        samples = [s for s in fams[name].samples if s.labels["window"] == "1m"]
        assert {s.labels["model_version"] for s in samples} == {"1", "2"}, name
        assert all(math.isfinite(s.value) and 0.0 <= s.value <= 1.0 for s in samples), (name, samples)


def test_readme_states_the_drift_alerts_for_duration() -> None:
    root = Path(__file__).resolve().parents[1]
    rules = yaml.safe_load((root / "alerts" / "mlmon-exporter.rules.yaml").read_text())
    durations = {r["for"] for g in rules["spec"]["groups"] for r in g["rules"]
                 if r.get("alert") == "MLModelAccuracyDrift"}
    assert len(durations) == 1, durations  # one `for:` for every tier, so the README can state it
    readme = " ".join((root / "README.md").read_text().split())
    assert f"`MLModelAccuracyDrift` has `for: {durations.pop()}`" in readme


def test_demo_logs_exist_before_the_first_poll(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A newcomer's demo must not open with "matches no file" warnings meant for wrong paths."""
    caplog.set_level(logging.WARNING)
    Simulator(tmp_path)
    pipeline = Pipeline(demo_config(tmp_path), FakeClock(1_800_000_000.0))
    pipeline.run_cycle()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    for s in pipeline.sources:
        s.close()
