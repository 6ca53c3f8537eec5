"""The join's three bounds, seen from outside: real files, the real pipeline, the exposed metrics.

Per model, predictions waiting for a label, labels waiting for a prediction and the ids already
joined are each capped at ``join.max_pending``; the oldest go first and every one is counted:
``mlmon_expired_predictions_total``, ``mlmon_orphan_labels_total``,
``mlmon_exporter_join_forgotten_ids_total``. Which entries went is checked by what happens to
them next: a label for an evicted prediction waits as an orphan, a prediction for an evicted
label waits for another label, a second label for a forgotten id waits instead of being a
duplicate. Numbers are worked by hand in the comments.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.config import parse_config
from exporter.core.pipeline import Pipeline
from exporter.report import catalogue
from exporter.report.snapshot import render
from exporter.runtime.checkpoint import Checkpointer
from exporter.sources import FileTailSource
from tests.helpers import FakeClock, Samples, text_samples

T0 = 1_767_225_600.0
Metrics = Samples


class Harness:
    """A pipeline reading three real files: predictions and labels of model ``m``, and labels naming no model."""

    def __init__(self, d: Path, max_pending: int, ttl: str = "1h", clock: FakeClock | None = None) -> None:
        self.files = {name: d / f"{name}.jsonl" for name in ("preds", "labels", "anylabels")}
        for f in self.files.values():
            f.touch()
        self.cfg = parse_config({
            "global": {"windows": ["1h"]},
            "models": [{"name": "m", "classes": ["0", "1"], "baseline": {"accuracy": 0.9},
                        "join": {"ttl": ttl, "max_pending": max_pending}}],
            "sources": [
                {"name": "preds", "kind": "predictions", "type": "file", "path": str(self.files["preds"]),
                 "model": "m"},
                {"name": "labels", "kind": "labels", "type": "file", "path": str(self.files["labels"]), "model": "m"},
                {"name": "anylabels", "kind": "labels", "type": "file", "path": str(self.files["anylabels"])},
            ],
        })
        self.clock = clock or FakeClock(T0)
        self.sources = [FileTailSource(s) for s in self.cfg.sources]
        self.p = Pipeline(self.cfg, self.clock, sources=self.sources)

    def write(self, name: str, records: list[dict[str, Any]]) -> None:
        with self.files[name].open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)

    def predict(self, *ids: str) -> None:
        self.write("preds", [{"id": i, "prediction": 1, "confidence": 0.9} for i in ids])

    def label(self, *ids: str, source: str = "labels") -> None:
        self.write(source, [{"id": i, "label": 1} for i in ids])

    def cycle(self) -> Metrics:
        self.p.run_cycle()
        self.clock.t += 1
        return text_samples(render(catalogue.families(self.p.report)))

    def close(self) -> None:
        for s in self.sources:
            s.close()


def total(m: Metrics, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels`` (e.g. over model versions)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in m.items() if n == name and want <= ls)


def join_numbers(m: Metrics) -> dict[str, float]:
    return {
        "joined": total(m, "mlmon_labeled_predictions_total", model="m"),
        "predictions": total(m, "mlmon_predictions_total", model="m"),
        "pending": total(m, "mlmon_exporter_join_pending", model="m"),
        "waiting": total(m, "mlmon_exporter_join_waiting_labels", model="m"),
        "waiting_unnamed": total(m, "mlmon_exporter_join_waiting_labels", model=""),
        "expired": total(m, "mlmon_expired_predictions_total", model="m"),
        "orphans": total(m, "mlmon_orphan_labels_total", model="m"),
        "orphans_unnamed": total(m, "mlmon_orphan_labels_total", model=""),
        "forgotten": total(m, "mlmon_exporter_join_forgotten_ids_total", model="m"),
        "dup_predictions": total(m, "mlmon_exporter_invalid_records_total", source="preds", reason="duplicate"),
        "dup_labels": total(m, "mlmon_exporter_invalid_records_total", source="labels", reason="duplicate"),
    }


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path, max_pending=4)
    yield h
    h.close()


def test_pending_predictions_beyond_the_cap_expire_oldest_first(harness: Harness) -> None:
    harness.predict(*[f"p{i}" for i in range(7)])
    m = join_numbers(harness.cycle())
    assert (m["pending"], m["expired"], m["predictions"]) == (4, 3, 7)  # p0, p1, p2 pushed out
    # labels for every one: p3..p6 join; the labels of p0..p2 find nothing and wait
    harness.label(*[f"p{i}" for i in range(7)])
    m = join_numbers(harness.cycle())
    assert (m["joined"], m["pending"], m["waiting"], m["orphans"]) == (4, 0, 3, 0)


def test_waiting_labels_beyond_the_cap_are_orphans_oldest_first(harness: Harness) -> None:
    harness.label(*[f"x{i}" for i in range(10)])
    m = join_numbers(harness.cycle())
    assert (m["waiting"], m["orphans"]) == (4, 6)  # x0..x5 pushed out and counted
    harness.predict(*[f"x{i}" for i in range(10)])
    m = join_numbers(harness.cycle())
    # x6..x9 meet their labels; x0..x5 wait for labels that are gone
    assert (m["joined"], m["waiting"], m["pending"], m["orphans"], m["expired"]) == (4, 0, 4, 6, 2)


def test_labels_naming_no_model_share_a_buffer_capped_at_the_sum(harness: Harness) -> None:
    harness.label(*[f"u{i}" for i in range(7)], source="anylabels")
    m = join_numbers(harness.cycle())
    assert (m["waiting_unnamed"], m["orphans_unnamed"], m["waiting"]) == (4, 3, 0)  # one model: sum = 4
    harness.predict("u0", "u3", "u6")
    m = join_numbers(harness.cycle())
    assert (m["joined"], m["pending"], m["waiting_unnamed"]) == (2, 1, 2)  # u0 was pushed out


def test_joined_ids_beyond_the_cap_are_forgotten_oldest_first(harness: Harness) -> None:
    ids = [f"j{i}" for i in range(6)]
    harness.predict(*ids)
    harness.label(*ids)  # same cycle: predictions first, so all six join
    m = join_numbers(harness.cycle())
    assert (m["joined"], m["forgotten"], m["pending"], m["expired"]) == (6, 2, 0, 0)  # j0, j1 forgotten
    # a second label: remembered (j5) -> duplicate; forgotten (j0) -> cannot be told apart, it waits
    harness.label("j5", "j0")
    # a repeated prediction: remembered (j4) -> duplicate; forgotten (j1) -> a new prediction
    harness.predict("j4", "j1")
    m = join_numbers(harness.cycle())
    assert (m["dup_labels"], m["dup_predictions"]) == (1, 1)
    # j1's prediction is new and pending; the waiting label of j0 stays (its prediction is gone)
    assert (m["predictions"], m["pending"], m["joined"], m["waiting"]) == (7, 1, 6, 1)


def test_ttl_expiry_is_unchanged_by_the_caps(tmp_path: Path) -> None:
    h = Harness(tmp_path, max_pending=100, ttl="10s")
    try:
        h.predict("a", "b")
        h.label("z")
        h.cycle()  # at T0; clock then T0 + 1
        h.predict("c")
        h.label("a")  # joins: a remembered until T0 + 1 + 10
        for _ in range(9):
            m = join_numbers(h.cycle())
        assert (m["expired"], m["orphans"], m["pending"]) == (0, 0, 2)  # at T0 + 9
        m = join_numbers(h.cycle())  # at T0 + 10: b and the orphan z are due
        assert (m["expired"], m["orphans"], m["pending"], m["waiting"]) == (1, 1, 1, 0)
        h.label("a")  # at T0 + 11 a is due, but labels are applied before expiry: still a duplicate
        m = join_numbers(h.cycle())
        assert (m["expired"], m["dup_labels"], m["waiting"]) == (2, 1, 0)  # c (predicted at T0 + 1) expired
        h.label("a")  # at T0 + 12 a was forgotten by its TTL (not counted as forgotten early): it waits
        m = join_numbers(h.cycle())
        assert (m["expired"], m["dup_labels"], m["waiting"], m["forgotten"]) == (2, 1, 1, 0)
    finally:
        h.close()


def _restart_scenario(d: Path, restart: bool) -> dict[str, float]:
    """Part 1, optionally a checkpoint and a fresh process-like pipeline, then part 2."""
    clock = FakeClock(T0)
    h = Harness(d, max_pending=4, clock=clock)
    try:
        h.predict(*[f"p{i}" for i in range(6)])
        h.label(*[f"p{i}" for i in range(6)])  # 6 joined, p0 and p1 forgotten
        h.label("w0", "w1", "w2")  # wait for predictions
        h.label("u0", "u1", source="anylabels")
        h.cycle()
        if restart:
            ck = Checkpointer(d / "state")
            assert ck.save(h.p.export_state(), clock.t)
            h.close()
            h = Harness(d, max_pending=4, clock=clock)
            saved = ck.load()
            assert saved is not None
            h.p.restore_state(saved, clock.t)
        h.predict("w0", "w1", "w2", "u0", "p4", "p1")  # 4 join waiting labels, p4 duplicate, p1 new
        h.label("p5", "p0")  # p5 remembered: duplicate; p0 forgotten: waits
        return join_numbers(h.cycle())
    finally:
        h.close()


def test_restart_keeps_waiting_labels_and_joined_ids(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = _restart_scenario(tmp_path / "a", restart=False)
    restarted = _restart_scenario(tmp_path / "b", restart=True)
    assert restarted == straight
    assert straight == {
        "joined": 10, "predictions": 11, "pending": 1, "waiting": 1, "waiting_unnamed": 1,
        "expired": 0, "orphans": 0, "orphans_unnamed": 0,
        "forgotten": 2 + 4,  # 6 remembered after part 1 -> 4; +4 joined in part 2 -> 8 -> 4
        "dup_predictions": 1, "dup_labels": 1,
    }
