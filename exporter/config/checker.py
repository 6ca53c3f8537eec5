"""``Checker``: validates one YAML value at a time and collects every problem instead of stopping.

The section parsers (``sections``, ``source_sections`` and the source config classes) call one
helper per value; each returns the value converted, or a fallback when it is absent or invalid, so
parsing carries on and the remaining problems are found too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from exporter.config.durations import DURATION_HINT, parse_duration
from exporter.config.errors import describe, key_path, unknown_key

_NAME_RE = re.compile(r"^[a-zA-Z0-9_.:-]+$")


class Checker:
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
            self.error(path, f"must be a mapping, got {describe(value)}")
            return {}
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.error(path, f"keys must be strings, got {describe(key)}")
            elif key in allowed:
                result[key] = item
            elif misplaced and key in misplaced:
                self.error(key_path(path, key), misplaced[key])
            else:
                self.error(key_path(path, key), unknown_key(key, allowed))
        return result

    def sequence(self, path: str, value: object) -> list[Any] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            self.error(path, f"must be a list, got {describe(value)}")
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
            self.error(path, f"must be a string, got {describe(value)}")
            return None
        if not value and not allow_empty:
            self.error(path, "must not be empty")
            return None
        return value

    def name(self, path: str, value: object, *, required: bool = False) -> str | None:
        """A model name: text or an integer (normalised to text), restricted to a safe alphabet."""
        text = self.label_text(path, value, required=required)
        if text is not None and not _NAME_RE.match(text):
            self.error(path, f"must contain only letters, digits and _ . : -, got {describe(text)}")
            return None
        return text

    def label_text(self, path: str, value: object, *, required: bool = False) -> str | None:
        """A class or version: YAML reads ``1`` as an integer, but these are compared as text."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if value is not None and not isinstance(value, str):
            self.error(path, f"must be a string or an integer, got {describe(value)}")
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
            self.error(path, f"must be one of {', '.join(choices)}, got {describe(value)}")
            return None
        return value

    def boolean(self, path: str, value: object, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {describe(value)}")
            return default
        return value

    def _number(self, path: str, value: object) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"must be a number, got {describe(value)}")
            return None
        return float(value)

    def ratio(self, path: str, value: object, default: float) -> float:
        number = self._number(path, value)
        if number is None:
            return default
        if not 0.0 <= number <= 1.0:  # also refuses NaN
            self.error(path, f"must be between 0 and 1, got {describe(value)}")
            return default
        return number

    def positive(self, path: str, value: object, default: float) -> float:
        number = self._number(path, value)
        if number is None:
            return default
        if not (math.isfinite(number) and number > 0):
            self.error(path, f"must be a finite number greater than 0, got {describe(value)}")
            return default
        return number

    def integer(self, path: str, value: object, default: int, minimum: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be an integer, got {describe(value)}")
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
            self.error(path, f"must be a duration such as 30s, 5m, 1h30m or 7d, got {describe(value)}")
            return None
        try:
            return parse_duration(value)
        except ValueError:
            self.error(path, f"invalid duration {describe(value)}; {DURATION_HINT}")
            return None

    def url(self, path: str, value: object, *, required: bool = False) -> str | None:
        text = self.text(path, value, required=required)
        if text is None:
            return None
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.error(path, f"must be an http:// or https:// URL, got {describe(text)}")
            return None
        return text
