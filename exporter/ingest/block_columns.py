"""Columns of decoded records, converted by the reference parser's rules (``records``) but
vectorised for the usual types: the block parser's column work, apart from its decoding and
line guards. Each function gives exactly what the per-record rule gives for every value."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Sequence
from itertools import chain, compress, repeat
from typing import Any

import msgspec
import numpy as np

from exporter.foundation.arrays import BoolArray, FloatArray, ObjArray
from exporter.ingest.batches import feature_column
from exporter.ingest.records import (
    _feature,
    _probabilities,
    _probability,
    class_text,
)

UNSET = msgspec.UNSET  # the block parser's "absent" (a field the record does not have)
_NoneType = type(None)


def as_objects(values: Sequence[Any]) -> ObjArray:
    """An object array of the values as they are (no search for nested sequences)."""
    out: ObjArray = np.fromiter(values, dtype=object, count=len(values))
    return out


def is_each(values: list[Any], what: Any) -> BoolArray:
    return np.fromiter(map(operator.is_, values, repeat(what)), dtype=np.bool_, count=len(values))


def id_text(value: Any) -> str | None:
    return None if type(value) is bool else class_text(value)


def texts(values: list[Any], *, bools: bool) -> tuple[ObjArray, BoolArray, bool]:
    """``class_text`` of every value (``id_text`` when booleans are refused), None where
    refused; where it is not None; and whether any value is UNSET (absent)."""
    types = set(map(type, values))
    if types <= {str, _NoneType, msgspec.UnsetType}:
        out = as_objects(values)
        ok: BoolArray = out != ""
        if len(types) > 1 or _NoneType in types:
            ok &= ~is_each(values, None)
            if msgspec.UnsetType in types:
                ok &= ~is_each(values, UNSET)
        if not ok.all():
            out[~ok] = None
        return out, ok, msgspec.UnsetType in types
    if types <= {int}:
        return as_objects(list(map(str, values))), np.ones(len(values), dtype=np.bool_), False
    out = as_objects(list(map(class_text if bools else id_text, values)))
    return out, ~is_each(out.tolist(), None), msgspec.UnsetType in types


def confidences(values: list[Any], typed: bool = False) -> tuple[FloatArray, BoolArray, BoolArray]:
    """The confidence (NaN where absent), where it is given, and where it is invalid (``typed``:
    the values are known to be floats or None)."""
    if typed or set(map(type, values)) <= {float, _NoneType}:
        conf = np.array(values, dtype=np.float64)  # None -> NaN (a NaN literal never decodes)
        present = ~np.isnan(conf)
        with np.errstate(invalid="ignore"):
            bad = present & ~((conf >= 0.0) & (conf <= 1.0))
        return conf, present, bad
    present = ~is_each(values, None)
    checked = [None if v is None else _probability(v) for v in values]
    conf = np.array(checked, dtype=np.float64)
    return conf, present, present & np.isnan(conf)


def probability_column(values: list[Any], typed: bool = False) -> tuple[ObjArray, FloatArray, BoolArray]:
    """The probability dicts (None where absent or empty), their max (NaN where none) and where
    the record's probabilities are invalid (``typed``: dicts of str -> float, or None)."""
    n = len(values)
    present = ~is_each(values, None)
    out = as_objects(values)
    best = np.full(n, np.nan)
    bad = np.zeros(n, dtype=np.bool_)
    if not present.any():
        return out, best, bad
    dicts = list(compress(values, present.tolist()))
    if (typed or set(map(type, dicts)) <= {dict}) and "" not in set(chain.from_iterable(dicts)):
        lens = np.fromiter(map(len, dicts), dtype=np.int64, count=len(dicts))
        v: FloatArray | None
        if typed:  # the decoder made every value a float
            v = np.fromiter(chain.from_iterable(map(dict.values, dicts)), dtype=np.float64, count=int(lens.sum()))
        else:
            try:  # one pass over the values, which also refuses any that is not a float (int, bool, text)
                v = np.fromiter(map(float.__float__, chain.from_iterable(map(dict.values, dicts))),
                                dtype=np.float64, count=int(lens.sum()))
            except TypeError:
                v = None
        if v is not None:
            rows = np.flatnonzero(present)
            with np.errstate(invalid="ignore"):
                bad_value = ~((v >= 0.0) & (v <= 1.0))
            k = int(lens[0])
            if k and (lens == k).all():  # the usual case: every record names the same number of classes
                bad[rows] = bad_value.reshape(-1, k).any(axis=1)
                best[rows] = v.reshape(-1, k).max(axis=1)
                return out, best, bad
            owner = np.repeat(np.arange(len(dicts)), lens)
            row_bad = np.zeros(len(dicts), dtype=np.bool_)
            row_bad[owner[bad_value]] = True
            bad[rows] = row_bad
            filled = lens > 0
            offsets = np.cumsum(lens) - lens
            row_best = np.full(len(dicts), np.nan)
            if filled.any():
                row_best[filled] = np.maximum.reduceat(v, offsets[filled])
            best[rows] = row_best
            out[rows[~filled]] = None  # an empty object is absent
            return out, best, bad
    for i in np.flatnonzero(present).tolist():  # odd types: the reference's rule, record by record
        probs = _probabilities(values[i])
        if probs is None:
            bad[i] = True
            out[i] = None
        elif probs:
            out[i] = probs
            best[i] = max(probs.values())
        else:
            out[i] = None
    return out, best, bad


def typed_feature_column(values: list[Any], typed: bool) -> ObjArray | FloatArray:
    """``feature_column`` of the values; ``typed``: they are floats or None, never NaN (the
    decoder refuses NaN literals), so the type pass is not needed."""
    if not typed:
        return feature_column(values)
    out: FloatArray = np.array(values, dtype=np.float64)  # None -> NaN
    if not values or np.isnan(out).all():
        return feature_column(values)  # nothing but None: kept as values
    return out


def feature_values_of(values: list[Any]) -> list[Any]:
    """``_feature`` of every value (the decoder's floats, strings, booleans and None are already
    that: its strings are valid UTF-8, since it refuses lone surrogates)."""
    if set(map(type, values)) <= {float, str, bool, _NoneType}:
        return values
    return list(map(_feature, values))


def apply_reasons(n: int, checks: list[tuple[str, BoolArray]], invalid: Counter[str],
                   first: dict[str, int]) -> BoolArray:
    """Count each record under the first reason whose mask marks it bad; the good ones."""
    ok = np.ones(n, dtype=np.bool_)
    for reason, bad in checks:
        hit = ok & bad
        count = int(hit.sum())
        if count:
            invalid[reason] += count
            first[reason] = int(np.argmax(hit))
            ok &= ~hit
    return ok
