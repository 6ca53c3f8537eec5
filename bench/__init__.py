"""Benchmarks of mlmon-exporter against the anchors in shared/reference/perf-anchors.md.

Every part generates its own seeded data, measures our code and its comparator *in the same
run* (the machines are shared and noisy, so only ratios mean something), prints a table and
returns a JSON-able dict. ``python -m bench`` runs them all and saves bench/results/<ts>.json.

This module holds what the parts share: seeded data generators (JSONL bytes and ready-made
columnar batches), configs, and small timing helpers.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from exporter.config import (
    Baseline,
    Config,
    DriftConfig,
    FileSourceConfig,
    GlobalConfig,
    JoinConfig,
    ModelConfig,
    Window,
)
from exporter.ingest.batches import LabelBatch, PredictionBatch

N_FEATURES = 10
FEATURES = tuple(f"f{i}" for i in range(N_FEATURES))
WINDOWS = (Window("1h", 3600.0), Window("24h", 86400.0))


# --- timing ---------------------------------------------------------------------------------

@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0  # process CPU time (all threads)

    def __iadd__(self, other: Timing) -> Timing:
        self.wall += other.wall
        self.cpu += other.cpu
        return self


@contextmanager
def timed(gc_collect: bool = True) -> Iterator[Timing]:
    """Wall and process-CPU time of the block (a collection first, so garbage of earlier work is
    not charged to it)."""
    if gc_collect:
        gc.collect()
    t = Timing()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield t
    finally:
        t.wall = time.perf_counter() - w0
        t.cpu = time.process_time() - c0


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Smallest wall time of ``repeat`` calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def median_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cpu_median_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Median process CPU time of ``repeat`` calls: for single-threaded work on a shared, busy
    machine it is steadier than wall time (waiting for a core is not counted)."""
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; ru_maxrss elsewhere, which is the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine() -> dict[str, Any]:
    import pyarrow

    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "numpy": np.__version__, "pyarrow": pyarrow.__version__,
    }


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for k, r in enumerate(cells):
        pairs = enumerate(zip(r, widths, strict=True))
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs))
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))


# --- configs ----------------------------------------------------------------------------------

def binary_model(name: str = "fraud", features: tuple[str, ...] = FEATURES, max_pending: int = 2_000_000,
                 methods: tuple[str, ...] = ("psi", "ks")) -> ModelConfig:
    return ModelConfig(
        name=name, task="binary", classes=("0", "1"), positive_class="1",
        baseline=Baseline(accuracy=0.92), join=JoinConfig(ttl=72 * 3600.0, max_pending=max_pending),
        drift=DriftConfig(reference_size=5000, features=features, methods=methods),
    )


def multiclass_model(name: str = "intent", n_classes: int = 5, max_pending: int = 2_000_000) -> ModelConfig:
    return ModelConfig(
        name=name, task="multiclass", classes=tuple(str(i) for i in range(n_classes)),
        baseline=Baseline(first_labeled=1000), join=JoinConfig(ttl=72 * 3600.0, max_pending=max_pending),
        drift=DriftConfig(reference_size=5000, features=(), methods=("psi",)),
    )


def file_config(model: ModelConfig, pred_path: str, label_path: str,
                ingest_threads: int = GlobalConfig().ingest_threads) -> Config:
    return Config(
        global_=GlobalConfig(poll_interval=5.0, windows=WINDOWS, ingest_threads=ingest_threads),
        models=(model,),
        sources=(
            FileSourceConfig(name=f"{model.name}-predictions", kind="predictions", path=pred_path,
                             model=model.name),
            FileSourceConfig(name=f"{model.name}-labels", kind="labels", path=label_path),
        ),
    )


def batch_config(model: ModelConfig) -> Config:
    return Config(global_=GlobalConfig(poll_interval=5.0, windows=WINDOWS), models=(model,))


# --- seeded data ------------------------------------------------------------------------------

@dataclass
class Events:
    """N predictions and their labels as columns (the truth the JSONL is written from)."""

    ids: np.ndarray  # object (str)
    pred_ts: np.ndarray
    label_ts: np.ndarray
    pred: np.ndarray  # int
    label: np.ndarray  # int
    probs: np.ndarray  # (n, k) float, rows sum to 1
    features: np.ndarray  # (n, N_FEATURES) float, or (n, 0)
    version: str = "3"

    def __len__(self) -> int:
        return int(self.ids.size)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)


def make_events(n: int, seed: int, *, n_classes: int = 2, n_features: int = N_FEATURES, t_end: float | None = None,
                span: float = 1800.0, accuracy: float = 0.9, start: int = 0) -> Events:
    """``n`` predictions stamped evenly over ``span`` seconds before ``t_end``, labels 0-60 s later.

    Probabilities are rounded to 4 decimals (what a logger writes), the prediction is their
    argmax, and the label equals it with probability ``accuracy``.
    """
    rng = np.random.default_rng(seed)
    t_end = time.time() - 120.0 if t_end is None else t_end
    pred_ts = np.round(t_end - span + span * (np.arange(n) + rng.random(n)) / max(n, 1), 3)
    logits = rng.normal(0.0, 1.5, (n, n_classes))
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs = np.round(probs, 4)
    pred = probs.argmax(axis=1)
    wrong = rng.random(n) > accuracy
    label = np.where(wrong, (pred + rng.integers(1, n_classes, n)) % n_classes, pred)
    label_ts = np.round(pred_ts + rng.uniform(0.0, 60.0, n), 3)
    features = np.round(rng.normal(0.0, 1.0, (n, n_features)) * np.arange(1, n_features + 1), 4)
    ids = np.array([f"req-{i:010d}" for i in range(start, start + n)], dtype=object)
    return Events(ids, pred_ts, label_ts, pred, label, probs, features)


def prediction_lines(ev: Events, model: str | None = None) -> list[bytes]:
    """One JSON object per prediction. Binary: prediction, confidence, probabilities and 10
    features (~300 bytes); multiclass: prediction and the probability vector (confidence
    derived as its max)."""
    n_classes = ev.probs.shape[1]
    probs = ev.probs.tolist()
    feats = ev.features.tolist()
    mfield = f'"model":"{model}",' if model else ""
    out = []
    ts = ev.pred_ts.tolist()
    pred = ev.pred.tolist()
    ids = ev.ids.tolist()
    v = ev.version
    if n_classes == 2 and feats and feats[0]:
        names = [f'"{f}":' for f in FEATURES[: len(feats[0])]]
        for i in range(len(ids)):
            p = probs[i]
            fs = ",".join(k + repr(x) for k, x in zip(names, feats[i], strict=False))
            out.append(
                f'{{"id":"{ids[i]}",{mfield}"model_version":"{v}","timestamp":{ts[i]!r},"prediction":{pred[i]},'
                f'"confidence":{max(p)!r},"probabilities":{{"0":{p[0]!r},"1":{p[1]!r}}},"features":{{{fs}}}}}'
                .encode())
    else:
        keys = [f'"{k}":' for k in range(n_classes)]
        for i in range(len(ids)):
            ps = ",".join(k + repr(x) for k, x in zip(keys, probs[i], strict=True))
            out.append(f'{{"id":"{ids[i]}",{mfield}"model_version":"{v}","timestamp":{ts[i]!r},'
                       f'"prediction":{pred[i]},"probabilities":{{{ps}}}}}'.encode())
    return out


def label_lines(ev: Events, order: np.ndarray | None = None) -> list[bytes]:
    ids, lab, ts = ev.ids.tolist(), ev.label.tolist(), ev.label_ts.tolist()
    idx = range(len(ids)) if order is None else order.tolist()
    return [f'{{"id":"{ids[i]}","label":{lab[i]},"timestamp":{ts[i]!r}}}'.encode() for i in idx]


def _obj(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def prediction_batch(ev: Events, model: str, rows: slice | np.ndarray = slice(None),
                     with_probabilities: bool = True) -> PredictionBatch:
    """The batch the parser would produce for those rows (same value types)."""
    ids = ev.ids[rows]
    n = ids.size
    probs = ev.probs[rows]
    k = probs.shape[1]
    names = [str(c) for c in range(k)]
    prob_dicts = (_obj([dict(zip(names, r, strict=True)) for r in probs.tolist()]) if with_probabilities
                  else _obj([None] * n))
    feats = ev.features[rows]
    return PredictionBatch(
        id=ids, model=np.full(n, model, dtype=object), model_version=np.full(n, ev.version, dtype=object),
        timestamp=ev.pred_ts[rows].astype(np.float64), prediction=_obj([str(x) for x in ev.pred[rows].tolist()]),
        confidence=probs.max(axis=1).astype(np.float64), probabilities=prob_dicts,
        features={f: _obj(feats[:, j].tolist()) for j, f in enumerate(FEATURES[: feats.shape[1]])},
    )


def label_batch(ev: Events, rows: slice | np.ndarray = slice(None)) -> LabelBatch:
    ids = ev.ids[rows]
    n = ids.size
    return LabelBatch(id=ids, label=_obj([str(x) for x in ev.label[rows].tolist()]),
                      timestamp=ev.label_ts[rows].astype(np.float64), model=np.full(n, None, dtype=object))


def write_lines(path: str, lines: list[bytes], mode: str = "ab") -> int:
    data = b"\n".join(lines) + b"\n" if lines else b""
    with open(path, mode) as f:
        f.write(data)
    return len(data)


def to_json(obj: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, (np.integer,)):
            return int(o)
        if isinstance(o, (np.floating,)):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(type(o))

    return json.dumps(obj, indent=2, default=default)
