"""Prometheus-style durations: ``500ms``, ``30s``, ``5m``, ``1h30m``, ``7d``, ``1w``, ``1y``.

Users of this exporter already write durations this way in Prometheus and Alertmanager, so the
config accepts the same grammar rather than bare numbers whose unit would have to be guessed:
one or more ``<integer><unit>`` terms, largest unit first, each unit at most once, or a plain
``0``. Fractions (``1.5h``) and spaces are refused, as Prometheus refuses them.
"""

from __future__ import annotations

import re

# Units in the order Prometheus requires them to appear, with their length in milliseconds.
# Milliseconds keep the arithmetic exact; a year is 365 days, as in Prometheus.
_UNIT_MS: dict[str, int] = {
    "y": 365 * 24 * 3600 * 1000,
    "w": 7 * 24 * 3600 * 1000,
    "d": 24 * 3600 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}

_DURATION_RE = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
    r"(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)

DURATION_HINT = "use a number and unit such as 30s, 5m, 1h30m or 7d (units: ms, s, m, h, d, w, y)"


def parse_duration(text: str) -> float:
    """Return the length of ``text`` in seconds.

    Raises ``ValueError`` naming the text and the accepted form, so the config loader can pass
    the message straight to the user.
    """
    if text == "0":
        return 0.0
    match = _DURATION_RE.match(text)
    # The regex also matches the empty string (every term is optional); that is not a duration.
    if match is None or not text:
        raise ValueError(f'invalid duration "{text}"; {DURATION_HINT}')
    total_ms = sum(int(count) * _UNIT_MS[unit] for unit, count in match.groupdict().items() if count)
    return total_ms / 1000.0


def format_duration(seconds: float) -> str:
    """Render ``seconds`` back in the same grammar, largest unit first (``5400`` -> ``1h30m``).

    Used for log lines and documentation of defaults, so a value reads the way a user would
    have written it. Sub-millisecond remainders are rounded to the nearest millisecond; zero
    is ``0s``. ``parse_duration(format_duration(x)) == x`` for every whole number of
    milliseconds.
    """
    if seconds < 0:
        raise ValueError(f"cannot format a negative duration: {seconds}")
    remaining = round(seconds * 1000)
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit, length in _UNIT_MS.items():
        count, remaining = divmod(remaining, length)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
