"""Counters with a known label set start at 0, HELP included (issue 15, point 8).

`mlmon_exporter_invalid_records_total` has a series for each source and each reason that source
can produce (the registry in exporter.foundation.reject_reasons) before the first bad record;
`mlmon_orphan_labels_total` and `mlmon_expired_predictions_total` exist at 0 per model. The
registry is checked against what the real file source, parsers and pipeline actually count.
"""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from exporter.config import (
    Config,
    FileSourceConfig,
    GlobalConfig,
    JoinConfig,
    KServeSourceConfig,
    ModelConfig,
    Window,
)
from exporter.core.pipeline import Pipeline
from exporter.foundation.reject_reasons import KSERVE_REASONS, PARSE_REASONS, reasons_for
from exporter.report import catalogue
from exporter.report.snapshot import render
from tests.helpers import FakeClock

T0 = 1_800_000_000.0
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(p: Pipeline) -> tuple[str, Series]:
    text = render(catalogue.families(p.report)).decode()
    series = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    return text, series


def invalid(series: Series, source: str) -> dict[str, float]:
    return {dict(k)["reason"]: v for (n, k), v in series.items()
            if n == "mlmon_exporter_invalid_records_total" and dict(k)["source"] == source}


def make_config(tmp_path: Path) -> Config:
    return Config(
        global_=GlobalConfig(windows=(Window("1h", 3600.0),)),
        models=(ModelConfig(name="m", classes=("0", "1"), max_versions=1, join=JoinConfig(ttl=60.0)),
                ModelConfig(name="n", classes=("0", "1"), join=JoinConfig(ttl=60.0))),
        sources=(
            FileSourceConfig(name="preds", kind="predictions", path=str(tmp_path / "p.jsonl"),
                             max_line_bytes=300),
            FileSourceConfig(name="fixed", kind="predictions", path=str(tmp_path / "f.jsonl"), model="n"),
            FileSourceConfig(name="labels", kind="labels", path=str(tmp_path / "l.jsonl"),
                             max_line_bytes=300),
            KServeSourceConfig(name="kserve", kind="predictions", model="n"),
        ),
    )


def test_everything_is_at_zero_with_help_before_the_first_record(tmp_path: Path) -> None:
    for name in ("p", "f", "l"):
        (tmp_path / f"{name}.jsonl").touch()
    config = make_config(tmp_path)
    p = Pipeline(config, FakeClock(T0))
    p.run_cycle()
    text, series = scrape(p)
    assert "# HELP mlmon_exporter_invalid_records_total " in text
    assert "# HELP mlmon_orphan_labels_total " in text
    for src in config.sources:
        assert invalid(series, src.name) == dict.fromkeys(reasons_for(src), 0.0), src.name
    assert set(invalid(series, "kserve")) >= set(KSERVE_REASONS) - {"missing_model"}  # its model is fixed
    assert "missing_model" not in invalid(series, "fixed") and "missing_model" in invalid(series, "preds")
    orphans = {dict(k)["model"]: v for (n, k), v in series.items() if n == "mlmon_orphan_labels_total"}
    assert orphans == {"m": 0.0, "n": 0.0, "": 0.0}  # "": labels that name no model
    for s in p.sources:
        s.close()


def lines(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def test_the_registry_is_exactly_what_file_sources_count(tmp_path: Path) -> None:
    """Every registered reason of a file source is produced by some record, and nothing else is."""
    (tmp_path / "f.jsonl").touch()
    (tmp_path / "p.jsonl").write_text(lines(
        '{"id": "long", "model": "m", "prediction": 1, "pad": "' + "x" * 300 + '"}',  # line_too_long
        "not json",  # invalid_json
        "[1, 2]",  # not_an_object
        {"model": "m", "prediction": 1},  # missing_id
        {"id": "x1", "prediction": 1},  # missing_model
        {"id": "x2", "model": "nosuch", "prediction": 1},  # unknown_model
        {"id": "x3", "model": "m"},  # missing_prediction
        {"id": "x4", "model": "m", "prediction": None},  # invalid_class
        {"id": "x5", "model": "m", "prediction": 1, "confidence": 2},  # invalid_confidence
        {"id": "x6", "model": "m", "prediction": 1, "probabilities": [0.2, 0.8]},  # invalid_probabilities
        {"id": "x7", "model": "m", "prediction": 1, "timestamp": "yesterday"},  # invalid_timestamp
        {"id": "x8", "model": "m", "prediction": "7"},  # unknown_class
        {"id": "ok1", "model": "m", "model_version": "1", "prediction": 1},
        {"id": "ok1", "model": "m", "model_version": "1", "prediction": 1},  # duplicate
        {"id": "ok2", "model": "m", "model_version": "1", "prediction": 0},
        {"id": "x9", "model": "m", "model_version": "2", "prediction": 1},  # too_many_versions (max 1)
    ))
    (tmp_path / "l.jsonl").write_text(lines(
        '{"id": "long", "label": 1, "pad": "' + "x" * 300 + '"}',  # line_too_long
        "{", "7",  # invalid_json, not_an_object
        {"label": 1},  # missing_id
        {"id": "l1"},  # missing_label
        {"id": "l2", "label": [1]},  # invalid_class
        {"id": "l3", "label": 1, "timestamp": True},  # invalid_timestamp
        {"id": "l4", "label": 1, "model": "nosuch"},  # unknown_model
        {"id": "ok1", "label": 1},
        {"id": "ok1", "label": 1},  # duplicate
        {"id": "ok2", "label": "7"},  # unknown_class
    ))
    config = make_config(tmp_path)
    p = Pipeline(config, FakeClock(T0))
    p.run_cycle()
    _, series = scrape(p)
    for src in config.sources[:3]:
        counted = invalid(series, src.name)
        produced = {r for r, v in counted.items() if v}
        assert set(counted) == set(reasons_for(src)), src.name  # nothing counted outside the registry
        if src.name != "fixed":
            assert produced == set(reasons_for(src)), (src.name, set(reasons_for(src)) - produced)
    assert set(PARSE_REASONS) <= set(reasons_for(config.sources[0])) | set(reasons_for(config.sources[2]))
    for s in p.sources:
        s.close()


def test_expired_and_orphan_counters_per_model_start_at_zero(tmp_path: Path) -> None:
    (tmp_path / "f.jsonl").touch()
    (tmp_path / "p.jsonl").write_text(lines({"id": "a", "model": "m", "model_version": "1", "prediction": 1}))
    (tmp_path / "l.jsonl").write_text(lines({"id": "zzz", "label": 1, "model": "m"}))
    clock = FakeClock(T0)
    p = Pipeline(make_config(tmp_path), clock)
    p.run_cycle()
    _, series = scrape(p)
    assert series[("mlmon_expired_predictions_total", (("model", "m"), ("model_version", "1")))] == 0.0
    assert series[("mlmon_orphan_labels_total", (("model", "m"),))] == 0.0
    clock.t += 61  # past m's join TTL: the prediction expires, the label is an orphan
    p.run_cycle()
    _, series = scrape(p)
    assert series[("mlmon_expired_predictions_total", (("model", "m"), ("model_version", "1")))] == 1.0
    assert series[("mlmon_orphan_labels_total", (("model", "m"),))] == 1.0
    assert series[("mlmon_orphan_labels_total", (("model", "n"),))] == 0.0
    for s in p.sources:
        s.close()
