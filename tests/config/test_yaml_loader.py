"""The one strict YAML loader (config and web config) and ``${VAR}`` expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config.yaml_loader import YAMLFileError, expand_env, load_yaml


def test_duplicate_key_deep_in_the_document_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("a:\n  - b: 1\n  - c: {d: 1, d: 2}\n")
    with pytest.raises(YAMLFileError) as info:
        load_yaml(path)
    assert str(info.value) == 'invalid YAML at line 3, column 15: duplicate key "d"'
    assert info.value.file == str(path)


def test_dates_stay_text_and_equal_values_under_other_keys_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("a: 2026-01-01\nb: {a: 1}\nc: [{a: 1}, {a: 1}]\n")
    assert load_yaml(path) == {"a": "2026-01-01", "b": {"a": 1}, "c": [{"a": 1}, {"a": 1}]}


def test_no_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "obj.yaml"
    path.write_text("a: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(YAMLFileError, match=r"^invalid YAML at line 1, column 4: could not determine a constructor"):
        load_yaml(path)


def test_unreadable(tmp_path: Path) -> None:
    with pytest.raises(YAMLFileError, match=r"^cannot read: Is a directory$"):
        load_yaml(tmp_path)


def test_expand_env_reports_problems_by_path_in_document_order() -> None:
    doc = {"${KEY}": "x", "a": ["${A}", {"b": "${MISSING}-${1X}"}], "c": "$${A} ${A}", "n": 3}
    expanded, problems = expand_env(doc, {"A": "v"})
    assert expanded == {"${KEY}": "x", "a": ["v", {"b": "${MISSING}-${1X}"}], "c": "${A} v", "n": 3}
    assert problems == [
        ("a[1].b", "environment variable MISSING is not set"),
        ("a[1].b", 'invalid reference "${1X}"; write ${NAME}, or $${ for a literal "${"'),
    ]
