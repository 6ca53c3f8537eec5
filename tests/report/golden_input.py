"""The fixed, seeded input of the golden exposition (and of the checkpoint-compatibility fixture):
two models, four versions, drift features, a fixed and a learned baseline and invalid records of
many kinds, appended cycle by cycle on a fake clock; and the CPU features to switch off so every
x86-64 machine computes its numbers alike."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from exporter.config import parse_config
from exporter.runtime.app import Exporter
from tests.helpers import FakeClock

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CYCLES = 16  # past the fraud model's 2 m join TTL: expired predictions, orphan labels
STEP = 10.0  # seconds between cycles (the poll interval)


class StepTimer:
    """A timer that advances 1/256 s per reading, so every poll 'takes' 3/256 s (reading, parsing
    and applying, 1/256 s each: about 12 ms, exactly representable, so the histogram's sum stays
    exact however many polls it adds). One thread reads it: ``ingest_threads: 1`` below, since a
    parsing thread reading it meanwhile would make the steps depend on the interleaving."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1 / 256
        return self.t


def golden_config(tmp: Path) -> dict[str, Any]:
    return {
        "global": {"poll_interval": "10s", "windows": ["1m", "10m"], "version_idle_expiry": "1d",
                   "checkpoint_interval": "30s", "ingest_threads": 1},
        "models": [
            {"name": "fraud", "task": "binary", "classes": ["legit", "fraud"], "positive_class": "fraud",
             "max_versions": 2,
             "thresholds": {"accuracy": 0.8, "drift": 0.05, "confidence": 0.7, "min_samples": 20,
                            "severity": {"high": 0.1, "critical": 0.2}},
             "baseline": {"accuracy": 0.9},
             "join": {"ttl": "2m", "max_pending": 1000},
             "drift": {"features": ["amount", "country"], "reference_size": 30,
                       "methods": ["psi", "ks", "js", "chi2"]}},
            {"name": "sentiment", "task": "multiclass", "classes": ["neg", "neu", "pos"],
             "thresholds": {"min_samples": 10},
             "baseline": {"first_labeled": 25}, "join": {"ttl": "90s"},
             "drift": {"features": ["length"], "reference_size": 30, "methods": ["psi", "ks"]}},
        ],
        "sources": [
            {"name": "fraud-predictions", "kind": "predictions", "type": "file",
             "path": str(tmp / "fraud-*.jsonl"), "model": "fraud"},
            {"name": "sentiment-predictions", "kind": "predictions", "type": "file",
             "path": str(tmp / "sentiment-*.jsonl"), "model": "sentiment",
             "fields": {"model_version": "meta.version"}},
            {"name": "labels", "kind": "labels", "type": "file", "path": str(tmp / "labels-*.jsonl")},
        ],
        "history": {"directory": str(tmp / "history"), "interval": "1m"},
    }


def _line(record: Any) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def cycle_input(rng: random.Random, cycle: int, now: float,
                 owed: list[dict[str, Any]]) -> tuple[str, str, str]:
    """One cycle's appended text per file; ``owed`` carries labels into the next cycle."""
    fraud, sentiment, labels = [], [], [_line(r) for r in owed]
    owed.clear()
    for i in range(24):
        version = "1" if cycle < 6 or i % 2 else "2"
        p = round(0.9 * rng.random() ** 1.8 if version == "1" else 0.15 + 0.7 * rng.random(), 3)
        pred = "fraud" if p >= 0.5 else "legit"
        amount = round(20 + 30 * rng.random() ** 2 if version == "1" else 35 + 40 * rng.random(), 2)
        u = rng.random()
        country = ("de" if u < 0.5 else "fr" if u < 0.8 else "us") if version == "1" else \
            ("de" if u < 0.2 else "fr" if u < 0.5 else "us")
        rid = f"f{cycle}-{i}"
        fraud.append(_line({"id": rid, "model_version": version, "timestamp": round(now - 8 * rng.random(), 3),
                            "prediction": pred, "confidence": max(p, 1 - p),
                            "probabilities": {"legit": round(1 - p, 3), "fraud": p},
                            "features": {"amount": amount, "country": country}}))
        if rng.random() < 0.75:
            right = rng.random() < (0.9 if version == "1" else 0.65)
            truth = pred if right else ("legit" if pred == "fraud" else "fraud")
            owed.append({"id": rid, "label": truth, "model": "fraud", "timestamp": round(now + 4.0, 3)})
    for i in range(18):
        version = "a" if i % 3 else "b"
        weights = [w * rng.random() for w in ((4.0, 2.0, 1.0) if version == "a" else (1.0, 2.0, 4.0))]
        scores = [w / sum(weights) for w in weights]
        k = scores.index(max(scores))
        cls = ["neg", "neu", "pos"][k]
        rid = f"s{cycle}-{i}"
        sentiment.append(_line({"id": rid, "meta": {"version": version}, "timestamp": now - 1.0,
                                "prediction": cls, "confidence": round(float(scores[k]), 3),
                                "features": {"length": 5 + int(195 * rng.random())}}))
        if rng.random() < 0.6:
            truth = cls if rng.random() < 0.8 else ["neg", "neu", "pos"][(k + 1) % 3]
            owed.append({"id": rid, "label": truth, "timestamp": round(now + 2.0, 3)})
    # invalid records, a few of each kind, some every cycle
    fraud += ["not json\n", "[1, 2]\n", _line({"prediction": "fraud"}),
              _line({"id": f"f{cycle}-0", "prediction": "legit"}),  # a duplicate id
              _line({"id": f"bad{cycle}", "prediction": "maybe"}),
              _line({"id": f"c{cycle}", "prediction": "legit", "confidence": 1.5}),
              _line({"id": f"w{cycle}", "model_version": "1", "prediction": "legit", "confidence": 0.9,
                     "features": {"amount": "lots"}})]
    sentiment += [_line({"id": f"t{cycle}", "prediction": "neu", "timestamp": "yesterday"}),
                  _line({"id": f"u{cycle}", "prediction": "neu", "meta": {"version": "a"}, "features": {}}),
                  _line({"id": f"e{cycle}", "prediction": ""})]
    labels += [_line({"id": f"nobody{cycle}", "label": "pos"}), _line({"id": f"x{cycle}"}),
               _line({"id": f"y{cycle}", "label": "neu", "model": "nosuchmodel"}),
               _line({"id": f"z{cycle}", "label": "fraud", "model": "fraud"})]
    if cycle in (8, 9):  # after version 2 came: over max_versions
        fraud += [_line({"id": f"v{cycle}-{j}", "model_version": f"rare{j}", "prediction": "legit"}) for j in range(2)]
    return "".join(fraud), "".join(sentiment), "".join(labels)


def avx512_features() -> list[str]:
    """numpy's dispatched CPU features beyond AVX2 (their names vary across numpy versions)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__ as dispatch
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__ as dispatch
    return [f for f in dispatch if f.startswith("AVX512") or f == "X86_V4"]


def golden_exporter(tmp: Path, clock: FakeClock) -> Exporter:
    """An exporter of the golden configuration over ``tmp``, its polls timed by a ``StepTimer``."""
    exporter = Exporter(parse_config(golden_config(tmp)), "127.0.0.1:0", state_directory=tmp / "state", clock=clock)
    exporter.pipeline.timer = StepTimer()
    return exporter


def feed_golden_input(exporter: Exporter, clock: FakeClock, tmp: Path) -> None:
    """The ``CYCLES`` cycles of the golden input: append each cycle's lines, run the cycle, step the clock."""
    rng = random.Random(20260101)  # only .random(): its sequence is the same in every Python 3
    owed: list[dict[str, Any]] = []
    for cycle in range(CYCLES):
        for name, text in zip(("fraud-0", "sentiment-0", "labels-0"), cycle_input(rng, cycle, clock.t, owed),
                              strict=True):
            with (tmp / f"{name}.jsonl").open("a") as f:
                f.write(text)
        exporter.cycle()
        clock.t += STEP
