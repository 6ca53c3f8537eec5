"""The labels of ``mlmon_exporter_build_info``: what Prometheus' ``build_info`` metrics carry.

Go exporters label it ``version``, ``revision`` (the git commit), ``branch`` and ``goversion``;
here ``pythonversion`` takes the place of ``goversion``. A Python package does not record its
commit when it is built, so ``revision`` is found, in this order:

1. PEP 610's ``direct_url.json`` of the installed distribution, which holds the commit when it
   was installed from git (``pip install git+https://...@<ref>``);
2. the git checkout the package is imported from (an editable install, or ``python -m exporter``
   in a clone), by asking ``git rev-parse HEAD`` there;
3. otherwise ``unknown`` (a wheel or sdist install: the release ``version`` identifies it).

It is worked out once per process, because it cannot change while the process runs.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from exporter import __version__

DISTRIBUTION = "mlmon-exporter"
UNKNOWN = "unknown"


def commit_from_direct_url(direct_url: Any) -> str | None:
    """The VCS commit recorded in a PEP 610 ``direct_url.json`` document, if any."""
    if not isinstance(direct_url, dict):
        return None
    vcs = direct_url.get("vcs_info")
    commit = vcs.get("commit_id") if isinstance(vcs, dict) else None
    return commit if isinstance(commit, str) and commit else None


def _installed_commit() -> str | None:
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        return commit_from_direct_url(json.loads(text))
    except ValueError:
        return None


def checkout_commit(directory: Path) -> str | None:
    """``git rev-parse HEAD`` of the checkout at ``directory``, None when it is not one (or no git)."""
    git = shutil.which("git")
    if git is None or not (directory / ".git").exists():
        return None
    try:
        r = subprocess.run([git, "-C", str(directory), "rev-parse", "--verify", "HEAD"], capture_output=True,
                           text=True, timeout=5, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.SubprocessError):
        return None
    commit = r.stdout.strip()
    return commit if r.returncode == 0 and len(commit) >= 40 else None


@functools.cache
def revision() -> str:
    """The git commit this exporter was built from, or ``unknown``."""
    source_root = Path(__file__).resolve().parents[2]  # exporter/report/build_info.py -> the checkout
    return _installed_commit() or checkout_commit(source_root) or UNKNOWN


def build_labels() -> tuple[tuple[str, str], ...]:
    """Label pairs of ``mlmon_exporter_build_info``."""
    return (("version", __version__), ("revision", revision()), ("pythonversion", platform.python_version()))
