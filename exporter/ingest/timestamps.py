"""Record timestamps -> epoch seconds, one value at a time or a whole column at once.

Records carry their time as RFC 3339 text or as epoch numbers, and which unit a number is in
is a guess the DESIGN fixes (§2 "Timestamps"): above 1e11 it is milliseconds, else seconds.
Parsing is on the hot path of every poll, so besides the scalar ``parse_timestamp`` there is a
column form, ``parse_timestamps``, that hands all text values to pyarrow's regex kernel at
once and does the calendar arithmetic in numpy. Both forms use the same grammar and the same
floating-point operations in the same order, so they agree bit for bit (tests check it).

Accepted:

* numbers (not booleans): finite; ``> 1e11`` means epoch milliseconds, otherwise seconds;
* numeric strings (``"1732615200"``, ``"1.7e12"``): treated as the number they spell;
* ``YYYY-MM-DD(T|t| )HH:MM:SS[.fraction][Z|z|+HH:MM|+HHMM]`` with any number of fraction
  digits and seconds up to 60 (a leap second counts as the first second of the next minute).
  Without an offset the time is taken as UTC, because logs that omit it are nearly always
  written in UTC and refusing them would drop whole sources.

``None`` (missing, or JSON ``null``) means "no timestamp": the caller's arrival time ``now``.
Anything else is invalid and comes back as NaN, which the parsers count as
``invalid_timestamp``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from exporter.foundation.arrays import FloatArray, IntArray

MILLISECONDS_ABOVE = 1e11
"""Epoch numbers above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973)."""

_RFC3339 = (
    r"^(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})[Tt ]"
    r"(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})(?P<frac>\.[0-9]+)?"
    r"(?P<tz>[Zz]|(?P<sign>[+-])(?P<oh>[0-9]{2}):?(?P<om>[0-9]{2}))?$"
)
# Python's ``$`` also matches before a trailing newline; fullmatch without the anchors does not.
_RFC3339_RE = re.compile(_RFC3339[1:-1])
_NUMERIC_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

# Below this many text values the per-value path is cheaper than setting up arrow kernels.
_VECTOR_MIN = 32


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _epoch_number(x: float) -> float:
    """The seconds an epoch number stands for, NaN if it is not finite."""
    if not math.isfinite(x):
        return math.nan
    return x / 1000.0 if x > MILLISECONDS_ABOVE else x


def _parse_text(text: str) -> float:
    m = _RFC3339_RE.fullmatch(text)
    if m is None:
        if _NUMERIC_RE.fullmatch(text) is None:
            return math.nan
        try:
            return _epoch_number(float(text))
        except OverflowError:  # pragma: no cover - float() of text returns inf instead
            return math.nan
    y, mo, d = int(m["y"]), int(m["mo"]), int(m["d"])
    h, mi, s = int(m["h"]), int(m["mi"]), int(m["s"])
    if not (1 <= mo <= 12 and 1 <= d <= _days_in_month(y, mo) and h <= 23 and mi <= 59 and s <= 60):
        return math.nan
    offset = 0
    if m["sign"]:
        oh, om = int(m["oh"]), int(m["om"])
        if oh > 23 or om > 59:
            return math.nan
        offset = oh * 3600 + om * 60
        if m["sign"] == "-":
            offset = -offset
    whole = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
    frac = float("0" + m["frac"]) if m["frac"] else 0.0
    return float(whole) + frac


def parse_timestamp(value: Any, now: float) -> float:
    """Epoch seconds of one record's timestamp value: ``now`` when None, NaN when invalid."""
    if value is None:
        return now
    t = type(value)
    if t is str:
        return _parse_text(value)
    if t is bool:
        return math.nan
    if t is int or t is float:
        try:
            return _epoch_number(float(value))
        except OverflowError:  # an int beyond float range
            return math.nan
    return math.nan


def parse_timestamps(values: Sequence[Any] | pa.Array, now: float) -> FloatArray:
    """Epoch seconds of a column of timestamp values, same rules as ``parse_timestamp``.

    ``values`` is a sequence of decoded JSON values or a pyarrow array (string or numeric,
    nulls meaning "missing").
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return _parse_arrow(values, now)
    out = np.empty(len(values), dtype=np.float64)
    text_at: list[int] = []
    texts: list[str] = []
    for i, v in enumerate(values):
        if type(v) is str:
            text_at.append(i)
            texts.append(v)
        else:
            out[i] = parse_timestamp(v, now)
    if texts:
        out[text_at] = _parse_texts(texts)
    return out


def parse_timestamp_column(values: list[Any], now: float) -> FloatArray:
    """``parse_timestamps`` of a list of decoded values, without a Python step per value for
    the usual columns: all numbers (or missing), or all text."""
    types = set(map(type, values))
    if types <= {float, type(None)}:
        x = np.array(values, dtype=np.float64)  # None -> NaN: missing (a decoded number is never NaN)
        missing = np.isnan(x)
        out = _epoch_numbers(x)
        out[missing] = now
        return out
    if types <= {int, float}:
        try:
            x = np.array(list(map(float, values)), dtype=np.float64)
        except OverflowError:  # an int beyond float range: the scalar rule says NaN
            return parse_timestamps(values, now)
        return _epoch_numbers(x)
    if types <= {str}:
        return _parse_texts(values)
    return parse_timestamps(values, now)


def parse_timestamp_parts(numbers: FloatArray, kinds: npt.NDArray[np.uint8], texts: list[str],
                          now: float) -> FloatArray:
    """``parse_timestamps`` of a column given as its parts, as the line scanner reads them:
    ``kinds`` 0 (absent or null: ``now``), 1 (the number in ``numbers``, finite), 2 (text: the
    next of ``texts``, in order)."""
    out = _epoch_numbers(numbers)
    out[kinds == 0] = now
    if texts:
        out[kinds == 2] = _parse_texts(texts)
    return out


def _parse_arrow(values: pa.Array, now: float) -> FloatArray:
    t = values.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        texts = values.fill_null("")
        out = _parse_text_array(texts)
    elif pa.types.is_integer(t) or pa.types.is_floating(t):
        x = values.cast(pa.float64(), safe=False).fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        out = _epoch_numbers(x)
    elif pa.types.is_null(t):
        out = np.full(len(values), now, dtype=np.float64)
    else:
        out = np.full(len(values), math.nan, dtype=np.float64)
    if values.null_count:
        out[values.is_null().to_numpy(zero_copy_only=False)] = now
    return out


def _epoch_numbers(x: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore"):
        out = np.where(x > MILLISECONDS_ABOVE, x / 1000.0, x)
        out[~np.isfinite(out)] = math.nan
    return out.astype(np.float64)


def _parse_texts(texts: list[str]) -> FloatArray:
    if len(texts) < _VECTOR_MIN:
        return np.array([_parse_text(s) for s in texts], dtype=np.float64)
    return _parse_text_array(pa.array(texts, type=pa.string()))


def _ints(struct: pa.StructArray, name: str) -> IntArray:
    col = pc.cast(pc.if_else(pc.equal(struct.field(name), ""), "0", struct.field(name)), pa.int64())
    out: IntArray = col.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return out


def _parse_text_array(texts: pa.Array) -> FloatArray:
    """RFC 3339 / numeric text column -> epoch seconds (NaN where invalid), all vectorised."""
    n = len(texts)
    parts = pc.extract_regex(texts, _RFC3339)
    matched = parts.is_valid().to_numpy(zero_copy_only=False)
    out = np.full(n, math.nan, dtype=np.float64)
    if matched.any():
        y, mo, d = _ints(parts, "y"), _ints(parts, "mo"), _ints(parts, "d")
        h, mi, s = _ints(parts, "h"), _ints(parts, "mi"), _ints(parts, "s")
        oh, om = _ints(parts, "oh"), _ints(parts, "om")
        neg = pc.equal(parts.field("sign"), "-").fill_null(False).to_numpy(zero_copy_only=False)
        frac = pc.cast(pc.binary_join_element_wise("0", parts.field("frac"), ""), pa.float64())
        frac_np = frac.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
        month_len = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
        dim = month_len[np.clip(mo, 0, 12)] + ((mo == 2) & leap)
        ok = (
            matched & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= dim) & (h <= 23) & (mi <= 59)
            & (s <= 60) & (oh <= 23) & (om <= 59)
        )
        yy = y - (mo <= 2)
        era = yy // 400
        yoe = yy - era * 400
        doy = (153 * np.where(mo > 2, mo - 3, mo + 9) + 2) // 5 + d - 1
        doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
        days = era * 146097 + doe - 719468
        offset = np.where(neg, -(oh * 3600 + om * 60), oh * 3600 + om * 60)
        whole = days * 86400 + h * 3600 + mi * 60 + s - offset
        out[ok] = whole[ok].astype(np.float64) + frac_np[ok]
    rest = np.flatnonzero(~matched)
    if len(rest):
        # Numeric strings are rare; Python's float() is the reference for them.
        for i, text in zip(rest.tolist(), texts.take(pa.array(rest)).to_pylist(), strict=True):
            if text and _NUMERIC_RE.fullmatch(text) is not None:
                out[i] = _epoch_number(float(text))
    return out


def newest(ts: FloatArray) -> float | None:
    """The newest of a batch's timestamps, or None for an empty batch (a source's newest_timestamp)."""
    return float(ts.max()) if len(ts) else None
