"""Memory per entry of the join's three bounded structures (``exporter.core.join.Joiner``).

Fills one model's Joiner with N entries (default 1,000,000) of one kind, the way the pipeline
does, in batches of realistic request ids (``req-0000123456``), the caller dropping its own
references after each batch, so only what the Joiner keeps is counted:

* ``pending``: predictions waiting for their label (``add_predictions``, with the
  ``PENDING_COLUMNS``: model version text, predicted class index, confidence, timestamp);
* ``waiting``: labels waiting for their prediction (``add_orphans`` naming the model: label
  text, label timestamp, source name);
* ``joined``: ids already joined, remembered to recognise duplicates (each batch of labels
  waits, then its predictions arrive and join at once, so only the joined ids remain).

For each it prints bytes per entry from three angles: Python-heap bytes that stay allocated
(tracemalloc, which sees numpy buffers) plus pyarrow's memory pool, the peak while adding, and
the process RSS delta (measured in a separate child process, since tracemalloc's own
bookkeeping would inflate RSS); and where the bytes go: every array, dict, string and arrow
buffer reachable from the Joiner, grouped by the attribute that holds it.

Usage::

    python bench/memory_pending.py                    # all three, the exporter as installed
    python bench/memory_pending.py --what joined      # one of them
    python bench/memory_pending.py --n 200000         # smaller
    python bench/memory_pending.py --what pending --git-rev HEAD   # exporter/core/join.py at a revision

``--git-rev`` loads ``exporter/core/join.py`` from that revision (with ``git show``), so two
implementations can be compared on the same machine.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

try:
    import pyarrow as pa
except ImportError:  # pragma: no cover - pyarrow is a dependency of the exporter
    pa = None

ROOT = Path(__file__).resolve().parent.parent
TTL = 72 * 3600.0
NOW = 1_767_225_600.0


def rss_bytes() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out["VmRSS"], out["VmHWM"]


def arrow_bytes() -> int:
    return int(pa.total_allocated_bytes()) if pa is not None else 0


def load_join(git_rev: str | None) -> ModuleType:
    if git_rev is None:
        import exporter.core.join as join

        return join
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{git_rev}:exporter/core/join.py"], check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "join_at_rev.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("join_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_batch(join: ModuleType, start: int, size: int, version: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One poll's worth of new predictions; every string a distinct object, as parsing makes them."""
    ids = np.empty(size, dtype=object)
    ids[:] = [f"req-{i:010d}" for i in range(start, start + size)]
    rng = np.random.default_rng(start)
    cols: dict[str, np.ndarray] = {}
    for name, dtype in join.PENDING_COLUMNS.items():
        dt = np.dtype(dtype)
        if dt.kind == "O":
            col = np.empty(size, dtype=object)
            col[:] = ["".join(version) for _ in range(size)]  # distinct str objects with equal text
        elif dt.kind in "iu":
            col = rng.integers(0, 2, size).astype(dt)
        elif name.endswith("_ts"):
            col = (NOW - rng.uniform(0, 3600, size)).astype(dt)
        else:
            col = rng.uniform(0, 1, size).astype(dt)
        cols[name] = col
    return ids, cols


def make_labels(start: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One poll's worth of labels naming model ``m``: ids, label text, timestamps, model."""
    ids = np.empty(size, dtype=object)
    ids[:] = [f"req-{i:010d}" for i in range(start, start + size)]
    labels = np.empty(size, dtype=object)
    labels[:] = [str(i % 2) for i in range(start, start + size)]
    models = np.empty(size, dtype=object)
    models[:] = ["".join("m") for _ in range(size)]
    return ids, labels, np.full(size, NOW), models


def fill(join: ModuleType, what: str, n: int, batch: int, version: str) -> Any:
    joiner = join.Joiner({"m": (TTL, n + 1)})
    for start in range(0, n, batch):
        size = min(batch, n - start)
        if what in ("waiting", "joined"):
            ids, labels, ts, models = make_labels(start, size)
            joiner.add_orphans(ids, labels, ts, models, NOW, "labels")
            del ids, labels, ts, models
        if what in ("pending", "joined"):
            ids, cols = make_batch(join, start, size, version)
            joiner.add_predictions("m", ids, cols, NOW)
            del ids, cols
    counts = {"pending": joiner.pending_count("m"), "waiting": joiner.waiting_count("m"),
              "joined": joiner.joined_count("m")}
    assert counts == {k: n if k == what else 0 for k in counts}, counts
    return joiner


# --- where the bytes go ------------------------------------------------------------------------


class Sizer:
    """Bytes of everything reachable from an object, grouped by the attribute path holding it."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.groups: dict[str, int] = defaultdict(int)

    def add(self, obj: Any, label: str, depth: int = 0) -> None:
        if id(obj) in self.seen or depth > 12:
            return
        self.seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            if obj.base is None or not isinstance(obj.base, np.ndarray):
                self.groups[f"{label} [numpy {obj.dtype}]"] += obj.nbytes
            if obj.dtype == object:
                for item in obj.ravel().tolist():
                    self.add(item, f"{label} -> objects", depth + 1)
            return
        if pa is not None and isinstance(obj, pa.Array | pa.ChunkedArray):
            self.groups[f"{label} [arrow {obj.type}]"] += obj.get_total_buffer_size()
            return
        if isinstance(obj, str | bytes | int | float | bool) or obj is None:
            self.groups[f"{label} [{type(obj).__name__}]"] += sys.getsizeof(obj)
            return
        if isinstance(obj, dict):
            self.groups[f"{label} [dict table]"] += sys.getsizeof(obj)
            for k, v in obj.items():
                self.add(k, f"{label} keys", depth + 1)
                self.add(v, f"{label} values" if not isinstance(k, str) or len(obj) > 64 else f"{label}[{k!r}]",
                         depth + 1)
            return
        if isinstance(obj, list | tuple | set | frozenset):
            self.groups[f"{label} [{type(obj).__name__}]"] += sys.getsizeof(obj)
            for i, item in enumerate(obj):
                self.add(item, label if isinstance(obj, set | frozenset) or len(obj) > 8 else f"{label}[{i}]",
                         depth + 1)
            return
        self.groups[f"{label} [{type(obj).__name__} object]"] += sys.getsizeof(obj)
        names = list(getattr(obj, "__dict__", {}))
        for cls in type(obj).__mro__:
            names += [s for s in getattr(cls, "__slots__", ()) if s not in names]
        for name in names:
            if hasattr(obj, name):
                self.add(getattr(obj, name), f"{label}.{name}", depth + 1)


# --- phases (each in its own process) ----------------------------------------------------------


def phase_heap(args: argparse.Namespace) -> dict[str, Any]:
    join = load_join(args.git_rev)
    fill(join, args.what, 10_000, args.batch, args.version)  # warm-up: code paths, caches, pools
    gc.collect()
    arrow0 = arrow_bytes()
    tracemalloc.start()
    started = time.perf_counter()
    joiner = fill(join, args.what, args.n, args.batch, args.version)
    seconds = time.perf_counter() - started
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    arrow = arrow_bytes() - arrow0
    sizer = Sizer()
    sizer.add(joiner, "joiner")
    groups: dict[str, int] = defaultdict(int)
    for label, b in sizer.groups.items():  # segments of one buffer are one component
        groups[re.sub(r"\[\d+\]", "[*]", label)] += b
    return {"heap": current, "peak": peak, "arrow": arrow, "seconds": seconds, "groups": groups}


def phase_rss(args: argparse.Namespace) -> dict[str, Any]:
    join = load_join(args.git_rev)
    fill(join, args.what, 10_000, args.batch, args.version)
    gc.collect()
    rss0, _ = rss_bytes()
    joiner = fill(join, args.what, args.n, args.batch, args.version)
    gc.collect()
    rss1, hwm = rss_bytes()
    del joiner
    return {"rss": rss1 - rss0, "hwm": hwm - rss0}


def run_phase(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, f"--phase={name}", f"--n={args.n}", f"--batch={args.batch}",
           f"--version={args.version}", f"--what={args.what}"]
    if args.git_rev:
        cmd.append(f"--git-rev={args.git_rev}")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


ENTRY = {"pending": "pending prediction", "waiting": "waiting label", "joined": "joined id"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="entries (default 1,000,000)")
    ap.add_argument("--batch", type=int, default=10_000, help="entries per add (one poll's worth)")
    ap.add_argument("--version", default="3", help="model version text of every prediction")
    ap.add_argument("--what", choices=["pending", "waiting", "joined", "all"], default="all",
                    help="which structure to fill (default: each in turn)")
    ap.add_argument("--git-rev", help="measure exporter/core/join.py as of this git revision")
    ap.add_argument("--phase", choices=["heap", "rss"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        result = phase_heap(args) if args.phase == "heap" else phase_rss(args)
        print(json.dumps(result))
        return 0
    summary = []
    for what in (["pending", "waiting", "joined"] if args.what == "all" else [args.what]):
        summary.append((what, report(argparse.Namespace(**{**vars(args), "what": what}))))
    if len(summary) > 1:
        print(f"{'summary: bytes per entry':<28} {'kept (traced)':>14} {'RSS delta':>10} {'peak RSS':>10}")
        for what, (kept, rss, hwm) in summary:
            print(f"{ENTRY[what]:<28} {kept:>14.1f} {rss:>10.1f} {hwm:>10.1f}")
    return 0


def report(args: argparse.Namespace) -> tuple[float, float, float]:
    n = args.n
    heap = run_phase("heap", args)
    rss = run_phase("rss", args)
    source = f"exporter/core/join.py at {args.git_rev}" if args.git_rev else "exporter.core.join (installed tree)"
    entry = ENTRY[args.what]
    print(f"{source}: {n:,} {entry}s, ids like 'req-0000123456', added {args.batch:,} at a time "
          f"({heap['seconds']:.1f} s under tracemalloc)")
    print()
    kept = heap["heap"] + heap["arrow"]
    rows = [
        ("kept: Python heap + numpy (tracemalloc)", heap["heap"]),
        ("kept: pyarrow memory pool", heap["arrow"]),
        ("kept: total", kept),
        ("peak while adding (tracemalloc)", heap["peak"]),
        ("RSS delta after adding", rss["rss"]),
        ("peak RSS delta (VmHWM)", rss["hwm"]),
    ]
    print(f"{'measure':<42} {'MiB':>9} {'bytes/entry':>12}")
    for label, b in rows:
        print(f"{label:<42} {b / 2**20:>9.1f} {b / n:>12.1f}")
    print()
    print(f"where it goes (reachable from the Joiner, components of at least 0.05 B per {entry}):")
    groups = sorted(heap["groups"].items(), key=lambda kv: -kv[1])
    total = sum(v for _, v in groups)
    print(f"{'component':<72} {'MiB':>8} {'bytes/entry':>12} {'share':>6}")
    for label, b in groups:
        if b / n < 0.05:
            continue
        print(f"{label:<72} {b / 2**20:>8.1f} {b / n:>12.1f} {b / total:>6.1%}")
    print(f"{'total reachable':<72} {total / 2**20:>8.1f} {total / n:>12.1f}")
    print()
    return kept / n, rss["rss"] / n, rss["hwm"] / n


if __name__ == "__main__":
    sys.exit(main())
