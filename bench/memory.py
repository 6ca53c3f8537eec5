"""Part 4: bytes per pending (unlabelled) prediction in the Joiner, at 1,000,000 pending.

One model's ``Joiner`` receives N predictions in batches of 10,000 (ids like
``req-0000000042``, a version, class index, confidence, timestamp: the columns the pipeline
buffers) and no label. Each batch's inputs are made just before it is added and dropped right
after, so what remains is what the Joiner keeps (the id strings included, if it kept them).

Measured in two fresh processes, so neither disturbs the other:

* **RSS delta** (``/proc/self/statm``) from before the first batch to after the last, divided
  by N, after ``malloc_trim`` and arrow's ``release_unused`` (so freed blocks the allocators
  keep around are not counted; slack inside live arrays is);
* **tracemalloc** (Python and numpy allocations) plus arrow's memory pool
  (``pyarrow.total_allocated_bytes``, which tracemalloc does not see), divided by N.

    python -m bench.memory [--quick] [--n N]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import subprocess
import sys
import tracemalloc
from typing import Any

import numpy as np
import pyarrow as pa

from bench import print_table, rss_bytes
from exporter.core.join import Joiner

BATCH = 10_000


def _batches(n: int) -> Any:
    rng = np.random.default_rng(3)
    for start in range(0, n, BATCH):
        k = min(BATCH, n - start)
        ids = np.empty(k, dtype=object)
        ids[:] = [f"req-{i:010d}" for i in range(start, start + k)]
        cols = {
            "version": np.full(k, "3", dtype=object),
            "pred_idx": rng.integers(0, 2, k).astype(np.int32),
            "confidence": rng.random(k),
            "pred_ts": 1.8e9 + np.arange(start, start + k, dtype=np.float64),
        }
        yield ids, cols


def _release() -> None:
    """Hand freed memory back to the OS, so RSS shows what is live (glibc keeps freed blocks)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def child(mode: str, n: int) -> dict[str, Any]:
    # every code path once first, so that lazy imports and caches are not charged to the entries
    warm = Joiner({"m": (1.0, 10)})
    for ids, cols in _batches(2 * BATCH):
        warm.add_predictions("m", ids, cols, now=0.0)
        warm.locate_labels(ids[:10], np.full(10, None, dtype=object))
    warm.expire(10.0)
    del warm, ids, cols
    j = Joiner({"m": (72 * 3600.0, 2 * n)})
    _release()
    if mode == "trace":
        tracemalloc.start()
    rss0, arrow0 = rss_bytes(), pa.total_allocated_bytes()
    for ids, cols in _batches(n):
        j.add_predictions("m", ids, cols, now=1.8e9)
        del ids, cols
    _release()
    out: dict[str, Any] = {"pending": j.pending_count("m")}
    if mode == "trace":
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["tracemalloc_bytes"] = current
        out["tracemalloc_peak_bytes"] = peak
    out["rss_delta_bytes"] = rss_bytes() - rss0
    out["arrow_bytes"] = pa.total_allocated_bytes() - arrow0
    return out


def run(quick: bool = False, n: int | None = None) -> dict[str, Any]:
    n = n or (100_000 if quick else 1_000_000)
    res: dict[str, Any] = {"n_pending": n}
    for mode in ("rss", "trace"):
        proc = subprocess.run([sys.executable, "-m", "bench.memory", "--child", mode, "--n", str(n)],
                              capture_output=True, text=True, check=True)
        res[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    rss = res["rss"]["rss_delta_bytes"] / n
    traced = (res["trace"]["tracemalloc_bytes"] + res["trace"]["arrow_bytes"]) / n
    res["bytes_per_pending_rss"] = rss
    res["bytes_per_pending_traced"] = traced
    res["target"] = "<= 64 B per pending prediction"
    print_table(f"4. Memory per pending prediction at {n:,} pending (Joiner)",
                ["measure", "bytes/prediction", "of which arrow pool"],
                [["RSS delta", f"{rss:.1f}", f"{res['rss']['arrow_bytes'] / n:.1f}"],
                 ["tracemalloc + arrow pool", f"{traced:.1f}", f"{res['trace']['arrow_bytes'] / n:.1f}"]])
    return {"memory": res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k pending")
    ap.add_argument("--n", type=int)
    ap.add_argument("--child", choices=("rss", "trace"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.n or 1_000_000)))
    else:
        run(a.quick, a.n)


if __name__ == "__main__":
    main()
