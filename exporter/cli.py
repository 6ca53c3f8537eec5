"""Command line: flags -> objects -> exit code. No monitoring logic lives here."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from exporter import __version__
from exporter.config import ConfigError, load_config
from exporter.listen import EXAMPLES, ListenAddressError, split_listen_address
from exporter.signals import install_signal_handlers

log = logging.getLogger("exporter")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlmon-exporter",
        description="Prometheus exporter for machine-learning model quality: accuracy, drift, confidence.",
    )
    p.add_argument("mode", nargs="?", default="run", choices=("run", "demo", "history"),
                   help="run (default): serve the configured models; demo: a simulated drifting model, no setup; "
                        "history: print the Parquet performance history")
    p.add_argument("--config.file", dest="config_file", help="path to the YAML configuration")
    p.add_argument("--config.check", dest="config_check", action="store_true",
                   help="validate the configuration and exit 0 (valid) or 1 (invalid)")
    p.add_argument("--web.listen-address", dest="listen_address", default=":9741",
                   help=f"address to serve /metrics on: {EXAMPLES} (default :9741)")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics",
                   help="path under which to expose metrics (default /metrics)")
    p.add_argument("--web.config.file", dest="web_config_file",
                   help="exporter-toolkit web config: TLS and basic auth")
    p.add_argument("--state.directory", dest="state_directory", help="where checkpoints and cooldowns are kept")
    p.add_argument("--log.level", dest="log_level", default="info", choices=("debug", "info", "warn", "error"))
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=("logfmt", "json"))
    p.add_argument("--model", help="history: only this model")
    p.add_argument("--since", help="history: only rows newer than this duration, e.g. 24h")
    p.add_argument("--version", action="version", version=f"mlmon-exporter {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from exporter.logs import setup_logging

    setup_logging("warning" if args.log_level == "warn" else args.log_level, args.log_format)
    problem = web_flags_problem(args.listen_address, args.telemetry_path)
    if problem:
        print(f"mlmon-exporter: {problem}", file=sys.stderr)
        return 1
    if args.mode == "demo":
        from exporter.demo import run_demo

        try:
            return run_demo(args.listen_address, args.state_directory, telemetry_path=args.telemetry_path)
        except (OSError, ListenAddressError) as e:
            print(f"mlmon-exporter: cannot start: {e}", file=sys.stderr)
            return 1
    if not args.config_file:
        print("mlmon-exporter: --config.file is required (or run `mlmon-exporter demo`)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config_file)
    except ConfigError as e:
        print(f"mlmon-exporter: invalid configuration {args.config_file}:\n{e}", file=sys.stderr)
        return 1
    web_config = None
    if args.web_config_file:
        from exporter.webconfig import WebConfigError, load_web_config

        try:
            web_config = load_web_config(args.web_config_file)
        except WebConfigError as e:
            print(f"mlmon-exporter: invalid web configuration {args.web_config_file}:\n{e}", file=sys.stderr)
            return 1
    if args.config_check:
        print(f"{args.config_file}: configuration is valid "
              f"({len(config.models)} models, {len(config.sources)} sources)")
        return 0
    if args.mode == "history":
        from exporter.history import history_command

        return history_command(config, args.model, args.since)
    from exporter.app import Exporter

    try:
        exporter = Exporter(config, args.listen_address, config_path=args.config_file,
                            state_directory=args.state_directory)
    except (OSError, ListenAddressError) as e:
        print(f"mlmon-exporter: cannot start: {e}", file=sys.stderr)
        return 1
    exporter.server.telemetry_path = args.telemetry_path
    if web_config is not None:
        from exporter.webconfig import WebConfigError, apply_web_config

        try:  # before start(): TLS wraps the listening socket
            apply_web_config(exporter.server, web_config)
        except WebConfigError as e:
            print(f"mlmon-exporter: invalid web configuration {args.web_config_file}:\n{e}", file=sys.stderr)
            exporter.server.server_close()
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
