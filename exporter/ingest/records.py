"""The per-record parser: the reference for how a source's JSON records become batches
(``exporter.ingest.batches``).

The parsers here map each
source's own field names (dotted paths) onto the canonical record of DESIGN §3 and count what
they reject by reason instead of raising.

Decisions the DESIGN leaves open, made here:

* **Validation order.** A record is counted under the first reason that applies, in the order
  of ``INVALID_REASONS``: size, JSON, object, id, model, prediction/label, class, confidence,
  probabilities, timestamp.
* **Ids** are non-empty strings, or JSON numbers turned into text like classes (``7`` and
  ``7.0`` -> ``"7"``). Booleans, ``null``, empty strings, lists and objects are ``missing_id``:
  an id that cannot be joined is worse than no record.
* **``null`` means absent** for the optional fields (``confidence``, ``probabilities``,
  ``timestamp``, ``model``, ``model_version``, features): loggers write ``null`` for "unknown".
  A ``null`` *class* (prediction or label) is ``invalid_class``, a missing one
  ``missing_prediction`` / ``missing_label``.
* **Model and version text** follow the class rule (``3`` and ``3.0`` -> ``"3"``). A fixed
  ``model`` / ``model_version`` in the source config wins over the record; a version that is
  neither fixed nor in the record (or is not a scalar) is ``"unknown"``, so unversioned models
  still get their series instead of losing every record.
* **Empty class strings** are ``invalid_class``; other strings are kept exactly. Text with a
  lone surrogate (JSON ``"\\ud800"``, valid JSON but not writable as UTF-8) is refused wherever
  it appears: as an id (``missing_id``), model (``missing_model``), version (``"unknown"``),
  class (``invalid_class``), probability key (``invalid_probabilities``) or feature (``None``).
* **Probabilities** must be an object of class -> number in [0, 1]; its keys are normalised like
  classes. An empty object is treated as absent (``None``).
* **Features** are the JSON scalars of ``features.<name>``: strings and booleans as they are,
  numbers as ``float`` (so a column never mixes ``3`` and ``3.5``, and both parse paths agree);
  a missing feature, ``null``, a nested value, a number beyond float range or text with a lone
  surrogate gives ``None``.
  Feature names are looked up as plain keys of the features object, never split on dots.
* **Dotted paths** are split on every ``.``; a key that itself contains a dot cannot be mapped.

This module holds the **per-record parser** (``json.loads`` per line, or
decoded objects), which is the reference: every rule above is written here once, readably. The
fast path, ``exporter.ingest.block_parser``, decodes whole byte blocks with msgspec and must give exactly
this parser's result (the hostile-input and equivalence tests check it). The pipeline and
the benchmarks use the block parser; ``parse_predictions`` / ``parse_labels`` here are the
reference (and read reference files, which arrive as decoded objects).
"""

from __future__ import annotations

import json
import math
import numbers
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from exporter.foundation.arrays import FloatArray
from exporter.foundation.reject_reasons import (
    INVALID_CLASS,
    INVALID_CONFIDENCE,
    INVALID_JSON,
    INVALID_PROBABILITIES,
    INVALID_TIMESTAMP,
    LINE_TOO_LONG,
    MISSING_ID,
    MISSING_LABEL,
    MISSING_MODEL,
    MISSING_PREDICTION,
    NOT_AN_OBJECT,
)
from exporter.ingest.batches import LabelBatch, ParseResult, PredictionBatch, feature_column
from exporter.ingest.ids import object_array
from exporter.ingest.timestamps import newest, parse_timestamps

if TYPE_CHECKING:
    from exporter.config import SourceConfig


CANONICAL_FIELDS: tuple[str, ...] = (
    "id", "model", "model_version", "timestamp", "prediction", "confidence", "probabilities",
    "features", "label",
)
UNKNOWN_VERSION = "unknown"

_MISSING: Any = object()  # a field absent from the record (distinct from JSON null)


@dataclass(frozen=True)
class RecordSpec:
    """How one source's records map onto the canonical record (DESIGN §3).

    ``fields`` maps a canonical name to a dotted path into the record; a name not in it is
    looked up under its own name. ``model`` / ``model_version`` fixed here override the record.
    """

    fields: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None
    model_version: str | None = None
    feature_names: tuple[str, ...] = ()
    max_line_bytes: int = 1 << 20

    @classmethod
    def from_source(cls, src: SourceConfig, feature_names: tuple[str, ...] = ()) -> RecordSpec:
        """The spec of a configured source; ``feature_names`` come from the model's drift config."""
        return cls(
            fields=dict(src.fields), model=src.model, model_version=src.model_version,
            feature_names=tuple(feature_names), max_line_bytes=src.max_line_bytes,
        )

    def path(self, name: str) -> tuple[str, ...]:
        """The keys leading to canonical field ``name`` in a record."""
        return tuple(self.fields.get(name, name).split("."))


def _is_text(s: str) -> bool:
    """Whether ``s`` can be written as UTF-8: JSON's ``"\\ud800"`` escape decodes to a lone
    surrogate, which would break every label value, log line or checkpoint it reached."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def class_text(value: Any) -> str | None:
    """A class value as the text classes are compared by (DESIGN §2), or None if it is not one.

    Integers and integral floats become integer text (``1``, ``1.0`` -> ``"1"``), booleans
    ``"1"`` / ``"0"``, other finite floats their ``repr``; strings stay as they are, except that
    empty strings and strings with lone surrogates are refused. ``None``, lists, objects and
    non-finite floats are refused. Ids, models and versions follow the same rule.
    """
    t = type(value)
    if t is str:
        return value if value and _is_text(value) else None
    if t is int:
        return str(value)
    if t is bool:
        return "1" if value else "0"
    if t is float:
        if value.is_integer():
            return str(int(value))
        return repr(value) if math.isfinite(value) else None
    # numpy scalars and other number types from sources that build objects themselves
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return class_text(float(value))
    return None


def _lookup(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return _MISSING
        obj = obj.get(key, _MISSING)
        if obj is _MISSING:
            return obj
    return obj


def _probability(value: Any) -> float | None:
    """A number in [0, 1] as float, None otherwise (booleans are not numbers here)."""
    t = type(value)
    if t is float:
        x: float = value
    elif (t is int or isinstance(value, numbers.Real)) and not isinstance(value, (bool, np.bool_)):
        try:
            x = float(value)
        except OverflowError:  # an int beyond float range is out of [0, 1] anyway
            return None
    else:
        return None
    return x if 0.0 <= x <= 1.0 else None  # also refuses NaN


def _probabilities(value: Any) -> dict[str, float] | None:
    """Class text -> probability, or None if ``value`` is not such a mapping."""
    if not isinstance(value, dict):
        return None
    out: dict[str, float] = {}
    for k, v in value.items():
        cls = class_text(k)
        p = _probability(v)
        if cls is None or p is None:
            return None
        out[cls] = p
    return out


def _feature(value: Any) -> Any:
    """A feature value: strings and booleans as they are, numbers as float, else None."""
    t = type(value)
    if t is str:
        return value if _is_text(value) else None
    if t is float or t is bool:
        return value
    if t is int:
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value if isinstance(value, str) and _is_text(value) else None


def _reject(invalid: Counter[str], first: dict[str, int], reason: str, index: int) -> None:
    """Count one refused record, remembering where the first one of each reason was."""
    invalid[reason] += 1
    first.setdefault(reason, index)


def _decoded(lines: Sequence[bytes], objects: Sequence[Any], max_line_bytes: int,
             invalid: Counter[str], first: dict[str, int]) -> Iterator[tuple[int, Any]]:
    """(record index, decoded JSON value) of the lines (bad ones counted and skipped), then of
    the objects; the index counts lines first, then objects, as ``ParseResult.first_bad`` does.

    Lines are decoded as strict UTF-8 before ``json.loads``: given bytes, the json module would
    guess UTF-16/32 and accept a BOM, which is not the format.
    """
    loads = json.loads
    for i, raw in enumerate(lines):
        if len(raw) > max_line_bytes:
            _reject(invalid, first, LINE_TOO_LONG, i)
            continue
        try:
            value = loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
            _reject(invalid, first, INVALID_JSON, i)
            continue
        yield i, value
    yield from enumerate(objects, len(lines))


def parse_predictions(lines: Sequence[bytes], spec: RecordSpec, now: float,
                      objects: Sequence[Any] = ()) -> ParseResult:
    """Prediction records (raw lines and/or decoded values) -> a PredictionBatch plus rejects."""
    return _predictions_per_record(lines, spec, now, objects)


def _predictions_per_record(lines: Sequence[bytes], spec: RecordSpec, now: float,
                            objects: Sequence[Any]) -> ParseResult:
    invalid: Counter[str] = Counter()
    first: dict[str, int] = {}
    rows: list[int] = []
    p_id, p_model, p_version = spec.path("id"), spec.path("model"), spec.path("model_version")
    p_ts, p_pred, p_conf = spec.path("timestamp"), spec.path("prediction"), spec.path("confidence")
    p_probs, p_feats = spec.path("probabilities"), spec.path("features")
    fixed_model, fixed_version = spec.model, spec.model_version
    names = spec.feature_names
    n_feats = len(names)

    ids: list[str] = []
    models: list[str | None] = []
    versions: list[str] = []
    stamps: list[Any] = []
    preds: list[str] = []
    confs: list[float] = []
    probs_col: list[dict[str, float] | None] = []
    feats: list[list[Any]] = [[] for _ in names]
    nan = math.nan

    for i, obj in _decoded(lines, objects, spec.max_line_bytes, invalid, first):
        if not isinstance(obj, dict):
            _reject(invalid, first, NOT_AN_OBJECT, i)
            continue
        raw_id = _lookup(obj, p_id)
        rid = class_text(raw_id) if raw_id is not _MISSING and type(raw_id) is not bool else None
        if rid is None:
            _reject(invalid, first, MISSING_ID, i)
            continue
        if fixed_model is not None:
            model: str | None = fixed_model
        else:
            raw = _lookup(obj, p_model)
            model = class_text(raw) if raw is not _MISSING else None
            if model is None:
                _reject(invalid, first, MISSING_MODEL, i)
                continue
        raw = _lookup(obj, p_pred)
        if raw is _MISSING:
            _reject(invalid, first, MISSING_PREDICTION, i)
            continue
        pred = class_text(raw)
        if pred is None:
            _reject(invalid, first, INVALID_CLASS, i)
            continue
        raw = _lookup(obj, p_conf)
        if raw is _MISSING or raw is None:
            conf: float | None = None
        else:
            conf = _probability(raw)
            if conf is None:
                _reject(invalid, first, INVALID_CONFIDENCE, i)
                continue
        raw = _lookup(obj, p_probs)
        if raw is _MISSING or raw is None:
            probs: dict[str, float] | None = None
        else:
            probs = _probabilities(raw)
            if probs is None:
                _reject(invalid, first, INVALID_PROBABILITIES, i)
                continue
            if not probs:
                probs = None
        if fixed_version is not None:
            version: str = fixed_version
        else:
            raw = _lookup(obj, p_version)
            version = (class_text(raw) if raw is not _MISSING else None) or UNKNOWN_VERSION
        raw = _lookup(obj, p_ts)
        stamps.append(None if raw is _MISSING else raw)
        rows.append(i)
        ids.append(rid)
        models.append(model)
        versions.append(version)
        preds.append(pred)
        confs.append(conf if conf is not None else (max(probs.values()) if probs else nan))
        probs_col.append(probs)
        if n_feats:
            fobj = _lookup(obj, p_feats)
            if isinstance(fobj, dict):
                for col, name in zip(feats, names, strict=True):
                    col.append(_feature(fobj.get(name)))
            else:
                for col in feats:
                    col.append(None)

    ts = parse_timestamps(stamps, now)
    keep = _drop_invalid_timestamps(ts, invalid, first, rows)
    batch = PredictionBatch(
        id=object_array(ids)[keep], model=object_array(models)[keep], model_version=object_array(versions)[keep],
        timestamp=ts[keep], prediction=object_array(preds)[keep],
        confidence=np.array(confs, dtype=np.float64)[keep], probabilities=object_array(probs_col)[keep],
        features={name: feature_column(object_array(col)[keep].tolist())
                  for name, col in zip(names, feats, strict=True)},
    )
    return ParseResult(batch=batch, invalid=invalid, records=len(lines) + len(objects),
                       newest_timestamp=newest(batch.timestamp), first_bad=first)


def parse_labels(lines: Sequence[bytes], spec: RecordSpec, now: float,
                 objects: Sequence[Any] = ()) -> ParseResult:
    """Label records (raw lines and/or decoded values) -> a LabelBatch plus rejects.

    The label's model is the source's fixed ``model``, else the record's (``fields.model``),
    else None: a label joins whichever pending prediction carries its id.
    """
    return _labels_per_record(lines, spec, now, objects)


def _labels_per_record(lines: Sequence[bytes], spec: RecordSpec, now: float,
                       objects: Sequence[Any]) -> ParseResult:
    invalid: Counter[str] = Counter()
    first: dict[str, int] = {}
    rows: list[int] = []
    p_id, p_model = spec.path("id"), spec.path("model")
    p_ts, p_label = spec.path("timestamp"), spec.path("label")
    fixed_model = spec.model

    ids: list[str] = []
    labels: list[str] = []
    stamps: list[Any] = []
    models: list[str | None] = []

    for i, obj in _decoded(lines, objects, spec.max_line_bytes, invalid, first):
        if not isinstance(obj, dict):
            _reject(invalid, first, NOT_AN_OBJECT, i)
            continue
        raw_id = _lookup(obj, p_id)
        rid = class_text(raw_id) if raw_id is not _MISSING and type(raw_id) is not bool else None
        if rid is None:
            _reject(invalid, first, MISSING_ID, i)
            continue
        raw = _lookup(obj, p_label)
        if raw is _MISSING:
            _reject(invalid, first, MISSING_LABEL, i)
            continue
        label = class_text(raw)
        if label is None:
            _reject(invalid, first, INVALID_CLASS, i)
            continue
        if fixed_model is not None:
            model: str | None = fixed_model
        else:
            raw = _lookup(obj, p_model)
            model = class_text(raw) if raw is not _MISSING else None
        raw = _lookup(obj, p_ts)
        stamps.append(None if raw is _MISSING else raw)
        rows.append(i)
        ids.append(rid)
        labels.append(label)
        models.append(model)

    ts = parse_timestamps(stamps, now)
    keep = _drop_invalid_timestamps(ts, invalid, first, rows)
    batch = LabelBatch(id=object_array(ids)[keep], label=object_array(labels)[keep], timestamp=ts[keep],
                       model=object_array(models)[keep])
    return ParseResult(batch=batch, invalid=invalid, records=len(lines) + len(objects),
                       newest_timestamp=newest(batch.timestamp), first_bad=first)


def _drop_invalid_timestamps(ts: FloatArray, invalid: Counter[str], first: dict[str, int],
                             rows: list[int]) -> npt.NDArray[np.bool_]:
    keep = ~np.isnan(ts)
    bad = len(ts) - int(keep.sum())
    if bad:
        invalid[INVALID_TIMESTAMP] += bad
        first.setdefault(INVALID_TIMESTAMP, rows[int(np.argmin(keep))])
    return keep

