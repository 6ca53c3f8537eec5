"""Byte blocks of JSON lines -> prediction / label batches, with no Python step per record.

Sources hand over whole blocks of complete lines (``Block``). Where it is built, the compiled
line scanner (``line_scanner``) reads them first: every plainly valid line goes straight to
columns, and the lines it leaves take the path below, as they all do without it.

msgspec decodes a run of lines in one call into structs that hold only the fields the source's
mapping reads (features only when a model monitors them for drift): every other key is skipped
by the C decoder without building a Python object. The columns are then pulled out with
``map(attrgetter)`` and checked with numpy, so no Python bytecode runs per record on
well-formed input.

The per-record parser in ``exporter.ingest.records`` is the reference; this path must give exactly its
result (``tests/ingest/test_block_parser.py`` fuzzes the two against each other, seeded). Where the two
could disagree, the lines in question are handed to the reference instead:

* **Line guards**, over the whole block at once (in C without the GIL where ``compiled_columns``
  is built, with numpy otherwise): a line must start with ``{`` and end with ``}``.
  Then no JSON value can span two lines (``}`` newline ``{`` is never valid inside a value,
  and a string cannot hold a raw newline), so the decoder's record count equals the line count
  exactly when each line holds exactly one object. Lines over ``max_line_bytes``, non-UTF-8
  lines, and long lines that could nest deep enough to hit ``json``'s recursion limit or hold an
  integer too long for ``int()`` go to the reference too. Empty lines are skipped.
* **Decode errors** (bad JSON, NaN literals, numbers beyond float range, lone surrogates, a
  mapped object that is not an object) split the run of lines in halves until the bad lines are
  isolated; small pieces are parsed per record. So a bad line costs a few decodes, not the block.
* **Typed numbers.** The decoder first tries structs whose confidence and features are
  ``float | None`` and probabilities ``dict[str, float] | None``: msgspec then checks the types
  in C (integers become floats, as the reference's rules make them) and the columns need no type
  pass. A run it refuses for a type (text or a boolean there) is decoded untyped at once; after
  ``TYPED_MISSES`` such runs the parser stays untyped.
* **Odd types** inside a column (an integer id among strings, a probability given as ``1``)
  keep the fast decode but convert that column with the reference's own scalar functions.

Decoding holds the GIL (it builds Python objects), so this path uses one core per source.

The column conversions (the reference's rules, vectorised) are in ``block_columns`` and the
decoder's structs in ``msgspec_structs``. About 460 lines remain, over the house's 400, on purpose:
every rule above decides which lines may take a fast path and which go to the reference, and they
are only checkable together.
"""

from __future__ import annotations

import bisect
import operator
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, pairwise
from typing import Any, Literal

import msgspec
import numpy as np

from exporter.foundation.arrays import BoolArray, IntArray, repeated
from exporter.foundation.reject_reasons import (
    INVALID_CLASS,
    INVALID_CONFIDENCE,
    INVALID_PROBABILITIES,
    INVALID_TIMESTAMP,
    MISSING_ID,
    MISSING_LABEL,
    MISSING_MODEL,
    MISSING_PREDICTION,
)
from exporter.ingest import compiled_columns
from exporter.ingest.batches import LabelBatch, ParseResult, PredictionBatch, concat_batches
from exporter.ingest.block_columns import (
    apply_reasons,
    confidences,
    feature_values_of,
    is_each,
    probability_column,
    texts,
    typed_feature_column,
)
from exporter.ingest.line_scanner import LineScanner
from exporter.ingest.msgspec_structs import build_decoder
from exporter.ingest.records import (
    UNKNOWN_VERSION,
    RecordSpec,
    _labels_per_record,
    _predictions_per_record,
)
from exporter.ingest.timestamps import newest, parse_timestamp_column

Kind = Literal["predictions", "labels"]

UNSET = msgspec.UNSET

RUN = 4096
"""Lines decoded per call: small enough that the decoded objects are still in the CPU cache when
their columns are pulled out (measured ~10% faster than whole 16 MiB blocks)."""
PIECE = 256
"""A run of lines the decoder refused is retried in pieces of this many lines, ..."""
SMALL_RUN = 4
"""... and a refused piece is halved until it is this small, then parsed per record: a bad
line costs about two decodes of its piece and a few reference parses, not its block."""
TYPED_MISSES = 2
"""Runs the typed decoder may refuse (where the untyped one takes them) before a parser stops
trying it: a source whose features are text, say."""
NATIVE_RUN_MIN = 1024
NATIVE_MISSES = 2
"""Runs of at least NATIVE_RUN_MIN lines in which the compiled scanner may take fewer than half
before a parser stops scanning (the lines it leaves are read again by msgspec)."""
# the line guards' limits (_columns.c has them too: LONG_LINE, MAX_BRACKETS, HUGE_INT)
_LONG_LINE = 2000  # lines longer than this are checked for deep nesting and huge integers
_MAX_BRACKETS = 400  # far below json's recursion limit (~1000 frames)
_HUGE_INT = re.compile(rb"[0-9]{4000}")  # int() refuses more than 4300 digits


@dataclass(frozen=True)
class Block:
    """Complete lines of one source, as read: ``data`` holds lines separated by ``\\n`` (a final
    newline is optional); ``origin`` names where they were read (a file path, an HTTP page) and
    ``offset`` is the byte offset of ``data[0]`` there, so a refused record can be located."""

    data: bytes
    origin: str = ""
    offset: int = 0


class _Retry(Exception):
    """The decoder refused this run of lines: split it, or parse it per record."""


@dataclass
class _Part:
    """The result of one run of lines, and the line (index into the block's lines) of each
    record the result counts."""

    result: ParseResult
    lines: IntArray


class BlockParser:
    """Parses one source's records; built once per source, since the decoder depends on its
    field mapping."""

    def __init__(self, kind: Kind, spec: RecordSpec, *, small_run: int = SMALL_RUN, native: bool = True) -> None:
        self.kind = kind
        self.spec = spec
        self.small_run = small_run  # tests use 1, so every line the decoder can take is decoded
        names: list[str]
        if kind == "predictions":
            names = ["id", "timestamp", "prediction", "confidence", "probabilities"]
            names += [n for n, fixed in (("model", spec.model), ("model_version", spec.model_version))
                      if fixed is None]
        else:
            names = ["id", "timestamp", "label"] + (["model"] if spec.model is None else [])
        self._paths: dict[str, tuple[str, ...]] = {n: spec.path(n) for n in names}
        if kind == "predictions" and spec.feature_names:
            self._paths["features"] = spec.path("features")
        self._unset_leaves = {self._paths["prediction" if kind == "predictions" else "label"]}
        self._attrs: dict[tuple[str, ...], str] = {}  # path -> struct attribute, the same in both decoders
        self._decoder = build_decoder(kind, spec, self._paths, self._unset_leaves, self._attrs, typed=False)
        # the same structs with the numbers typed (confidence, probabilities, features): the C
        # decoder then checks their types itself, and the columns skip that pass; a run it refuses
        # (a categorical feature, a probability given as text) is decoded untyped at once, and
        # after TYPED_MISSES such runs this parser stays untyped
        self._typed = (build_decoder(kind, spec, self._paths, self._unset_leaves, self._attrs, typed=True)
                       if self._decoder is not None else None)
        self._typed_misses = 0
        # the compiled scanner goes first where it is built (``native=False``: tests of the msgspec path)
        self._scanner = (LineScanner.build(kind, spec, self._paths)
                         if native and self._decoder is not None else None)
        self._native_misses = 0
        self.fast_records = 0  # records a fast path took (the rest went to the reference): for tests, bench
        self.native_records = 0  # of those, the ones the compiled scanner took

    # --- the decoder ------------------------------------------------------------------------

    def _column(self, recs: list[Any], path: tuple[str, ...]) -> list[Any]:
        """The values at ``path``: None (UNSET for prediction / label) where a parent is missing."""
        missing = UNSET if path in self._unset_leaves else None
        col = recs
        for depth in range(len(path)):
            attr = self._attrs[path[:depth + 1]]
            if depth and is_each(col, None).any():
                col = [missing if v is None else getattr(v, attr) for v in col]
            else:
                col = list(map(operator.attrgetter(attr), col))
        return col

    # --- entry points -----------------------------------------------------------------------

    def parse(self, blocks: Sequence[Block], now: float, lines: Sequence[bytes] = (), objects: Sequence[Any] = (),
              origins: Sequence[tuple[int, str]] = ()) -> tuple[ParseResult, dict[str, str]]:
        """All records of one poll as one result (blocks, then lines, then decoded objects), and
        per refusal reason where the first refused record is: ``origin:byte offset`` in a block,
        else the ``origins`` entry covering it (``(first record index, text)`` pairs over the
        lines and objects) and the record's number within it."""
        parts: list[ParseResult] = []
        where: dict[str, str] = {}
        for block in blocks:
            if not block.data:
                continue
            starts, ends = _line_bounds(block.data)  # empty lines are no records
            for part in self._parse_lines_of(block.data, starts, ends, now, skip_blank=True):
                parts.append(part.result)
                for reason, i in part.result.first_bad.items():
                    if reason not in where:
                        where[reason] = f"{block.origin}:{block.offset + int(starts[part.lines[i]])}"
        if lines or objects:
            if objects:
                rest = (_predictions_per_record if self.kind == "predictions" else _labels_per_record)(
                    lines, self.spec, now, objects)
            else:
                rest = self.parse_lines(lines, now)
            parts.append(rest)
            for reason, i in rest.first_bad.items():
                where.setdefault(reason, _origin_of(origins, i))
        return self._combine(parts), where

    def parse_lines(self, lines: Sequence[bytes], now: float) -> ParseResult:
        """Lines as the reference takes them (every line is a record, blank ones too)."""
        if any(b"\n" in line for line in lines):
            return self._reference(list(lines), now)
        data = b"\n".join(lines)
        lens = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
        ends = np.cumsum(lens + 1) - 1
        starts = ends - lens
        return self._combine([p.result for p in self._parse_lines_of(data, starts, ends, now, skip_blank=False)])

    # --- the work ---------------------------------------------------------------------------

    def _combine(self, parts: list[ParseResult]) -> ParseResult:
        if not parts:
            return ParseResult(batch=self._reference([], 0.0).batch)
        invalid: Counter[str] = Counter()
        first: dict[str, int] = {}
        base = 0
        newest: float | None = None
        for r in parts:
            invalid.update(r.invalid)
            for reason, i in r.first_bad.items():
                first.setdefault(reason, base + i)
            base += r.records
            if r.newest_timestamp is not None:
                newest = r.newest_timestamp if newest is None else max(newest, r.newest_timestamp)
        return ParseResult(batch=concat_batches([r.batch for r in parts]), invalid=+invalid, records=base,
                           newest_timestamp=newest, first_bad=first)

    def _parse_lines_of(self, data: bytes, starts: IntArray, ends: IntArray, now: float, *,
                        skip_blank: bool) -> list[_Part]:
        """Runs of lines that pass the guards go to the decoder, the others to the reference."""
        n = len(starts)
        if n == 0:
            return []
        suspect = self._suspects(data, starts, ends)
        parts: list[_Part] = []
        cuts = np.flatnonzero(np.diff(suspect.astype(np.int8))) + 1
        bounds = [0, *cuts.tolist(), n]
        for a, b in pairwise(bounds):
            if suspect[a]:
                parts.append(self._reference_part(data, starts, ends, a, b, now, skip_blank))
            elif self._scanner is not None:
                self._scan_run(data, starts, ends, a, b, now, skip_blank, parts)
            else:
                self._decode_runs(data, starts, ends, a, b, now, skip_blank, parts)
        return parts

    def _decode_runs(self, data: bytes, starts: IntArray, ends: IntArray, a: int, b: int, now: float,
                     skip_blank: bool, parts: list[_Part]) -> None:
        for lo in range(a, b, RUN):  # decoded objects are still in cache when their columns are built
            self._decode_run(data, starts, ends, lo, min(lo + RUN, b), now, skip_blank, parts)

    def _scan_run(self, data: bytes, starts: IntArray, ends: IntArray, a: int, b: int, now: float,
                  skip_blank: bool, parts: list[_Part]) -> None:
        """The compiled scanner's pass over lines ``a:b``; the lines it leaves go to msgspec. A
        source whose lines it mostly leaves (text features, say) stops being scanned after
        ``NATIVE_MISSES`` such runs, so they are not read twice."""
        assert self._scanner is not None
        taken, scanned = self._scanner.scan(data, starts[a:b], ends[a:b], now)
        count = scanned.n
        if b - a >= NATIVE_RUN_MIN and 2 * count < b - a:
            self._native_misses += 1
            if self._native_misses >= NATIVE_MISSES:
                self._scanner = None
        self.fast_records += count
        self.native_records += count
        cuts = np.flatnonzero(taken[1:] != taken[:-1]) + 1
        row = 0
        for lo, hi in pairwise([0, *cuts.tolist(), b - a]):
            if taken[lo]:
                parts.append(_Part(scanned.part(row, row + hi - lo), np.arange(a + lo, a + hi, dtype=np.int64)))
                row += hi - lo
            else:
                self._decode_runs(data, starts, ends, a + lo, a + hi, now, skip_blank, parts)

    def _suspects(self, data: bytes, starts: IntArray, ends: IntArray) -> BoolArray:
        """Lines the decoder must not see (see the module docstring)."""
        if self._decoder is None or not data:
            return np.ones(len(starts), dtype=np.bool_)
        if compiled_columns.AVAILABLE:  # the same rules in C, without the GIL
            return compiled_columns.line_guards(data, starts, ends, self.spec.max_line_bytes)
        return _line_guards(data, starts, ends, self.spec.max_line_bytes)

    def _decode_run(self, data: bytes, starts: IntArray, ends: IntArray, a: int, b: int, now: float,
                    skip_blank: bool, parts: list[_Part]) -> None:
        try:
            recs, typed = self._decode(memoryview(data)[int(starts[a]):int(ends[b - 1])])
            if len(recs) != b - a:
                raise _Retry
            result = self._columns(recs, now, typed)
        except (_Retry, msgspec.MsgspecError, ValueError, RecursionError, OverflowError):
            if b - a <= self.small_run:
                parts.append(self._reference_part(data, starts, ends, a, b, now, skip_blank))
                return
            step = PIECE if b - a > PIECE else (b - a + 1) // 2
            for lo in range(a, b, step):
                self._decode_run(data, starts, ends, lo, min(lo + step, b), now, skip_blank, parts)
            return
        self.fast_records += b - a
        parts.append(_Part(result, np.arange(a, b, dtype=np.int64)))

    def _decode(self, view: memoryview) -> tuple[list[Any], bool]:
        """The run's records, and whether the typed decoder took them."""
        assert self._decoder is not None
        if self._typed is not None and self._typed_misses < TYPED_MISSES:
            try:
                return self._typed.decode_lines(view), True
            except msgspec.ValidationError:
                recs = self._decoder.decode_lines(view)  # refused here too: the caller splits the run
                self._typed_misses += 1
                return recs, False
        return self._decoder.decode_lines(view), False

    def _reference_part(self, data: bytes, starts: IntArray, ends: IntArray, a: int, b: int, now: float,
                        skip_blank: bool) -> _Part:
        idx = list(range(a, b))
        lines = [data[starts[i]:ends[i]] for i in idx]
        if skip_blank:  # as the file source always did: blank lines are no records
            kept = [(i, line) for i, line in zip(idx, lines, strict=True) if line and not line.isspace()]
            idx, lines = [i for i, _ in kept], [line for _, line in kept]
        return _Part(self._reference(lines, now), np.array(idx, dtype=np.int64))

    def _reference(self, lines: list[bytes], now: float) -> ParseResult:
        if self.kind == "predictions":
            return _predictions_per_record(lines, self.spec, now, ())
        return _labels_per_record(lines, self.spec, now, ())

    def _columns(self, recs: list[Any], now: float, typed: bool = False) -> ParseResult:
        if self.kind == "predictions":
            return self._prediction_columns(recs, now, typed)
        return self._label_columns(recs, now)

    # --- columns ----------------------------------------------------------------------------

    def _prediction_columns(self, recs: list[Any], now: float, typed: bool) -> ParseResult:
        spec, n = self.spec, len(recs)
        col = self._column
        ids, id_ok, _ = texts(col(recs, self._paths["id"]), bools=False)
        if spec.model is not None:
            models, model_ok = repeated(spec.model, n), np.ones(n, dtype=np.bool_)
        else:
            models, model_ok, _ = texts(col(recs, self._paths["model"]), bools=True)
        raw_pred = col(recs, self._paths["prediction"])
        preds, pred_ok, some_missing = texts(raw_pred, bools=True)
        pred_missing = is_each(raw_pred, UNSET) if some_missing else np.zeros(n, dtype=np.bool_)
        conf, conf_present, conf_bad = confidences(col(recs, self._paths["confidence"]), typed)
        probs, probs_max, probs_bad = probability_column(col(recs, self._paths["probabilities"]), typed)
        if spec.model_version is not None:
            versions = repeated(spec.model_version, n)
        else:
            versions, version_ok, _ = texts(col(recs, self._paths["model_version"]), bools=True)
            if not version_ok.all():
                versions[~version_ok] = UNKNOWN_VERSION
        ts = parse_timestamp_column(col(recs, self._paths["timestamp"]), now)
        feats: dict[str, list[Any]] = {}
        if spec.feature_names:
            fobjs = col(recs, self._paths["features"])
            some_absent = bool(is_each(fobjs, None).any())
            for name in spec.feature_names:
                attr = self._attrs[(*self._paths["features"], name)]
                if some_absent:
                    values = [None if v is None else getattr(v, attr) for v in fobjs]
                else:
                    values = list(map(operator.attrgetter(attr), fobjs))
                feats[name] = values if typed else feature_values_of(values)
        invalid: Counter[str] = Counter()
        first: dict[str, int] = {}
        keep = apply_reasons(n, [
            (MISSING_ID, ~id_ok), (MISSING_MODEL, ~model_ok),
            (MISSING_PREDICTION, pred_missing), (INVALID_CLASS, ~pred_ok & ~pred_missing),
            (INVALID_CONFIDENCE, conf_bad), (INVALID_PROBABILITIES, probs_bad), (INVALID_TIMESTAMP, np.isnan(ts)),
        ], invalid, first)
        confidence = np.where(conf_present, conf, probs_max)
        if not keep.all():
            kept = keep.tolist()
            batch = PredictionBatch(
                id=ids[keep], model=models[keep], model_version=versions[keep], timestamp=ts[keep],
                prediction=preds[keep], confidence=confidence[keep], probabilities=probs[keep],
                features={k: typed_feature_column(list(compress(v, kept)), typed) for k, v in feats.items()})
        else:
            batch = PredictionBatch(id=ids, model=models, model_version=versions, timestamp=ts, prediction=preds,
                                    confidence=confidence, probabilities=probs,
                                    features={k: typed_feature_column(v, typed) for k, v in feats.items()})
        return ParseResult(batch=batch, invalid=invalid, records=n, newest_timestamp=newest(batch.timestamp),
                           first_bad=first)

    def _label_columns(self, recs: list[Any], now: float) -> ParseResult:
        spec, n = self.spec, len(recs)
        col = self._column
        ids, id_ok, _ = texts(col(recs, self._paths["id"]), bools=False)
        raw = col(recs, self._paths["label"])
        labels, label_ok, some_missing = texts(raw, bools=True)
        missing = is_each(raw, UNSET) if some_missing else np.zeros(n, dtype=np.bool_)
        if spec.model is not None:
            models = repeated(spec.model, n)
        else:
            models, _, _ = texts(col(recs, self._paths["model"]), bools=True)
        ts = parse_timestamp_column(col(recs, self._paths["timestamp"]), now)
        invalid: Counter[str] = Counter()
        first: dict[str, int] = {}
        keep = apply_reasons(n, [
            (MISSING_ID, ~id_ok), (MISSING_LABEL, missing),
            (INVALID_CLASS, ~label_ok & ~missing), (INVALID_TIMESTAMP, np.isnan(ts)),
        ], invalid, first)
        if keep.all():
            batch = LabelBatch(id=ids, label=labels, timestamp=ts, model=models)
        else:
            batch = LabelBatch(id=ids[keep], label=labels[keep], timestamp=ts[keep], model=models[keep])
        return ParseResult(batch=batch, invalid=invalid, records=n, newest_timestamp=newest(batch.timestamp),
                           first_bad=first)


# --- column conversions (the reference's rules, vectorised for the usual types) --------------

def _origin_of(origins: Sequence[tuple[int, str]], index: int) -> str:
    """Where record ``index`` (of a poll's lines and objects) came from."""
    at = bisect.bisect_right([i for i, _ in origins], index) - 1
    if at < 0:
        return f"record {index + 1}"
    start, text = origins[at]
    return f"{text}, record {index - start + 1}"


def _line_bounds(data: bytes) -> tuple[IntArray, IntArray]:
    """Start and end (exclusive) of every non-empty line; a final newline is optional."""
    if compiled_columns.AVAILABLE:  # the same in C, without the GIL
        return compiled_columns.line_bounds(data)
    nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [len(data)])).astype(np.int64)
    keep = ends > starts
    return starts[keep], ends[keep]


def _line_guards(data: bytes, starts: IntArray, ends: IntArray, max_line_bytes: int) -> BoolArray:
    """The line guards (see the module docstring) with numpy: the fallback where ``compiled_columns``
    is not built, and the reference its C is tested against."""
    buf = np.frombuffer(data, dtype=np.uint8)
    lens = ends - starts
    nonempty = lens > 0
    suspect = ~nonempty | (lens > max_line_bytes)
    first = np.where(nonempty, buf[np.minimum(starts, len(buf) - 1)], 0)
    last = np.where(nonempty, buf[np.maximum(ends - 1, 0)], 0)
    suspect |= (first != ord("{")) | (last != ord("}"))
    for i in np.flatnonzero((lens > _LONG_LINE) & ~suspect).tolist():
        line = data[starts[i]:ends[i]]
        if line.count(b"[") + line.count(b"{") > _MAX_BRACKETS or _HUGE_INT.search(line):
            suspect[i] = True
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            for i in np.flatnonzero(~suspect).tolist():
                try:
                    data[starts[i]:ends[i]].decode("utf-8")
                except UnicodeDecodeError:
                    suspect[i] = True
    return suspect
