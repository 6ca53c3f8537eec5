"""The parsers of the small top-level sections: ``global``, ``retraining`` and ``history``.

Each parser takes the ``Checker`` and the raw YAML value, reports every problem with its path and
returns the typed section (defaults where a value is invalid, so parsing carries on). The allowed
keys of each section are its dataclass's fields (``keys.yaml_keys``). ``models`` has its own
module (``model_sections``), the sources theirs (``source_sections``).
"""

from __future__ import annotations

import math
from typing import Any

from exporter.config.checker import Checker
from exporter.config.errors import describe, index_path, key_path
from exporter.config.keys import yaml_keys
from exporter.config.model import (
    MAX_INGEST_THREADS,
    MAX_WINDOW_BUCKETS,
    Config,
    GlobalConfig,
    HistoryConfig,
    RetrainingConfig,
    Window,
)

TOP_LEVEL_KEYS = yaml_keys(Config)
GLOBAL_KEYS = yaml_keys(GlobalConfig)
RETRAINING_KEYS = yaml_keys(RetrainingConfig)
HISTORY_KEYS = yaml_keys(HistoryConfig)


def parse_global(c: Checker, raw: object) -> GlobalConfig:
    path = "global"
    m = c.mapping(path, raw, GLOBAL_KEYS)
    defaults = GlobalConfig()
    return GlobalConfig(
        poll_interval=c.duration(key_path(path, "poll_interval"), m.get("poll_interval"), defaults.poll_interval),
        windows=_parse_windows(c, key_path(path, "windows"), m.get("windows"), defaults.windows),
        version_idle_expiry=c.duration(
            key_path(path, "version_idle_expiry"), m.get("version_idle_expiry"), defaults.version_idle_expiry
        ),
        checkpoint_interval=c.duration(
            key_path(path, "checkpoint_interval"), m.get("checkpoint_interval"), defaults.checkpoint_interval
        ),
        window_buckets=_parse_window_buckets(c, key_path(path, "window_buckets"), m.get("window_buckets"),
                                             defaults.window_buckets),
        ingest_threads=_parse_ingest_threads(c, key_path(path, "ingest_threads"), m.get("ingest_threads"),
                                             defaults.ingest_threads),
    )


def _parse_ingest_threads(c: Checker, path: str, raw: object, default: int) -> int:
    if raw is None:
        return default
    n = c.integer(path, raw, default, 1)
    if n > MAX_INGEST_THREADS:
        c.error(path, f"must be 1 or {MAX_INGEST_THREADS} (one thread parses while the pipeline thread applies), "
                      f"got {n}")
        return default
    return n


def _parse_window_buckets(c: Checker, path: str, raw: object, default: int) -> int:
    if raw is None:
        return default
    n = c.integer(path, raw, default, 1)
    if n > MAX_WINDOW_BUCKETS:
        c.error(path, f"must be at most {MAX_WINDOW_BUCKETS} (memory grows with buckets), got {n}")
        return default
    return n


def _parse_windows(c: Checker, path: str, raw: object, default: tuple[Window, ...]) -> tuple[Window, ...]:
    items = c.sequence(path, raw)
    if items is None:
        return default
    if not items:
        c.error(path, "must list at least one window")
        return default
    windows: list[Window] = []
    by_name: dict[str, str] = {}
    by_length: dict[float, str] = {}
    for i, item in enumerate(items):
        item_path = index_path(path, i)
        before = len(c.errors)
        seconds = c.duration(item_path, item, 0.0)
        if len(c.errors) > before or not isinstance(item, str):
            continue
        if item in by_name:
            c.error(item_path, f"duplicate window {item}")
        elif seconds in by_length:
            c.error(item_path, f"duplicate window {item} (same length as {by_length[seconds]})")
        else:
            by_name[item] = item
            by_length[seconds] = item
            windows.append(Window(name=item, seconds=seconds))
    return tuple(windows) or default


def parse_retraining(c: Checker, raw: object) -> RetrainingConfig:
    path = "retraining"
    m = c.mapping(path, raw, RETRAINING_KEYS)
    d = RetrainingConfig()
    training_config: dict[str, Any] = {}
    tc_path = key_path(path, "training_config")
    if m.get("training_config") is not None:
        if isinstance(m["training_config"], dict):
            if _json_compatible(c, tc_path, m["training_config"]):
                training_config = m["training_config"]
        else:
            c.error(tc_path, f"must be a mapping, got {describe(m['training_config'])}")
    return RetrainingConfig(
        endpoint=c.url(key_path(path, "endpoint"), m.get("endpoint")),
        cooldown=c.duration(key_path(path, "cooldown"), m.get("cooldown"), d.cooldown, allow_zero=True),
        timeout=c.duration(key_path(path, "timeout"), m.get("timeout"), d.timeout),
        max_attempts=c.integer(key_path(path, "max_attempts"), m.get("max_attempts"), d.max_attempts, 1),
        training_config=training_config,
    )


def _json_compatible(c: Checker, path: str, value: object) -> bool:
    """training_config is copied into a JSON CloudEvent, so it must survive ``json.dumps``."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        if math.isfinite(value):
            return True
        c.error(path, f"must be a finite number (JSON has no {value!r}), got {value!r}")
        return False
    if isinstance(value, list):
        return all([_json_compatible(c, index_path(path, i), v) for i, v in enumerate(value)])
    if isinstance(value, dict):
        ok = True
        for k, v in value.items():
            if not isinstance(k, str):
                c.error(path, f"keys must be strings, got {describe(k)}")
                ok = False
            elif not _json_compatible(c, key_path(path, k), v):
                ok = False
        return ok
    c.error(path, f"must be a string, number, boolean, null, list or mapping, got {describe(value)}")
    return False


def parse_history(c: Checker, raw: object) -> HistoryConfig:
    m = c.mapping("history", raw, HISTORY_KEYS)
    return HistoryConfig(
        directory=c.text("history.directory", m.get("directory")),
        interval=c.duration("history.interval", m.get("interval"), HistoryConfig().interval),
    )
