"""Part 1: ingest end to end (file -> parse -> join -> windows -> snapshot -> rendered text).

The real ``Pipeline`` with two ``FileTailSource`` s (predictions, labels) tails files that grow
by one chunk per cycle: before each cycle (untimed) chunk k of predictions and chunk k-1 of
labels are appended, so labels arrive one poll after their predictions and join pending ones,
as in production. Each timed cycle is ``run_cycle()`` (poll, parse, join, windows, Report)
plus the catalogue's families of the Report and their ``render``, which the exporter does once per cycle. No HTTP.

Beside it, over the same complete files and in the same run: a plain ``json.loads`` loop
(no validation, no join: the floor of a per-line Python design) and ``pyarrow.json.read_json``
(the practical parse limit on this machine, 2 threads). Reported: events/s (prediction and
label lines together), the ratios to both, CPU seconds per million events, and the parse stage
alone (bytes -> batch: the sources' ``BlockParser`` over the whole files, outside the pipeline).

Scenarios: ``binary`` (10 numeric drift features, PSI + KS), ``multiclass`` (5 classes with
probability vectors), ``nofeatures`` (binary, probabilities but no features; target 1M events/s).

    python -m bench.ingest [--quick] [--n N] [--chunk C] [--scenario binary|multiclass|nofeatures] [--profile]
                           [--ingest-threads 1|2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from typing import Any

import pyarrow.json as pa_json

from bench import (
    binary_model,
    file_config,
    fmt_rate,
    label_lines,
    make_events,
    multiclass_model,
    prediction_lines,
    print_table,
    timed,
    write_lines,
)
from exporter.config import GlobalConfig
from exporter.core.pipeline import Pipeline
from exporter.ingest.block_parser import Block, BlockParser
from exporter.ingest.records import RecordSpec
from exporter.report import catalogue
from exporter.report.snapshot import render

SCENARIOS = ("binary", "multiclass", "nofeatures")
DEFAULT_THREADS = GlobalConfig().ingest_threads


class StageClock:
    """Wall and CPU time per pipeline stage, by wrapping the callables the cycle goes through
    (CPU time is what to read on a shared machine: wall time there includes waiting for a core).
    CPU is the calling thread's: with ``ingest_threads: 2`` parsing runs on a thread of its own,
    beside the pipeline thread's stages, and the process's CPU would count both."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn: Any) -> Any:
        t, cpu = self.t, self.cpu

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                t[name] += time.perf_counter() - t0
                cpu[name] += time.thread_time() - c0

        return wrapper


def _instrument(p: Pipeline, clock: StageClock) -> list[tuple[Any, str, Any]]:
    """Wrap the stages; returns what to restore."""
    undo: list[tuple[Any, str, Any]] = []

    def patch(obj: Any, attr: str, name: str) -> None:
        orig = getattr(obj, attr)
        undo.append((obj, attr, orig))
        setattr(obj, attr, clock.wrap(name, orig))

    for src in p.sources:
        patch(src, "poll", "read")
    for parser in p._parsers.values():
        patch(parser, "parse", "parse")
    patch(p, "apply_predictions", "join+windows")
    patch(p, "apply_labels", "join+windows")
    patch(p, "advance", "advance")
    patch(p, "build_report", "snapshot")  # the cycle's Report (the stage's old name kept)
    return undo


def _undo(undo: list[tuple[Any, str, Any]]) -> None:
    for obj, attr, orig in reversed(undo):
        delattr(obj, attr) if attr in vars(obj) else setattr(obj, attr, orig)


def json_loop(paths: list[str]) -> int:
    n = 0
    loads = json.loads
    for path in paths:
        with open(path, "rb") as f:
            for line in f:
                loads(line)
                n += 1
    return n


def pyarrow_read(paths: list[str]) -> int:
    return sum(pa_json.read_json(path).num_rows for path in paths)


def parse_only(p: Pipeline, paths: list[str], native: bool = True) -> tuple[int, float, float]:
    """bytes -> batch alone: each source's own parser over its whole file, in 16 MiB blocks (what
    one poll reads); ``native=False``: without the compiled line scanner (msgspec alone). Returns
    rows parsed, the share a fast path took and the share the line scanner took."""
    rows = fast = scanned = 0
    for src, path in zip(p.sources, paths, strict=True):
        parser = BlockParser(src.config.kind, RecordSpec.from_source(src.config, p._specs[src.name].feature_names),
                             native=native)
        with open(path, "rb") as f:
            data = f.read()
        step = 16 << 20
        start = 0
        while start < len(data):
            end = data.rfind(b"\n", start, start + step) + 1 if start + step < len(data) else len(data)
            result, _ = parser.parse([Block(data[start:end], path, start)], 1e9)
            rows += len(result.batch)
            start = end
        fast += parser.fast_records
        scanned += parser.native_records
    return rows, fast / max(rows, 1), scanned / max(rows, 1)


def run_scenario(scenario: str, n: int, chunk: int, seed: int = 1, profile: bool = False,
                 threads: int = DEFAULT_THREADS) -> dict[str, Any]:
    model = {"binary": binary_model(), "multiclass": multiclass_model(),
             "nofeatures": binary_model(features=())}[scenario]
    ev = make_events(n, seed, n_classes=5 if scenario == "multiclass" else 2,
                     n_features=10 if scenario == "binary" else 0)
    preds = prediction_lines(ev)
    labels = label_lines(ev)
    with tempfile.TemporaryDirectory(prefix="mlmon-bench-") as tmp:
        pred_path, label_path = os.path.join(tmp, "predictions.jsonl"), os.path.join(tmp, "labels.jsonl")
        open(pred_path, "wb").close()
        open(label_path, "wb").close()
        p = Pipeline(file_config(model, pred_path, label_path, threads))
        stages = StageClock()
        undo = _instrument(p, stages)
        profiler = None
        if profile:
            from pyinstrument import Profiler
            profiler = Profiler(interval=0.001)
        total_wall = total_cpu = 0.0
        render_t = 0.0
        cycles = 0
        nbytes = 0
        starts = list(range(0, n, chunk))

        def caught_up() -> bool:
            vs = p.versions.get((model.name, ev.version))
            return vs is not None and int(vs.predicted_total.sum()) == n and int(vs.labeled_total.sum()) == n

        k = 0
        # one cycle per chunk, then more until the sources have worked off their backlog
        # (a poll reads at most max_bytes_per_poll, 4 MiB by default, per source)
        while k <= len(starts) or (not caught_up() and k < len(starts) + 100):
            if k < len(starts):
                nbytes += write_lines(pred_path, preds[starts[k]:starts[k] + chunk])
            if 0 < k <= len(starts):
                s = starts[k - 1]
                nbytes += write_lines(label_path, labels[s:s + chunk])
            k += 1
            if profiler is not None:
                profiler.start()
            with timed() as t:
                report = p.run_cycle()
                t0 = time.perf_counter()
                text = render(catalogue.families(report))  # the runtime's part of the cycle
                render_t += time.perf_counter() - t0
            if profiler is not None:
                profiler.stop()
            total_wall += t.wall
            total_cpu += t.cpu
            cycles += 1
        _undo(undo)
        vs = p.versions[(model.name, ev.version)]
        assert int(vs.predicted_total.sum()) == n, (int(vs.predicted_total.sum()), n)
        assert int(vs.labeled_total.sum()) == n, (int(vs.labeled_total.sum()), n)
        assert p.joiner.pending_count(model.name) == 0
        events = 2 * n
        with timed() as tj:
            assert json_loop([pred_path, label_path]) == events
        with timed() as ta:
            assert pyarrow_read([pred_path, label_path]) == events
        with timed() as tp:
            parsed, fast_share, native_share = parse_only(p, [pred_path, label_path])
        assert parsed == events
        with timed() as tm:
            parsed, _, _ = parse_only(p, [pred_path, label_path], native=False)
        assert parsed == events
        result = {
            "scenario": scenario, "ingest_threads": p.config.global_.ingest_threads,
            "n_predictions": n, "n_labels": n, "events": events, "chunk": chunk,
            "cycles": cycles, "bytes": nbytes, "series": text.count(b"\n") - 2 * text.count(b"# TYPE"),
            "ingest_wall_s": total_wall, "ingest_cpu_s": total_cpu,
            "ingest_events_per_s": events / total_wall,
            "ingest_cpu_s_per_million": total_cpu / events * 1e6,
            "json_loop_cpu_s_per_million": tj.cpu / events * 1e6,
            "parse_only_wall_s": tp.wall, "parse_only_cpu_s": tp.cpu,
            "parse_only_events_per_s": events / tp.wall, "parse_only_ratio_vs_json_loop": tj.wall / tp.wall,
            "parse_only_decoder_share": fast_share, "parse_only_line_scanner_share": native_share,
            "parse_only_msgspec_wall_s": tm.wall, "parse_only_msgspec_cpu_s": tm.cpu,
            "parse_only_msgspec_cpu_s_per_million": tm.cpu / events * 1e6,
            "json_loop_wall_s": tj.wall, "json_loop_events_per_s": events / tj.wall,
            "pyarrow_wall_s": ta.wall, "pyarrow_cpu_s": ta.cpu, "pyarrow_events_per_s": events / ta.wall,
            "ratio_vs_json_loop": tj.wall / total_wall,
            "ratio_vs_pyarrow": ta.wall / total_wall,
            "stages_s": {**{k: round(v, 4) for k, v in stages.t.items()}, "render": round(render_t, 4)},
            "stages_cpu_s": {k: round(v, 4) for k, v in stages.cpu.items()},
            "ratio_vs_json_loop_cpu": tj.cpu / total_cpu,
            "parse_only_cpu_s_per_million": tp.cpu / events * 1e6,
            "parse_only_ratio_vs_json_loop_cpu": tj.cpu / tp.cpu,
        }
        # the parse stage inside the cycles (blocks as the file sources read them)
        result["parse_stage_events_per_s"] = events / max(stages.t["parse"], 1e-9)
        if profiler is not None:
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        return result


def run(quick: bool = False, n: int | None = None, chunk: int | None = None,
        scenarios: tuple[str, ...] = SCENARIOS, profile: bool = False, threads: int = DEFAULT_THREADS,
        ) -> dict[str, Any]:
    n = n or (50_000 if quick else 1_000_000)
    chunk = chunk or (10_000 if quick else 100_000)
    results = [run_scenario(s, n, chunk, profile=profile, threads=threads) for s in scenarios]
    rows = []
    for r in results:
        rows.append([r["scenario"], f"{r['n_predictions']:,}+{r['n_labels']:,}", fmt_rate(r["ingest_events_per_s"]),
                     f"{r['ingest_cpu_s_per_million']:.2f}", fmt_rate(r["json_loop_events_per_s"]),
                     f"{r['json_loop_cpu_s_per_million']:.2f}", fmt_rate(r["pyarrow_events_per_s"]),
                     f"{r['ratio_vs_json_loop']:.2f}x", fmt_rate(r["parse_only_events_per_s"]),
                     f"{r['parse_only_ratio_vs_json_loop']:.2f}x", f"{r['parse_only_cpu_s_per_million']:.2f}",
                     f"{r['parse_only_msgspec_cpu_s_per_million']:.2f}",
                     " ".join(f"{k}={v:.2f}" for k, v in r["stages_cpu_s"].items())])
    print_table("1. Ingest end to end (events/s = prediction + label lines per wall second; CPU s per 1M events)",
                ["scenario", "events", "pipeline", "CPU s/M", "json.loads", "CPU s/M", "pyarrow", "vs loop",
                 "parse only", "vs loop", "CPU s/M", "msgspec alone CPU s/M", "stage CPU seconds"], rows)
    return {"ingest": results,
            "target": "pipeline >= 5x json.loads loop (binary, multiclass); >= 1M events/s (nofeatures)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50k predictions + 50k labels")
    ap.add_argument("--n", type=int, help="predictions (and as many labels)")
    ap.add_argument("--chunk", type=int, help="lines appended per cycle (default 100k, quick 10k)")
    ap.add_argument("--scenario", choices=SCENARIOS, action="append")
    ap.add_argument("--profile", action="store_true", help="pyinstrument profile of the timed cycles")
    ap.add_argument("--ingest-threads", type=int, default=DEFAULT_THREADS, choices=(1, 2),
                    help=f"global.ingest_threads of the pipeline (default {DEFAULT_THREADS}, as the exporter's)")
    a = ap.parse_args()
    run(a.quick, a.n, a.chunk, tuple(a.scenario or SCENARIOS), a.profile, a.ingest_threads)


if __name__ == "__main__":
    main()
