"""Part 5: the same window through Evidently and NannyML (in their own virtualenv) and through us.

One seeded data set: a reference of 100k binary predictions (10 numeric features, probability,
label) and a window of 100k labelled predictions, the window's features shifted a little so
that drift is there to find. CPU time (process time, all threads) of:

* **Evidently** ``Report([DataDriftPreset(), ClassificationPreset()]).run(current, reference)``
  on datasets built from pandas beforehand (the dataset build is reported apart);
* **NannyML** ``CBPE`` (roc_auc, f1, precision, recall, accuracy; chunks of 10k) fit on the
  reference plus estimate on the window;
* **ours**, the pipeline with the reference as its drift reference file (PSI + KS on the 10
  features, confidence and predicted class, every classification gauge, CBPE-style estimates):
  *from scratch* = the 100k predictions and their labels applied in 10k batches, then
  ``advance`` and ``build_snapshot``; *per refresh* = what keeping that window current costs
  per poll: 10k new predictions and labels in, 10k old ones out, and the snapshot.

The peers run in a separate virtualenv (bench/peers/requirements.txt; never a runtime
dependency of the exporter):

    python -m venv /tmp/mlmon-peers
    /tmp/mlmon-peers/bin/pip install -r bench/peers/requirements.txt
    python -m bench.peers --venv /tmp/mlmon-peers [--quick]

Without a usable virtualenv, only our side is measured and the peers are reported as missing
with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_VENV = "/tmp/mlmon-peers"


# --- data (both sides read the same .npz) ------------------------------------------------------

def make_data(n: int, seed: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def part(k: int, shift: float) -> dict[str, np.ndarray]:
        feats = rng.normal(0.0, 1.0, (k, 10)) * np.arange(1, 11) + shift * np.arange(10)
        logit = feats[:, 0] * 0.8 - feats[:, 1] * 0.3 + rng.normal(0, 1, k)
        p1 = np.round(1 / (1 + np.exp(-logit)), 4)
        pred = (p1 >= 0.5).astype(np.int64)
        label = np.where(rng.random(k) < 0.88, pred, 1 - pred)
        return {"features": np.round(feats, 4), "p1": p1, "pred": pred, "label": label}

    ref, cur = part(n, 0.0), part(n, 0.15)
    return {f"ref_{k}": v for k, v in ref.items()} | {f"cur_{k}": v for k, v in cur.items()}


# --- the peers (run inside their virtualenv) -----------------------------------------------------

def _frames(data: Any) -> tuple[Any, Any]:
    import pandas as pd

    def frame(prefix: str) -> Any:
        df = pd.DataFrame(data[f"{prefix}_features"], columns=[f"f{i}" for i in range(10)])
        df["prob_1"] = data[f"{prefix}_p1"]
        df["prediction"] = data[f"{prefix}_pred"]
        df["target"] = data[f"{prefix}_label"]
        return df

    return frame("ref"), frame("cur")


def peer_evidently(data: Any) -> dict[str, Any]:
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset

    ref_df, cur_df = _frames(data)
    definition = DataDefinition(
        numerical_columns=[f"f{i}" for i in range(10)] + ["prob_1"],
        classification=[BinaryClassification(target="target", prediction_labels="prediction",
                                             prediction_probas="prob_1", pos_label=1)])
    t0 = time.process_time()
    ref = Dataset.from_pandas(ref_df, data_definition=definition)
    cur = Dataset.from_pandas(cur_df, data_definition=definition)
    t_build = time.process_time() - t0
    t0, w0 = time.process_time(), time.perf_counter()
    Report([DataDriftPreset(), ClassificationPreset()]).run(cur, ref)
    return {"cpu_s": time.process_time() - t0, "wall_s": time.perf_counter() - w0, "dataset_build_cpu_s": t_build}


def peer_nannyml(data: Any) -> dict[str, Any]:
    import nannyml as nml

    ref_df, cur_df = _frames(data)
    t0, w0 = time.process_time(), time.perf_counter()
    est = nml.CBPE(y_pred_proba="prob_1", y_pred="prediction", y_true="target", problem_type="classification_binary",
                   metrics=["roc_auc", "f1", "precision", "recall", "accuracy"], chunk_size=10_000)
    est.fit(ref_df)
    est.estimate(cur_df.drop(columns=["target"]))
    return {"cpu_s": time.process_time() - t0, "wall_s": time.perf_counter() - w0}


# --- ours ---------------------------------------------------------------------------------------

def ours(data: Any, batch: int = 10_000) -> dict[str, Any]:
    from bench import FEATURES, Events, batch_config, binary_model, label_batch, prediction_batch, prediction_lines
    from exporter.core.pipeline import Pipeline
    from exporter.report import catalogue
    from exporter.report.snapshot import render

    n = int(data["cur_p1"].size)
    t_end = 1_800_000_000.0

    def events(prefix: str, start: int, span: float, end: float) -> Events:
        p1 = data[f"{prefix}_p1"]
        k = p1.size
        ts = np.round(end - span + span * np.arange(k) / k, 3)
        ids = np.array([f"{prefix}-{i:010d}" for i in range(start, start + k)], dtype=object)
        return Events(ids, ts, ts + 1.0, data[f"{prefix}_pred"], data[f"{prefix}_label"],
                      np.stack([1 - p1, p1], axis=1), data[f"{prefix}_features"])

    with tempfile.TemporaryDirectory(prefix="mlmon-peers-") as tmp:
        ref_path = os.path.join(tmp, "reference.jsonl")
        Path(ref_path).write_bytes(b"\n".join(prediction_lines(events("ref", 0, 3600.0, t_end - 86400))) + b"\n")
        model = binary_model()
        model = type(model)(**{**model.__dict__, "drift": type(model.drift)(
            **{**model.drift.__dict__, "reference": ref_path, "features": FEATURES})})
        p = Pipeline(batch_config(model), lambda: t_end, sources=[])
        cur = events("cur", 0, 3600.0, t_end)
        t0 = time.process_time()
        for s in range(0, n, batch):
            rows = slice(s, min(n, s + batch))
            p.apply_predictions("bench", prediction_batch(cur, model.name, rows), t_end)
            p.apply_labels("bench", label_batch(cur, rows), t_end)
        p.advance(t_end)
        text = render(catalogue.families(p.build_report(t_end)))
        scratch = time.process_time() - t0
        assert b"mlmon_data_drift_ks_statistic" in text
        vs = p.versions[(model.name, cur.version)]
        width = 3600.0 / p.config.global_.window_buckets  # the 1h window's buckets (DESIGN §2 Windows)
        held = np.floor(cur.label_ts / width) > np.floor((t_end - 3600.0) / width)
        assert vs.window_stats(0).labeled == int(held.sum())
        # one refresh: the window slides by one batch
        nxt = events("cur", n, 3600.0 * batch / n, t_end + 3600.0 * batch / n)
        nxt.ids = np.array([f"next-{i:010d}" for i in range(batch)], dtype=object)
        now = t_end + 3600.0 * batch / n
        rows = slice(0, batch)
        pb, lb = prediction_batch(nxt, model.name, rows), label_batch(nxt, rows)
        t0 = time.process_time()
        p.apply_predictions("bench", pb, now)
        p.apply_labels("bench", lb, now)
        p.advance(now)
        render(catalogue.families(p.build_report(now)))
        refresh = time.process_time() - t0
    return {"from_scratch_cpu_s": scratch, "per_refresh_cpu_s": refresh, "window": n, "batch": batch}


# --- driver -------------------------------------------------------------------------------------

def _venv_python(venv: str) -> str | None:
    py = os.path.join(venv, "bin", "python")
    return py if os.path.exists(py) else None


def run(quick: bool = False, venv: str = DEFAULT_VENV, n: int | None = None) -> dict[str, Any]:
    from bench import print_table

    n = n or (20_000 if quick else 100_000)
    res: dict[str, Any] = {"window": n, "reference": n}
    with tempfile.TemporaryDirectory(prefix="mlmon-peers-data-") as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, **make_data(n))
        with np.load(path) as data:
            res["ours"] = ours(data)
        py = _venv_python(venv)
        for peer in ("evidently", "nannyml"):
            if py is None:
                res[peer] = {"error": f"no virtualenv at {venv} (see bench/peers/requirements.txt)"}
                continue
            proc = subprocess.run([py, "-m", "bench.peers", "--peer", peer, "--data", path],
                                  capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
            if proc.returncode != 0:
                res[peer] = {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
            else:
                res[peer] = json.loads(proc.stdout.strip().splitlines()[-1])
    o = res["ours"]
    rows = [["ours: from scratch (100k preds + labels, snapshot)" if not quick else "ours: from scratch",
             f"{o['from_scratch_cpu_s']:.3f}", "", ""],
            ["ours: per refresh (10k in, 10k out, snapshot)", f"{o['per_refresh_cpu_s']:.3f}", "", ""]]
    names = (("evidently", "Evidently DataDrift + Classification"), ("nannyml", "NannyML CBPE fit + estimate"))
    for peer, what in names:
        r = res[peer]
        if "error" in r:
            rows.append([what, "n/a", "", r["error"][:60]])
            continue
        r["ratio_vs_from_scratch"] = r["cpu_s"] / o["from_scratch_cpu_s"]
        r["ratio_vs_refresh"] = r["cpu_s"] / o["per_refresh_cpu_s"]
        rows.append([what, f"{r['cpu_s']:.3f}", f"{r['ratio_vs_from_scratch']:.1f}x",
                     f"{r['ratio_vs_refresh']:.0f}x"])
    print_table(f"5. Peers on the same {n:,}-prediction window (CPU seconds; ratio = peer / ours)",
                ["", "CPU s", "vs from scratch", "vs per refresh"], rows)
    res["target"] = ">= 100x less CPU than Evidently recomputing the window"
    return {"peers": res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20k-prediction window")
    ap.add_argument("--venv", default=DEFAULT_VENV, help="virtualenv with bench/peers/requirements.txt")
    ap.add_argument("--n", type=int)
    ap.add_argument("--peer", choices=("evidently", "nannyml"), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peer:
        with np.load(a.data) as data:
            out = peer_evidently(data) if a.peer == "evidently" else peer_nannyml(data)
        print(json.dumps(out))
        return
    run(a.quick, a.venv, a.n)


if __name__ == "__main__":
    sys.exit(main())
