"""Hostile input at the file source: the exporter stays up, memory stays bounded, every bad
record is counted exactly once by reason, and the valid records around them give exact numbers.

A seeded (derandomized) hypothesis fuzzer appends valid and malformed records (the vocabulary of
``tests.sources.hostile``) to real files tailed by ``FileTailSource``, cut into chunks at
arbitrary byte positions, always through ``Pipeline``. Cases that can kill the interpreter (a
C-level crash on deeply nested JSON) run in a child process, so a crash fails one test instead
of the whole run.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tempfile
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.core.pipeline import Pipeline
from exporter.report import catalogue
from exporter.report.snapshot import render
from exporter.sources import FileTailSource
from tests.helpers import FakeClock, append
from tests.sources.hostile import (
    DEEP_CHILD,
    LABEL_BASE,
    LIMIT,
    PRED_BASE,
    T0,
    T0_MS,
    TS_STYLES,
    Bad,
    Truth,
    bad_labels,
    bad_preds,
    check,
    config,
    dumps,
    field_bad_labels,
    field_bad_preds,
    fuzz,
    invalid_of,
    samples,
    short,
    ts_value,
    val,
    valid_labels,
    valid_pred_strategy,
    valid_preds,
)

# --- file sources ----------------------------------------------------------------------------


@dataclass
class Stream:
    """Lines to append to one file, cut into chunks at arbitrary byte positions."""

    lines: list[bytes] = field(default_factory=list)

    def __repr__(self) -> str:
        return "Stream([" + ", ".join(short(line, 80) for line in self.lines) + "])"

    def chunks(self, cuts: list[int]) -> list[bytes]:
        data = b"".join(line + b"\n" for line in self.lines)
        bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def file_scenario(draw: st.DrawFn) -> tuple[Truth, Stream, Stream, list[bytes], list[int], list[int]]:
    truth = Truth("m")
    preds, labels, late = Stream(), Stream(), []
    valid_lines: list[bytes] = []
    # "objects": every line a JSON object (blocks of 64+ such lines take the vectorised path)
    # "uniform": every record written the same way, so blocks of 64+ lines take the vectorised
    # path, and only mistakes that path judges itself (values of the right JSON type)
    mode = draw(st.sampled_from(["mixed", "objects", "uniform"]))
    kinds = {"mixed": ["ok", "ok", "bad", "bad", "dup"], "objects": ["ok"] * 6 + ["bad", "dup"],
             "uniform": ["ok"] * 8 + ["bad", "dup"]}
    pred_strategy, bad_strategy = valid_preds, bad_preds if mode == "mixed" else field_bad_preds
    if mode == "uniform":
        forms = {"cls_form": draw(st.integers(0, 2)), "version_form": draw(st.integers(0, 2)),
                 "conf_style": draw(st.sampled_from(["confidence", "both"])), "nest": 0, "unicode_id": False,
                 "ts_style": draw(st.sampled_from(TS_STYLES))}
        pred_strategy = valid_pred_strategy(**forms)
        text_ts = forms["ts_style"] in ("text", "rfc3339", "offset")
        bad_strategy = st.one_of(
            st.just(Bad("missing_id", drop=("id",))),
            st.just(Bad("missing_prediction", drop=("prediction",))),
            st.sampled_from([-0.5, 1.5, 2.0, 1e300]).map(lambda v: Bad("invalid_confidence", changes=(
                ("confidence", v), ("prediction", [1, "1", 1.0][forms["cls_form"]]),
                ("timestamp", ts_value(T0_MS - 5000, forms["ts_style"]))))),
            st.sampled_from([2, 7]).map(lambda v: Bad("unknown_class", changes=(
                ("prediction", [v, str(v), float(v)][forms["cls_form"]]),
                ("timestamp", ts_value(T0_MS - 5000, forms["ts_style"]))))),
            st.sampled_from(["yesterday", "2026-02-30T00:00:00Z"] if text_ts else [0.0]).map(
                lambda v: Bad("invalid_timestamp" if text_ts else None, changes=(("timestamp", v),))),
        ).filter(lambda b: b.reason is not None)
    size = draw(st.integers(0, 200))
    for kind in draw(st.lists(st.sampled_from(kinds[mode]), min_size=size, max_size=size)):
        n = len(preds.lines)
        if kind == "ok":
            vp = draw(pred_strategy)
            rid = f"p{n}" + ("-ü✓" if vp.unicode_id else "")
            line = vp.line(rid)
            truth.preds[rid] = (vp.version, vp.cls, vp.confidence(), vp.ts_ms / 1000)
            valid_lines.append(line)
            truth.count("preds", None)
        elif kind == "dup" and valid_lines:
            line = draw(st.sampled_from(valid_lines))
            truth.count("preds", "duplicate")
        else:
            bad = draw(bad_strategy)
            line = bad.line(f"xp{n}", PRED_BASE)
            if bad.reason is not None:
                truth.count("preds", bad.reason)
        preds.lines.append(line)

    pred_ids = list(truth.preds)
    label_lines: list[bytes] = []
    size = draw(st.integers(0, 150))
    kinds = {"mixed": ["ok", "ok", "orphan", "bad", "bad", "dup"], "objects": ["ok"] * 6 + ["orphan", "bad", "dup"],
             "uniform": ["ok"] * 8 + ["orphan", "dup"]}
    bad_strategy = bad_labels if mode == "mixed" else field_bad_labels
    for kind in draw(st.lists(st.sampled_from(kinds[mode]), min_size=size, max_size=size)):
        n = len(labels.lines)
        if kind == "ok" and len(truth.labels) < len(pred_ids):
            rid = draw(st.sampled_from([i for i in pred_ids if i not in truth.labels]))
        elif kind == "orphan":
            rid = f"o{n}"
        elif kind == "dup" and label_lines:
            labels.lines.append(draw(st.sampled_from(label_lines)))
            truth.count("labels", "duplicate")
            continue
        else:
            bad = draw(bad_strategy)
            labels.lines.append(bad.line(f"xl{n}", LABEL_BASE))
            if bad.reason is not None:
                truth.count("labels", bad.reason)
            continue
        vl = draw(valid_labels)
        line = vl.line(rid)
        truth.labels[rid] = (vl.cls, vl.ts_ms / 1000)
        truth.count("labels", None)
        label_lines.append(line)
        labels.lines.append(line)
    # labels of a class the model does not have, for predictions that arrived before them
    unlabelled = [i for i in pred_ids if i not in truth.labels]
    for rid in draw(st.lists(st.sampled_from(unlabelled), unique=True, max_size=3)) if unlabelled else []:
        late.append(dumps({"id": rid, "label": draw(st.sampled_from(["7", 7, "yes"]))}))
        truth.count("labels", "unknown_class")
    cuts = st.lists(st.integers(0, 1 << 30), max_size=4)
    return truth, preds, labels, late, draw(cuts), draw(cuts)


@fuzz(60)
@given(file_scenario())
def test_file_sources_fuzzed(scenario: tuple[Truth, Stream, Stream, list[bytes], list[int], list[int]]) -> None:
    truth, preds, labels, late, pred_cuts, label_cuts = scenario
    windows = {"10m": 600.0, "1h": 3600.0}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pf, lf = d / "preds.jsonl", d / "labels.jsonl"
        pf.touch()
        lf.touch()
        cfg = config([
            {"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m",
             "max_line_bytes": LIMIT},
            {"name": "labels", "kind": "labels", "type": "file", "path": str(lf), "max_line_bytes": LIMIT},
        ], list(windows))
        clock = FakeClock(T0)
        sources = [FileTailSource(s) for s in cfg.sources]
        p = Pipeline(cfg, clock, sources=sources)
        pc, lc = preds.chunks(pred_cuts), labels.chunks(label_cuts)
        try:
            for i in range(max(len(pc), len(lc))):
                if i < len(pc):
                    append(pf, pc[i])
                if i < len(lc):
                    append(lf, lc[i])
                p.run_cycle()
                clock.t += 1
            append(lf, b"".join(line + b"\n" for line in late))
            p.run_cycle()
            check(p, truth, windows, clock.t, sources={"preds": "predictions", "labels": "labels"})
        finally:
            for s in sources:
                s.close()


def test_huge_line_streams_past_with_bounded_memory(tmp_path: Path) -> None:
    """A 10 MB line (over the default 1 MiB limit) written in two halves between polls is
    skipped as it streams past: counted once, never held whole, the lines around it kept."""
    pf = tmp_path / "preds.jsonl"
    cfg = config([{"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m"}], ["1h"])
    line_size = 10 << 20
    huge = dumps({"id": "huge", "prediction": 1, "pad": "x" * line_size})
    before = b"".join(dumps({"id": f"a{i}", "prediction": i % 2, "confidence": 0.5}) + b"\n" for i in range(100))
    after = b"".join(dumps({"id": f"b{i}", "prediction": 1, "confidence": 0.5}) + b"\n" for i in range(100))
    pf.write_bytes(before + huge[: line_size // 2])
    src = FileTailSource(cfg.sources[0])
    p = Pipeline(cfg, FakeClock(T0), sources=[src])
    p.run_cycle()  # warm-up: imports, first allocations
    tracemalloc.start()
    try:
        append(pf, huge[line_size // 2:] + b"\n" + after)
        tracemalloc.reset_peak()
        p.run_cycle()
        p.run_cycle()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        src.close()
    stats = p.source_stats["preds"]
    assert stats.records == 201
    assert dict(stats.invalid) == {"line_too_long": 1}
    assert p.joiner.pending_count("m") == 200
    # bounded by the line limit (1 MiB) and the read chunk, not by the line
    assert peak < line_size // 2, f"peak {peak / 2**20:.1f} MiB while skipping a {line_size >> 20} MiB line"



@pytest.mark.parametrize(("kind", "depth", "n_good"), [
    ("file", 100_000, 10),  # a small block
    ("file", 2_000, 100),  # guarded before the block decoder sees it: the per-record parser
    ("file", 100_000, 100),
])
def test_deeply_nested_json_is_invalid_json_not_a_crash(kind: str, depth: int, n_good: int) -> None:
    r = subprocess.run([sys.executable, "-c", DEEP_CHILD, kind, str(depth), str(n_good)],
                       capture_output=True, text=True, timeout=120)
    tail = r.stderr[-1500:]
    assert r.returncode == 0, f"{kind} source, nesting {depth}: child exited {r.returncode}\n{tail}"
    assert json.loads(r.stdout) == {"records": n_good + 1, "invalid": {"invalid_json": 1}, "pending": n_good}


def test_lone_surrogate_in_a_label_value_does_not_freeze_metrics(tmp_path: Path) -> None:
    """``"\\ud800"`` is valid JSON but not encodable text: as a model version (or a discovered
    class) it must not reach a label value that the exposition then cannot encode."""
    pf = tmp_path / "preds.jsonl"
    pf.write_bytes(b'{"id": "a", "prediction": 1, "confidence": 0.5, "model_version": "\\ud800"}\n'
                   b'{"id": "b", "prediction": 1, "confidence": 0.5, "model_version": "1"}\n')
    cfg = config([{"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m"}], ["1h"])
    src = FileTailSource(cfg.sources[0])
    p = Pipeline(cfg, FakeClock(T0), sources=[src])
    try:
        p.run_cycle()
        text = render(catalogue.families(p.report)).decode("utf-8")  # what every scrape serves
    finally:
        src.close()
    assert 'mlmon_window_predictions{model="m",model_version="1",window="1h"} 1.0' in text


def test_label_of_unknown_class_is_counted_the_same_in_either_order(tmp_path: Path) -> None:
    """A label whose class the model does not have is the label source's invalid record, and
    does not use up its prediction, whether it arrives before or after that prediction."""
    results = []
    for order in ("prediction first", "label first"):
        d = tmp_path / order.replace(" ", "-")
        d.mkdir()
        pf, lf = d / "p.jsonl", d / "l.jsonl"
        pf.touch()
        lf.touch()
        cfg = config([{"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m"},
                      {"name": "labels", "kind": "labels", "type": "file", "path": str(lf)}], ["1h"])
        sources = [FileTailSource(s) for s in cfg.sources]
        clock = FakeClock(T0)
        p = Pipeline(cfg, clock, sources=sources)
        pred = (pf, b'{"id": "a", "prediction": 1, "confidence": 0.9}\n')
        bad = (lf, b'{"id": "a", "label": "7"}\n')
        steps = [pred, bad] if order == "prediction first" else [bad, pred]
        for path, data in [*steps, (lf, b'{"id": "a", "label": 1}\n')]:
            append(path, data)
            p.run_cycle()
            clock.t += 1
        m = samples(p)
        results.append((order, {s: dict(invalid_of(m, s)) for s in ("preds", "labels")},
                        val(m, "mlmon_correct_predictions_total", model="m", model_version="unknown")))
        for s in sources:
            s.close()
    want = {"preds": {}, "labels": {"unknown_class": 1}}
    assert results == [("prediction first", want, 1.0), ("label first", want, 1.0)]
