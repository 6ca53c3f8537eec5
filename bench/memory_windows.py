"""Part 6: memory that does not grow with traffic (bucketed windows, bounded join).

Two measurements:

* **exporter** -- the real ``mlmon-exporter`` process, as a user runs it: 10 numeric drift
  features (PSI and KS), windows ``[1h, 24h]``, join TTL 72h, ``max_pending`` 1,000,000, fed the
  same 23 hours of history (every label within a minute of its prediction) at two rates,
  N = 200,000 and 2,000,000 prediction + label pairs, from JSONL files that exist when it starts.
  Once every label is joined (read from ``/metrics``), its resident memory (``VmRSS``) and peak
  (``VmHWM``) are read from ``/proc``. Target: RSS(2M) - RSS(200k) <= 48 MiB.
* **windows** -- in process, simulated time, real data structures: one model version
  (``VersionState``: prediction, outcome and coverage windows plus data drift of 10 numeric
  features against a learned 5,000-prediction reference) with windows ``[1h, 24h, 7d]``, fed
  ``--rate`` predictions per simulated second (default 1,000) for 8 simulated days, each
  labelled within a minute, on a fake clock. Each simulated day it prints RSS, the buckets held
  and the bytes of window state (the checkpoint of the version's windows). Target: RSS <= 256 MiB
  at any traffic, flat once the 7d window is full.

    python -m bench.memory_windows [--quick] [--part exporter|windows] [--rate R] [--days D]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from bench import FEATURES, label_lines, make_events, prediction_lines, print_table, rss_bytes, write_lines

MIB = 1 << 20
HISTORY = 23 * 3600.0


# --- the exporter process ---------------------------------------------------------------------

def _config(directory: Path, windows: str = "[1h, 24h]") -> str:
    feats = ", ".join(FEATURES)
    return f"""
global:
  poll_interval: 1s
  windows: {windows}
models:
  - name: fraud
    task: binary
    classes: ["0", "1"]
    baseline: {{accuracy: 0.92}}
    join: {{ttl: 72h, max_pending: 1000000}}
    drift:
      features: [{feats}]
      methods: [psi, ks]
sources:
  - name: predictions
    kind: predictions
    type: file
    path: {directory}/predictions.jsonl
    model: fraud
  - name: labels
    kind: labels
    type: file
    path: {directory}/labels.jsonl
"""


def _write_history(directory: Path, n: int) -> None:
    chunk = 200_000
    now = time.time()
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        # chunk i covers its share of the 23 hours, oldest first
        t_end = now - HISTORY + HISTORY * (start + k) / n - 90.0
        ev = make_events(k, seed=start, t_end=t_end, span=HISTORY * k / n, start=start)
        write_lines(str(directory / "predictions.jsonl"), prediction_lines(ev))
        write_lines(str(directory / "labels.jsonl"), label_lines(ev))


def _joined(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("mlmon_labeled_predictions_total{"))


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def exporter_rss(n: int, timeout: float = 1800.0, windows: str = "[1h, 24h]") -> dict[str, Any]:
    """Start the exporter on N pairs of 23 h history; its RSS once every label is joined."""
    with tempfile.TemporaryDirectory(prefix="mlmon-mem-") as tmp:
        d = Path(tmp)
        _write_history(d, n)
        (d / "config.yaml").write_text(_config(d, windows))
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "exporter", f"--config.file={d}/config.yaml",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            joined = 0
            while time.perf_counter() - t0 < timeout:
                time.sleep(2.0)
                if proc.poll() is not None:
                    raise RuntimeError(f"exporter exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
                try:
                    joined = _joined(port)
                except OSError:
                    continue
                if joined >= n:
                    break
            elapsed = time.perf_counter() - t0
            time.sleep(5.0)  # a few more cycles: what stays, not a transient
            status = _proc_status(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return {"pairs": n, "windows": windows, "joined": joined, "seconds": elapsed, "rss_bytes": status["VmRSS"],
            "peak_rss_bytes": status["VmHWM"]}


# --- windows in process, simulated time ---------------------------------------------------------

def windows_child(rate: float, days: float, step: float) -> dict[str, Any]:
    from exporter.config import DriftConfig, ModelConfig, Window
    from exporter.core.classes import ClassIndex
    from exporter.core.versions import VersionState
    from exporter.runtime.checkpoint import encode

    model = ModelConfig(name="fraud", task="binary", classes=("0", "1"),
                        drift=DriftConfig(reference_size=5000, features=FEATURES, methods=("psi", "ks")))
    windows = (Window("1h", 3600.0), Window("24h", 86400.0), Window("7d", 7 * 86400.0))
    rng = np.random.default_rng(7)
    t = 1.8e9
    vs = VersionState(model, ClassIndex(model), windows, t)
    k = round(rate * step)
    scales = np.arange(1, len(FEATURES) + 1, dtype=np.float64)
    rows: list[dict[str, Any]] = []
    rss0 = rss_bytes()
    t_end = t + days * 86400.0
    next_report = t + 86400.0
    wall0 = time.perf_counter()
    events = 0
    while t < t_end:
        ts = t + np.sort(rng.uniform(0.0, step, k))
        t += step
        pred = rng.integers(0, 2, k).astype(np.int32)
        conf = np.round(rng.uniform(0.5, 1.0, k), 4)
        values = np.round(rng.normal(0.0, 1.0, (k, len(FEATURES))) * scales, 4)
        feats = {f: values[:, j].copy() for j, f in enumerate(FEATURES)}
        vs.add_predictions(ts, pred, conf, t, features=feats, p_positive=np.where(pred == 1, conf, 1 - conf))
        truth = np.where(rng.random(k) < 0.9, pred, 1 - pred).astype(np.int32)
        vs.add_outcomes(np.minimum(ts + rng.uniform(0, 60, k), t), ts, pred, truth, conf, t)
        vs.advance(t)
        events += 2 * k
        if t >= next_report:
            next_report += 86400.0
            for i in range(len(windows)):
                vs.window_stats(i)
                vs.drift.window_drift(i)
            state = encode({"v": vs.state()}, t)
            rows.append({"day": round((t - 1.8e9) / 86400.0, 2), "rss_bytes": rss_bytes(),
                         "buckets": vs.bucket_count(), "state_bytes": len(state),
                         "events": events, "wall_seconds": time.perf_counter() - wall0})
    return {"rate": rate, "rss_start_bytes": rss0, "days": rows}


def run(quick: bool = False, part: str | None = None, rate: float | None = None,
        days: float | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if part in (None, "windows"):
        r = rate or (100.0 if quick else 1000.0)
        d = days or (2.0 if quick else 8.0)
        proc = subprocess.run([sys.executable, "-m", "bench.memory_windows", "--child", "--rate", str(r),
                               "--days", str(d)], capture_output=True, text=True, check=True)
        w = json.loads(proc.stdout.strip().splitlines()[-1])
        res["windows"] = w
        print_table(f"6a. One version, windows [1h, 24h, 7d], 10 numeric drift features, {r:g} predictions/s "
                    "(simulated time)",
                    ["day", "events so far", "buckets", "window state (checkpoint)", "RSS", "wall"],
                    [[x["day"], f"{x['events']:,}", x["buckets"], f"{x['state_bytes'] / MIB:.1f} MiB",
                      f"{x['rss_bytes'] / MIB:.0f} MiB", f"{x['wall_seconds']:.0f} s"] for x in w["days"]])
    if part in (None, "exporter"):
        sizes = (20_000, 200_000) if quick else (200_000, 2_000_000)
        runs = [exporter_rss(n) for n in sizes] + [exporter_rss(sizes[1], windows="[1h, 24h, 7d]")]
        res["exporter"] = runs
        growth = (runs[1]["rss_bytes"] - runs[0]["rss_bytes"]) / MIB
        res["exporter_growth_mib"] = growth
        print_table("6b. The exporter process on 23 h of history, 10 drift features (PSI, KS), join TTL 72h",
                    ["pairs", "windows", "ingest", "RSS", "peak RSS"],
                    [[f"{x['pairs']:,}", x["windows"], f"{x['seconds']:.0f} s", f"{x['rss_bytes'] / MIB:.0f} MiB",
                      f"{x['peak_rss_bytes'] / MIB:.0f} MiB"] for x in runs]
                    + [["growth for 10x", "[1h, 24h]", "", f"{growth:+.0f} MiB", "target <= 48 MiB"]])
    return {"memory_windows": res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 predictions/s for 2 days; 20k and 200k pairs")
    ap.add_argument("--part", choices=("exporter", "windows"))
    ap.add_argument("--rate", type=float, help="simulated predictions per second (windows part)")
    ap.add_argument("--days", type=float, help="simulated days (windows part)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        rate = a.rate or 1000.0
        step = max(60.0, math.ceil(50_000 / rate))  # batches of at least a minute
        print(json.dumps(windows_child(rate, a.days or 8.0, step)))
    else:
        run(a.quick, a.part, a.rate, a.days)


if __name__ == "__main__":
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    main()
