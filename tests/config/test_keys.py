"""Allowed keys come from the dataclass fields (``exporter.config.keys``), so they are written once."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import pytest

from exporter.config import (
    SOURCE_COMMON_KEYS,
    SOURCE_TYPE_KEYS,
    TOP_LEVEL_KEYS,
    FileSourceConfig,
    HTTPSourceConfig,
    KServeSourceConfig,
    SourceConfig,
)
from exporter.config.keys import field_default, yaml_keys, yaml_name


@dataclass(frozen=True)
class _Section:
    plain: int = 1
    renamed: str = field(default="x", metadata=yaml_name("renamed-in-yaml"))
    listed: tuple[str, ...] = field(default_factory=lambda: ("a",))


@dataclass(frozen=True, kw_only=True)
class _Sub(_Section):
    required: str
    extra: int = 2


def test_keys_follow_the_fields_in_order_with_their_yaml_names() -> None:
    assert yaml_keys(_Section) == ("plain", "renamed-in-yaml", "listed")
    assert yaml_keys(_Sub) == ("plain", "renamed-in-yaml", "listed", "required", "extra")
    assert yaml_keys(_Sub, exclude=_Section) == ("required", "extra")
    assert TOP_LEVEL_KEYS == ("global", "models", "sources", "retraining", "history")


def test_field_default() -> None:
    assert field_default(_Sub, "plain") == 1
    assert field_default(_Sub, "listed") == ("a",)
    with pytest.raises(ValueError, match="no default"):
        field_default(_Sub, "required")
    with pytest.raises(KeyError):
        field_default(_Sub, "absent")


def test_source_keys_are_the_fields_of_each_type() -> None:
    assert tuple(f.name for f in fields(SourceConfig)) == SOURCE_COMMON_KEYS
    for cls in (FileSourceConfig, HTTPSourceConfig, KServeSourceConfig):
        own = tuple(f.name for f in fields(cls) if f.name not in SOURCE_COMMON_KEYS)
        assert SOURCE_TYPE_KEYS[cls.type] == own
    # a type is not an argument: each class says its own
    assert KServeSourceConfig(name="k", kind="predictions").type == "kserve"
