"""The record format is documented outside DESIGN.md, and the documented examples are what the parser does."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import pytest

from exporter.config import Config, FileSourceConfig, GlobalConfig, ModelConfig, Window
from exporter.core.pipeline import Pipeline
from exporter.ingest.records import RecordSpec, parse_labels, parse_predictions
from exporter.ingest.timestamps import parse_timestamp
from tests.helpers import FakeClock

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "CONFIGURATION.md").read_text()


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    nxt = text.find("\n### ", start + len(heading))
    ends = [e for e in (end, nxt) if e >= 0]
    return text[start:min(ends)] if ends else text[start:]


def json_lines(text: str) -> list[dict[str, object]]:
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    return [json.loads(line) for block in blocks for line in block.splitlines() if line.strip()]


def test_timestamp_table_matches_the_parser() -> None:
    rows = re.findall(r"^\| `(.+?)` \| ([0-9.]+) \|$", section(CONFIGURATION, "### Record format"), re.M)
    assert len(rows) >= 8
    forms = {type(json.loads(raw)).__name__ for raw, _ in rows}
    assert forms == {"str", "int"}
    for raw, seconds in rows:
        assert parse_timestamp(json.loads(raw), now=0.0) == float(seconds), raw


@pytest.mark.parametrize("doc, heading", [(README, "### The record format"),
                                          (CONFIGURATION, "### Record format")])
def test_documented_records_parse_as_documented(doc: str, heading: str) -> None:
    text = section(doc, heading)
    pred, label = json_lines(text)
    assert "confidence" not in pred  # the example shows the derivation
    r = parse_predictions([json.dumps(pred).encode()], RecordSpec(), now=0.0)
    assert not r.invalid and len(r.batch) == 1
    probs = pred["probabilities"]
    assert isinstance(probs, dict)
    assert r.batch.confidence[0] == max(probs.values()) == 0.91
    assert "0.91" in text  # the text says what the confidence comes out as
    assert r.batch.timestamp[0] == 1795687200.0
    lr = parse_labels([json.dumps(label).encode()], RecordSpec(), now=0.0)
    assert not lr.invalid and lr.batch.timestamp[0] > r.batch.timestamp[0]  # the label came later


@pytest.mark.parametrize("doc, heading", [(README, "### The record format"),
                                          (CONFIGURATION, "### Record format")])
def test_the_rules_are_stated(doc: str, heading: str) -> None:
    text = " ".join(section(doc, heading).split())
    for phrase in ("RFC 3339", "epoch seconds", "milliseconds", "above 1e11", "`probabilities`",
                   "derived from `probabilities`", '`"unknown"`', "once per source"):
        assert phrase in text, phrase


def test_missing_version_is_logged_once_per_source(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.core.pipeline")
    files = {name: tmp_path / f"{name}.jsonl" for name in ("a", "b", "versioned")}
    config = Config(
        global_=GlobalConfig(windows=(Window("1h", 3600.0),)),
        models=(ModelConfig(name="m", classes=("0", "1")),),
        sources=tuple(FileSourceConfig(name=n, kind="predictions", path=str(f), model="m")
                      for n, f in files.items()),
    )
    clock = FakeClock(1_800_000_000.0)
    p = Pipeline(config, clock)
    for cycle in range(3):
        for name, f in files.items():
            version = {"model_version": "7"} if name == "versioned" else {}
            with f.open("a") as out:
                out.write(json.dumps({"id": f"{name}{cycle}", "prediction": 1, **version}) + "\n")
        p.run_cycle()
        clock.t += 1
    told = [getattr(r, "source", None) for r in caplog.records if '"unknown"' in r.getMessage()]
    assert told == ["a", "b"]
    versions = sorted(v for (_, v) in p.versions)
    assert versions == ["7", "unknown"]
    assert not math.isnan(p.versions[("m", "unknown")].first_seen)
    for s in p.sources:
        s.close()
