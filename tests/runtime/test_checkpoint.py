"""Checkpoints: atomic, restorable, and a crash at any moment neither loses nor double-counts."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.runtime import checkpoint as state_module
from exporter.runtime.checkpoint import CHECKPOINT_NAME, FORMAT_VERSION, Checkpointer, CheckpointError, decode, encode
from tests.helpers import free_port, wait_for


def test_encode_decode_round_trip_without_pickle() -> None:
    state = {"a": np.arange(5), "ids": np.array(["x", None, "z"], dtype=object), "n": 3,
             "nested": {"k": [1.5, np.array([0.25])], "big": 2**80}}
    out, saved_at = decode(encode(state, 12.5))
    assert saved_at == 12.5
    assert out["a"].tolist() == [0, 1, 2, 3, 4]
    assert out["ids"].tolist() == ["x", None, "z"]
    assert out["nested"]["k"][1].tolist() == [0.25] and out["nested"]["big"] == 2**80


@pytest.mark.parametrize("damage", ["garbage", "truncated", "future", "empty", "format1"])
def test_unusable_checkpoint_is_moved_aside_and_start_is_clean(tmp_path: Path, damage: str,
                                                               caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    good = encode({"x": 1}, 1.0)
    with monkeypatch.context() as m:
        m.setattr(state_module, "FORMAT_VERSION", FORMAT_VERSION + 1)
        future = encode({"x": 1}, 1.0)
        m.setattr(state_module, "FORMAT_VERSION", 1)  # 0.1.0: windows of events
        format1 = encode({"x": 1}, 1.0)
    data = {"garbage": b"\x00not a zip at all" * 10, "truncated": good[: len(good) // 2], "empty": b"",
            "future": future, "format1": format1}[damage]
    (tmp_path / CHECKPOINT_NAME).write_bytes(data)
    cp = Checkpointer(tmp_path)
    assert cp.load() is None
    assert cp.restore_failures_total == 1
    assert not (tmp_path / CHECKPOINT_NAME).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(CHECKPOINT_NAME + ".unusable-")]
    assert "CHECKPOINT NOT RESTORED" in caplog.text
    if damage == "future":
        assert "newer than this exporter understands" in caplog.text
    if damage == "format1":
        assert FORMAT_VERSION == 2
        assert "checkpoint format 1 was written by mlmon-exporter 0.1" in caplog.text
        assert sum("CHECKPOINT NOT RESTORED" in r.getMessage() for r in caplog.records) == 1  # one clear line


def test_future_format_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "FORMAT_VERSION", 99)
    blob = encode({}, 0.0)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="format 99 is newer"):
        decode(blob)


# -- kill -9 at random moments ------------------------------------------------------------------------

N_PRED = 3000
CHUNKS = 12


def _records(base: float) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(11)
    preds, labels = [], []
    for i in range(N_PRED):
        version = "1" if i % 3 else "2"
        pred = int(rng.integers(0, 3))
        preds.append(json.dumps({"id": f"r{i}", "model_version": version, "timestamp": base + i * 0.1,
                                 "prediction": pred, "confidence": round(float(rng.uniform(0.2, 1.0)), 4)}))
        if rng.random() < 0.8:
            label = pred if rng.random() < 0.7 else int(rng.integers(0, 3))
            labels.append(json.dumps({"id": f"r{i}", "label": label, "timestamp": base + i * 0.1 + 5}))
    labels.append("{broken json")
    return preds, labels


def _config(tmp: Path) -> Path:
    cfg = tmp / "config.yaml"
    cfg.write_text(f"""
global: {{poll_interval: 100ms, checkpoint_interval: 100ms, windows: [1h, 2h]}}
models:
  - name: m
    task: multiclass
    classes: ["0", "1", "2"]
    baseline: {{first_labeled: 200}}
    thresholds: {{min_samples: 10}}
sources:
  - {{name: preds, kind: predictions, type: file, path: "{tmp}/preds*.jsonl", model: m}}
  - {{name: labels, kind: labels, type: file, path: "{tmp}/labels*.jsonl"}}
""")
    return cfg


def _start(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    with (tmp / "exporter.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "exporter", f"--config.file={_config(tmp)}",
                                 f"--web.listen-address=127.0.0.1:{port}", f"--state.directory={tmp / 'state'}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


VOLATILE = ("timestamp_seconds", "lag_seconds", "poll_duration", "checkpoint", "reload")


def _numbers(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"{url}/metrics", timeout=5).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("mlmon_") and not any(v in s.name for v in VOLATILE):  # not process_*
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _done(url: str, n_preds: int, n_labels: int) -> bool:
    nums = _numbers(url)
    return (nums.get(("mlmon_exporter_records_total", (("source", "preds"),))) == n_preds
            and nums.get(("mlmon_exporter_records_total", (("source", "labels"),))) == n_labels)


def _feed(tmp: Path, lines: list[str], name: str, chunk: int, split: bool) -> None:
    """Append one chunk; with ``split`` the chunk's last line arrives in two writes."""
    per = -(-len(lines) // CHUNKS)
    part = "".join(line + "\n" for line in lines[chunk * per:(chunk + 1) * per])
    with (tmp / name).open("a") as f:
        if split and len(part) > 10:
            f.write(part[:-7])
            f.flush()
            time.sleep(0.05)
            f.write(part[-7:])
        else:
            f.write(part)


def _same(a: dict[tuple[str, tuple[tuple[str, str], ...]], float],
          b: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> list[str]:
    diffs = [f"{k}: {a.get(k)} != {b.get(k)}" for k in sorted(set(a) | set(b))
             if not (a.get(k) == b.get(k) or (a.get(k) != a.get(k) and b.get(k) != b.get(k)))]
    return diffs


Numbers = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _run(d: Path, preds: list[str], labels: list[str], kills: bool) -> Numbers:
    """Feed the logs in chunks (optionally killing the exporter now and then); the final numbers."""
    d.mkdir()
    rnd = random.Random(3)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    per_p, per_l = -(-len(preds) // CHUNKS), -(-len(labels) // CHUNKS)

    def ready() -> bool:
        return requests.get(f"{url}/-/ready", timeout=1).ok

    p = _start(d, port)
    n_kills = 0
    try:
        wait_for(ready, 20, "ready")
        for chunk in range(CHUNKS):
            if chunk == CHUNKS // 2:
                # rotate away from the glob once read: only the checkpoint remembers that data now
                first_half = (CHUNKS // 2) * per_p, (CHUNKS // 2) * per_l
                wait_for(lambda: _done(url, *first_half), 30, "first half read")  # noqa: B023 - called at once
                (d / "preds.jsonl").rename(d / "preds.jsonl.1")
                (d / "labels.jsonl").rename(d / "labels.jsonl.1")
            _feed(d, preds, "preds.jsonl", chunk, split=chunk % 2 == 0)
            _feed(d, labels, "labels.jsonl", chunk, split=chunk % 3 == 0)
            if kills and chunk % 2 == 1:
                time.sleep(rnd.uniform(0.0, 0.4))  # mid-cycle, mid-checkpoint, between: anywhere
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                n_kills += 1
                p = _start(d, port)
                wait_for(ready, 20, "ready after restart")
            else:
                time.sleep(0.15)
        wait_for(lambda: _done(url, N_PRED, len(labels)), 60, "all records read")
        time.sleep(0.5)  # one more cycle: joins and windows settle
        numbers = _numbers(url)
    finally:
        p.terminate()
        assert p.wait(15) == 0, (d / "exporter.log").read_text()[-3000:]
    assert n_kills == (CHUNKS // 2 if kills else 0)
    return numbers


def test_kill_9_at_random_moments_matches_uninterrupted_run(tmp_path: Path) -> None:
    preds, labels = _records(time.time() - 600)
    steady = _run(tmp_path / "steady", preds, labels, kills=False)
    killed = _run(tmp_path / "killed", preds, labels, kills=True)
    assert steady[("mlmon_exporter_invalid_records_total", (("reason", "invalid_json"), ("source", "labels")))] == 1
    assert sum(v for (name, _), v in steady.items() if name == "mlmon_predictions_total") == N_PRED
    assert _same(steady, killed) == []
