"""`mlmon_exporter_build_info` carries version, revision and Python version; a known path with the
wrong method is 405 with `Allow`, not 404 (issue 15, point 11)."""

from __future__ import annotations

import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import exporter
from exporter import __version__
from exporter.config import Config, GlobalConfig, ModelConfig, Window
from exporter.report.build_info import commit_from_direct_url
from exporter.runtime.app import Exporter
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def running() -> Iterator[str]:
    config = Config(global_=GlobalConfig(poll_interval=0.2, windows=(Window("1h", 3600.0),)),
                    models=(ModelConfig(name="m", classes=("0", "1")),))
    ex = Exporter(config, "127.0.0.1:0")
    ex.start()
    url = f"http://127.0.0.1:{ex.port}"
    try:
        wait_for(lambda: "mlmon_exporter_build_info" in requests.get(f"{url}/metrics", timeout=2).text, 10,
                 "first cycle")
        yield url
    finally:
        ex.stop()


def expected_revision() -> str:
    """Independently of the exporter: the checkout's HEAD when the package is imported from one."""
    from_checkout = Path(exporter.__file__).resolve().parent.parent == ROOT and (ROOT / ".git").exists()
    git = shutil.which("git")
    if not from_checkout or git is None:
        return "unknown"
    return subprocess.run([git, "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_build_info_labels(running: str) -> None:
    text = requests.get(f"{running}/metrics", timeout=2).text
    fam = next(f for f in text_string_to_metric_families(text) if f.name == "mlmon_exporter_build_info")
    assert [(s.labels, s.value) for s in fam.samples] == [
        ({"version": __version__, "revision": expected_revision(), "pythonversion": platform.python_version()},
         1.0)]


def test_revision_from_a_pep_610_record() -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert commit_from_direct_url({"url": "https://github.com/x/y", "vcs_info": {"vcs": "git", "commit_id": commit,
                                                                               "requested_revision": "main"}}) == commit
    assert commit_from_direct_url({"url": "file:///src/mlmon", "dir_info": {"editable": True}}) is None
    assert commit_from_direct_url({"vcs_info": {"commit_id": 7}}) is None
    assert commit_from_direct_url(["not", "a", "mapping"]) is None


@pytest.mark.parametrize("path", ["/-/reload", "/api/v1/alertmanager"])
def test_get_on_a_post_endpoint_is_405_with_allow(running: str, path: str) -> None:
    for method in ("GET", "HEAD"):
        r = requests.request(method, f"{running}{path}", timeout=2)
        assert r.status_code == 405, (method, r.status_code)
        assert r.headers["Allow"] == "POST"
    assert requests.get(f"{running}/-/nothing-here", timeout=2).status_code == 404
    assert requests.post(f"{running}/-/reload", timeout=10).status_code != 405  # POST still reaches the handler
