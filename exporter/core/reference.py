"""Reference samples for data drift: loaded from a file, or learned from a version's first predictions.

A reference is the sample a window's distributions are compared with (DESIGN §2 "Data drift").
It holds, for every configured drift feature, the raw values as ingested, plus the prediction's
``confidence`` and ``predicted_class``. Turning raw values into bins is the drift monitor's job
(``exporter.core.drift_monitor``); this module only gets the sample.

Raw feature values are kept as a ``RawColumn``: three parallel numpy arrays (value kind, number,
text) instead of an object array, so a reference (and a learned one's checkpoint) is plain
numbers and strings, with no ``None`` or mixed types to serialise.

A **reference file** (``drift.reference``) holds records in the same format and field mapping as
the model's prediction source (``reference_spec``): JSON lines, optionally gzip-compressed, or
Parquet (detected by its ``PAR1`` magic, so the file name does not matter; nested struct columns
become nested objects, so dotted field paths work the same). It is used whole: record ids and
timestamps are not needed (rows are numbered, the timestamp is ignored), and the model is fixed
to the one the reference belongs to. Records that fail the prediction parser's validation are
skipped and counted by reason; a file with no valid record is an error.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import numbers
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.config import Config, ModelConfig
from exporter.foundation.arrays import FloatArray, KindArray, ObjArray
from exporter.ingest.batches import PredictionBatch
from exporter.ingest.records import RecordSpec, parse_predictions

log = logging.getLogger(__name__)


# Kinds of a raw feature value. A feature's type is the most common valid kind of its reference
# values; a value of another kind is ``wrong_type``.
MISSING = 0  # absent or null
NUMBER = 1  # int or float (bool excluded), finite
STRING = 2
BOOL = 3  # categorical, as the categories "true" / "false"
NOT_FINITE = 4  # NaN or infinite number (Python's json accepts NaN and Infinity)
OTHER = 5  # anything else a source might hand over (never a valid value)

ROW_KEY = "__mlmon_reference_row__"  # injected record id: reference records need no id
NO_TIMESTAMP_KEY = "__mlmon_no_timestamp__"  # a path no record has: reference timestamps are ignored
LEARNED = "learned"


class ReferenceError(Exception):
    """A reference file that cannot be used (unreadable, not JSONL/Parquet, no valid record)."""


@dataclass(frozen=True)
class RawColumn:
    """Raw values of one feature: ``kind`` per value, the number (NaN unless NUMBER) and the
    text (the string for STRING, ``"true"``/``"false"`` for BOOL, ``""`` otherwise)."""

    kind: KindArray
    number: FloatArray
    text: ObjArray

    def __len__(self) -> int:
        return int(self.kind.size)

    @classmethod
    def empty(cls) -> RawColumn:
        return cls(np.empty(0, dtype=np.int8), np.empty(0, dtype=np.float64), np.empty(0, dtype=object))

    @classmethod
    def from_values(cls, values: ObjArray | FloatArray | Sequence[Any] | None, n: int) -> RawColumn:
        """Classify raw values (``None`` for the whole column: all missing)."""
        if values is None:
            return cls(np.zeros(n, dtype=np.int8), np.full(n, math.nan), _no_text(n))
        if isinstance(values, np.ndarray) and values.dtype.kind == "f":  # a parsed numeric column: NaN = missing
            return cls.from_numbers(values.astype(np.float64, copy=False))
        fast = cls._homogeneous(values)
        if fast is not None:
            return fast
        kinds = np.empty(len(values), dtype=np.int8)
        nums = np.full(len(values), math.nan)
        texts: list[str] = [""] * len(values)
        for i, v in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
            t = type(v)
            if v is None:
                kinds[i] = MISSING
            elif t is str:
                kinds[i] = STRING
                texts[i] = v
            elif t is bool or isinstance(v, np.bool_):
                kinds[i] = BOOL
                texts[i] = "true" if v else "false"
            elif t is float or t is int or isinstance(v, numbers.Real):
                try:
                    x = float(v)
                except (OverflowError, ValueError, TypeError):
                    x = math.inf
                if math.isfinite(x):
                    kinds[i] = NUMBER
                    nums[i] = x
                else:
                    kinds[i] = NOT_FINITE
            else:
                kinds[i] = OTHER
        return cls(kinds, nums, _obj(texts))

    @classmethod
    def _homogeneous(cls, values: ObjArray | FloatArray | Sequence[Any]) -> RawColumn | None:
        """The common cases without a Python branch per value: all floats (records.py turns JSON
        numbers into floats) or all strings, each possibly with ``None``; else None."""
        items = values.tolist() if isinstance(values, np.ndarray) else list(values)
        n = len(items)
        types = set(map(type, items))
        none_type = type(None)
        if not types <= {float, none_type} and not types <= {str, none_type}:
            return None
        if float in types:
            # numpy turns None into NaN; only the NaN slots are then asked whether they held None
            # (a float NaN is NOT_FINITE, a None MISSING), so the common column costs no Python step per value
            nums = np.array(items, dtype=np.float64)
            finite = np.isfinite(nums)
            missing = np.zeros(n, dtype=bool)
            if none_type in types:
                nan_at = np.flatnonzero(np.isnan(nums))
                missing[nan_at] = [items[i] is None for i in nan_at.tolist()]
            kinds = np.where(finite, NUMBER, np.where(missing, MISSING, NOT_FINITE)).astype(np.int8)
            return cls(kinds, np.where(finite, nums, math.nan), _no_text(n))
        arr = np.empty(n, dtype=object)
        arr[:] = items
        missing = (np.fromiter((v is None for v in items), dtype=bool, count=n) if none_type in types
                   else np.zeros(n, dtype=bool))
        kinds = np.where(missing, MISSING, STRING).astype(np.int8)
        if none_type in types:
            arr[missing] = ""
        return cls(kinds, np.full(n, math.nan), arr)

    @classmethod
    def from_numbers(cls, values: FloatArray) -> RawColumn:
        """A numeric column where NaN means missing (e.g. ``confidence``)."""
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(v)
        if bool(ok.all()):  # the usual column: every value a number
            return cls(np.full(v.size, NUMBER, dtype=np.int8), v.copy(), _no_text(v.size))
        kinds = np.where(ok, NUMBER, np.where(np.isnan(v), MISSING, NOT_FINITE)).astype(np.int8)
        return cls(kinds, np.where(ok, v, math.nan), _no_text(v.size))

    @classmethod
    def from_texts(cls, values: ObjArray | Sequence[str]) -> RawColumn:
        """A column of strings (e.g. ``predicted_class``)."""
        items = values.tolist() if isinstance(values, np.ndarray) else list(values)
        texts = _obj(items if set(map(type, items)) <= {str} else [str(v) for v in items])
        return cls(np.full(texts.size, STRING, dtype=np.int8), np.full(texts.size, math.nan), texts)

    @classmethod
    def concat(cls, parts: Sequence[RawColumn]) -> RawColumn:
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.kind for p in parts]), np.concatenate([p.number for p in parts]),
                   _obj([t for p in parts for t in p.text.tolist()]))

    def take(self, rows: slice | npt.NDArray[np.int64]) -> RawColumn:
        return RawColumn(self.kind[rows], self.number[rows], self.text[rows])

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind.copy(), "number": self.number.copy(), "text": [str(t) for t in self.text.tolist()]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RawColumn:
        kind = np.asarray(state["kind"], dtype=np.int8)
        number = np.asarray(state["number"], dtype=np.float64)
        text = _obj([str(t) for t in state["text"]])
        if not kind.size == number.size == text.size:
            raise ValueError("raw column arrays differ in length")
        return cls(kind, number, text)


_EMPTY_TEXT = np.array("", dtype=object)


def _no_text(n: int) -> ObjArray:
    """``n`` empty texts as a read-only view of one (numbers have no text): a numeric column
    costs no object array of its own. Every use copies or only reads it."""
    out: ObjArray = np.broadcast_to(_EMPTY_TEXT, (n,))
    return out


def _obj(values: Sequence[Any]) -> ObjArray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


@dataclass(frozen=True)
class Reference:
    """A frozen reference sample: raw values per feature plus confidence and predicted class."""

    features: Mapping[str, RawColumn]
    confidence: FloatArray  # NaN where the record had none
    predicted_class: ObjArray  # class text
    origin: str = LEARNED  # the file path, or "learned"
    invalid_records: Counter[str] = field(default_factory=Counter)  # file records skipped, by reason

    def __len__(self) -> int:
        return int(self.confidence.size)

    def feature(self, name: str) -> RawColumn:
        """The named feature's column; all missing when the reference does not carry it."""
        col = self.features.get(name)
        return col if col is not None else RawColumn.from_values(None, len(self))

    def state(self) -> dict[str, Any]:
        """Checkpoint form: str/int/float, lists and numpy arrays only."""
        return {
            "origin": self.origin,
            "confidence": self.confidence.copy(),
            "predicted_class": [str(c) for c in self.predicted_class.tolist()],
            "features": {name: col.state() for name, col in self.features.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Reference:
        conf = np.asarray(state["confidence"], dtype=np.float64)
        pred = _obj([str(c) for c in state["predicted_class"]])
        feats = {str(k): RawColumn.from_state(v) for k, v in dict(state["features"]).items()}
        if pred.size != conf.size or any(len(c) != conf.size for c in feats.values()):
            raise ValueError("reference columns differ in length")
        return cls(features=feats, confidence=conf, predicted_class=pred, origin=str(state.get("origin", LEARNED)))


def reference_spec(config: Config, model: ModelConfig) -> RecordSpec:
    """The field mapping of the model's prediction source, for reading its reference file.

    The first ``predictions`` source fixed to this model, else the first one that reads the model
    from its records; ``kserve`` sources receive CloudEvents, not records, so a model fed only by
    KServe reads its reference in the canonical record format (DESIGN §3).
    """
    candidates = [s for s in config.sources if s.kind == "predictions" and s.type != "kserve"]
    chosen = next((s for s in candidates if s.model == model.name), None)
    if chosen is None:
        chosen = next((s for s in candidates if s.model is None), None)
    base = RecordSpec.from_source(chosen, model.drift.features) if chosen is not None else RecordSpec(
        feature_names=model.drift.features)
    return base


def _read_objects(path: Path, max_line_bytes: int, invalid: Counter[str]) -> list[Any]:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ReferenceError(f"cannot read reference file {path}: {e.strerror or e}") from e
    if magic == b"PAR1":
        try:
            import pyarrow.parquet as pq

            rows: list[Any] = pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises many types for a damaged file
            raise ReferenceError(f"cannot read Parquet reference file {path}: {e}") from e
        return rows
    try:
        data = gzip.decompress(path.read_bytes()) if magic[:2] == b"\x1f\x8b" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ReferenceError(f"cannot read reference file {path}: {e}") from e
    objects: list[Any] = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        if len(raw) > max_line_bytes:
            invalid["line_too_long"] += 1
            continue
        try:
            objects.append(json.loads(raw.decode("utf-8")))
        except (ValueError, RecursionError):
            invalid["invalid_json"] += 1
    return objects


def load_reference(path: str | Path, spec: RecordSpec, model: str) -> Reference:
    """Read a reference file in the format ``spec`` describes; raises ``ReferenceError``.

    Ids and timestamps of the records are not used (DESIGN: the file "is used whole"), and the
    model is fixed to ``model``. Invalid records are skipped and counted in ``invalid_records``.
    """
    p = Path(path)
    invalid: Counter[str] = Counter()
    objects = _read_objects(p, spec.max_line_bytes, invalid)
    for i, obj in enumerate(objects):
        if isinstance(obj, dict):
            obj[ROW_KEY] = i
    spec = replace(spec, fields={**spec.fields, "id": ROW_KEY, "timestamp": NO_TIMESTAMP_KEY},
                   model=model, model_version=LEARNED)
    result = parse_predictions([], spec, 0.0, objects)
    invalid += result.invalid
    batch = result.batch
    if not isinstance(batch, PredictionBatch) or len(batch) == 0:
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(invalid.items())) or "empty file"
        raise ReferenceError(f"reference file {p} holds no valid prediction record ({reasons})")
    features = {name: RawColumn.from_values(batch.features.get(name), len(batch)) for name in spec.feature_names}
    return Reference(features=features, confidence=np.asarray(batch.confidence, dtype=np.float64),
                     predicted_class=batch.prediction, origin=str(p), invalid_records=invalid)


class ReferenceStore:
    """Reference files loaded once per model and shared by its versions.

    ``get`` returns the model's reference, ``None`` when the model has no reference file (its
    versions learn one) *or when the file cannot be used*: then the error is logged, kept in
    ``errors`` (model -> message) and the versions fall back to a learned reference, so drift is
    still watched. A file is read again only when its path changes (``clear`` forgets all, e.g.
    on a config reload).
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._cache: dict[str, tuple[str, Reference | None]] = {}
        self.errors: dict[str, str] = {}

    def get(self, model: ModelConfig) -> Reference | None:
        path = model.drift.reference
        if path is None:
            return None
        cached = self._cache.get(model.name)
        if cached is not None and cached[0] == path:
            return cached[1]
        ref: Reference | None
        try:
            ref = load_reference(path, reference_spec(self.config, model), model.name)
        except ReferenceError as e:
            ref = None
            self.errors[model.name] = str(e)
            log.error("reference file unusable; learning the reference from predictions instead",
                      extra={"model": model.name, "path": path, "error": str(e)})
        else:
            self.errors.pop(model.name, None)
            if ref.invalid_records:
                log.warning("reference file records skipped", extra={
                    "model": model.name, "path": path, "invalid": dict(ref.invalid_records)})
            log.info("reference loaded", extra={"model": model.name, "path": path, "records": len(ref)})
        self._cache[model.name] = (path, ref)
        return ref

    def clear(self) -> None:
        self._cache.clear()
        self.errors.clear()
