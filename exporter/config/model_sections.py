"""The parser of ``models``: each model with its task, classes, thresholds, baseline, join, drift
and histogram buckets.

Each parser takes the ``Checker``, the path of its section and the raw YAML value, reports every
problem with its path and returns the typed section (defaults where a value is invalid, so parsing
carries on). The allowed keys of each section are its dataclass's fields (``keys.yaml_keys``).
"""

from __future__ import annotations

import difflib
import math
from typing import cast

from exporter.config.checker import Checker
from exporter.config.errors import describe, index_path, key_path, quoted_list
from exporter.config.keys import yaml_keys
from exporter.config.model import (
    BUILTIN_DRIFT_FEATURES,
    DRIFT_METHODS,
    TASKS,
    Baseline,
    DriftConfig,
    DriftThresholds,
    JoinConfig,
    ModelConfig,
    SeverityTiers,
    TaskKind,
    Thresholds,
)

MODEL_KEYS = yaml_keys(ModelConfig)
THRESHOLD_KEYS = yaml_keys(Thresholds)
SEVERITY_KEYS = yaml_keys(SeverityTiers)
BASELINE_KEYS = yaml_keys(Baseline)
JOIN_KEYS = yaml_keys(JoinConfig)
DRIFT_KEYS = yaml_keys(DriftConfig)
DRIFT_THRESHOLD_KEYS = yaml_keys(DriftThresholds)


def _parse_model(c: Checker, path: str, raw: object) -> ModelConfig:
    if not isinstance(raw, dict):
        c.error(path, f"must be a mapping, got {describe(raw)}")
        return ModelConfig(name="")
    m = c.mapping(path, raw, MODEL_KEYS)
    name = c.name(key_path(path, "name"), m.get("name"), required=True)
    # An invalid task (say "multi-class") is reported once; the checks that depend on the task are
    # skipped for it rather than run against the default "binary", which would add spurious errors.
    task_ok = _parse_task(c, key_path(path, "task"), m.get("task"))
    task = task_ok or "binary"
    classes = _parse_classes(c, key_path(path, "classes"), m.get("classes"), task_ok)

    positive_class = "1"
    if m.get("positive_class") is not None:
        if task_ok is None:
            pass
        elif task != "binary":
            c.error(key_path(path, "positive_class"), "only valid for task binary")
        elif isinstance(m["positive_class"], bool):
            c.error(key_path(path, "positive_class"), _boolean_class(m["positive_class"]))
        else:
            positive = c.label_text(key_path(path, "positive_class"), m["positive_class"])
            if positive is not None:
                if classes is not None and positive not in classes:
                    c.error(
                        key_path(path, "positive_class"),
                        f"must be one of classes {quoted_list(classes)}, got {describe(positive)}",
                    )
                positive_class = positive
    elif task_ok == "binary" and classes is not None and positive_class not in classes:
        c.error(
            key_path(path, "positive_class"),
            f'is required when classes do not include the default "1" (classes: {quoted_list(classes)})',
        )

    defaults = ModelConfig(name="")
    max_classes = defaults.max_classes
    if m.get("max_classes") is not None and task_ok is not None:
        if task == "binary":
            c.error(key_path(path, "max_classes"), "only valid for task multiclass")
        elif classes is not None:
            c.error(key_path(path, "max_classes"), "only used when classes are discovered; remove it or classes")
        else:
            max_classes = c.integer(key_path(path, "max_classes"), m["max_classes"], defaults.max_classes, 2)

    max_versions = defaults.max_versions
    if m.get("max_versions") is not None:
        max_versions = c.integer(key_path(path, "max_versions"), m["max_versions"], defaults.max_versions, 1)

    return ModelConfig(
        name=name or "",
        task=task,
        classes=classes,
        positive_class=positive_class,
        max_classes=max_classes,
        max_versions=max_versions,
        thresholds=_parse_thresholds(c, key_path(path, "thresholds"), m.get("thresholds")),
        baseline=_parse_baseline(c, key_path(path, "baseline"), m.get("baseline")),
        join=_parse_join(c, key_path(path, "join"), m.get("join")),
        drift=_parse_drift(c, key_path(path, "drift"), m.get("drift")),
        confidence_buckets=_parse_buckets(
            c, key_path(path, "confidence_buckets"), m.get("confidence_buckets"), defaults.confidence_buckets
        ),
        label_delay_buckets=_parse_buckets(
            c, key_path(path, "label_delay_buckets"), m.get("label_delay_buckets"), defaults.label_delay_buckets,
            durations=True,
        ),
    )


def _parse_task(c: Checker, path: str, raw: object) -> TaskKind | None:
    """The task, default ``binary``; None when invalid (reported, with a hint for near misses)."""
    if raw is None:
        return "binary"
    if isinstance(raw, str) and raw in TASKS:
        return cast(TaskKind, raw)
    close = difflib.get_close_matches(raw, TASKS, n=1) if isinstance(raw, str) else []
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    c.error(path, f"must be one of {', '.join(TASKS)}, got {describe(raw)}{hint}")
    return None


def _boolean_class(value: bool) -> str:
    return (f"must be a string or an integer, got {describe(value)}: YAML reads unquoted yes/no, on/off and "
            'true/false as booleans; quote class names, e.g. classes: ["yes", "no"]')


def _parse_classes(c: Checker, path: str, raw: object, task: TaskKind | None) -> tuple[str, ...] | None:
    """The configured classes; their number is only checked against a valid ``task``."""
    items = c.sequence(path, raw)
    if items is None:
        return None
    classes: list[str] = []
    ok = True
    for i, item in enumerate(items):
        if isinstance(item, bool):
            c.error(index_path(path, i), _boolean_class(item))
            ok = False
            continue
        value = c.label_text(index_path(path, i), item, required=True)
        if value is None:
            ok = False
        elif value in classes:
            c.error(index_path(path, i), f"duplicate class {describe(value)}")
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


def _parse_thresholds(c: Checker, path: str, raw: object) -> Thresholds:
    m = c.mapping(path, raw, THRESHOLD_KEYS)
    d = Thresholds()
    return Thresholds(
        accuracy=c.ratio(key_path(path, "accuracy"), m.get("accuracy"), d.accuracy),
        drift=c.ratio(key_path(path, "drift"), m.get("drift"), d.drift),
        confidence=c.ratio(key_path(path, "confidence"), m.get("confidence"), d.confidence),
        min_samples=c.integer(key_path(path, "min_samples"), m.get("min_samples"), d.min_samples, 1),
        severity=_parse_severity(c, key_path(path, "severity"), m.get("severity")),
    )


def _parse_severity(c: Checker, path: str, raw: object) -> SeverityTiers:
    m = c.mapping(path, raw, SEVERITY_KEYS)
    d = SeverityTiers()
    before = len(c.errors)
    high = c.ratio(key_path(path, "high"), m.get("high"), d.high)
    critical = c.ratio(key_path(path, "critical"), m.get("critical"), d.critical)
    if len(c.errors) == before and high > critical:
        c.error(key_path(path, "high"), f"must not exceed critical ({critical!r}), got {high!r}")
    return SeverityTiers(high=high, critical=critical)


def _parse_baseline(c: Checker, path: str, raw: object) -> Baseline:
    m = c.mapping(path, raw, BASELINE_KEYS)
    accuracy = None if m.get("accuracy") is None else c.ratio(key_path(path, "accuracy"), m["accuracy"], 0.0)
    first_labeled = c.optional_integer(key_path(path, "first_labeled"), m.get("first_labeled"), 1)
    if m.get("accuracy") is not None and m.get("first_labeled") is not None:
        c.error(path, "set either accuracy or first_labeled, not both")
    return Baseline(accuracy=accuracy, first_labeled=first_labeled)


def _parse_join(c: Checker, path: str, raw: object) -> JoinConfig:
    m = c.mapping(path, raw, JOIN_KEYS)
    d = JoinConfig()
    return JoinConfig(
        ttl=c.duration(key_path(path, "ttl"), m.get("ttl"), d.ttl),
        max_pending=c.integer(key_path(path, "max_pending"), m.get("max_pending"), d.max_pending, 1),
    )


def _parse_drift(c: Checker, path: str, raw: object) -> DriftConfig:
    m = c.mapping(path, raw, DRIFT_KEYS)
    d = DriftConfig()

    features: list[str] = []
    for i, item in enumerate(c.sequence(key_path(path, "features"), m.get("features")) or []):
        item_path = index_path(key_path(path, "features"), i)
        feature = c.text(item_path, item, required=True)
        if feature is None:
            continue
        if feature in BUILTIN_DRIFT_FEATURES:
            c.error(item_path, f"{describe(feature)} is always monitored; list input features only")
        elif feature in features:
            c.error(item_path, f"duplicate feature {describe(feature)}")
        else:
            features.append(feature)

    methods: list[str] = []
    raw_methods = c.sequence(key_path(path, "methods"), m.get("methods"))
    if raw_methods is not None and not raw_methods:
        c.error(key_path(path, "methods"), f"must list at least one of {', '.join(DRIFT_METHODS)}")
    for i, item in enumerate(raw_methods or []):
        item_path = index_path(key_path(path, "methods"), i)
        method = c.choice(item_path, item, DRIFT_METHODS, required=True)
        if method is None:
            continue
        if method in methods:
            c.error(item_path, f"duplicate method {method}")
        else:
            methods.append(method)

    tm = c.mapping(key_path(path, "thresholds"), m.get("thresholds"), DRIFT_THRESHOLD_KEYS)
    tp = key_path(path, "thresholds")
    td = DriftThresholds()
    thresholds = DriftThresholds(
        psi=c.positive(key_path(tp, "psi"), tm.get("psi"), td.psi),
        ks=c.ratio(key_path(tp, "ks"), tm.get("ks"), td.ks),
        js=c.ratio(key_path(tp, "js"), tm.get("js"), td.js),
        chi2_p_value=c.ratio(key_path(tp, "chi2_p_value"), tm.get("chi2_p_value"), td.chi2_p_value),
    )
    return DriftConfig(
        reference=c.text(key_path(path, "reference"), m.get("reference")),
        reference_size=c.integer(key_path(path, "reference_size"), m.get("reference_size"), d.reference_size, 1),
        features=tuple(features),
        methods=tuple(methods) or d.methods,
        thresholds=thresholds,
        max_categories=c.integer(key_path(path, "max_categories"), m.get("max_categories"), d.max_categories, 1),
    )


def _parse_buckets(
    c: Checker, path: str, raw: object, default: tuple[float, ...], *, durations: bool = False,
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
        item_path = index_path(path, i)
        if durations and isinstance(item, str):
            bound = c.duration(item_path, item, 0.0)
            if bound == 0.0:
                continue
        elif isinstance(item, bool) or not isinstance(item, int | float):
            kind = "a number of seconds or a duration" if durations else "a number"
            c.error(item_path, f"must be {kind}, got {describe(item)}")
            continue
        elif not (math.isfinite(item) and item > 0):
            c.error(item_path, f"must be a finite number greater than 0, got {describe(item)}")
            continue
        else:
            bound = float(item)
        if bounds and bound <= bounds[-1]:
            c.error(
                item_path, f"must be greater than the previous bucket ({bounds[-1]!r}), got {describe(item)}"
            )
            continue
        bounds.append(bound)
    return tuple(bounds) if len(c.errors) == before else default


def parse_models(c: Checker, raw: object) -> tuple[ModelConfig, ...]:
    items = c.sequence("models", raw)
    if not items:
        if items is not None or raw is None:
            c.error("models", "at least one model is required")
        return ()
    models: list[ModelConfig] = []
    names: dict[str, str] = {}
    for i, item in enumerate(items):
        path = index_path("models", i)
        model = _parse_model(c, path, item)
        if model.name in names:
            c.error(
                key_path(path, "name"), f"duplicate model name {describe(model.name)} (also {names[model.name]})"
            )
        elif model.name:
            names[model.name] = path
        models.append(model)
    return tuple(models)
