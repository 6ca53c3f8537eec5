"""The one strict YAML loader, for the config file and the web config file alike, and ``${VAR}``.

``load_yaml`` reads a file with ``StrictLoader``: a SafeLoader (no arbitrary objects) that refuses
duplicate keys and leaves dates as text. A file that cannot be read or parsed raises
``YAMLFileError``, whose message says what went wrong and where (line and column, 1-based) but not
the file, which it carries in ``file``: each caller puts the file where its messages want it.

``expand_env`` expands ``${VAR}`` in every string value of a decoded document (the exporter's
config, DESIGN §2; the web config, like exporter-toolkit's, is not expanded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from exporter.config.errors import describe, index_path, key_path


class StrictLoader(yaml.SafeLoader):
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
                    None, None, f"duplicate key {describe(key)}", key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class YAMLFileError(ValueError):
    """A YAML file that cannot be read or parsed: ``cannot read: ...`` or
    ``invalid YAML at line L, column C: ...``; the file is in ``file``, not in the message."""

    def __init__(self, message: str, *, file: str) -> None:
        self.file = file
        super().__init__(message)


def load_yaml(path: str | Path) -> Any:
    """The decoded document in the file at ``path`` (``None`` for an empty one)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise YAMLFileError(f"cannot read: {exc.strerror or exc}", file=file) from exc
    except UnicodeDecodeError as exc:
        raise YAMLFileError(f"cannot read: not UTF-8 text ({exc.reason})", file=file) from exc
    try:
        return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise YAMLFileError(f"invalid YAML{where}: {exc.problem}", file=file) from exc
    except yaml.YAMLError as exc:
        raise YAMLFileError(f"invalid YAML: {exc}", file=file) from exc


# -- ${VAR} expansion ----------------------------------------------------------------------------

# `$${` first so an escaped reference is never read as a reference; a lone `${` is malformed.
_ENV_REF_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def expand_env(value: Any, environ: Mapping[str, str], path: str = "") -> tuple[Any, list[tuple[str, str]]]:
    """Expand ``${VAR}`` in every string value (keys are left alone) of a decoded YAML tree.

    Returns the expanded tree and the problems as ``(path, message)`` pairs, in document order:
    an unset variable, or a malformed reference (``$${`` writes a literal ``${``). A string with
    a problem keeps its unexpanded text.
    """
    problems: list[tuple[str, str]] = []
    return _expand(value, path, environ, problems), problems


def _expand(value: Any, path: str, environ: Mapping[str, str], problems: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        return _expand_string(value, path, environ, problems)
    if isinstance(value, dict):
        return {k: _expand(v, key_path(path, k), environ, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, index_path(path, i), environ, problems) for i, v in enumerate(value)]
    return value


def _expand_string(text: str, path: str, environ: Mapping[str, str], problems: list[tuple[str, str]]) -> str:
    if "$" not in text:
        return text

    def substitute(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        name = match.group(1)
        if name is None or not _ENV_NAME_RE.match(name):
            problems.append(
                (path, f'invalid reference {describe(whole)}; write ${{NAME}}, or $${{ for a literal "${{"')
            )
            return whole
        if name not in environ:
            problems.append((path, f"environment variable {name} is not set"))
            return whole
        return environ[name]

    return _ENV_REF_RE.sub(substitute, text)
