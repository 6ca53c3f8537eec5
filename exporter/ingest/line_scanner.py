"""The compiled line scanner (``_linescan.c``) as the block parser uses it: one C pass per line
from bytes to the columns of the mapped fields, then batches built from those columns with numpy.

Decoding with msgspec builds a Python object per record and per field and then pulls the columns
out of them; the scanner writes the columns directly (numbers as C doubles, text as the strings
the batch holds), which is what makes ingest fast. It only *takes* lines whose mapped values are
all in their usual valid form and never refuses one: every other line is handed back, and the
block parser gives it to the msgspec path or the per-record reference as before. So the rules of
the reference (``records``) are not restated here beyond the ones the C header lists, and the
equivalence fuzzers check this path against the reference with the rest.

The extension is optional (``setup.py``): where it was not built, ``AVAILABLE`` is False and
the block parser decodes everything with msgspec, with the same results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from exporter.foundation.arrays import BoolArray, FloatArray, IntArray, ObjArray, repeated
from exporter.foundation.reject_reasons import INVALID_TIMESTAMP
from exporter.ingest.batches import IdKeys, LabelBatch, ParseResult, PredictionBatch, ProbabilityTable
from exporter.ingest.block_columns import apply_reasons, as_objects
from exporter.ingest.records import UNKNOWN_VERSION, RecordSpec
from exporter.ingest.timestamps import newest, parse_timestamp_parts

try:
    from exporter.ingest import _linescan  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the msgspec path does all the work
    _linescan = None

AVAILABLE: bool = _linescan is not None

_SLOT_KIND = {  # canonical field -> the scanner's rule for it (the C header lists them)
    "id": "K_ID", "model": "K_TEXT", "prediction": "K_TEXT", "label": "K_TEXT", "model_version": "K_VERSION",
    "confidence": "K_CONF", "probabilities": "K_PROBS", "timestamp": "K_TS",
}


class LineScanner:
    """One source's scanner: the mapped paths of its field mapping, in a fixed slot order."""

    def __init__(self, kind: str, spec: RecordSpec, paths: Mapping[str, tuple[str, ...]]) -> None:
        """``paths``: canonical name -> key path, as the block parser maps them (only the fields
        that are not fixed by the source), plus ``features`` when the model monitors features.

        Raises ValueError when the extension is missing or cannot take this mapping (clashing
        paths, keys that are not UTF-8)."""
        if _linescan is None:
            raise ValueError("the line scanner extension is not built")
        self.kind = kind
        self.spec = spec
        self.names = [n for n in paths if n != "features"]
        slot_paths = [paths[n] for n in self.names]
        kinds = [self._kind_of(n) for n in self.names]
        if "features" in paths:
            slot_paths += [(*paths["features"], f) for f in spec.feature_names]
            kinds += [_linescan.K_FEATURE] * len(spec.feature_names)
        try:
            encoded = [tuple(k.encode("utf-8") for k in p) for p in slot_paths]
        except UnicodeEncodeError as e:
            raise ValueError("a mapped key is not UTF-8") from e
        self._scanner = _linescan.Scanner(encoded, kinds, UNKNOWN_VERSION)
        self._slot = {n: i for i, n in enumerate(self.names)}
        self._n_named = len(self.names)

    def _kind_of(self, name: str) -> int:
        if name == "model" and self.kind == "labels":
            return int(_linescan.K_OPTTEXT)
        return int(getattr(_linescan, _SLOT_KIND[name]))

    @classmethod
    def build(cls, kind: str, spec: RecordSpec, paths: Mapping[str, tuple[str, ...]]) -> LineScanner | None:
        """The scanner for this mapping, or None where there is none (not built, clashing paths)."""
        try:
            return cls(kind, spec, paths)
        except ValueError:
            return None

    def scan(self, data: bytes, starts: IntArray, ends: IntArray, now: float) -> tuple[BoolArray, Scanned]:
        """Which of the lines ``data[starts[i]:ends[i]]`` the scanner took, and their columns."""
        taken, mask, cols, texts = self._scanner.scan(
            data, np.ascontiguousarray(starts, dtype=np.int64), np.ascontiguousarray(ends, dtype=np.int64))
        return np.frombuffer(mask, dtype=np.bool_), Scanned(self, int(taken), cols, texts, now)


class Scanned:
    """The output of one ``scan``: the taken lines' columns, converted once, and batches of any
    run of them (``part``)."""

    def __init__(self, owner: LineScanner, n: int, cols: list[tuple[Any, Any, Any, Any]], texts: tuple[str, ...],
                 now: float) -> None:
        self.owner, self.n = owner, n
        self._keys: IdKeys  # the "id" slot is always mapped
        slot = owner._slot
        table = as_objects([*texts, None])  # code -1 (None) picks the last
        named: dict[str, Any] = {}
        for name, i in slot.items():
            objects, values, codes, flat = cols[i]
            if name == "timestamp":
                named[name] = parse_timestamp_parts(
                    np.frombuffer(values, dtype=np.float64), np.frombuffer(codes, dtype=np.uint8), objects, now)
            elif name == "confidence":
                named[name] = np.frombuffer(values, dtype=np.float64)
            elif name == "probabilities":
                named[name] = (_probability_table(objects, codes, flat), np.frombuffer(values, dtype=np.float64))
            elif name == "id":
                named[name] = as_objects(objects)
                encoded = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(codes), pa.py_buffer(flat)])
                self._keys = IdKeys(encoded, np.frombuffer(values, dtype=np.uint64))
            else:
                named[name] = table[np.frombuffer(codes, dtype=np.int32)]
        self._cols = named
        self._features = {f: np.frombuffer(cols[owner._n_named + j][1], dtype=np.float64)
                          for j, f in enumerate(owner.spec.feature_names)} if len(cols) > owner._n_named else {}

    def part(self, lo: int, hi: int) -> ParseResult:
        """The batch of taken lines ``lo:hi`` (in scan order); only their timestamps can be refused."""
        c, spec, n = self._cols, self.owner.spec, hi - lo
        ts = c["timestamp"][lo:hi]
        keys = self._keys[lo:hi]
        invalid: Counter[str] = Counter()
        first: dict[str, int] = {}
        keep = apply_reasons(n, [(INVALID_TIMESTAMP, np.isnan(ts))], invalid, first)
        sel: slice | BoolArray = slice(None) if keep.all() else keep
        if not isinstance(sel, slice):
            keys = keys[sel]

        def fixed_or(name: str, value: str | None) -> ObjArray:
            if value is not None or name not in c:
                return repeated(value, n)[sel]
            col: ObjArray = c[name][lo:hi][sel]
            return col

        batch: PredictionBatch | LabelBatch
        if self.owner.kind == "predictions":
            probs, best = c["probabilities"]
            conf = c["confidence"][lo:hi]
            confidence = np.where(np.isnan(conf), best[lo:hi], conf)
            batch = PredictionBatch(
                id=c["id"][lo:hi][sel], model=fixed_or("model", spec.model),
                model_version=fixed_or("model_version", spec.model_version), timestamp=ts[sel],
                prediction=c["prediction"][lo:hi][sel], confidence=confidence[sel], probabilities=probs[lo:hi][sel],
                features={f: _feature_part(v[lo:hi][sel]) for f, v in self._features.items()}, id_keys=keys)
        else:
            batch = LabelBatch(id=c["id"][lo:hi][sel], label=c["label"][lo:hi][sel], timestamp=ts[sel],
                               model=fixed_or("model", spec.model), id_keys=keys)
        return ParseResult(batch=batch, invalid=invalid, records=n, newest_timestamp=newest(batch.timestamp),
                           first_bad=first)


def _probability_table(classes: list[tuple[str, ...]], codes: bytearray, flat: bytearray) -> ProbabilityTable:
    """The scanner's probabilities (class lists met, a list per row, the values one after
    another) as a ProbabilityTable: each row's values start where the previous row's end."""
    code = np.frombuffer(codes, dtype=np.int32)
    lens = np.array([0, *map(len, classes)], dtype=np.int64)[code + 1]  # -1 (none) -> 0 values
    start = np.cumsum(lens) - lens
    return ProbabilityTable(tuple(classes), code, start, np.frombuffer(flat, dtype=np.float64))


def _feature_part(values: FloatArray) -> ObjArray | FloatArray:
    """A scanned feature column in ``feature_column``'s form: float64 with NaN for None, unless
    nothing is there (all None, or no rows), which is kept as values."""
    if values.size and (values[0] == values[0] or not np.isnan(values).all()):  # a first number: no scan
        return values
    out: ObjArray = np.full(values.size, None, dtype=object)
    return out
