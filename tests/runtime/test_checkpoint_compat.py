"""A checkpoint written by an earlier build restores in this one, to the same numbers.

``tests/data/checkpoints/format2-3ed48e7/`` was written by the exporter at commit 3ed48e7 (0.2.0
in the making, the last commit before the modules moved into packages, issue 12): the golden
input (tests/report/golden_input.py: two models, four versions, drift, invalid records)
ran through 16 cycles, ``checkpoint.npz`` was saved, and a fresh exporter restored it and ran one
cycle with no input; ``metrics.txt`` is the ``mlmon_*`` part of that exporter's ``/metrics``.

This test does the same restore with the current code and wants the same bytes. It fails when a
refactoring renames a key of the checkpoint tree, changes how windows, joins or drift state are
packed, or reads them back differently, without a format bump (a new ``FORMAT_VERSION`` refuses
old files on purpose, and then this fixture is replaced, with a CHANGELOG entry that says so).

``python -m tests.runtime.test_checkpoint_compat DIR`` writes ``checkpoint.npz`` and
``metrics.txt`` from the current code (how the fixture was made, at 3ed48e7); the test runs the
restore in a fresh process for the same reasons as the golden exposition (hash seed, numpy's
AVX-512 kernels).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from exporter.runtime.app import Exporter
from tests.helpers import FakeClock
from tests.report.golden_input import CYCLES, STEP, T0, avx512_features, feed_golden_input, golden_exporter

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / "format2-3ed48e7"
REPO = Path(__file__).resolve().parents[2]
SAVED_AT = T0 + CYCLES * STEP


def _mlmon_text(exporter: Exporter) -> bytes:
    head = exporter.rendered.text
    head, n = re.subn(rb'(mlmon_exporter_build_info\{pythonversion=")[^"]*(",revision=")[^"]*(")',
                      rb"\1PYTHON\2REVISION\3", head)
    assert n == 1
    return head


def _without_poll_durations(text: bytes) -> bytes:
    """The restore cycle's poll durations are a measurement of that cycle, not checkpointed state:
    how many step-timer readings a poll takes changed when parsing got its own clock (reading,
    parsing and applying are timed apart), so they are left out of the comparison."""
    return re.sub(rb"(?m)^mlmon_exporter_poll_duration_seconds_(bucket|sum)\{.*\n", b"", text)


def _close(exporter: Exporter) -> None:
    for src in exporter.pipeline.sources:
        src.close()
    exporter.retraining.close()
    exporter.server.server_close()


def write_checkpoint(tmp: Path, out: Path) -> None:
    """Run the golden input through 16 cycles and save the checkpoint to ``out``."""
    tmp.mkdir(parents=True, exist_ok=True)
    clock = FakeClock(T0)
    exporter = golden_exporter(tmp, clock)
    try:
        feed_golden_input(exporter, clock, tmp)
        exporter.checkpoint(clock.t)
    finally:
        _close(exporter)
    shutil.copyfile(tmp / "state" / "checkpoint.npz", out / "checkpoint.npz")


def restore_and_render(checkpoint: Path, tmp: Path) -> bytes:
    """A fresh exporter restores ``checkpoint`` and runs one cycle with no input files."""
    (tmp / "state").mkdir(parents=True)
    shutil.copyfile(checkpoint, tmp / "state" / "checkpoint.npz")
    clock = FakeClock(SAVED_AT)
    exporter = golden_exporter(tmp, clock)
    try:
        exporter.cycle()
        return _mlmon_text(exporter)
    finally:
        _close(exporter)


def _in_fresh_process(*args: str) -> bytes:
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(avx512_features()), "PYTHONHASHSEED": "random"}
    result = subprocess.run([sys.executable, "-m", "tests.runtime.test_checkpoint_compat", *args], cwd=REPO,
                            env=env, capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_a_checkpoint_from_before_the_package_move_restores_to_the_same_numbers(tmp_path: Path) -> None:
    got = _without_poll_durations(_in_fresh_process("restore", str(FIXTURE / "checkpoint.npz"), str(tmp_path)))
    want = _without_poll_durations((FIXTURE / "metrics.txt").read_bytes())
    assert b"mlmon_exporter_poll_duration_seconds_count{" in want
    assert b"mlmon_accuracy_ratio{" in want and b'model_version="2"' in want  # the fixture holds real state
    if got != want:
        got_lines, want_lines = got.decode().splitlines(), want.decode().splitlines()
        diff = [f"  was: {a}\n  now: {b}" for a, b in zip(want_lines, got_lines, strict=False) if a != b][:5]
        raise AssertionError(f"restored metrics differ from {FIXTURE.name}/metrics.txt "
                             f"({len(want_lines)} -> {len(got_lines)} lines):\n" + "\n".join(diff))


def test_the_restored_exporter_is_not_an_empty_one(tmp_path: Path) -> None:
    """Without the checkpoint the same cycle gives other numbers: the comparison above is not
    satisfied by an exporter that ignored the file."""
    empty = tmp_path / "none.npz"
    empty.write_bytes(b"")  # unreadable: moved aside, the exporter starts empty
    got = _in_fresh_process("restore", str(empty), str(tmp_path / "run"))
    assert got != (FIXTURE / "metrics.txt").read_bytes()
    assert b"mlmon_accuracy_ratio{" not in got


if __name__ == "__main__":
    if sys.argv[1] == "restore":
        sys.stdout.buffer.write(restore_and_render(Path(sys.argv[2]), Path(sys.argv[3])))
    else:  # write DIR: the fixture, from the current code
        out = Path(sys.argv[1])
        out.mkdir(parents=True, exist_ok=True)
        work = out / ".work"
        write_checkpoint(work / "input", out)
        (out / "metrics.txt").write_bytes(restore_and_render(out / "checkpoint.npz", work / "restore"))
        shutil.rmtree(work)
