"""Part 2: per-poll cost against window size (flat is the goal: incremental update/revert).

A binary model with 10 numeric drift features (learned reference, PSI + KS) and the default
windows (1h, 24h). Its 24h window is first filled with N predictions and their N labels,
stamped evenly over the last 24 hours (so the 1h window holds N/24). Then every measured poll
is one steady-state cycle of the pipeline: the clock moves on by the time in which 10,000
events leave the 24h window, a batch of 10,000 new predictions arrives, and the 10,000 labels
of the previous batch, then ``advance``, ``build_snapshot`` and ``render``. Parsing is not
included (part 1 covers it): the batches are the columnar ones the parser would produce.

Reported per N: median and mean of the measured polls, and the ratio of the 1M median to the
10k median (target <= 1.5).

    python -m bench.poll_cost [--quick] [--sizes 10000,100000,1000000] [--polls 12] [--profile]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench import batch_config, binary_model, label_batch, make_events, prediction_batch, print_table
from exporter.core.pipeline import Pipeline
from exporter.report import catalogue
from exporter.report.snapshot import render

BATCH = 10_000
DAY = 86400.0


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fill(n: int, batch: int, polls: int, seed: int = 7) -> tuple[Pipeline, Any, Any, float, float]:
    t_fill = 1_800_000_000.0
    model = binary_model()
    clock = FakeClock(t_fill)
    p = Pipeline(batch_config(model), clock, sources=[])
    old = make_events(n, seed, t_end=t_fill, span=DAY)
    dt = DAY * batch / n
    new = make_events(batch * (polls + 1), seed + 1, t_end=t_fill + dt * (polls + 1), span=dt * (polls + 1), start=n)
    step = 100_000
    for s in range(0, n, step):
        rows = slice(s, min(n, s + step))
        p.apply_predictions("bench", prediction_batch(old, model.name, rows), t_fill)
        # every prediction but the last batch is labelled: those wait for the first measured poll
        lab = slice(s, min(n - batch, s + step))
        if lab.stop > lab.start:
            p.apply_labels("bench", label_batch(old, lab), t_fill)
    p.advance(t_fill)
    p.build_report(t_fill)
    return p, old, new, t_fill, dt


def measure(n: int, polls: int = 12, warmup: int = 2, batch: int = BATCH, profile: bool = False) -> dict[str, Any]:
    p, old, new, t_fill, dt = fill(n, batch, polls + warmup)
    model = "fraud"
    vs = p.versions[(model, "3")]
    times = []
    stages = np.zeros(4)
    profiler = None
    for j in range(polls + warmup):
        now = t_fill + dt * (j + 1)
        p.clock.t = now  # type: ignore[attr-defined]
        pb = prediction_batch(new, model, slice(j * batch, (j + 1) * batch))
        lb = label_batch(old, slice(n - batch, n)) if j == 0 else label_batch(new, slice((j - 1) * batch, j * batch))
        if profile and j == warmup:
            from pyinstrument import Profiler
            profiler = Profiler(interval=0.0005)
            profiler.start()
        t0 = time.perf_counter()
        p.apply_predictions("bench", pb, now)
        t1 = time.perf_counter()
        p.apply_labels("bench", lb, now)
        t2 = time.perf_counter()
        p.advance(now)
        t3 = time.perf_counter()
        render(catalogue.families(p.build_report(now)))
        t4 = time.perf_counter()
        if j >= warmup:
            times.append(t4 - t0)
            stages += (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False))
    s24 = vs.window_stats(1)
    w24 = s24.predictions
    assert abs(w24 - n) <= batch + 1 + n // 60, (w24, n)  # the oldest 24-minute bucket may have left
    return {
        "window_events": n, "window_24h_predictions": w24, "window_24h_outcomes": s24.labeled,
        "buckets": vs.bucket_count(),
        "pending": p.joiner.pending_count(model), "batch": batch, "polls": polls,
        "median_s": float(np.median(times)), "mean_s": float(np.mean(times)), "max_s": float(np.max(times)),
        "stages_mean_s": dict(zip(("predictions", "labels", "advance", "snapshot+render"),
                                  (stages / len(times)).round(5).tolist(), strict=True)),
    }


def run(quick: bool = False, sizes: tuple[int, ...] | None = None, polls: int | None = None,
        profile: bool = False) -> dict[str, Any]:
    sizes = sizes or ((10_000, 100_000) if quick else (10_000, 100_000, 1_000_000))
    polls = polls or (5 if quick else 12)
    results = [measure(n, polls, profile=profile) for n in sizes]
    base = results[0]["median_s"]
    rows = []
    for r in results:
        r["ratio_to_smallest"] = r["median_s"] / base
        st = r["stages_mean_s"]
        rows.append([f"{r['window_events']:,}", f"{r['median_s'] * 1e3:.1f}", f"{r['mean_s'] * 1e3:.1f}",
                     f"{r['max_s'] * 1e3:.1f}", f"{r['ratio_to_smallest']:.2f}x",
                     " ".join(f"{k}={v * 1e3:.1f}" for k, v in st.items())])
    print_table(f"2. Per-poll cost of a {BATCH:,}-prediction + {BATCH:,}-label batch vs window size (ms)",
                ["24h window", "median", "mean", "max", "vs smallest", "stage means (ms)"], rows)
    return {"poll_cost": results, "ratio_largest_to_smallest": results[-1]["median_s"] / base,
            "target": "ratio 1M/10k <= 1.5"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="windows of 10k and 100k only, 5 polls")
    ap.add_argument("--sizes", help="comma-separated window sizes")
    ap.add_argument("--polls", type=int)
    ap.add_argument("--profile", action="store_true", help="pyinstrument profile of the measured polls")
    a = ap.parse_args()
    sizes = tuple(int(x) for x in a.sizes.split(",")) if a.sizes else None
    run(a.quick, sizes, a.polls, a.profile)


if __name__ == "__main__":
    main()
