"""The exporter's configuration: one YAML file turned into frozen, typed objects.

Everything the rest of the exporter reads from the YAML goes through these dataclasses, so a
typo in the file is caught once, here, with the path of the problem, instead of surfacing as a
KeyError deep inside a poll cycle. The loader (``load_config`` / ``parse_config``) is strict:
unknown keys, wrong types and out-of-range values raise ``ConfigError`` naming the path.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import yaml

from exporter.config.durations import DURATION_HINT, parse_duration
from exporter.config.listen import ListenAddressError, split_listen_address

TaskKind = Literal["binary", "multiclass"]
TASKS: tuple[str, ...] = ("binary", "multiclass")
SourceKind = Literal["predictions", "labels"]
SourceType = Literal["file", "http", "kserve"]
VersionFrom = Literal["metadata", "annotation", "header", "source_revision"]


class ConfigError(ValueError):
    """A configuration problem; the message starts with the path, e.g. ``models[0].thresholds.drift``.

    The loader reports every problem it finds at once (one per line in the message, one per
    item in ``errors``) so a user fixes a file in one round instead of one error per restart.
    ``file`` is the config file the problems were found in, when loaded from a file; it is kept
    out of the message so each line still starts with the path inside the config.
    """

    def __init__(self, errors: str | Sequence[str], *, file: str | None = None) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        self.file = file
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Window:
    """A sliding window: ``name`` is the label value users see (``1h``), ``seconds`` its length."""

    name: str
    seconds: float


@dataclass(frozen=True)
class SeverityTiers:
    """Accuracy-drop tiers: drop > critical is ``critical``, drop > high is ``high``, else ``low``."""

    high: float = 0.05
    critical: float = 0.10


@dataclass(frozen=True)
class Thresholds:
    accuracy: float = 0.80
    drift: float = 0.05
    confidence: float = 0.75
    min_samples: int = 100
    severity: SeverityTiers = field(default_factory=SeverityTiers)


@dataclass(frozen=True)
class Baseline:
    """Exactly one of ``accuracy`` (fixed for every version) or ``first_labeled`` (learned per version)."""

    accuracy: float | None = None
    first_labeled: int | None = None


@dataclass(frozen=True)
class JoinConfig:
    ttl: float = 72 * 3600.0
    max_pending: int = 1_000_000


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.25
    ks: float = 0.1
    js: float = 0.1
    chi2_p_value: float = 0.01


@dataclass(frozen=True)
class DriftConfig:
    reference: str | None = None
    reference_size: int = 5000
    features: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("psi",)
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    max_categories: int = 50


@dataclass(frozen=True)
class ModelConfig:
    name: str
    task: TaskKind = "binary"
    classes: tuple[str, ...] | None = None
    positive_class: str = "1"
    max_classes: int = 50
    max_versions: int = 20
    thresholds: Thresholds = field(default_factory=Thresholds)
    baseline: Baseline = field(default_factory=Baseline)
    join: JoinConfig = field(default_factory=JoinConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    confidence_buckets: tuple[float, ...] = (
        0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99,
    )
    label_delay_buckets: tuple[float, ...] = (
        60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0, 172800.0, 259200.0, 604800.0,
    )


@dataclass(frozen=True)
class TLSClientConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password: str


@dataclass(frozen=True)
class SourceConfig:
    """One input. Keys that do not apply to ``type`` are refused by the loader."""

    name: str
    kind: SourceKind
    type: SourceType
    # where model / version come from: fixed here, or mapped from the record via ``fields``
    model: str | None = None
    model_version: str | None = None
    # canonical field name -> dotted path in the record (id, model, model_version, timestamp,
    # prediction, confidence, probabilities, features, label)
    fields: dict[str, str] = field(default_factory=dict)
    max_line_bytes: int = 1 << 20
    # type: file and http: bytes one poll reads at most (a backlog is caught up over several polls)
    max_bytes_per_poll: int = 4 << 20
    # type: file
    path: str | None = None
    start_at: Literal["beginning", "end"] = "beginning"
    # type: http
    url: str | None = None
    interval: float = 30.0
    cursor_param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    basic_auth: BasicAuth | None = None
    timeout: float = 10.0
    tls: TLSClientConfig = field(default_factory=TLSClientConfig)
    max_pages_per_poll: int = 100
    # type: kserve
    model_from: Literal["inferenceservicename"] | None = None
    # (kind, key): ("metadata", header) | ("annotation", key) | ("header", name) | ("source_revision", "")
    version_from: tuple[VersionFrom, str] | None = None
    version_header: str | None = None  # older spelling: a POST header, then a ce-metadata key
    listen_address: str | None = None
    max_body_bytes: int = 10 << 20
    queue_size: int = 1000
    forward_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetrainingConfig:
    endpoint: str | None = None
    cooldown: float = 6 * 3600.0
    timeout: float = 10.0
    max_attempts: int = 5
    training_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HistoryConfig:
    directory: str | None = None
    interval: float = 300.0


@dataclass(frozen=True)
class GlobalConfig:
    poll_interval: float = 5.0
    windows: tuple[Window, ...] = (Window("1h", 3600.0), Window("24h", 86400.0))
    version_idle_expiry: float = 7 * 86400.0
    checkpoint_interval: float = 10.0
    window_buckets: int = 60


@dataclass(frozen=True)
class Config:
    global_: GlobalConfig = field(default_factory=GlobalConfig)
    models: tuple[ModelConfig, ...] = ()
    sources: tuple[SourceConfig, ...] = ()
    retraining: RetrainingConfig = field(default_factory=RetrainingConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)

    def model(self, name: str) -> ModelConfig | None:
        for m in self.models:
            if m.name == name:
                return m
        return None


# --------------------------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------------------------

TOP_LEVEL_KEYS = ("global", "models", "sources", "retraining", "history")
GLOBAL_KEYS = ("poll_interval", "windows", "window_buckets", "version_idle_expiry", "checkpoint_interval")
MODEL_KEYS = (
    "name", "task", "classes", "positive_class", "max_classes", "max_versions", "thresholds", "baseline", "join",
    "drift", "confidence_buckets", "label_delay_buckets",
)
THRESHOLD_KEYS = ("accuracy", "drift", "confidence", "min_samples", "severity")
SEVERITY_KEYS = ("high", "critical")
BASELINE_KEYS = ("accuracy", "first_labeled")
JOIN_KEYS = ("ttl", "max_pending")
DRIFT_KEYS = ("reference", "reference_size", "features", "methods", "thresholds", "max_categories")
DRIFT_METHODS = ("psi", "ks", "js", "chi2")
DRIFT_THRESHOLD_KEYS = ("psi", "ks", "js", "chi2_p_value")
# Features that every model's data drift covers without being listed; a user feature of the same
# name would collide with them in the `feature` label.
BUILTIN_DRIFT_FEATURES = ("confidence", "predicted_class")
SOURCE_COMMON_KEYS = ("name", "kind", "type", "model", "model_version", "fields", "max_line_bytes")
SOURCE_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "file": ("path", "start_at", "max_bytes_per_poll"),
    "http": (
        "url", "interval", "cursor_param", "headers", "basic_auth", "timeout", "tls", "max_pages_per_poll",
        "max_bytes_per_poll",
    ),
    "kserve": (
        "model_from", "version_from", "version_header", "listen_address", "max_body_bytes", "queue_size",
        "forward_to",
    ),
}
PREDICTION_FIELDS = (
    "id", "model", "model_version", "timestamp", "prediction", "confidence", "probabilities", "features",
)
LABEL_FIELDS = ("id", "label", "timestamp", "model")
BASIC_AUTH_KEYS = ("username", "password")
TLS_KEYS = ("ca_file", "cert_file", "key_file", "insecure_skip_verify")
RETRAINING_KEYS = ("endpoint", "cooldown", "timeout", "max_attempts", "training_config")
HISTORY_KEYS = ("directory", "interval")

_NAME_RE = re.compile(r"^[a-zA-Z0-9_.:-]+$")
_DOTTED_PATH_RE = re.compile(r"^[^.]+(?:\.[^.]+)*$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ANNOTATION_KEY_RE = re.compile(
    r"^(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# `$${` first so an escaped reference is never read as a reference; a lone `${` is malformed.
_ENV_REF_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _key(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _describe(value: object) -> str:
    """Render a YAML value the way the user wrote it, so 'got ...' in a message is recognisable."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _quoted_list(items: Sequence[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


class _Checker:
    """Collects every error instead of stopping at the first, and returns usable fallbacks.

    Each helper validates one value and returns it converted, or the default when the value is
    absent or invalid, so parsing carries on and the remaining problems are found too. Paths
    whose ``${VAR}`` expansion failed are silenced: a second complaint about the unexpanded
    text would only distract from the real cause.
    """

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.silenced: set[str] = set()

    def error(self, path: str, message: str) -> None:
        if path not in self.silenced:
            self.errors.append(f"{path or '(top level)'}: {message}")

    # -- structure ----------------------------------------------------------------------------

    def mapping(
        self, path: str, value: object, allowed: Sequence[str], misplaced: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The allowed entries of a mapping; ``null`` means "all defaults" and gives ``{}``.

        ``misplaced`` maps keys that exist elsewhere (another source type, say) to a message
        saying where they belong, which helps more than "unknown key".
        """
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {_describe(value)}")
            return {}
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.error(path, f"keys must be strings, got {_describe(key)}")
            elif key in allowed:
                result[key] = item
            elif misplaced and key in misplaced:
                self.error(_key(path, key), misplaced[key])
            else:
                self.error(_key(path, key), _unknown_key(key, allowed))
        return result

    def sequence(self, path: str, value: object) -> list[Any] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            self.error(path, f"must be a list, got {_describe(value)}")
            return None
        return value

    # -- scalars ------------------------------------------------------------------------------

    def text(
        self, path: str, value: object, *, required: bool = False, allow_empty: bool = False,
    ) -> str | None:
        if value is None:
            if required:
                self.error(path, "is required")
            return None
        if not isinstance(value, str):
            self.error(path, f"must be a string, got {_describe(value)}")
            return None
        if not value and not allow_empty:
            self.error(path, "must not be empty")
            return None
        return value

    def name(self, path: str, value: object, *, required: bool = False) -> str | None:
        """A model name: text or an integer (normalised to text), restricted to a safe alphabet."""
        text = self.label_text(path, value, required=required)
        if text is not None and not _NAME_RE.match(text):
            self.error(path, f"must contain only letters, digits and _ . : -, got {_describe(text)}")
            return None
        return text

    def label_text(self, path: str, value: object, *, required: bool = False) -> str | None:
        """A class or version: YAML reads ``1`` as an integer, but these are compared as text."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if value is not None and not isinstance(value, str):
            self.error(path, f"must be a string or an integer, got {_describe(value)}")
            return None
        return self.text(path, value, required=required)

    def choice(
        self, path: str, value: object, choices: Sequence[str], *, required: bool = False,
    ) -> str | None:
        if value is None:
            if required:
                self.error(path, "is required")
            return None
        if not isinstance(value, str) or value not in choices:
            self.error(path, f"must be one of {', '.join(choices)}, got {_describe(value)}")
            return None
        return value

    def boolean(self, path: str, value: object, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {_describe(value)}")
            return default
        return value

    def _number(self, path: str, value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"must be a number, got {_describe(value)}")
            return None
        return float(value)

    def ratio(self, path: str, value: object, default: float) -> float:
        number = self._number(path, value)
        if number is None:
            return default
        if not 0.0 <= number <= 1.0:  # also refuses NaN
            self.error(path, f"must be between 0 and 1, got {_describe(value)}")
            return default
        return number

    def positive(self, path: str, value: object, default: float) -> float:
        number = self._number(path, value)
        if number is None:
            return default
        if not (math.isfinite(number) and number > 0):
            self.error(path, f"must be a finite number greater than 0, got {_describe(value)}")
            return default
        return number

    def integer(self, path: str, value: object, default: int, minimum: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be an integer, got {_describe(value)}")
            return default
        if value < minimum:
            self.error(path, f"must be an integer >= {minimum}, got {value}")
            return default
        return value

    def optional_integer(self, path: str, value: object, minimum: int) -> int | None:
        if value is None:
            return None
        before = len(self.errors)
        result = self.integer(path, value, minimum, minimum)
        return None if len(self.errors) > before else result

    def duration(self, path: str, value: object, default: float, *, allow_zero: bool = False) -> float:
        if value is None:
            return default
        seconds = self._duration(path, value)
        if seconds is None:
            return default
        if seconds == 0 and not allow_zero:
            self.error(path, f"must be greater than 0, got {value}")
            return default
        return seconds

    def _duration(self, path: str, value: object) -> float | None:
        if not isinstance(value, str):
            self.error(path, f"must be a duration such as 30s, 5m, 1h30m or 7d, got {_describe(value)}")
            return None
        try:
            return parse_duration(value)
        except ValueError:
            self.error(path, f"invalid duration {_describe(value)}; {DURATION_HINT}")
            return None

    def url(self, path: str, value: object, *, required: bool = False) -> str | None:
        text = self.text(path, value, required=required)
        if text is None:
            return None
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.error(path, f"must be an http:// or https:// URL, got {_describe(text)}")
            return None
        return text


def _unknown_key(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"unknown key{hint}; allowed keys: {', '.join(allowed)}"


# -- ${VAR} expansion ----------------------------------------------------------------------------


def _expand(value: Any, path: str, environ: Mapping[str, str], checker: _Checker) -> Any:
    """Expand ``${VAR}`` in every string value (keys are left alone) of the raw YAML tree."""
    if isinstance(value, str):
        return _expand_string(value, path, environ, checker)
    if isinstance(value, dict):
        return {k: _expand(v, _key(path, k), environ, checker) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, _index(path, i), environ, checker) for i, v in enumerate(value)]
    return value


def _expand_string(text: str, path: str, environ: Mapping[str, str], checker: _Checker) -> str:
    if "$" not in text:
        return text
    problems: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        name = match.group(1)
        if name is None or not _ENV_NAME_RE.match(name):
            problems.append(
                f'invalid reference {_describe(whole)}; write ${{NAME}}, or $${{ for a literal "${{"'
            )
            return whole
        if name not in environ:
            problems.append(f"environment variable {name} is not set")
            return whole
        return environ[name]

    expanded = _ENV_REF_RE.sub(substitute, text)
    for problem in problems:
        checker.error(path, problem)
    if problems:
        checker.silenced.add(path)
    return expanded


# -- sections ------------------------------------------------------------------------------------


def _parse_global(c: _Checker, raw: object) -> GlobalConfig:
    path = "global"
    m = c.mapping(path, raw, GLOBAL_KEYS)
    defaults = GlobalConfig()
    return GlobalConfig(
        poll_interval=c.duration(_key(path, "poll_interval"), m.get("poll_interval"), defaults.poll_interval),
        windows=_parse_windows(c, _key(path, "windows"), m.get("windows"), defaults.windows),
        version_idle_expiry=c.duration(
            _key(path, "version_idle_expiry"), m.get("version_idle_expiry"), defaults.version_idle_expiry
        ),
        checkpoint_interval=c.duration(
            _key(path, "checkpoint_interval"), m.get("checkpoint_interval"), defaults.checkpoint_interval
        ),
        window_buckets=_parse_window_buckets(c, _key(path, "window_buckets"), m.get("window_buckets"),
                                             defaults.window_buckets),
    )


#: More buckets buy resolution at the cost of memory per window (DESIGN §2 "Windows").
MAX_WINDOW_BUCKETS = 1000


def _parse_window_buckets(c: _Checker, path: str, raw: object, default: int) -> int:
    if raw is None:
        return default
    n = c.integer(path, raw, default, 1)
    if n > MAX_WINDOW_BUCKETS:
        c.error(path, f"must be at most {MAX_WINDOW_BUCKETS} (memory grows with buckets), got {n}")
        return default
    return n


def _parse_windows(c: _Checker, path: str, raw: object, default: tuple[Window, ...]) -> tuple[Window, ...]:
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
        item_path = _index(path, i)
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


def _parse_model(c: _Checker, path: str, raw: object) -> ModelConfig:
    if not isinstance(raw, dict):
        c.error(path, f"must be a mapping, got {_describe(raw)}")
        return ModelConfig(name="")
    m = c.mapping(path, raw, MODEL_KEYS)
    name = c.name(_key(path, "name"), m.get("name"), required=True)
    # An invalid task (say "multi-class") is reported once; the checks that depend on the task are
    # skipped for it rather than run against the default "binary", which would add spurious errors.
    task_ok = _parse_task(c, _key(path, "task"), m.get("task"))
    task = task_ok or "binary"
    classes = _parse_classes(c, _key(path, "classes"), m.get("classes"), task_ok)

    positive_class = "1"
    if m.get("positive_class") is not None:
        if task_ok is None:
            pass
        elif task != "binary":
            c.error(_key(path, "positive_class"), "only valid for task binary")
        elif isinstance(m["positive_class"], bool):
            c.error(_key(path, "positive_class"), _boolean_class(m["positive_class"]))
        else:
            positive = c.label_text(_key(path, "positive_class"), m["positive_class"])
            if positive is not None:
                if classes is not None and positive not in classes:
                    c.error(
                        _key(path, "positive_class"),
                        f"must be one of classes {_quoted_list(classes)}, got {_describe(positive)}",
                    )
                positive_class = positive
    elif task_ok == "binary" and classes is not None and positive_class not in classes:
        c.error(
            _key(path, "positive_class"),
            f'is required when classes do not include the default "1" (classes: {_quoted_list(classes)})',
        )

    defaults = ModelConfig(name="")
    max_classes = defaults.max_classes
    if m.get("max_classes") is not None and task_ok is not None:
        if task == "binary":
            c.error(_key(path, "max_classes"), "only valid for task multiclass")
        elif classes is not None:
            c.error(_key(path, "max_classes"), "only used when classes are discovered; remove it or classes")
        else:
            max_classes = c.integer(_key(path, "max_classes"), m["max_classes"], defaults.max_classes, 2)

    max_versions = defaults.max_versions
    if m.get("max_versions") is not None:
        max_versions = c.integer(_key(path, "max_versions"), m["max_versions"], defaults.max_versions, 1)

    return ModelConfig(
        name=name or "",
        task=task,
        classes=classes,
        positive_class=positive_class,
        max_classes=max_classes,
        max_versions=max_versions,
        thresholds=_parse_thresholds(c, _key(path, "thresholds"), m.get("thresholds")),
        baseline=_parse_baseline(c, _key(path, "baseline"), m.get("baseline")),
        join=_parse_join(c, _key(path, "join"), m.get("join")),
        drift=_parse_drift(c, _key(path, "drift"), m.get("drift")),
        confidence_buckets=_parse_buckets(
            c, _key(path, "confidence_buckets"), m.get("confidence_buckets"), defaults.confidence_buckets
        ),
        label_delay_buckets=_parse_buckets(
            c, _key(path, "label_delay_buckets"), m.get("label_delay_buckets"), defaults.label_delay_buckets,
            durations=True,
        ),
    )


def _parse_task(c: _Checker, path: str, raw: object) -> TaskKind | None:
    """The task, default ``binary``; None when invalid (reported, with a hint for near misses)."""
    if raw is None:
        return "binary"
    if isinstance(raw, str) and raw in TASKS:
        return cast(TaskKind, raw)
    close = difflib.get_close_matches(raw, TASKS, n=1) if isinstance(raw, str) else []
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    c.error(path, f"must be one of {', '.join(TASKS)}, got {_describe(raw)}{hint}")
    return None


def _boolean_class(value: bool) -> str:
    return (f"must be a string or an integer, got {_describe(value)}: YAML reads unquoted yes/no, on/off and "
            'true/false as booleans; quote class names, e.g. classes: ["yes", "no"]')


def _parse_classes(c: _Checker, path: str, raw: object, task: TaskKind | None) -> tuple[str, ...] | None:
    """The configured classes; their number is only checked against a valid ``task``."""
    items = c.sequence(path, raw)
    if items is None:
        return None
    classes: list[str] = []
    ok = True
    for i, item in enumerate(items):
        if isinstance(item, bool):
            c.error(_index(path, i), _boolean_class(item))
            ok = False
            continue
        value = c.label_text(_index(path, i), item, required=True)
        if value is None:
            ok = False
        elif value in classes:
            c.error(_index(path, i), f"duplicate class {_describe(value)}")
            ok = False
        else:
            classes.append(value)
    if not ok:
        return None
    if task == "binary" and len(classes) != 2:
        c.error(path, f"a binary model needs exactly 2 classes, got {len(classes)}")
        return None
    if task == "multiclass" and len(classes) < 2:
        c.error(path, f"a multiclass model needs at least 2 classes, got {len(classes)}")
        return None
    return tuple(classes)


def _parse_thresholds(c: _Checker, path: str, raw: object) -> Thresholds:
    m = c.mapping(path, raw, THRESHOLD_KEYS)
    d = Thresholds()
    return Thresholds(
        accuracy=c.ratio(_key(path, "accuracy"), m.get("accuracy"), d.accuracy),
        drift=c.ratio(_key(path, "drift"), m.get("drift"), d.drift),
        confidence=c.ratio(_key(path, "confidence"), m.get("confidence"), d.confidence),
        min_samples=c.integer(_key(path, "min_samples"), m.get("min_samples"), d.min_samples, 1),
        severity=_parse_severity(c, _key(path, "severity"), m.get("severity")),
    )


def _parse_severity(c: _Checker, path: str, raw: object) -> SeverityTiers:
    m = c.mapping(path, raw, SEVERITY_KEYS)
    d = SeverityTiers()
    before = len(c.errors)
    high = c.ratio(_key(path, "high"), m.get("high"), d.high)
    critical = c.ratio(_key(path, "critical"), m.get("critical"), d.critical)
    if len(c.errors) == before and high > critical:
        c.error(_key(path, "high"), f"must not exceed critical ({critical!r}), got {high!r}")
    return SeverityTiers(high=high, critical=critical)


def _parse_baseline(c: _Checker, path: str, raw: object) -> Baseline:
    m = c.mapping(path, raw, BASELINE_KEYS)
    accuracy = None if m.get("accuracy") is None else c.ratio(_key(path, "accuracy"), m["accuracy"], 0.0)
    first_labeled = c.optional_integer(_key(path, "first_labeled"), m.get("first_labeled"), 1)
    if m.get("accuracy") is not None and m.get("first_labeled") is not None:
        c.error(path, "set either accuracy or first_labeled, not both")
    return Baseline(accuracy=accuracy, first_labeled=first_labeled)


def _parse_join(c: _Checker, path: str, raw: object) -> JoinConfig:
    m = c.mapping(path, raw, JOIN_KEYS)
    d = JoinConfig()
    return JoinConfig(
        ttl=c.duration(_key(path, "ttl"), m.get("ttl"), d.ttl),
        max_pending=c.integer(_key(path, "max_pending"), m.get("max_pending"), d.max_pending, 1),
    )


def _parse_drift(c: _Checker, path: str, raw: object) -> DriftConfig:
    m = c.mapping(path, raw, DRIFT_KEYS)
    d = DriftConfig()

    features: list[str] = []
    for i, item in enumerate(c.sequence(_key(path, "features"), m.get("features")) or []):
        item_path = _index(_key(path, "features"), i)
        feature = c.text(item_path, item, required=True)
        if feature is None:
            continue
        if feature in BUILTIN_DRIFT_FEATURES:
            c.error(item_path, f"{_describe(feature)} is always monitored; list input features only")
        elif feature in features:
            c.error(item_path, f"duplicate feature {_describe(feature)}")
        else:
            features.append(feature)

    methods: list[str] = []
    raw_methods = c.sequence(_key(path, "methods"), m.get("methods"))
    if raw_methods is not None and not raw_methods:
        c.error(_key(path, "methods"), f"must list at least one of {', '.join(DRIFT_METHODS)}")
    for i, item in enumerate(raw_methods or []):
        item_path = _index(_key(path, "methods"), i)
        method = c.choice(item_path, item, DRIFT_METHODS, required=True)
        if method is None:
            continue
        if method in methods:
            c.error(item_path, f"duplicate method {method}")
        else:
            methods.append(method)

    tm = c.mapping(_key(path, "thresholds"), m.get("thresholds"), DRIFT_THRESHOLD_KEYS)
    tp = _key(path, "thresholds")
    td = DriftThresholds()
    thresholds = DriftThresholds(
        psi=c.positive(_key(tp, "psi"), tm.get("psi"), td.psi),
        ks=c.ratio(_key(tp, "ks"), tm.get("ks"), td.ks),
        js=c.ratio(_key(tp, "js"), tm.get("js"), td.js),
        chi2_p_value=c.ratio(_key(tp, "chi2_p_value"), tm.get("chi2_p_value"), td.chi2_p_value),
    )
    return DriftConfig(
        reference=c.text(_key(path, "reference"), m.get("reference")),
        reference_size=c.integer(_key(path, "reference_size"), m.get("reference_size"), d.reference_size, 1),
        features=tuple(features),
        methods=tuple(methods) or d.methods,
        thresholds=thresholds,
        max_categories=c.integer(_key(path, "max_categories"), m.get("max_categories"), d.max_categories, 1),
    )


def _parse_buckets(
    c: _Checker, path: str, raw: object, default: tuple[float, ...], *, durations: bool = False,
) -> tuple[float, ...]:
    """Histogram bucket bounds: positive, finite, strictly increasing (``+Inf`` is implicit)."""
    items = c.sequence(path, raw)
    if items is None:
        return default
    if not items:
        c.error(path, "must list at least one bucket")
        return default
    bounds: list[float] = []
    before = len(c.errors)
    for i, item in enumerate(items):
        item_path = _index(path, i)
        if durations and isinstance(item, str):
            bound = c.duration(item_path, item, 0.0)
            if bound == 0.0:
                continue
        elif isinstance(item, bool) or not isinstance(item, int | float):
            kind = "a number of seconds or a duration" if durations else "a number"
            c.error(item_path, f"must be {kind}, got {_describe(item)}")
            continue
        elif not (math.isfinite(item) and item > 0):
            c.error(item_path, f"must be a finite number greater than 0, got {_describe(item)}")
            continue
        else:
            bound = float(item)
        if bounds and bound <= bounds[-1]:
            c.error(
                item_path, f"must be greater than the previous bucket ({bounds[-1]!r}), got {_describe(item)}"
            )
            continue
        bounds.append(bound)
    return tuple(bounds) if len(c.errors) == before else default


def _parse_source(
    c: _Checker, path: str, raw: object, model_names: Sequence[str],
) -> SourceConfig:
    if not isinstance(raw, dict):
        c.error(path, f"must be a mapping, got {_describe(raw)}")
        return SourceConfig(name="", kind="predictions", type="file")
    # The type decides which keys are allowed, so read it before checking the keys.
    source_type = c.choice(_key(path, "type"), raw.get("type"), tuple(SOURCE_TYPE_KEYS), required=True)
    if source_type is None:
        allowed = SOURCE_COMMON_KEYS + tuple(k for keys in SOURCE_TYPE_KEYS.values() for k in keys)
        misplaced: dict[str, str] = {}
    else:
        allowed = SOURCE_COMMON_KEYS + SOURCE_TYPE_KEYS[source_type]
        misplaced = {
            key: f"not valid for type {source_type} (only for type {other})"
            for other, keys in SOURCE_TYPE_KEYS.items()
            if other != source_type
            for key in keys
        }
    m = c.mapping(path, raw, allowed, misplaced)
    m.pop("type", None)

    name = c.text(_key(path, "name"), m.get("name"), required=True)
    kind = c.choice(_key(path, "kind"), m.get("kind"), ("predictions", "labels"), required=True)
    if source_type == "kserve" and kind == "labels":
        c.error(_key(path, "type"), "kserve requires kind predictions, got labels")

    fields = _parse_fields(c, _key(path, "fields"), m.get("fields"), kind)
    model = c.name(_key(path, "model"), m.get("model"))
    if model is not None and model not in model_names:
        c.error(
            _key(path, "model"),
            f"unknown model {_describe(model)}; configured models: {', '.join(model_names) or '(none)'}",
        )
    model_from = c.choice(_key(path, "model_from"), m.get("model_from"), ("inferenceservicename",))
    model_via = [
        k for k, v in (("model", model), ("fields.model", fields.get("model")), ("model_from", model_from))
        if v is not None
    ]
    _only_one(c, path, model_via)
    # file and http records name their model in the field `fields.model` maps, by default `model`
    # (DESIGN §8: a field not mapped is read under its canonical name); a KServe event has no such field.
    if kind == "predictions" and not model_via and source_type == "kserve":
        c.error(path, "a predictions source needs model, fields.model or model_from to know which model its "
                      "records belong to")

    model_version = c.label_text(_key(path, "model_version"), m.get("model_version"))
    if kind == "labels" and model_version is not None:
        c.error(_key(path, "model_version"), "not valid for kind labels (a label joins its prediction by id)")
    version_header = _header_name(c, _key(path, "version_header"), m.get("version_header"))
    version_from = _version_from(c, _key(path, "version_from"), m.get("version_from"))
    version_via = [
        k
        for k, v in (
            ("model_version", model_version),
            ("fields.model_version", fields.get("model_version")),
            ("version_from", version_from),
            ("version_header", version_header),
        )
        if v is not None
    ]
    _only_one(c, path, version_via)

    d = SourceConfig(name="", kind="predictions", type="file")
    url = c.url(_key(path, "url"), m.get("url"), required=source_type == "http")
    tls = _parse_tls(c, _key(path, "tls"), m.get("tls"))
    if m.get("tls") is not None and url is not None and not url.startswith("https://"):
        c.error(_key(path, "tls"), "only used with an https:// url")
    headers = _parse_headers(c, _key(path, "headers"), m.get("headers"))
    basic_auth = _parse_basic_auth(c, _key(path, "basic_auth"), m.get("basic_auth"))
    if basic_auth is not None and any(h.lower() == "authorization" for h in headers):
        c.error(_key(path, "basic_auth"), "cannot be combined with an Authorization header")

    forward_to: list[str] = []
    for i, item in enumerate(c.sequence(_key(path, "forward_to"), m.get("forward_to")) or []):
        target = c.url(_index(_key(path, "forward_to"), i), item, required=True)
        if target is not None:
            forward_to.append(target)

    return SourceConfig(
        name=name or "",
        kind=cast(SourceKind, kind or "predictions"),
        type=cast(SourceType, source_type or "file"),
        model=model,
        model_version=model_version,
        fields=fields,
        max_line_bytes=c.integer(_key(path, "max_line_bytes"), m.get("max_line_bytes"), d.max_line_bytes, 1),
        max_bytes_per_poll=c.integer(
            _key(path, "max_bytes_per_poll"), m.get("max_bytes_per_poll"), d.max_bytes_per_poll, 1
        ),
        path=c.text(_key(path, "path"), m.get("path"), required=source_type == "file"),
        start_at=cast(
            Literal["beginning", "end"],
            c.choice(_key(path, "start_at"), m.get("start_at"), ("beginning", "end")) or d.start_at,
        ),
        url=url,
        interval=c.duration(_key(path, "interval"), m.get("interval"), d.interval),
        cursor_param=c.text(_key(path, "cursor_param"), m.get("cursor_param")),
        headers=headers,
        basic_auth=basic_auth,
        timeout=c.duration(_key(path, "timeout"), m.get("timeout"), d.timeout),
        tls=tls,
        max_pages_per_poll=c.integer(
            _key(path, "max_pages_per_poll"), m.get("max_pages_per_poll"), d.max_pages_per_poll, 1
        ),
        model_from=cast(Literal["inferenceservicename"] | None, model_from),
        version_from=version_from,
        version_header=version_header,
        listen_address=_listen_address(c, _key(path, "listen_address"), m.get("listen_address")),
        max_body_bytes=c.integer(_key(path, "max_body_bytes"), m.get("max_body_bytes"), d.max_body_bytes, 1),
        queue_size=c.integer(_key(path, "queue_size"), m.get("queue_size"), d.queue_size, 1),
        forward_to=tuple(forward_to),
    )


def _only_one(c: _Checker, path: str, present: Sequence[str]) -> None:
    if len(present) > 1:
        c.error(_key(path, present[0]), f"cannot be combined with {' or '.join(present[1:])}; set only one")


def _parse_fields(c: _Checker, path: str, raw: object, kind: str | None) -> dict[str, str]:
    if kind == "labels":
        allowed: tuple[str, ...] = LABEL_FIELDS
        misplaced = {
            f: f"not valid for kind labels; a labels source may map only {', '.join(LABEL_FIELDS)}"
            for f in PREDICTION_FIELDS if f not in LABEL_FIELDS
        }
    elif kind == "predictions":
        allowed = PREDICTION_FIELDS
        misplaced = {"label": "not valid for kind predictions (labels come from a labels source)"}
    else:
        allowed, misplaced = (*PREDICTION_FIELDS, "label"), {}
    fields: dict[str, str] = {}
    for canonical, value in c.mapping(path, raw, allowed, misplaced).items():
        dotted = c.text(_key(path, canonical), value, required=True)
        if dotted is None:
            continue
        if not _DOTTED_PATH_RE.match(dotted):
            c.error(
                _key(path, canonical), f"must be a dotted path such as output.label, got {_describe(dotted)}"
            )
            continue
        fields[canonical] = dotted
    return fields


VERSION_FROM_KEYS: tuple[str, ...] = ("metadata", "annotation", "header")


def _version_from(c: _Checker, path: str, raw: object) -> tuple[VersionFrom, str] | None:
    """``{metadata: X-Model-Version}``, ``{annotation: <key>}``, ``{header: <name>}`` or
    ``source_revision``: where a KServe event's version comes from."""
    if raw is None:
        return None
    allowed = "source_revision, or a mapping with one of metadata, annotation, header"
    if raw == "source_revision":
        return ("source_revision", "")
    if not isinstance(raw, dict):
        c.error(path, f"must be {allowed}, got {_describe(raw)}")
        return None
    m = c.mapping(path, raw, VERSION_FROM_KEYS)
    present = [k for k in VERSION_FROM_KEYS if m.get(k) is not None]
    if len(present) != 1:
        if present or len(m) == len(raw):  # else an unknown key was reported already
            c.error(path, f"must set exactly one of {', '.join(VERSION_FROM_KEYS)}, got "
                          f"{', '.join(present) or 'none'}")
        return None
    kind = present[0]
    key_path = _key(path, kind)
    key = _header_name(c, key_path, m[kind]) if kind != "annotation" else _annotation_key(c, key_path, m[kind])
    return (cast(VersionFrom, kind), key) if key is not None else None


def _annotation_key(c: _Checker, path: str, raw: object) -> str | None:
    """A Kubernetes annotation key: an optional DNS prefix and '/', then a name of 1-63 characters."""
    key = c.text(path, raw)
    if key is not None and not _ANNOTATION_KEY_RE.match(key):
        c.error(path, f"must be a Kubernetes annotation key such as serving.kserve.io/model-version, "
                      f"got {_describe(key)}")
        return None
    return key


def _header_name(c: _Checker, path: str, raw: object) -> str | None:
    name = c.text(path, raw)
    if name is not None and not _HEADER_NAME_RE.match(name):
        c.error(path, f"must be an HTTP header name, got {_describe(name)}")
        return None
    return name


def _parse_headers(c: _Checker, path: str, raw: object) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        c.error(path, f"must be a mapping, got {_describe(raw)}")
        return {}
    headers: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _HEADER_NAME_RE.match(key):
            c.error(path, f"keys must be HTTP header names, got {_describe(key)}")
            continue
        text = c.text(_key(path, key), value, required=True, allow_empty=True)
        if text is None:
            continue
        if "\r" in text or "\n" in text:
            c.error(_key(path, key), "must not contain line breaks")
            continue
        headers[key] = text
    return headers


def _parse_basic_auth(c: _Checker, path: str, raw: object) -> BasicAuth | None:
    if raw is None:
        return None
    m = c.mapping(path, raw, BASIC_AUTH_KEYS)
    if not isinstance(raw, dict):
        return None
    username = c.text(_key(path, "username"), m.get("username"), required=True)
    password = c.text(_key(path, "password"), m.get("password"), required=True, allow_empty=True)
    if username is None or password is None:
        return None
    return BasicAuth(username=username, password=password)


def _parse_tls(c: _Checker, path: str, raw: object) -> TLSClientConfig:
    m = c.mapping(path, raw, TLS_KEYS)
    cert_file = c.text(_key(path, "cert_file"), m.get("cert_file"))
    key_file = c.text(_key(path, "key_file"), m.get("key_file"))
    if (m.get("cert_file") is None) != (m.get("key_file") is None):
        c.error(path, "cert_file and key_file must be set together")
    return TLSClientConfig(
        ca_file=c.text(_key(path, "ca_file"), m.get("ca_file")),
        cert_file=cert_file,
        key_file=key_file,
        insecure_skip_verify=c.boolean(
            _key(path, "insecure_skip_verify"), m.get("insecure_skip_verify"), False
        ),
    )


def _listen_address(c: _Checker, path: str, raw: object) -> str | None:
    text = c.text(path, raw)
    if text is None:
        return None
    try:  # the same syntax as --web.listen-address; port 0 would be a port nobody can point a logger at
        valid = split_listen_address(text)[1] > 0
    except ListenAddressError:
        valid = False
    if not valid:
        c.error(path, f"must be host:port such as 127.0.0.1:9742 or :9742, got {_describe(text)}")
        return None
    return text


def _parse_sources(c: _Checker, raw: object, model_names: Sequence[str]) -> tuple[SourceConfig, ...]:
    sources: list[SourceConfig] = []
    names: dict[str, str] = {}
    listeners: dict[str, str] = {}
    for i, item in enumerate(c.sequence("sources", raw) or []):
        path = _index("sources", i)
        source = _parse_source(c, path, item, model_names)
        if source.name in names:
            c.error(
                _key(path, "name"),
                f"duplicate source name {_describe(source.name)} (also {names[source.name]})",
            )
        elif source.name:
            names[source.name] = path
        if source.listen_address is not None:
            if source.listen_address in listeners:
                c.error(
                    _key(path, "listen_address"),
                    f"{_describe(source.listen_address)} is already used by "
                    f"{listeners[source.listen_address]}",
                )
            else:
                listeners[source.listen_address] = path
        sources.append(source)
    return tuple(sources)


def _parse_models(c: _Checker, raw: object) -> tuple[ModelConfig, ...]:
    items = c.sequence("models", raw)
    if not items:
        if items is not None or raw is None:
            c.error("models", "at least one model is required")
        return ()
    models: list[ModelConfig] = []
    names: dict[str, str] = {}
    for i, item in enumerate(items):
        path = _index("models", i)
        model = _parse_model(c, path, item)
        if model.name in names:
            c.error(
                _key(path, "name"), f"duplicate model name {_describe(model.name)} (also {names[model.name]})"
            )
        elif model.name:
            names[model.name] = path
        models.append(model)
    return tuple(models)


def _parse_retraining(c: _Checker, raw: object) -> RetrainingConfig:
    path = "retraining"
    m = c.mapping(path, raw, RETRAINING_KEYS)
    d = RetrainingConfig()
    training_config: dict[str, Any] = {}
    tc_path = _key(path, "training_config")
    if m.get("training_config") is not None:
        if isinstance(m["training_config"], dict):
            if _json_compatible(c, tc_path, m["training_config"]):
                training_config = m["training_config"]
        else:
            c.error(tc_path, f"must be a mapping, got {_describe(m['training_config'])}")
    return RetrainingConfig(
        endpoint=c.url(_key(path, "endpoint"), m.get("endpoint")),
        cooldown=c.duration(_key(path, "cooldown"), m.get("cooldown"), d.cooldown, allow_zero=True),
        timeout=c.duration(_key(path, "timeout"), m.get("timeout"), d.timeout),
        max_attempts=c.integer(_key(path, "max_attempts"), m.get("max_attempts"), d.max_attempts, 1),
        training_config=training_config,
    )


def _json_compatible(c: _Checker, path: str, value: object) -> bool:
    """training_config is copied into a JSON CloudEvent, so it must survive ``json.dumps``."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        if math.isfinite(value):
            return True
        c.error(path, f"must be a finite number (JSON has no {value!r}), got {value!r}")
        return False
    if isinstance(value, list):
        return all([_json_compatible(c, _index(path, i), v) for i, v in enumerate(value)])
    if isinstance(value, dict):
        ok = True
        for k, v in value.items():
            if not isinstance(k, str):
                c.error(path, f"keys must be strings, got {_describe(k)}")
                ok = False
            elif not _json_compatible(c, _key(path, k), v):
                ok = False
        return ok
    c.error(path, f"must be a string, number, boolean, null, list or mapping, got {_describe(value)}")
    return False


def _parse_history(c: _Checker, raw: object) -> HistoryConfig:
    m = c.mapping("history", raw, HISTORY_KEYS)
    return HistoryConfig(
        directory=c.text("history.directory", m.get("directory")),
        interval=c.duration("history.interval", m.get("interval"), HistoryConfig().interval),
    )


# -- entry points --------------------------------------------------------------------------------


def parse_config(data: object, environ: Mapping[str, str] | None = None) -> Config:
    """Validate an already-decoded YAML document and build the frozen ``Config``.

    ``environ`` (default ``os.environ``) supplies ``${VAR}`` expansions; it is a parameter so
    tests and ``--config.check`` in CI can pin it. An empty document (``None``) is a config
    without models, which is refused like any other. Raises ``ConfigError`` listing every
    problem, each line starting with its path.
    """
    c = _Checker()
    if environ is None:
        environ = os.environ
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"(top level): must be a mapping, got {_describe(data)}")
    expanded = _expand(data, "", environ, c)
    top = c.mapping("", expanded, TOP_LEVEL_KEYS)
    global_ = _parse_global(c, top.get("global"))
    models = _parse_models(c, top.get("models"))
    sources = _parse_sources(c, top.get("sources"), [m.name for m in models if m.name])
    retraining = _parse_retraining(c, top.get("retraining"))
    history = _parse_history(c, top.get("history"))
    if c.errors:
        raise ConfigError(c.errors)
    return Config(global_=global_, models=models, sources=sources, retraining=retraining, history=history)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and leaves dates as text.

    PyYAML silently keeps the last of two equal keys, which would hide half of a model's
    settings; and it turns ``2026-01-01`` into a ``date`` that no field here can use (a model
    version written that way should stay the text the user typed).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable; the base class reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_describe(key)}", key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML file at ``path``.

    Unreadable files and YAML syntax errors become a ``ConfigError`` whose message starts with
    the file path (and line and column); validation errors keep the config paths in the
    message and carry the file in ``ConfigError.file``.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}", file=file) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: cannot read: not UTF-8 text ({exc.reason})", file=file) from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{file}: invalid YAML{where}: {exc.problem}", file=file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}", file=file) from exc
    try:
        return parse_config(data, environ)
    except ConfigError as exc:
        raise ConfigError(exc.errors, file=file) from None
