"""Log output in the formats Prometheus tools use: logfmt (default) or JSON, one line per event.

Structured fields passed with ``extra=`` become key=value pairs, so operators can grep and
ship them like any other exporter's logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Prometheus' tools (go-kit log, log/slog) print these four; Python's WARNING and CRITICAL map onto them.
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
                logging.CRITICAL: "error"}
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for k, v in record.__dict__.items():
        if k not in _STANDARD:
            out[k] = v
    if record.exc_info:
        out["err"] = logging.Formatter().formatException(record.exc_info)
    return out


def _logfmt_value(v: Any) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' ="\n\\'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Log to stderr at ``level`` (``debug``, ``info``, ``warn`` or ``error``; ``warning`` is accepted too)."""
    level = "warning" if level == "warn" else level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
