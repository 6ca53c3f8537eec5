"""The golden exposition: ``/metrics`` (its ``mlmon_*`` part) for a fixed input, byte for byte.

A seeded generator writes prediction and label files for a binary and a multiclass model (two
versions each, drift features, a fixed and a learned baseline, invalid records of many kinds);
a real ``Exporter`` on a ``FakeClock`` tails them through 16 cycles, checkpoints and writes
history, and a real HTTP GET of ``/metrics`` is compared with ``tests/data/golden/metrics.txt``.
Nothing in the input depends on the wall clock, the process or the machine: the time is the
fake clock's, the poll durations come from a fixed-step timer, and the per-scrape
``process_*`` / ``python_*`` metrics (exporter/http/scrape.py adds them after the ``mlmon_*`` text)
are cut off. The exporter runs in a fresh process (its own hash seed) with numpy's AVX-512
kernels switched off (``NPY_DISABLE_CPU_FEATURES``): numpy's AVX-512 ``log`` differs from the
scalar one in the last bit (it changed ``mlmon_data_drift_js_distance`` here), and with them off
every x86-64 machine computes as one without AVX-512 does (AVX2 and the baseline agree).
The golden file must also pass ``promtool check metrics`` (the ``promtool`` fixture of
conftest.py: a failure under ``CI`` when it is missing, a skip elsewhere).

Any change to a metric name, label, HELP text, series order, number or number spelling shows
up here as a diff. When the change is intended, regenerate the file and review its diff::

    .venv/bin/python -m pytest tests/report/test_golden_exposition.py --update-golden

(``MLMON_UPDATE_GOLDEN=1`` does the same), then commit the new file with the change.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.helpers import FakeClock
from tests.report.golden_input import T0, avx512_features, feed_golden_input, golden_exporter

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "metrics.txt"
REPO = Path(__file__).resolve().parents[2]


def render_golden_input(tmp: Path) -> bytes:
    """Run the fixed input through a real exporter and return the ``mlmon_*`` part of ``/metrics``."""
    clock = FakeClock(T0)
    exporter = golden_exporter(tmp, clock)
    try:
        feed_golden_input(exporter, clock, tmp)
        exporter.server.serve_in_thread()
        r = requests.get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=10)
    finally:
        exporter.server.shutdown()
        exporter.server.server_close()
        for src in exporter.pipeline.sources:
            src.close()
        exporter.retraining.close()
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    body = r.content
    # the snapshot's text comes first, then the per-scrape runtime metrics (none of them mlmon_)
    head = exporter.rendered.text
    assert body.startswith(head) and b"\nmlmon_" not in body[len(head):]
    assert head and all(line.startswith((b"mlmon_", b"# HELP mlmon_", b"# TYPE mlmon_"))
                        for line in head.splitlines())
    # build_info names the git commit and the Python it runs on: pinned as placeholders, checked apart
    head, n = re.subn(rb'(mlmon_exporter_build_info\{pythonversion=")[^"]*(",revision=")[^"]*(")',
                      rb"\1PYTHON\2REVISION\3", head)
    assert n == 1, "mlmon_exporter_build_info{pythonversion, revision, version} not found"
    return head


def render_in_fresh_process(tmp: Path) -> bytes:
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(avx512_features()), "PYTHONHASHSEED": "random"}
    result = subprocess.run([sys.executable, "-m", "tests.report.test_golden_exposition", str(tmp)], cwd=REPO, env=env,
                            capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_metrics_match_the_golden_file(tmp_path: Path, update_golden: bool) -> None:
    got = render_in_fresh_process(tmp_path)
    if update_golden:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_bytes(got)
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run pytest {__file__} --update-golden"
    want = GOLDEN.read_bytes()
    if got != want:
        got_lines, want_lines = got.decode().splitlines(), want.decode().splitlines()
        first = next((i for i, (a, b) in enumerate(zip(got_lines, want_lines, strict=False)) if a != b),
                     min(len(got_lines), len(want_lines)))
        pytest.fail(f"/metrics differs from {GOLDEN.name} at line {first + 1}:\n"
                    f"  golden: {want_lines[first] if first < len(want_lines) else '<end>'}\n"
                    f"  now:    {got_lines[first] if first < len(got_lines) else '<end>'}\n"
                    "If the change is intended, rerun with --update-golden and review the file's diff.")


def test_golden_file_passes_promtool(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "metrics"], input=GOLDEN.read_bytes(), capture_output=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()


def test_golden_input_covers_what_it_claims() -> None:
    """The fixed input exercises what the golden is meant to pin (so a thinner input is caught)."""
    text = GOLDEN.read_text()
    for needle in ['model="fraud",model_version="1"', 'model="fraud",model_version="2"',
                   'model="sentiment",model_version="a"', 'model="sentiment",model_version="b"',
                   "mlmon_data_drift_psi", "mlmon_data_drift_ks", "mlmon_data_drift_chi2_p_value",
                   'reason="invalid_json"', 'reason="not_an_object"', 'reason="missing_id"', 'reason="duplicate"',
                   'reason="invalid_class"', 'reason="unknown_class"', 'reason="invalid_confidence"',
                   'reason="invalid_timestamp"',
                   'reason="too_many_versions"', 'reason="unknown_model"', 'reason="wrong_type"',
                   'reason="missing_label"', "mlmon_exporter_checkpoint_last_success_timestamp_seconds",
                   "mlmon_exporter_history_rows_written_total", "mlmon_retraining_requests_total",
                   'mlmon_orphan_labels_total{model="fraud"}',
                   # a version that drifted, to the critical tier
                   'mlmon_accuracy_drift_detected{model="fraud",model_version="2",window="10m"} 1.0',
                   'mlmon_accuracy_drift_severity{model="fraud",model_version="2",severity="critical",'
                   'window="10m"} 1.0']:
        assert needle in text, needle


if __name__ == "__main__":  # the fresh process of render_in_fresh_process
    sys.stdout.buffer.write(render_golden_input(Path(sys.argv[1])))
