"""Hostile input at the real exporter process (``python -m exporter``): malformed lines in the
tailed files, random KServe events, garbage and cut-short HTTP requests, deeply nested JSON. The
process stays up, answers health checks, counts every bad record and refusal exactly once, and
exits cleanly on SIGTERM. The record vocabulary is ``tests.sources.hostile``'s.
"""

from __future__ import annotations

import random
import socket
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import requests

from exporter.sources.kserve import REQUEST_TYPE, RESPONSE_TYPE
from tests.helpers import Samples, append, free_port, spawn_exporter, text_samples, wait_for
from tests.sources.hostile import CLASSES, T0, dumps, invalid_of, val


def spawn(cfg: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return spawn_exporter([f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}"], log)


def scrape(url: str) -> Samples:
    return text_samples(requests.get(f"{url}/metrics", timeout=5).text)


def raw_request(port: int, data: bytes) -> bytes:
    """Send bytes and end the request (half-close); the first bytes of the answer, if any."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        try:
            return s.recv(200)
        except OSError:
            return b""


REAL_BAD = [
    (b"\xff\xfe garbage", "invalid_json"),
    (b'{"id": "u\xc0\xaf", "prediction": 1}', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'{"id": "c", "prediction": 1, "confidence": NaN}', "invalid_confidence"),
    (b'{"id": "t", "prediction": 1, "timestamp": "x"}', "invalid_timestamp"),
    (b'{"id": "n", "prediction": 1, "j": ' + b"[" * 5000, "invalid_json"),
    (b"x" * (2 << 20), "line_too_long"),
    (b'{"id": "k%d", "prediction": "7"}', "unknown_class"),
]


def test_real_exporter_stays_up_and_exact(tmp_path: Path) -> None:
    rng = random.Random(20260101)
    pf, lf = tmp_path / "preds.jsonl", tmp_path / "labels.jsonl"
    preds, labels, want_invalid = [], [], Counter()
    correct = total = 0
    for i in range(300):
        cls = rng.choice(CLASSES)
        preds.append(dumps({"id": f"p{i}", "prediction": int(cls), "confidence": rng.random(),
                            "timestamp": T0 - 1}))  # far in the past for the wall clock: only counters
        if i % 3:
            lab = rng.choice(CLASSES)
            labels.append(dumps({"id": f"p{i}", "label": lab}))
            total += 1
            correct += lab == cls
        if i % 7 == 0:
            bad, reason = REAL_BAD[(i // 7) % len(REAL_BAD)]
            preds.append(bad.replace(b"%d", str(i).encode()))
            want_invalid[reason] += 1
    pf.write_bytes(b"".join(x + b"\n" for x in preds))
    lf.write_bytes(b"".join(x + b"\n" for x in labels))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
global: {{poll_interval: 200ms, windows: [1h]}}
models:
  - {{name: m, classes: ["0", "1"], baseline: {{accuracy: 0.9}}}}
  - {{name: k, classes: ["0", "1"], baseline: {{accuracy: 0.9}}}}
sources:
  - {{name: preds, kind: predictions, type: file, path: "{pf}", model: m}}
  - {{name: labels, kind: labels, type: file, path: "{lf}"}}
  - {{name: kserve, kind: predictions, type: kserve, model_from: inferenceservicename, max_body_bytes: 65536}}
""")
    port = free_port()
    proc = spawn(cfg, port, tmp_path / "exporter.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 30, "exporter ready")
        # hostile KServe events and hostile HTTP
        statuses: Counter[int] = Counter()
        for j in range(150):
            h = {"ce-id": f"k{j}", "ce-type": rng.choice([RESPONSE_TYPE, REQUEST_TYPE, "x"]),
                 "ce-inferenceservicename": rng.choice(["k", "k", "nope"]), "content-type": "application/json"}
            body = rng.choice([
                bytes(rng.randrange(256) for _ in range(rng.randrange(200))),
                dumps({"predictions": [[rng.random(), rng.random()] for _ in range(rng.randrange(4))]}),
                dumps({"predictions": [rng.choice([0, 1, "1", 7, None, [0.5], {"a": 1}])]}),
                b'{"predictions": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                b"x" * 70_000,
            ])
            r = requests.post(f"{url}/api/v1/kserve", data=body, headers=h, timeout=5)
            statuses[r.status_code] += 1
        assert set(statuses) <= {200, 400, 413, 503}, statuses
        for junk in (b"GARBAGE\r\n\r\n", b"POST /api/v1/kserve HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                     b"POST /api/v1/kserve HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
                     b"GET /metrics?" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00"):
            assert not raw_request(port, junk).startswith(b"HTTP/1.1 2"), junk[:40]
        # a body cut short by the client: the server reads what came and the receiver refuses it
        answer = raw_request(port, b"POST /api/v1/kserve HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        statuses[int(answer.split()[1])] += 1
        assert requests.get(f"{url}/-/healthy", timeout=2).status_code == 200

        refused = sum(n for s, n in statuses.items() if s != 200)

        def ingested() -> Samples | None:
            m = scrape(url)
            kserve_refusals = sum(v for k, v in invalid_of(m, "kserve").items()
                                  if k not in ("duplicate", "unknown_class", "unknown_model"))
            return m if val(m, "mlmon_exporter_records_total", 0.0, source="preds") == len(preds) and \
                val(m, "mlmon_exporter_records_total", 0.0, source="labels") == len(labels) and \
                kserve_refusals >= refused else None

        m = wait_for(ingested, 30, "all lines read")
        assert invalid_of(m, "preds") == want_invalid
        assert invalid_of(m, "labels") == Counter()
        base = {"model": "m", "model_version": "unknown"}
        assert val(m, "mlmon_correct_predictions_total", **base) == correct
        assert sum(v for (n, k), v in m.items() if n == "mlmon_labeled_predictions_total"
                   and dict(k)["model"] == "m") == total
        # the KServe source: every record applied or counted, every refusal counted
        records = val(m, "mlmon_exporter_records_total", 0.0, source="kserve")
        applied = sum(v for (n, k), v in m.items() if n == "mlmon_predictions_total" and dict(k)["model"] == "k")
        inv = invalid_of(m, "kserve")
        assert records == applied + sum(inv.values())
        refusals = sum(v for k, v in inv.items() if k not in ("duplicate", "unknown_class", "unknown_model"))
        assert refusals == refused
        assert proc.poll() is None
    finally:
        proc.terminate()
        rc = proc.wait(15)
    assert rc == 0, (tmp_path / "exporter.log").read_text()[-3000:]


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_real_exporter_survives_a_deeply_nested_line(tmp_path: Path, depth: int) -> None:
    """One ordinary-looking JSON-lines batch with a deeply nested record in it: the exporter
    counts it as invalid JSON and keeps reading (not: dies, or stops ingesting for good)."""
    pf = tmp_path / "preds.jsonl"
    pf.write_bytes(b"".join(dumps({"id": f"a{i}", "prediction": 1, "confidence": 0.5}) + b"\n" for i in range(10)))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
global: {{poll_interval: 100ms, windows: [1h]}}
models: [{{name: m, classes: ["0", "1"]}}]
sources: [{{name: preds, kind: predictions, type: file, path: "{pf}", model: m}}]
""")
    port = free_port()
    proc = spawn(cfg, port, tmp_path / "exporter.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: val(scrape(url), "mlmon_exporter_records_total", 0.0, source="preds") == 10, 30, "first lines")
        deep = b'{"id": "deep", "prediction": 1, "j": ' + b"[" * depth + b"]" * depth + b"}"
        append(pf, b"".join(dumps({"id": f"b{i}", "prediction": 1}) + b"\n" for i in range(70)) + deep + b"\n")
        try:
            m = wait_for(lambda: (lambda m: m if val(m, "mlmon_exporter_records_total", 0.0, source="preds") == 81
                                  else None)(scrape(url)), 15, "the batch with the deep line read")
        except (TimeoutError, requests.ConnectionError) as e:
            log = (tmp_path / "exporter.log").read_text()[-1500:]
            state = "alive but no longer ingesting" if proc.poll() is None else f"dead (exit {proc.poll()})"
            pytest.fail(f"nesting {depth}: exporter {state} ({type(e).__name__})\n{log}")
        assert invalid_of(m, "preds") == Counter({"invalid_json": 1})
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)
