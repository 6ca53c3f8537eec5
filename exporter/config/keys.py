"""The YAML keys of a config section, derived from its dataclass, so no key list is written twice.

A field's YAML key is its name, or ``metadata["yaml"]`` where Python needs another name
(``Config.global_`` is ``global``). The order of the fields is the order of ``allowed keys: ...`` in
messages, so reordering fields changes messages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: ``field(metadata=...)`` key naming a field's YAML key.
YAML_KEY = "yaml"


def yaml_keys(cls: type[Any], *, exclude: type[Any] | None = None) -> tuple[str, ...]:
    """The YAML keys of dataclass ``cls``, in field order; without those of ``exclude`` (a base)."""
    excluded = {f.name for f in dataclasses.fields(exclude)} if exclude is not None else set()
    return tuple(f.metadata.get(YAML_KEY, f.name) for f in dataclasses.fields(cls) if f.name not in excluded)


def yaml_name(name: str) -> dict[str, str]:
    """``field(metadata=yaml_name("global"))``: the field's key in the YAML file."""
    return {YAML_KEY: name}


def field_default(cls: type[Any], name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (calling its factory), for a parser's fallback."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise ValueError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name!r}")
