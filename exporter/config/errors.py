"""``ConfigError`` and the pieces every message is made of: paths, values as written, key hints.

A config message reads ``<path>: <problem>``, the path in the user's YAML (``models[0].thresholds.drift``),
so every parser builds paths with ``key_path`` / ``index_path`` and renders values with ``describe``.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence


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


def key_path(path: str, key: object) -> str:
    """The path of ``key`` inside the mapping at ``path`` (the top level is the empty path)."""
    return f"{path}.{key}" if path else str(key)


def index_path(path: str, i: int) -> str:
    """The path of item ``i`` of the list at ``path``."""
    return f"{path}[{i}]"


def describe(value: object) -> str:
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


def quoted_list(items: Sequence[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


def unknown_key(key: str, allowed: Sequence[str]) -> str:
    """The message for a key not in ``allowed``, with the closest allowed key as a hint."""
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f"unknown key{hint}; allowed keys: {', '.join(allowed)}"
