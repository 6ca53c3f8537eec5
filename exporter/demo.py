"""``mlmon-exporter demo``: a simulated model whose accuracy drifts, run through the real pipeline.

A new user should see every metric move within a minute with no setup: a writer thread appends
prediction and label logs (two versions; labels arriving a few seconds late) to a temp dir, and
the ordinary file sources tail them. Version ``1`` degrades 25 s in; version ``2`` (a canary)
stays healthy, so drift appears on one series and not the other.

Records carry ``probabilities`` (``{"0": p0, "1": p1}``) and no ``confidence``: the confidence
is derived from them (their maximum), and the label-free estimates (``mlmon_estimated_*``) and
calibration error need them, so every metric the README lists moves in the demo.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from exporter.config import (
    Baseline,
    Config,
    DriftConfig,
    FileSourceConfig,
    GlobalConfig,
    ModelConfig,
    Thresholds,
    Window,
)

if TYPE_CHECKING:
    from exporter.http.webconfig import WebConfig

log = logging.getLogger(__name__)

RATE_PER_SECOND = 40  # predictions per second per version
DRIFT_AFTER_SECONDS = 25.0
LABEL_DELAY_SECONDS = (1.0, 4.0)
ACCURACY = {"1": (0.93, 0.70), "2": (0.93, 0.93)}  # version -> (before, after the drift)


def demo_config(directory: Path) -> Config:
    model = ModelConfig(
        name="fraud-demo",
        task="binary",
        classes=("0", "1"),
        positive_class="1",
        thresholds=Thresholds(min_samples=50),
        baseline=Baseline(accuracy=0.93),
        drift=DriftConfig(features=("amount", "country"), methods=("psi", "ks", "chi2"), reference_size=500),
    )
    return Config(
        global_=GlobalConfig(poll_interval=1.0, windows=(Window("1m", 60.0), Window("5m", 300.0))),
        models=(model,),
        sources=(
            FileSourceConfig(name="demo-predictions", kind="predictions",
                             path=str(directory / "predictions*.jsonl"), model="fraud-demo"),
            FileSourceConfig(name="demo-labels", kind="labels", path=str(directory / "labels*.jsonl")),
        ),
    )


class Simulator:
    """Writes predictions now and their labels a few seconds later, like a real feedback loop."""

    def __init__(self, directory: Path, seed: int = 7) -> None:
        self.directory = directory
        self.rng = np.random.default_rng(seed)
        self.started = time.time()
        self.pending: deque[tuple[float, str]] = deque()  # (due time, label line)
        self.counter = 0
        self.stop = threading.Event()
        # both logs exist before the exporter's first poll: an empty glob would (rightly) be warned about
        for name in ("predictions.jsonl", "labels.jsonl"):
            (directory / name).touch()

    def step(self, now: float, dt: float) -> None:
        drifted = now - self.started > DRIFT_AFTER_SECONDS
        lines = []
        for version, (before, after) in ACCURACY.items():
            n = self.rng.poisson(RATE_PER_SECOND * dt)
            truth = self.rng.random(n) < 0.3
            correct = self.rng.random(n) < (after if drifted else before)
            pred = np.where(correct, truth, ~truth)
            conf = np.clip(np.where(correct, self.rng.beta(8, 2, n), self.rng.beta(4, 3, n)), 0.5, 0.999)
            shift = 1.6 if drifted and version == "1" else 1.0
            amount = self.rng.lognormal(4.0, 1.0, n) * shift
            country = self.rng.choice(["DE", "FR", "US", "NL"], n, p=[0.4, 0.3, 0.2, 0.1])
            # the predicted class gets the confidence, the other class the rest
            p1 = np.round(np.where(pred, conf, 1.0 - conf), 4)
            for i in range(n):
                self.counter += 1
                rid = f"req-{self.counter:08d}"
                lines.append(json.dumps({
                    "id": rid, "model_version": version, "timestamp": round(now, 3),
                    "prediction": int(pred[i]),
                    "probabilities": {"0": round(1.0 - float(p1[i]), 4), "1": float(p1[i])},
                    "features": {"amount": round(float(amount[i]), 2), "country": str(country[i])},
                }))
                delay = self.rng.uniform(*LABEL_DELAY_SECONDS)
                self.pending.append((now + delay, json.dumps({"id": rid, "label": int(truth[i])})))
        with open(self.directory / "predictions.jsonl", "a") as f:
            f.writelines(line + "\n" for line in lines)
        due = []
        while self.pending and self.pending[0][0] <= now + 0.5:
            due.append(self.pending.popleft()[1])
        if due:
            with open(self.directory / "labels.jsonl", "a") as f:
                f.writelines(line + "\n" for line in due)

    def run(self) -> None:
        last = time.time()
        while not self.stop.wait(0.25):
            now = time.time()
            self.step(now, now - last)
            last = now


def run_demo(listen_address: str, state_directory: str | None = None, web_config: WebConfig | None = None, *,
             telemetry_path: str = "/metrics") -> int:
    from exporter.http.webconfig import apply_or_report
    from exporter.runtime.app import Exporter
    from exporter.runtime.signals import install_signal_handlers

    directory = Path(tempfile.mkdtemp(prefix="mlmon-demo-"))
    sim = Simulator(directory)
    writer = threading.Thread(target=sim.run, name="demo-writer", daemon=True)
    writer.start()
    try:
        exporter = Exporter(demo_config(directory), listen_address, state_directory=state_directory)
    except BaseException:  # e.g. the address is taken: the caller says so; leave no temp dir behind
        sim.stop.set()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    exporter.server.telemetry_path = telemetry_path
    if not apply_or_report(exporter.server, web_config):
        sim.stop.set()
        shutil.rmtree(directory, ignore_errors=True)
        return 1
    install_signal_handlers(exporter)
    exporter.start()
    log.info("demo running: a simulated model drifts after %.0f s; open /metrics", DRIFT_AFTER_SECONDS,
             extra={"logs": str(directory), "port": exporter.port})
    try:
        exporter.wait()
    finally:
        sim.stop.set()
        exporter.stop()
        if not os.environ.get("MLMON_DEMO_KEEP_FILES"):
            shutil.rmtree(directory, ignore_errors=True)
    return 0
