"""Prediction and label batches: the columnar form every source's records are turned into.

A poll yields many records at once; keeping them as numpy columns lets the join and the window
updates work on whole batches instead of per-event Python objects. Both parsers (the per-record
reference in ``records`` and the block fast path in ``block_parser``) produce these, and a numeric
feature column has one canonical form (``feature_column``: float64, NaN for absent) whichever
parser made it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from exporter.foundation.arrays import BoolArray, FloatArray, HashArray, IntArray, ObjArray
from exporter.ingest.ids import encode_ids, object_array, stable_id_hashes


@dataclass(frozen=True)
class IdKeys:
    """A batch's ids as the join keys them: UTF-8 bytes in one Arrow binary array, and their
    ``stable_id_hashes``. The line scanner hands these over with the ids (it has their bytes), so
    the pipeline need not encode and hash the Python strings again; other parsers leave them out
    and the pipeline computes them (``id_keys``)."""

    encoded: pa.Array
    hashes: HashArray

    def __getitem__(self, rows: slice | BoolArray) -> IdKeys:
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(len(self.hashes))
            return IdKeys(self.encoded.slice(start, stop - start), self.hashes[rows])
        return IdKeys(self.encoded.filter(pa.array(rows)), self.hashes[rows])


def id_keys(batch: PredictionBatch | LabelBatch, rows: BoolArray | None = None) -> tuple[pa.Array, HashArray]:
    """The encoded ids and hashes of the batch's rows (a mask, or None for all): the ones the
    parser handed over, else computed from the ids."""
    if batch.id_keys is None:
        encoded = encode_ids(batch.id if rows is None else batch.id[rows])
        return encoded, stable_id_hashes(encoded)
    keys = batch.id_keys if rows is None else batch.id_keys[rows]
    return keys.encoded, keys.hashes


def concat_id_keys(parts: Sequence[IdKeys | None]) -> IdKeys | None:
    if any(p is None for p in parts):
        return None
    keys = [p for p in parts if p is not None]
    return IdKeys(pa.concat_arrays([k.encoded for k in keys]), np.concatenate([k.hashes for k in keys]))


@dataclass(frozen=True)
class ProbabilityTable:
    """A probabilities column as numbers: what the line scanner hands over instead of a dict per
    record (building those dicts was a quarter of its time, and reading them back most of the
    pipeline's cost for the positive class).

    Row ``i`` names the classes ``classes[code[i]]`` (``-1``: the record has none), with their
    probabilities at ``values[start[i]:start[i] + len(classes[code[i]])]``, in the record's order.
    Taking rows copies only ``code`` and ``start``. ``to_objects`` gives the dict-per-record column
    the other parsers build, equal to it value for value.
    """

    classes: tuple[tuple[str, ...], ...]
    code: npt.NDArray[np.int32]
    start: IntArray
    values: FloatArray

    @property
    def size(self) -> int:
        return int(self.code.size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, rows: slice | BoolArray | IntArray) -> ProbabilityTable:
        return ProbabilityTable(self.classes, self.code[rows], self.start[rows], self.values)

    def to_objects(self) -> ObjArray:
        out: list[dict[str, float] | None] = [None] * self.size
        values = self.values.tolist()
        for k, keys in enumerate(self.classes):
            rows = np.flatnonzero(self.code == k)
            n = len(keys)
            for i, at in zip(rows.tolist(), self.start[rows].tolist(), strict=True):
                out[i] = dict(zip(keys, values[at:at + n], strict=True))
        return object_array(out)

    @classmethod
    def from_objects(cls, column: ObjArray) -> ProbabilityTable:
        """The table of a dict-per-record column (None or {} where a record has none): what the
        other parsers' rows become when they join a scanned poll, so one odd line does not turn
        the whole poll's table back into dicts."""
        index: dict[tuple[str, ...], int] = {}
        code = np.full(column.size, -1, dtype=np.int32)
        start = np.zeros(column.size, dtype=np.int64)
        values: list[float] = []
        for i, d in enumerate(column.tolist()):
            if d:
                code[i] = index.setdefault(tuple(d), len(index))
                start[i] = len(values)
                values.extend(d.values())
        return cls(tuple(index), code, start, np.array(values, dtype=np.float64))

    def positive(self, positive_class: str) -> FloatArray:
        """``batch_ops.positive_probabilities``' rule on the numbers: the positive class's value,
        else the complement of a record's only other class, else NaN."""
        out = np.full(self.size, np.nan)
        for k, keys in enumerate(self.classes):
            rows = np.flatnonzero(self.code == k)
            if positive_class in keys:
                out[rows] = self.values[self.start[rows] + keys.index(positive_class)]
            elif len(keys) == 1:
                out[rows] = 1.0 - self.values[self.start[rows]]
        return out


def probability_objects(column: ObjArray | ProbabilityTable) -> ObjArray:
    """A probabilities column as dicts (None where a record has none), whichever form it is in."""
    return column.to_objects() if isinstance(column, ProbabilityTable) else column


@dataclass(frozen=True)
class PredictionBatch:
    """Valid prediction records, one row per record, all columns the same length."""

    id: ObjArray  # str
    model: ObjArray  # str; from the record or fixed by the source
    model_version: ObjArray  # str
    timestamp: FloatArray  # epoch seconds; arrival time when the record has none
    prediction: ObjArray  # normalised class text (DESIGN §2 "Classes")
    confidence: FloatArray  # in [0, 1]; NaN when neither given nor derivable from probabilities
    probabilities: ObjArray | ProbabilityTable  # dict[str, float] (class text -> probability) or None
    features: dict[str, ObjArray | FloatArray] = field(default_factory=dict)
    """name -> the column of ``feature_column``: float64 (NaN = absent) when every value is a
    number or None, else the raw values (None where absent)."""
    id_keys: IdKeys | None = None  # the ids' bytes and hashes, when the parser had them

    def __len__(self) -> int:
        return len(self.id)


@dataclass(frozen=True)
class LabelBatch:
    """Valid label records."""

    id: ObjArray  # str
    label: ObjArray  # normalised class text
    timestamp: FloatArray  # epoch seconds; arrival time when the record has none
    model: ObjArray  # str, or None when the record names no model
    id_keys: IdKeys | None = None  # the ids' bytes and hashes, when the parser had them

    def __len__(self) -> int:
        return len(self.id)


@dataclass
class ParseResult:
    """What a parser returns: the valid rows, and how many records were rejected by reason."""

    batch: PredictionBatch | LabelBatch
    invalid: Counter[str] = field(default_factory=Counter)
    records: int = 0  # records read, valid or not (mlmon_exporter_records_total)
    newest_timestamp: float | None = None  # for mlmon_exporter_source_lag_seconds
    first_bad: dict[str, int] = field(default_factory=dict)
    """Per reason, the index of the first record refused for it (records counted in input order:
    lines, then objects), so a log line can say where to look."""


def empty_predictions(feature_names: tuple[str, ...] = ()) -> PredictionBatch:
    def obj() -> ObjArray:
        return np.empty(0, dtype=object)

    return PredictionBatch(
        id=obj(), model=obj(), model_version=obj(), timestamp=np.empty(0), prediction=obj(),
        confidence=np.empty(0), probabilities=obj(), features={f: obj() for f in feature_names},
    )


def concat_batches(batches: Sequence[PredictionBatch | LabelBatch]) -> PredictionBatch | LabelBatch:
    """The rows of several batches of one kind, in order (one parse call over many blocks)."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    cols: dict[str, Any] = {}
    for name in first.__dataclass_fields__:
        if name == "features":
            feats = first.features  # type: ignore[union-attr]
            cols[name] = {f: concat_feature_columns([b.features[f] for b in batches]) for f in feats}  # type: ignore[union-attr]
        elif name == "id_keys":
            cols[name] = concat_id_keys([b.id_keys for b in batches])
        elif name == "probabilities":
            cols[name] = concat_probabilities([b.probabilities for b in batches])  # type: ignore[union-attr]
        else:
            cols[name] = np.concatenate([getattr(b, name) for b in batches])
    return type(first)(**cols)


_NoneType = type(None)


def concat_probabilities(parts: Sequence[ObjArray | ProbabilityTable]) -> ObjArray | ProbabilityTable:
    """The rows of several probabilities columns: dicts when all are dicts, else one table (dict
    parts turned into tables, several scans' class lists merged, each values array kept once)."""
    if not any(isinstance(p, ProbabilityTable) for p in parts):
        joined: ObjArray = np.concatenate(parts)  # type: ignore[arg-type]
        return joined
    tables = [p if isinstance(p, ProbabilityTable) else ProbabilityTable.from_objects(p) for p in parts]
    index: dict[tuple[str, ...], int] = {}
    bases: dict[int, int] = {}  # id of a values array -> where it starts in the joined values
    values: list[FloatArray] = []
    codes: list[npt.NDArray[np.int32]] = []
    starts: list[IntArray] = []
    for t in tables:
        if id(t.values) not in bases:
            bases[id(t.values)] = sum(v.size for v in values)
            values.append(t.values)
        remap = np.array([index.setdefault(c, len(index)) for c in t.classes] + [-1], dtype=np.int32)
        codes.append(remap[t.code])  # code -1 picks the last entry: -1
        starts.append(t.start + bases[id(t.values)])
    return ProbabilityTable(tuple(index), np.concatenate(codes), np.concatenate(starts), np.concatenate(values))


def feature_column(values: Sequence[Any]) -> ObjArray | FloatArray:
    """A feature's values (``_feature`` results) as a batch column, one form for every parser.

    Where every value is a float or None, at least one is a float and none is NaN (the usual
    numeric feature), the column is float64 with NaN for None: no Python object per value
    downstream. Otherwise (text, booleans, NaN literals, all absent) the values as they are.
    The form is a function of the values alone, so both parse paths give the same column.
    """
    items = values if isinstance(values, list) else list(values)
    types = set(map(type, items))
    if float in types and types <= {float, _NoneType}:
        out: FloatArray = np.array(items, dtype=np.float64)  # None -> NaN
        if _NoneType not in types:
            if not np.isnan(out).any():
                return out
        elif np.count_nonzero(np.isnan(out)) == sum(v is None for v in items):
            return out
    return object_array(items)


def concat_feature_columns(parts: Sequence[ObjArray | FloatArray]) -> ObjArray | FloatArray:
    """``feature_column`` of the values of several columns, in order."""
    if all(p.dtype == np.float64 for p in parts) or all(p.dtype != np.float64 for p in parts):
        joined: Any = np.concatenate(parts)
        return joined  # type: ignore[no-any-return]
    return feature_column([v for p in parts for v in feature_values(p)])


def feature_values(col: ObjArray | FloatArray) -> list[Any]:
    """The values of a ``feature_column`` (None where absent)."""
    if col.dtype != np.float64:
        return list(col.tolist())
    out: list[Any] = col.tolist()
    for i in np.flatnonzero(np.isnan(col)).tolist():
        out[i] = None
    return out


def empty_labels() -> LabelBatch:
    return LabelBatch(
        id=np.empty(0, dtype=object), label=np.empty(0, dtype=object), timestamp=np.empty(0),
        model=np.empty(0, dtype=object),
    )
