"""Prediction and label batches: the columnar form every source's records are turned into.

A poll yields many records at once; keeping them as numpy columns lets the join and the window
updates work on whole batches instead of per-event Python objects. The parsers here map each
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

There are two ways through a block of lines: the per-record path (``json.loads`` per line; the
reference, and the only path for decoded objects) and, for blocks of ``FAST_MIN_LINES`` or more,
pyarrow's JSON reader over the whole block. The fast path is used only when its output is
provably the per-record path's (see the guards above ``_read_block``); otherwise the block is
parsed per record, which also isolates bad lines without losing good ones.
"""

from __future__ import annotations

import io
import json
import math
import numbers
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from exporter.arrays import BoolArray, FloatArray, ObjArray
from exporter.reject_reasons import (  # noqa: F401 - re-exported: the parsers' vocabulary
    INVALID_CLASS,
    INVALID_CONFIDENCE,
    INVALID_JSON,
    INVALID_PROBABILITIES,
    INVALID_REASONS,
    INVALID_TIMESTAMP,
    LINE_TOO_LONG,
    MISSING_ID,
    MISSING_LABEL,
    MISSING_MODEL,
    MISSING_PREDICTION,
    NOT_AN_OBJECT,
)
from exporter.timestamps import parse_timestamps

if TYPE_CHECKING:
    from exporter.config import SourceConfig


@dataclass(frozen=True)
class PredictionBatch:
    """Valid prediction records, one row per record, all columns the same length."""

    id: ObjArray  # str
    model: ObjArray  # str; from the record or fixed by the source
    model_version: ObjArray  # str
    timestamp: FloatArray  # epoch seconds; arrival time when the record has none
    prediction: ObjArray  # normalised class text (DESIGN §2 "Classes")
    confidence: FloatArray  # in [0, 1]; NaN when neither given nor derivable from probabilities
    probabilities: ObjArray  # dict[str, float] (class text -> probability) or None
    features: dict[str, ObjArray] = field(default_factory=dict)  # name -> raw value or None

    def __len__(self) -> int:
        return len(self.id)


@dataclass(frozen=True)
class LabelBatch:
    """Valid label records."""

    id: ObjArray  # str
    label: ObjArray  # normalised class text
    timestamp: FloatArray  # epoch seconds; arrival time when the record has none
    model: ObjArray  # str, or None when the record names no model

    def __len__(self) -> int:
        return len(self.id)


@dataclass
class ParseResult:
    """What a parser returns: the valid rows, and how many records were rejected by reason."""

    batch: PredictionBatch | LabelBatch
    invalid: Counter[str] = field(default_factory=Counter)
    records: int = 0  # records read, valid or not (mlmon_exporter_records_total)
    newest_timestamp: float | None = None  # for mlmon_exporter_source_lag_seconds


def empty_predictions(feature_names: tuple[str, ...] = ()) -> PredictionBatch:
    def obj() -> ObjArray:
        return np.empty(0, dtype=object)

    return PredictionBatch(
        id=obj(), model=obj(), model_version=obj(), timestamp=np.empty(0), prediction=obj(),
        confidence=np.empty(0), probabilities=obj(), features={f: obj() for f in feature_names},
    )


def empty_labels() -> LabelBatch:
    return LabelBatch(
        id=np.empty(0, dtype=object), label=np.empty(0, dtype=object), timestamp=np.empty(0),
        model=np.empty(0, dtype=object),
    )


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


def _decoded(lines: Sequence[bytes], objects: Sequence[Any], max_line_bytes: int,
             invalid: Counter[str]) -> Iterator[Any]:
    """Decoded JSON values of the lines (bad ones counted and skipped), then the objects.

    Lines are decoded as strict UTF-8 before ``json.loads``: given bytes, the json module would
    guess UTF-16/32 and accept a BOM, which is not the format.
    """
    loads = json.loads
    for raw in lines:
        if len(raw) > max_line_bytes:
            invalid[LINE_TOO_LONG] += 1
            continue
        try:
            yield loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
            invalid[INVALID_JSON] += 1
    yield from objects


def _obj_array(values: list[Any]) -> ObjArray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def parse_predictions(lines: Sequence[bytes], spec: RecordSpec, now: float,
                      objects: Sequence[Any] = (), *, fast: bool = True) -> ParseResult:
    """Prediction records (raw lines and/or decoded values) -> a PredictionBatch plus rejects.

    ``fast=False`` forces the per-record path; the result is the same either way.
    """
    if fast and not objects and len(lines) >= FAST_MIN_LINES:
        result = _fast_predictions(lines, spec, now)
        if result is not None:
            return result
    return _predictions_per_record(lines, spec, now, objects)


def _predictions_per_record(lines: Sequence[bytes], spec: RecordSpec, now: float,
                            objects: Sequence[Any]) -> ParseResult:
    invalid: Counter[str] = Counter()
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

    for obj in _decoded(lines, objects, spec.max_line_bytes, invalid):
        if not isinstance(obj, dict):
            invalid[NOT_AN_OBJECT] += 1
            continue
        raw_id = _lookup(obj, p_id)
        rid = class_text(raw_id) if raw_id is not _MISSING and type(raw_id) is not bool else None
        if rid is None:
            invalid[MISSING_ID] += 1
            continue
        if fixed_model is not None:
            model: str | None = fixed_model
        else:
            raw = _lookup(obj, p_model)
            model = class_text(raw) if raw is not _MISSING else None
            if model is None:
                invalid[MISSING_MODEL] += 1
                continue
        raw = _lookup(obj, p_pred)
        if raw is _MISSING:
            invalid[MISSING_PREDICTION] += 1
            continue
        pred = class_text(raw)
        if pred is None:
            invalid[INVALID_CLASS] += 1
            continue
        raw = _lookup(obj, p_conf)
        if raw is _MISSING or raw is None:
            conf: float | None = None
        else:
            conf = _probability(raw)
            if conf is None:
                invalid[INVALID_CONFIDENCE] += 1
                continue
        raw = _lookup(obj, p_probs)
        if raw is _MISSING or raw is None:
            probs: dict[str, float] | None = None
        else:
            probs = _probabilities(raw)
            if probs is None:
                invalid[INVALID_PROBABILITIES] += 1
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
    keep = _drop_invalid_timestamps(ts, invalid)
    batch = PredictionBatch(
        id=_obj_array(ids)[keep], model=_obj_array(models)[keep], model_version=_obj_array(versions)[keep],
        timestamp=ts[keep], prediction=_obj_array(preds)[keep],
        confidence=np.array(confs, dtype=np.float64)[keep], probabilities=_obj_array(probs_col)[keep],
        features={name: _obj_array(col)[keep] for name, col in zip(names, feats, strict=True)},
    )
    return ParseResult(batch=batch, invalid=invalid, records=len(lines) + len(objects),
                       newest_timestamp=_newest(batch.timestamp))


def parse_labels(lines: Sequence[bytes], spec: RecordSpec, now: float,
                 objects: Sequence[Any] = (), *, fast: bool = True) -> ParseResult:
    """Label records (raw lines and/or decoded values) -> a LabelBatch plus rejects.

    The label's model is the source's fixed ``model``, else the record's (``fields.model``),
    else None: a label joins whichever pending prediction carries its id.
    ``fast=False`` forces the per-record path; the result is the same either way.
    """
    if fast and not objects and len(lines) >= FAST_MIN_LINES:
        result = _fast_labels(lines, spec, now)
        if result is not None:
            return result
    return _labels_per_record(lines, spec, now, objects)


def _labels_per_record(lines: Sequence[bytes], spec: RecordSpec, now: float,
                       objects: Sequence[Any]) -> ParseResult:
    invalid: Counter[str] = Counter()
    p_id, p_model = spec.path("id"), spec.path("model")
    p_ts, p_label = spec.path("timestamp"), spec.path("label")
    fixed_model = spec.model

    ids: list[str] = []
    labels: list[str] = []
    stamps: list[Any] = []
    models: list[str | None] = []

    for obj in _decoded(lines, objects, spec.max_line_bytes, invalid):
        if not isinstance(obj, dict):
            invalid[NOT_AN_OBJECT] += 1
            continue
        raw_id = _lookup(obj, p_id)
        rid = class_text(raw_id) if raw_id is not _MISSING and type(raw_id) is not bool else None
        if rid is None:
            invalid[MISSING_ID] += 1
            continue
        raw = _lookup(obj, p_label)
        if raw is _MISSING:
            invalid[MISSING_LABEL] += 1
            continue
        label = class_text(raw)
        if label is None:
            invalid[INVALID_CLASS] += 1
            continue
        if fixed_model is not None:
            model: str | None = fixed_model
        else:
            raw = _lookup(obj, p_model)
            model = class_text(raw) if raw is not _MISSING else None
        raw = _lookup(obj, p_ts)
        stamps.append(None if raw is _MISSING else raw)
        ids.append(rid)
        labels.append(label)
        models.append(model)

    ts = parse_timestamps(stamps, now)
    keep = _drop_invalid_timestamps(ts, invalid)
    batch = LabelBatch(id=_obj_array(ids)[keep], label=_obj_array(labels)[keep], timestamp=ts[keep],
                       model=_obj_array(models)[keep])
    return ParseResult(batch=batch, invalid=invalid, records=len(lines) + len(objects),
                       newest_timestamp=_newest(batch.timestamp))


def _drop_invalid_timestamps(ts: FloatArray, invalid: Counter[str]) -> npt.NDArray[np.bool_]:
    keep = ~np.isnan(ts)
    bad = len(ts) - int(keep.sum())
    if bad:
        invalid[INVALID_TIMESTAMP] += bad
    return keep


def _newest(ts: FloatArray) -> float | None:
    return float(ts.max()) if len(ts) else None


# --- fast path: a whole block through pyarrow's JSON reader -------------------------------------
#
# pyarrow parses a block of lines in C++ (on all cores) several times faster than json.loads
# per line. It is only used where its result is provably the per-record path's: anything the
# two readers could disagree on makes the block fall back to per-record parsing (``_Fallback``),
# which also isolates bad lines without losing good ones. The guards:
#
# * any line arrow cannot parse, or that is not one object: every line must start with ``{``
#   and the row count must equal the line count;
# * a NaN or infinite number anywhere in the block (arrow also accepts ``Inf``; json does not);
# * invalid UTF-8 anywhere (arrow does not check strings it does not convert);
# * nesting deeper than 64 (json gives up on deep nesting with RecursionError; arrow's schema
#   bounds the depth of every record), and, before arrow sees the block, any line that could
#   nest deeper than 1000 (arrow crashes on very deep nesting);
# * a field we read inferred as a date/time type (the original text is gone; fields that hold
#   text in the block's first record are read as text to avoid this);
# * an integer or float class/id beyond 2**53 (arrow stores it as a double, losing digits);
# * a JSON ``null`` where it means something different from an absent key (a ``null`` class,
#   a ``null`` probability) when the block contains the literal ``null`` at all.

FAST_MIN_LINES = 64
"""Blocks smaller than this are not worth arrow's fixed costs."""

_MAX_EXACT = 2.0 ** 53
_MAX_DEPTH = 64
_MAX_BRACKETS = 1000  # lines that could nest deeper than this are never handed to arrow


class _Fallback(Exception):
    """This block must be parsed record by record."""


def _deeper_than(schema: pa.Schema, limit: int) -> bool:
    """Whether any value nests deeper than ``limit`` (iteratively: the depth may be huge)."""
    stack = [(f.type, 2) for f in schema]  # the record itself is level 1
    while stack:
        t, depth = stack.pop()
        if depth > limit:
            return True
        if pa.types.is_struct(t):
            stack.extend((t.field(i).type, depth + 1) for i in range(t.num_fields))
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            stack.append((t.value_type, depth + 1))
    return False


_OBJECT_START = {ord("{")}


def _text_schema(first: Any, paths: Sequence[tuple[str, ...]]) -> pa.Schema | None:
    """An explicit schema making ``string`` every path whose value is text in the first record.

    Arrow infers text such as ``2026-11-27T08:00:00Z`` or ``2026-11-27`` as timestamps, which
    loses the original; text in the first record of a block is very likely text in all of them.
    (If not, arrow refuses the block and it is parsed per record.)
    """
    tree: dict[str, Any] = {}
    for path in paths:
        if type(_lookup(first, path)) is not str:
            continue
        node = tree
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            if path[-1] not in node:
                node[path[-1]] = pa.string()

    def build(node: dict[str, Any]) -> list[pa.Field]:
        return [pa.field(k, pa.struct(build(v)) if isinstance(v, dict) else v) for k, v in node.items()]

    return pa.schema(build(tree)) if tree else None


def _read_block(lines: Sequence[bytes], max_line_bytes: int, text_paths: Sequence[tuple[str, ...]]
                ) -> tuple[pa.Table, int, _NullLiteral]:
    """The block as an arrow table (one row per line within the size limit), how many lines
    were too long, and whether the block contains a ``null`` literal."""
    lens = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    too_long = lens > max_line_bytes
    n_long = int(too_long.sum())
    if n_long:
        lines = [line for line, bad in zip(lines, too_long.tolist(), strict=True) if not bad]
        lens = lens[~too_long]
    if not lines or int(lens.min()) == 0:
        raise _Fallback
    # Every line must start with "{": whitespace-only lines yield no row (so a line holding two
    # objects could hide behind one), a top-level ``null`` yields an all-null row, and pyarrow
    # 26 crashes (SIGSEGV) on a block whose first document is ``null``.
    if {line[0] for line in lines} != _OBJECT_START:
        raise _Fallback
    # pyarrow 26 overflows its stack (SIGSEGV) on nesting some 20000 deep. A line's depth is at
    # most its count of "[" and "{", and at most half its length: only long lines need counting.
    for i in np.flatnonzero(lens > 2 * _MAX_BRACKETS).tolist():
        if lines[i].count(b"[") + lines[i].count(b"{") > _MAX_BRACKETS:
            raise _Fallback
    block = b"\n".join(lines)
    if not block.isascii():
        try:
            block.decode("utf-8")
        except UnicodeDecodeError:
            raise _Fallback from None
    try:
        schema = _text_schema(json.loads(lines[0].decode("utf-8")), text_paths)
        table = pa_json.read_json(
            io.BytesIO(block),
            read_options=pa_json.ReadOptions(use_threads=True, block_size=max(1 << 20, 2 * int(lens.max()) + 2)),
            parse_options=pa_json.ParseOptions(explicit_schema=schema),
        )
    except Exception:  # ArrowInvalid for bad JSON; anything else is as good a reason to fall back
        raise _Fallback from None
    if table.num_rows != len(lines) or _deeper_than(table.schema, _MAX_DEPTH):
        raise _Fallback
    if not all(_all_finite(table.column(i)) for i in range(table.num_columns)):
        raise _Fallback  # NaN / Infinity / Inf literals: json disagrees on the last one
    return table, n_long, _NullLiteral(block)


class _NullLiteral:
    """Whether the block contains ``null``, searched only if a caller needs to know."""

    def __init__(self, block: bytes) -> None:
        self._block = block
        self._found: bool | None = None

    def __bool__(self) -> bool:
        if self._found is None:
            self._found = b"null" in self._block
        return self._found


def _all_finite(col: pa.Array | pa.ChunkedArray) -> bool:
    """No NaN or infinity anywhere in the column, nested values included."""
    if isinstance(col, pa.ChunkedArray):
        return all(_all_finite(chunk) for chunk in col.chunks)
    t = col.type
    if pa.types.is_floating(t):
        return bool(pc.all(pc.is_finite(col.drop_null())).as_py() is not False)
    if pa.types.is_struct(t):
        return all(_all_finite(col.field(i)) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _all_finite(col.values)
    return True


def _column(table: pa.Table, path: tuple[str, ...]) -> pa.Array | None:
    """The column at a dotted path (parent nulls propagated), None where no record has it."""
    i = table.schema.get_field_index(path[0])
    if i < 0:
        return None
    col = table.column(i).combine_chunks()
    for key in path[1:]:
        if not pa.types.is_struct(col.type):
            return None
        j = col.type.get_field_index(key)
        if j < 0:
            return None
        col = pc.struct_field(col, [j])
    return col


def _is_temporal(t: pa.DataType) -> bool:
    return bool(pa.types.is_temporal(t))


def _is_number(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _valid(col: pa.Array) -> BoolArray:
    out: BoolArray = col.is_valid().to_numpy(zero_copy_only=False).astype(np.bool_)
    return out


def _floats(col: pa.Array) -> FloatArray:
    """Numbers as float64, NaN where null (the block holds no NaN literal)."""
    out: FloatArray = col.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False).astype(np.float64)
    return out


def _texts(col: pa.Array | None, n: int, bools: bool) -> tuple[ObjArray, BoolArray]:
    """``class_text`` of every value (None where absent or refused) and where it is not None."""
    if col is None:
        return np.full(n, None, dtype=object), np.zeros(n, dtype=np.bool_)
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        out = _obj_array(col.to_pylist())
        ok = _valid(col) & ~pc.equal(col, "").fill_null(False).to_numpy(zero_copy_only=False)
        out[~ok] = None
        return out, ok
    if pa.types.is_integer(t):
        return _obj_array(pc.cast(col, pa.string()).to_pylist()), _valid(col)
    if pa.types.is_floating(t):
        x = _floats(col)
        if np.any(np.abs(x) >= _MAX_EXACT):
            raise _Fallback
        vals = [None if v is None else class_text(v) for v in col.to_pylist()]
    elif pa.types.is_boolean(t):
        vals = [None if v is None or not bools else ("1" if v else "0") for v in col.to_pylist()]
    elif pa.types.is_null(t) or pa.types.is_nested(t):
        vals = [None] * n
    else:  # dates and times inferred from text, binary, ...: the original value is gone
        raise _Fallback
    out = _obj_array(vals)
    return out, np.fromiter((v is not None for v in vals), dtype=np.bool_, count=n)


def _present(col: pa.Array | None, n: int, has_null: _NullLiteral) -> BoolArray:
    """Where a record has the field (for fields where ``null`` and absent differ)."""
    if col is None:
        return np.zeros(n, dtype=np.bool_)
    valid = _valid(col)
    if not valid.all() and has_null:
        raise _Fallback  # absent or ``null``? only the per-record path can tell
    return valid


def _fast_timestamps(col: pa.Array | None, n: int, now: float) -> FloatArray:
    if col is None:
        return np.full(n, now, dtype=np.float64)
    if _is_temporal(col.type):
        raise _Fallback
    return parse_timestamps(col, now)


def _fast_feature(fobj: pa.Array | None, name: str, n: int) -> ObjArray:
    if fobj is None or not pa.types.is_struct(fobj.type) or fobj.type.get_field_index(name) < 0:
        return np.full(n, None, dtype=object)
    col = pc.struct_field(fobj, [fobj.type.get_field_index(name)])
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_boolean(t):
        return _obj_array(col.to_pylist())
    if _is_number(t):
        out = _floats(col).astype(object)
        out[~_valid(col)] = None
        return out
    if pa.types.is_null(t) or pa.types.is_nested(t):
        return np.full(n, None, dtype=object)
    raise _Fallback


def _fast_probabilities(col: pa.Array | None, n: int, has_null: _NullLiteral
                        ) -> tuple[BoolArray, BoolArray, FloatArray, list[tuple[str, list[Any], list[bool]]]]:
    """Where probabilities are present, where they are valid, their max (NaN if none), and the
    per-class values and validity for building the dicts of the records that are kept."""
    nan = np.full(n, np.nan)
    if col is None:
        return np.zeros(n, dtype=np.bool_), np.ones(n, dtype=np.bool_), nan, []
    present = _valid(col)
    if not pa.types.is_struct(col.type):
        return present, ~present, nan, []  # present but not an object
    bad = np.zeros(n, dtype=np.bool_)
    best = np.full(n, -np.inf)
    classes: list[tuple[str, list[Any], list[bool]]] = []
    for i in range(col.type.num_fields):
        name = col.type.field(i).name
        child = pc.struct_field(col, [i])
        cvalid = _valid(child)
        if np.any(present & ~cvalid) and has_null:
            raise _Fallback  # {"k": null} (invalid) or "k" absent (fine)?
        if _is_number(child.type) and name:
            v = _floats(child)
            with np.errstate(invalid="ignore"):
                bad |= cvalid & ~((v >= 0.0) & (v <= 1.0))
            best = np.where(cvalid, np.fmax(best, v), best)
            classes.append((name, v.tolist(), cvalid.tolist()))
        else:  # a non-number, or the empty class name
            bad |= cvalid
    best[np.isinf(best)] = np.nan
    return present, ~(present & bad), best, classes


def _prob_dicts(keep: BoolArray, present: BoolArray,
                classes: list[tuple[str, list[Any], list[bool]]]) -> list[dict[str, float] | None]:
    rows = np.flatnonzero(keep)
    out: list[dict[str, float] | None] = [None] * len(rows)
    if classes:
        for i in np.flatnonzero(present[rows]).tolist():
            r = int(rows[i])
            out[i] = {name: vals[r] for name, vals, valid in classes if valid[r]} or None
    return out


def _apply_reasons(n: int, checks: list[tuple[str, BoolArray]], invalid: Counter[str]) -> BoolArray:
    """Count each record under the first reason whose mask marks it bad; the good ones."""
    ok = np.ones(n, dtype=np.bool_)
    for reason, bad in checks:
        hit = ok & bad
        count = int(hit.sum())
        if count:
            invalid[reason] += count
            ok &= ~hit
    return ok


def _fast_predictions(lines: Sequence[bytes], spec: RecordSpec, now: float) -> ParseResult | None:
    try:
        p_feats = spec.path("features")
        text_paths = [spec.path(f) for f in ("id", "model", "model_version", "timestamp", "prediction")]
        text_paths += [(*p_feats, name) for name in spec.feature_names]
        table, n_long, has_null = _read_block(lines, spec.max_line_bytes, text_paths)
        n = table.num_rows
        ids, id_ok = _texts(_column(table, spec.path("id")), n, bools=False)
        if spec.model is not None:
            models, model_ok = np.full(n, spec.model, dtype=object), np.ones(n, dtype=np.bool_)
        else:
            models, model_ok = _texts(_column(table, spec.path("model")), n, bools=True)
        pred_col = _column(table, spec.path("prediction"))
        pred_present = _present(pred_col, n, has_null)
        preds, pred_ok = _texts(pred_col, n, bools=True)
        conf_col = _column(table, spec.path("confidence"))
        if conf_col is None:
            conf_present, conf = np.zeros(n, dtype=np.bool_), np.full(n, np.nan)
        else:
            conf_present = _valid(conf_col)
            conf = _floats(conf_col) if _is_number(conf_col.type) else np.full(n, np.nan)
        with np.errstate(invalid="ignore"):
            conf_bad = conf_present & ~((conf >= 0.0) & (conf <= 1.0))
        probs_present, probs_ok, probs_max, classes = _fast_probabilities(
            _column(table, spec.path("probabilities")), n, has_null)
        if spec.model_version is not None:
            versions = np.full(n, spec.model_version, dtype=object)
        else:
            versions, version_ok = _texts(_column(table, spec.path("model_version")), n, bools=True)
            versions[~version_ok] = UNKNOWN_VERSION
        ts = _fast_timestamps(_column(table, spec.path("timestamp")), n, now)
        fobj = _column(table, p_feats)
        feats = {name: _fast_feature(fobj, name, n) for name in spec.feature_names}
    except (_Fallback, pa.ArrowException):  # arrow refusing an odd block is a fallback too
        return None
    invalid: Counter[str] = Counter()
    if n_long:
        invalid[LINE_TOO_LONG] = n_long
    keep = _apply_reasons(n, [
        (MISSING_ID, ~id_ok), (MISSING_MODEL, ~model_ok), (MISSING_PREDICTION, ~pred_present),
        (INVALID_CLASS, ~pred_ok), (INVALID_CONFIDENCE, conf_bad), (INVALID_PROBABILITIES, ~probs_ok),
        (INVALID_TIMESTAMP, np.isnan(ts)),
    ], invalid)
    confidence = np.where(conf_present, conf, probs_max)[keep]
    batch = PredictionBatch(
        id=ids[keep], model=models[keep], model_version=versions[keep], timestamp=ts[keep],
        prediction=preds[keep], confidence=confidence.astype(np.float64),
        probabilities=_obj_array(_prob_dicts(keep, probs_present, classes)),
        features={name: col[keep] for name, col in feats.items()},
    )
    return ParseResult(batch=batch, invalid=invalid, records=len(lines), newest_timestamp=_newest(batch.timestamp))


def _fast_labels(lines: Sequence[bytes], spec: RecordSpec, now: float) -> ParseResult | None:
    try:
        text_paths = [spec.path(f) for f in ("id", "model", "timestamp", "label")]
        table, n_long, has_null = _read_block(lines, spec.max_line_bytes, text_paths)
        n = table.num_rows
        ids, id_ok = _texts(_column(table, spec.path("id")), n, bools=False)
        label_col = _column(table, spec.path("label"))
        label_present = _present(label_col, n, has_null)
        labels, label_ok = _texts(label_col, n, bools=True)
        if spec.model is not None:
            models = np.full(n, spec.model, dtype=object)
        else:
            models, _ = _texts(_column(table, spec.path("model")), n, bools=True)
        ts = _fast_timestamps(_column(table, spec.path("timestamp")), n, now)
    except (_Fallback, pa.ArrowException):  # arrow refusing an odd block is a fallback too
        return None
    invalid: Counter[str] = Counter()
    if n_long:
        invalid[LINE_TOO_LONG] = n_long
    keep = _apply_reasons(n, [
        (MISSING_ID, ~id_ok), (MISSING_LABEL, ~label_present), (INVALID_CLASS, ~label_ok),
        (INVALID_TIMESTAMP, np.isnan(ts)),
    ], invalid)
    batch = LabelBatch(id=ids[keep], label=labels[keep], timestamp=ts[keep], model=models[keep])
    return ParseResult(batch=batch, invalid=invalid, records=len(lines), newest_timestamp=_newest(batch.timestamp))
