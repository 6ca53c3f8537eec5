"""The command line as a new user meets it: per-subcommand help, documented flags, exit codes, log levels."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flags(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions if a.help != argparse.SUPPRESS for o in a.option_strings if o.startswith("--")}


@pytest.mark.parametrize("mode, own, foreign", [
    ("history", ["--model", "--since", "--config.file"], ["--web.listen-address", "--state.directory"]),
    ("demo", ["--web.listen-address", "--state.directory", "--config.check"], ["--since", "--model"]),
    ("run", ["--config.file", "--config.check", "--web.config.file"], ["--since", "--model"]),
])
def test_every_subcommand_has_its_own_help(mode: str, own: list[str], foreign: list[str]) -> None:
    r = run(mode, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: mlmon-exporter {mode}"), r.stdout
    for flag in own:
        assert flag in r.stdout, (mode, flag)
    for flag in foreign:
        assert flag not in r.stdout, (mode, flag)


def test_top_level_help_lists_the_subcommands_and_version() -> None:
    r = run("--help")
    assert r.returncode == 0
    for word in ("run", "demo", "history", "--version", "--config.file"):
        assert word in r.stdout
    v = run("--version")
    assert v.returncode == 0 and re.fullmatch(r"mlmon-exporter \d+\.\d+\.\d+\S*\n", v.stdout), v.stdout


def test_every_flag_has_help_text() -> None:
    for name, p in {"(top)": build_parser(), **subparsers()}.items():
        for a in p._actions:
            if a.option_strings and a.help != argparse.SUPPRESS:
                assert a.help, (name, a.option_strings)
    top = {a.dest: a.help or "" for a in build_parser()._actions}
    assert "debug, info, warn, error" in top["log_level"]
    assert "logfmt or json" in top["log_format"]


def test_readme_documents_every_subcommand_and_flag() -> None:
    for mode in subparsers():
        if mode != "run":
            assert f"mlmon-exporter {mode}" in README, mode
    documented = set(re.findall(r"`(--[a-z][a-z.\-]*)", README))
    every = flags(build_parser()).union(*(flags(p) for p in subparsers().values())) - {"--help"}
    assert every - documented == set()


def test_demo_config_check_checks_and_exits_without_serving() -> None:
    r = run("demo", "--config.check", "--web.listen-address=127.0.0.1:1", timeout=30)
    assert r.returncode == 0, r.stderr
    assert "demo: the built-in configuration is valid (1 model, 2 sources)" in r.stdout


@pytest.mark.parametrize("mode", ["demo", "run"])
def test_config_check_checks_the_web_config(tmp_path: Path, mode: str) -> None:
    """``run`` and ``demo`` share one loader for --web.config.file: both refuse a bad one, exit 1."""
    bad = tmp_path / "web.yml"
    bad.write_text("tls_server_config: {cert_file: nope.crt, key_file: nope.key}\n")
    good = tmp_path / "web-ok.yml"
    good.write_text("{}\n")
    cfg = tmp_path / "c.yaml"
    (tmp_path / "p.jsonl").write_text("")
    cfg.write_text(f"models: [{{name: m}}]\n"
                   f"sources: [{{name: p, kind: predictions, type: file, path: '{tmp_path}/p.jsonl', model: m}}]\n")
    first = ["demo"] if mode == "demo" else [f"--config.file={cfg}"]
    r = run(*first, "--config.check", f"--web.config.file={bad}", timeout=30)
    assert r.returncode == 1
    assert f"invalid web configuration {bad}" in r.stderr
    r = run(*first, "--config.check", f"--web.config.file={good}", timeout=30)
    assert r.returncode == 0, r.stderr


def test_a_duplicate_key_in_the_web_config_is_reported_with_file_and_line(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("http_server_config:\n  http2: true\n  http2: false\n")
    r = run("demo", "--config.check", f"--web.config.file={web}", timeout=30)
    assert r.returncode == 1
    assert f'invalid web configuration {web}:\ninvalid YAML at line 3, column 3: duplicate key "http2"' in r.stderr


def test_demo_refuses_a_config_file_clearly(tmp_path: Path) -> None:
    r = run("demo", f"--config.file={tmp_path / 'c.yaml'}", timeout=30)
    assert r.returncode == 2
    assert "demo runs its own built-in configuration: --config.file does not apply" in r.stderr


def test_config_check_counts_in_singular(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    (tmp_path / "p.jsonl").write_text("")
    cfg.write_text(f"models: [{{name: m}}]\n"
                   f"sources: [{{name: p, kind: predictions, type: file, path: '{tmp_path}/p.jsonl', model: m}}]\n")
    r = run("--config.check", f"--config.file={cfg}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{cfg}: configuration is valid (1 model, 1 source)\n"
    assert r.stderr == ""


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_warnings_are_logged_as_level_warn(fmt: str) -> None:
    code = (f"import logging; from exporter.runtime.logs import setup_logging; setup_logging('warn', {fmt!r}); "
            "log = logging.getLogger('t'); log.info('hidden'); log.warning('shown'); log.critical('worst')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = r.stderr.splitlines()
    assert len(lines) == 2, lines
    if fmt == "json":
        assert [json.loads(line)["level"] for line in lines] == ["warn", "error"]
    else:
        assert " level=warn " in lines[0] and " level=error " in lines[1], lines
