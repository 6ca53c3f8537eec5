"""The parser of ``sources``: the keys every source has, then its type's own (``sources``).

The type decides which keys are allowed, so it is read first; a key of another type is refused
with a message naming the type it belongs to. The common keys are checked here (name, kind, the
field mapping, where model and version come from), the type's keys by its config class's
``parse_own_keys``, and what no two sources may share (names, listen addresses) across the list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from exporter.config.checker import Checker
from exporter.config.errors import describe, index_path, key_path
from exporter.config.keys import yaml_keys
from exporter.config.sources import SOURCE_CONFIG_TYPES, SOURCE_KINDS, SourceConfig

SOURCE_COMMON_KEYS = yaml_keys(SourceConfig)
SOURCE_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    name: yaml_keys(cls, exclude=SourceConfig) for name, cls in SOURCE_CONFIG_TYPES.items()
}
PREDICTION_FIELDS = (
    "id", "model", "model_version", "timestamp", "prediction", "confidence", "probabilities", "features",
)
LABEL_FIELDS = ("id", "label", "timestamp", "model")

_DOTTED_PATH_RE = re.compile(r"^[^.]+(?:\.[^.]+)*$")


def parse_sources(c: Checker, raw: object, model_names: Sequence[str]) -> tuple[SourceConfig, ...]:
    sources: list[SourceConfig] = []
    names: dict[str, str] = {}
    listeners: dict[str, str] = {}
    for i, item in enumerate(c.sequence("sources", raw) or []):
        path = index_path("sources", i)
        source = _parse_source(c, path, item, model_names)
        if source.name in names:
            c.error(
                key_path(path, "name"),
                f"duplicate source name {describe(source.name)} (also {names[source.name]})",
            )
        elif source.name:
            names[source.name] = path
        listener = source.listener()
        if listener is not None:
            key, address = listener
            if address in listeners:
                c.error(key_path(path, key), f"{describe(address)} is already used by {listeners[address]}")
            else:
                listeners[address] = path
        sources.append(source)
    return tuple(sources)


def _parse_source(c: Checker, path: str, raw: object, model_names: Sequence[str]) -> SourceConfig:
    if not isinstance(raw, dict):
        c.error(path, f"must be a mapping, got {describe(raw)}")
        return SourceConfig(name="", kind="predictions")
    # The type decides which keys are allowed, so read it before checking the keys.
    source_type = c.choice(key_path(path, "type"), raw.get("type"), tuple(SOURCE_CONFIG_TYPES), required=True)
    cls = SOURCE_CONFIG_TYPES[source_type] if source_type is not None else None
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

    name = c.text(key_path(path, "name"), m.get("name"), required=True)
    kind = c.choice(key_path(path, "kind"), m.get("kind"), SOURCE_KINDS, required=True)
    if cls is not None and kind is not None and kind not in cls.kinds:
        c.error(key_path(path, "type"), f"{source_type} requires kind {' or '.join(cls.kinds)}, got {kind}")

    fields = _parse_fields(c, key_path(path, "fields"), m.get("fields"), kind)
    model = c.name(key_path(path, "model"), m.get("model"))
    if model is not None and model not in model_names:
        c.error(
            key_path(path, "model"),
            f"unknown model {describe(model)}; configured models: {', '.join(model_names) or '(none)'}",
        )
    own: dict[str, Any] = cls.parse_own_keys(c, path, m) if cls is not None else {}
    model_keys = cls.model_keys if cls is not None else ()
    model_via = [
        k for k, v in (("model", model), ("fields.model", fields.get("model")), *((k, own[k]) for k in model_keys))
        if v is not None
    ]
    _only_one(c, path, model_via)
    if kind == "predictions" and not model_via and cls is not None and not cls.records_name_model:
        choices = ["model", "fields.model", *model_keys]
        c.error(path, f"a predictions source needs {', '.join(choices[:-1])} or {choices[-1]} to know which "
                      "model its records belong to")

    model_version = c.label_text(key_path(path, "model_version"), m.get("model_version"))
    if kind == "labels" and model_version is not None:
        c.error(key_path(path, "model_version"), "not valid for kind labels (a label joins its prediction by id)")
    version_keys = cls.version_keys if cls is not None else ()
    version_via = [
        k
        for k, v in (
            ("model_version", model_version),
            ("fields.model_version", fields.get("model_version")),
            *((k, own[k]) for k in version_keys),
        )
        if v is not None
    ]
    _only_one(c, path, version_via)

    common: dict[str, Any] = {
        "name": name or "",
        "kind": kind or "predictions",
        "model": model,
        "model_version": model_version,
        "fields": fields,
        "max_line_bytes": c.integer(key_path(path, "max_line_bytes"), m.get("max_line_bytes"),
                                    SourceConfig.max_line_bytes, 1),
    }
    return (cls or SourceConfig)(**common, **own)


def _only_one(c: Checker, path: str, present: Sequence[str]) -> None:
    if len(present) > 1:
        c.error(key_path(path, present[0]), f"cannot be combined with {' or '.join(present[1:])}; set only one")


def _parse_fields(c: Checker, path: str, raw: object, kind: str | None) -> dict[str, str]:
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
        dotted = c.text(key_path(path, canonical), value, required=True)
        if dotted is None:
            continue
        if not _DOTTED_PATH_RE.match(dotted):
            c.error(
                key_path(path, canonical), f"must be a dotted path such as output.label, got {describe(dotted)}"
            )
            continue
        fields[canonical] = dotted
    return fields
