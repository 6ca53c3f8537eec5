"""Command line: flags -> objects -> exit code. No monitoring logic lives here.

``mlmon-exporter [flags]`` serves the configured models (``run`` may be spelled out);
``mlmon-exporter demo`` runs a simulated drifting model; ``mlmon-exporter history`` prints the
Parquet performance history. Each subcommand has its own ``--help`` listing only the flags it
uses, as ``promtool``'s subcommands do.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from exporter import __version__
from exporter.config import Config, ConfigError, load_config
from exporter.config.listen import EXAMPLES, ListenAddressError, split_listen_address
from exporter.runtime.signals import install_signal_handlers

if TYPE_CHECKING:
    from exporter.http.webconfig import WebConfig

log = logging.getLogger("exporter")

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("logfmt", "json")
DEFAULTS: dict[str, Any] = {
    "config_file": None, "config_check": False, "listen_address": ":9741", "telemetry_path": "/metrics",
    "web_config_file": None,
    "state_directory": None, "log_level": "info", "log_format": "logfmt", "model": None, "since": None,
}
# The flags each subcommand takes (the top level takes run's, so `run` can be left out).
_FLAGS = {
    "run": ("config_file", "config_check", "listen_address", "telemetry_path", "web_config_file",
            "state_directory", "log_level", "log_format"),
    "demo": ("config_file", "config_check", "listen_address", "telemetry_path", "web_config_file",
             "state_directory", "log_level", "log_format"),
    "history": ("config_file", "log_level", "log_format", "model", "since"),
}
_DESCRIPTIONS = {
    "run": "Serve the configured models on /metrics (the default when no subcommand is given).",
    "demo": "Run a simulated model whose accuracy drifts, with a built-in configuration: no setup needed. "
            "Every metric moves within a minute; drift is detected in about 40 s.",
    "history": "Print the Parquet performance history written under history.directory of the configuration.",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _add_flags(p: argparse.ArgumentParser, names: Sequence[str], *, mode: str, top: bool) -> None:
    """Add the flags ``names`` to ``p``. Subcommand parsers leave unset flags out of the namespace
    (``SUPPRESS``), so a flag given before the subcommand is not reset by the subcommand's default."""
    def default(name: str) -> Any:
        return DEFAULTS[name] if top else argparse.SUPPRESS

    if "config_file" in names:
        help_ = {"demo": argparse.SUPPRESS,  # accepted only to be refused with an explanation
                 "history": "path to the YAML configuration (its history.directory is read)"}.get(
            mode, "path to the YAML configuration (see CONFIGURATION.md)")
        p.add_argument("--config.file", dest="config_file", metavar="FILE", default=default("config_file"), help=help_)
    if "config_check" in names:
        help_ = ("check the web configuration (--web.config.file) and the built-in demo configuration, then exit "
                 "0 (valid) or 1 (invalid)" if mode == "demo" else
                 "validate the configuration (and --web.config.file) and exit 0 (valid) or 1 (invalid); "
                 "warns about file sources whose path matches no file yet")
        p.add_argument("--config.check", dest="config_check", action="store_true", default=default("config_check"),
                       help=help_)
    if "listen_address" in names:
        p.add_argument("--web.listen-address", dest="listen_address", metavar="ADDRESS",
                       default=default("listen_address"),
                       help=f"address to serve /metrics and the receivers on: {EXAMPLES} (default :9741)")
    if "telemetry_path" in names:
        p.add_argument("--web.telemetry-path", dest="telemetry_path", metavar="PATH", default=default("telemetry_path"),
                       help="path under which to expose metrics (default /metrics)")
    if "web_config_file" in names:
        p.add_argument("--web.config.file", dest="web_config_file", metavar="FILE", default=default("web_config_file"),
                       help="exporter-toolkit web config: TLS, mutual TLS, bcrypt basic auth")
    if "state_directory" in names:
        p.add_argument("--state.directory", dest="state_directory", metavar="DIR", default=default("state_directory"),
                       help="where checkpoints and retraining cooldowns are kept (created when missing); "
                            "without it a restart starts empty")
    if "log_level" in names:
        p.add_argument("--log.level", dest="log_level", default=default("log_level"), choices=LOG_LEVELS,
                       help="only log messages with this severity or above: debug, info, warn, error (default info)")
    if "log_format" in names:
        p.add_argument("--log.format", dest="log_format", default=default("log_format"), choices=LOG_FORMATS,
                       help="output format of log messages: logfmt or json (default logfmt)")
    if "model" in names:
        p.add_argument("--model", metavar="NAME", default=default("model"), help="only this model's rows")
    if "since" in names:
        p.add_argument("--since", metavar="DURATION", default=default("since"),
                       help="only rows newer than this duration, e.g. 24h or 7d")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlmon-exporter",
        description="Prometheus exporter for machine-learning model quality: accuracy, drift, confidence. "
                    "Without a subcommand it serves the configured models (as `run`).",
        epilog="`mlmon-exporter <subcommand> --help` lists the flags of each subcommand.",
    )
    p.add_argument("--version", action="version", version=f"mlmon-exporter {__version__}",
                   help="print the version and exit")
    _add_flags(p, _FLAGS["run"], mode="run", top=True)
    p.set_defaults(mode="run", model=None, since=None)
    sub = p.add_subparsers(dest="mode", title="subcommands", metavar="{run,demo,history}")
    for mode, flags in _FLAGS.items():
        sp = sub.add_parser(mode, help=_DESCRIPTIONS[mode], description=_DESCRIPTIONS[mode],
                            prog=f"mlmon-exporter {mode}")
        _add_flags(sp, flags, mode=mode, top=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from exporter.runtime.logs import setup_logging

    setup_logging(args.log_level, args.log_format)
    if args.mode in ("run", "demo"):
        problem = web_flags_problem(args.listen_address, args.telemetry_path)
        if problem:
            print(f"mlmon-exporter: {problem}", file=sys.stderr)
            return 1
    if args.mode == "demo":
        return _demo(parser, args)
    if not args.config_file:
        print("mlmon-exporter: --config.file is required (or run `mlmon-exporter demo`)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config_file)
    except ConfigError as e:
        print(f"mlmon-exporter: invalid configuration {args.config_file}:\n{e}", file=sys.stderr)
        return 1
    if args.mode == "history":
        from exporter.actions.history import history_command

        return history_command(config, args.model, args.since)
    loaded, web_config = _web_config_flag(args)
    if not loaded:
        return 1
    if args.config_check:
        for warning in config_warnings(config):
            print(f"mlmon-exporter: warning: {warning}", file=sys.stderr)
        print(f"{args.config_file}: configuration is valid "
              f"({_plural(len(config.models), 'model')}, {_plural(len(config.sources), 'source')})")
        return 0
    return _serve(config, args, web_config)


def config_warnings(config: Config) -> list[str]:
    """Problems that do not make a configuration invalid but that a user wants to hear about now;
    each source type says what concerns it (``Source.config_warnings``)."""
    from exporter.sources import config_warnings as source_warnings

    return source_warnings(config.sources)


def _web_config_flag(args: argparse.Namespace) -> tuple[bool, WebConfig | None]:
    """The web configuration ``--web.config.file`` names, for ``run`` and ``demo`` alike:
    ``(True, None)`` without the flag, ``(False, None)`` once an invalid file has been reported
    (the caller exits 1), else ``(True, config)``."""
    from exporter.http.webconfig import WebConfigError, load_web_config

    path = args.web_config_file
    if not path:
        return True, None
    try:
        return True, load_web_config(path)
    except WebConfigError as e:
        print(f"mlmon-exporter: invalid web configuration {path}:\n{e}", file=sys.stderr)
        return False, None


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from exporter.demo import demo_config, run_demo

    if args.config_file:
        parser.error("demo runs its own built-in configuration: --config.file does not apply "
                     "(to serve your configuration: mlmon-exporter --config.file=FILE)")
    loaded, web_config = _web_config_flag(args)
    if not loaded:
        return 1
    if args.config_check:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as d:
            config = demo_config(Path(d))
        checked = " and web configuration are" if web_config is not None else " is"
        print(f"demo: the built-in configuration{checked} valid "
              f"({_plural(len(config.models), 'model')}, {_plural(len(config.sources), 'source')})")
        return 0
    try:
        return run_demo(args.listen_address, args.state_directory, web_config, telemetry_path=args.telemetry_path)
    except (OSError, ListenAddressError) as e:
        print(f"mlmon-exporter: cannot start: {e}", file=sys.stderr)
        return 1


def _serve(config: Config, args: argparse.Namespace, web_config: WebConfig | None) -> int:
    from exporter.runtime.app import Exporter

    try:
        exporter = Exporter(config, args.listen_address, config_path=args.config_file,
                            state_directory=args.state_directory)
    except (OSError, ListenAddressError) as e:
        print(f"mlmon-exporter: cannot start: {e}", file=sys.stderr)
        return 1
    exporter.server.telemetry_path = args.telemetry_path
    from exporter.http.webconfig import apply_or_report

    if not apply_or_report(exporter.server, web_config):
        return 1
    install_signal_handlers(exporter)
    exporter.start()
    exporter.wait()
    exporter.stop()
    return 0


RESERVED_PATHS = ("/", "/-/healthy", "/-/ready", "/-/reload")


def web_flags_problem(listen_address: str, telemetry_path: str) -> str | None:
    """One line saying what is wrong with ``--web.listen-address`` / ``--web.telemetry-path``,
    checked before anything starts (hostnames are resolved later, when binding)."""
    try:
        split_listen_address(listen_address)
    except ListenAddressError as e:
        return f"--web.listen-address: {e}"
    if not telemetry_path.startswith("/") or telemetry_path in RESERVED_PATHS or "?" in telemetry_path:
        return (f"--web.telemetry-path: must be a path such as /metrics, not {telemetry_path!r} "
                f"(nor one of {', '.join(RESERVED_PATHS)})")
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
