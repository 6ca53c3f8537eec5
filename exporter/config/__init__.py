"""The exporter's configuration: one YAML file turned into frozen, typed objects.

Everything the rest of the exporter reads from the YAML goes through these dataclasses, so a
typo in the file is caught once, here, with the path of the problem, instead of surfacing as a
KeyError deep inside a poll cycle. The loader (``load_config`` / ``parse_config``) is strict:
unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the path.

This package's ``__init__`` is its public face: the two entry points below and, re-exported, the
names the rest of the exporter imports. The work is done in one module per job:

* ``errors``: ``ConfigError`` and the pieces of every message (paths, values as written);
* ``yaml_loader``: the one strict YAML loader (duplicate keys refused, dates left as text),
  shared with the web config, and ``${VAR}`` expansion;
* ``checker``: ``Checker``, which validates one value at a time and collects every problem;
* ``keys``: the YAML keys of a section, derived from its dataclass fields;
* ``model``: the dataclasses of ``global``, ``models``, ``retraining``, ``history`` and ``Config``;
* ``sources``: one config class per source type, each parsing its own keys, and their registry;
* ``sections``, ``model_sections``, ``source_sections``: the section parsers;
* ``durations``, ``listen``: value syntaxes shared with the command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from exporter.config.checker import Checker
from exporter.config.errors import ConfigError, describe
from exporter.config.model import (
    BUILTIN_DRIFT_FEATURES,
    DRIFT_METHODS,
    MAX_WINDOW_BUCKETS,
    TASKS,
    Baseline,
    Config,
    DriftConfig,
    DriftThresholds,
    GlobalConfig,
    HistoryConfig,
    JoinConfig,
    ModelConfig,
    RetrainingConfig,
    SeverityTiers,
    TaskKind,
    Thresholds,
    Window,
)
from exporter.config.model_sections import (
    BASELINE_KEYS,
    DRIFT_KEYS,
    DRIFT_THRESHOLD_KEYS,
    JOIN_KEYS,
    MODEL_KEYS,
    SEVERITY_KEYS,
    THRESHOLD_KEYS,
    parse_models,
)
from exporter.config.sections import (
    GLOBAL_KEYS,
    HISTORY_KEYS,
    RETRAINING_KEYS,
    TOP_LEVEL_KEYS,
    parse_global,
    parse_history,
    parse_retraining,
)
from exporter.config.source_sections import (
    LABEL_FIELDS,
    PREDICTION_FIELDS,
    SOURCE_COMMON_KEYS,
    SOURCE_TYPE_KEYS,
    parse_sources,
)
from exporter.config.sources import (
    BASIC_AUTH_KEYS,
    SOURCE_CONFIG_TYPES,
    TLS_KEYS,
    VERSION_FROM_KEYS,
    BasicAuth,
    FileSourceConfig,
    HTTPSourceConfig,
    KServeSourceConfig,
    SourceConfig,
    SourceKind,
    TLSClientConfig,
    VersionFrom,
)
from exporter.config.yaml_loader import YAMLFileError, expand_env, load_yaml


def parse_config(data: object, environ: Mapping[str, str] | None = None) -> Config:
    """Validate an already-decoded YAML document and build the frozen ``Config``.

    ``environ`` (default ``os.environ``) supplies ``${VAR}`` expansions; it is a parameter so
    tests and ``--config.check`` in CI can pin it. An empty document (``None``) is a config
    without models, which is refused like any other. Raises ``ConfigError`` listing every
    problem, each line starting with its path.
    """
    c = Checker()
    if environ is None:
        environ = os.environ
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"(top level): must be a mapping, got {describe(data)}")
    expanded, problems = expand_env(data, environ)
    for path, problem in problems:
        c.error(path, problem)
    # the unexpanded text would fail other checks too; only the real cause is reported
    c.silenced.update(path for path, _ in problems)
    top = c.mapping("", expanded, TOP_LEVEL_KEYS)
    global_ = parse_global(c, top.get("global"))
    models = parse_models(c, top.get("models"))
    sources = parse_sources(c, top.get("sources"), [m.name for m in models if m.name])
    retraining = parse_retraining(c, top.get("retraining"))
    history = parse_history(c, top.get("history"))
    if c.errors:
        raise ConfigError(c.errors)
    return Config(global_=global_, models=models, sources=sources, retraining=retraining, history=history)


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML file at ``path``.

    Unreadable files and YAML syntax errors become a ``ConfigError`` whose message starts with
    the file path (and line and column); validation errors keep the config paths in the
    message and carry the file in ``ConfigError.file``.
    """
    file = str(path)
    try:
        data = load_yaml(path)
    except YAMLFileError as exc:
        raise ConfigError(f"{file}: {exc}", file=file) from exc
    try:
        return parse_config(data, environ)
    except ConfigError as exc:
        raise ConfigError(exc.errors, file=file) from None


__all__ = [
    "BASELINE_KEYS",
    "BASIC_AUTH_KEYS",
    "BUILTIN_DRIFT_FEATURES",
    "DRIFT_KEYS",
    "DRIFT_METHODS",
    "DRIFT_THRESHOLD_KEYS",
    "GLOBAL_KEYS",
    "HISTORY_KEYS",
    "JOIN_KEYS",
    "LABEL_FIELDS",
    "MAX_WINDOW_BUCKETS",
    "MODEL_KEYS",
    "PREDICTION_FIELDS",
    "RETRAINING_KEYS",
    "SEVERITY_KEYS",
    "SOURCE_COMMON_KEYS",
    "SOURCE_CONFIG_TYPES",
    "SOURCE_TYPE_KEYS",
    "TASKS",
    "THRESHOLD_KEYS",
    "TLS_KEYS",
    "TOP_LEVEL_KEYS",
    "VERSION_FROM_KEYS",
    "Baseline",
    "BasicAuth",
    "Config",
    "ConfigError",
    "DriftConfig",
    "DriftThresholds",
    "FileSourceConfig",
    "GlobalConfig",
    "HTTPSourceConfig",
    "HistoryConfig",
    "JoinConfig",
    "KServeSourceConfig",
    "ModelConfig",
    "RetrainingConfig",
    "SeverityTiers",
    "SourceConfig",
    "SourceKind",
    "TLSClientConfig",
    "TaskKind",
    "Thresholds",
    "VersionFrom",
    "Window",
    "load_config",
    "parse_config",
]
