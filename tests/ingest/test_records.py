"""Record parsers and timestamp parsing against hand-written expectations (DESIGN §2, §3)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import FileSourceConfig
from exporter.foundation.reject_reasons import INVALID_REASONS
from exporter.ingest.batches import LabelBatch, PredictionBatch, feature_values
from exporter.ingest.records import RecordSpec, class_text, parse_labels, parse_predictions
from exporter.ingest.timestamps import parse_timestamp, parse_timestamps
from tests.ingest.reference import NOW, both_paths, line, rfc3339ish

SPEC = RecordSpec(model="fraud")

def preds(lines: list[bytes], spec: RecordSpec = SPEC, objects: list[Any] | None = None) -> Any:
    """Parse predictions; every hand-written case also checks the block parser agrees."""
    result = parse_predictions(lines, spec, NOW, objects or ())
    assert isinstance(result.batch, PredictionBatch)
    if not objects:
        both_paths(lines, spec, "p")
    return result


def labels(lines: list[bytes], spec: RecordSpec | None = None) -> Any:
    result = parse_labels(lines, spec or RecordSpec(), NOW)
    assert isinstance(result.batch, LabelBatch)
    both_paths(lines, spec or RecordSpec(), "l")
    return result


def epoch(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


# --- the canonical record -----------------------------------------------------------------------

def test_canonical_prediction_record() -> None:
    rec = {"id": "req-81f2", "model": "fraud", "model_version": "3", "timestamp": "2026-11-26T10:00:00Z",
           "prediction": 1, "confidence": 0.91, "probabilities": {"0": 0.09, "1": 0.91},
           "features": {"amount": 120.5, "country": "DE"}}
    spec = RecordSpec(feature_names=("amount", "country", "age"))
    r = preds([line(rec)], spec)
    b = r.batch
    assert r.records == 1 and not r.invalid and len(b) == 1
    assert b.id.tolist() == ["req-81f2"] and b.model.tolist() == ["fraud"]
    assert b.model_version.tolist() == ["3"] and b.prediction.tolist() == ["1"]
    assert b.timestamp.tolist() == [epoch(2026, 11, 26, 10, 0, 0)]
    assert b.confidence.tolist() == [0.91]
    assert b.probabilities.tolist() == [{"0": 0.09, "1": 0.91}]
    assert b.features["amount"].tolist() == [120.5]
    assert b.features["country"].tolist() == ["DE"]
    assert b.features["age"].tolist() == [None]
    assert r.newest_timestamp == epoch(2026, 11, 26, 10, 0, 0)
    for col in (b.id, b.model, b.model_version, b.prediction, b.probabilities):
        assert col.dtype == object
    assert b.timestamp.dtype == np.float64 and b.confidence.dtype == np.float64


def test_canonical_label_record() -> None:
    r = labels([line({"id": "req-81f2", "label": 1, "timestamp": "2026-11-27T08:00:00Z"})])
    b = r.batch
    assert b.id.tolist() == ["req-81f2"] and b.label.tolist() == ["1"]
    assert b.timestamp.tolist() == [epoch(2026, 11, 27, 8, 0, 0)] and b.model.tolist() == [None]
    assert r.records == 1 and not r.invalid


def test_dotted_path_mapping_and_fixed_model() -> None:
    src = FileSourceConfig(name="s", kind="predictions", path="/x", model="fraud",
                           fields={"id": "request_id", "prediction": "output.label",
                                   "confidence": "output.score", "model_version": "version",
                                   "features": "input.features", "timestamp": "meta.ts"},
                           max_line_bytes=4096)
    spec = RecordSpec.from_source(src, ("amount",))
    assert spec.max_line_bytes == 4096 and spec.model == "fraud" and spec.feature_names == ("amount",)
    rec = {"request_id": "r1", "model": "ignored", "version": 7,
           "output": {"label": "approve", "score": 0.7},
           "input": {"features": {"amount": 3}}, "meta": {"ts": 1_700_000_000}}
    b = preds([line(rec)], spec).batch
    assert b.id.tolist() == ["r1"] and b.model.tolist() == ["fraud"]
    assert b.model_version.tolist() == ["7"] and b.prediction.tolist() == ["approve"]
    assert b.confidence.tolist() == [0.7] and b.features["amount"].tolist() == [3]
    assert b.timestamp.tolist() == [1_700_000_000.0]
    # a path through a non-object is simply missing
    r = preds([line({"request_id": "r2", "output": 5})], spec)
    assert r.invalid == {"missing_prediction": 1}


def test_model_and_version_sources() -> None:
    no_fixed = RecordSpec()
    r = preds([line({"id": "a", "prediction": 1}),
               line({"id": "b", "model": "m", "prediction": 1}),
               line({"id": "c", "model": "m", "model_version": 2.0, "prediction": 1}),
               line({"id": "d", "model": "m", "model_version": None, "prediction": 1}),
               line({"id": "e", "model": "", "prediction": 1})], no_fixed)
    assert r.invalid == {"missing_model": 2}
    assert r.batch.model_version.tolist() == ["unknown", "2", "unknown"]
    fixed = RecordSpec(model="f", model_version="v9")
    assert preds([line({"id": "a", "model": "m", "model_version": "1", "prediction": 1})],
                 fixed).batch.model_version.tolist() == ["v9"]


# --- classes --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [
    (1, "1"), (1.0, "1"), (0, "0"), (-3, "-3"), (2.5, "2.5"), (True, "1"), (False, "0"),
    ("cat", "cat"), ("1.0", "1.0"), (" x ", " x "), (1e20, "100000000000000000000"),
    (np.int64(4), "4"), (np.float32(2.0), "2"), (np.bool_(True), "1"),
])
def test_class_text(value: Any, text: str) -> None:
    assert class_text(value) == text


@pytest.mark.parametrize("value", [None, "", [1], {"a": 1}, math.nan, math.inf])
def test_class_text_refuses(value: Any) -> None:
    assert class_text(value) is None


def test_class_normalisation_in_records() -> None:
    values = [1, 1.0, True, False, "1", "dog", 0.25]
    r = preds([line({"id": str(i), "prediction": v}) for i, v in enumerate(values)])
    assert r.batch.prediction.tolist() == ["1", "1", "1", "0", "1", "dog", "0.25"]
    lr = labels([line({"id": str(i), "label": v}) for i, v in enumerate(values)])
    assert lr.batch.label.tolist() == ["1", "1", "1", "0", "1", "dog", "0.25"]


def test_probability_keys_and_derived_confidence() -> None:
    r = preds([line({"id": "a", "prediction": "b", "probabilities": {"a": 0.2, "b": 0.5, "c": 0.3}}),
               line({"id": "b", "prediction": 1}),
               line({"id": "c", "prediction": 1, "confidence": 0.4, "probabilities": {"1": 0.9}}),
               line({"id": "d", "prediction": 1, "confidence": None, "probabilities": {}})],
              objects=[{"id": "e", "prediction": 1, "probabilities": {1: 0.8, np.int64(2): 0.1, 3.0: 0.1}}])
    b = r.batch
    assert b.confidence.tolist()[0] == 0.5 and math.isnan(b.confidence[1])
    assert b.confidence[2] == 0.4  # a given confidence wins over the probabilities
    assert math.isnan(b.confidence[3]) and b.probabilities[3] is None
    assert b.probabilities[4] == {"1": 0.8, "2": 0.1, "3": 0.1}  # keys normalised like classes
    assert r.records == 5


# --- invalid records ------------------------------------------------------------------------------

INVALID_CASES: list[tuple[bytes, str]] = [
    (b"not json", "invalid_json"),
    (b"\xff\xfe{}", "invalid_json"),
    (b'{"id": "\xc3\x28", "prediction": 1}', "invalid_json"),  # invalid UTF-8 inside a string
    (b"\xef\xbb\xbf" + line({"id": "a", "prediction": 1}), "invalid_json"),  # a BOM
    ('{"id": "a", "prediction": 1}'.encode("utf-16"), "invalid_json"),
    (b'{"id": "a", "prediction": 1} trailing', "invalid_json"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),  # nesting too deep for the json module
    (b"", "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"text"', "not_an_object"),
    (b"null", "not_an_object"),
    (line({"prediction": 1}), "missing_id"),
    (line({"id": "", "prediction": 1}), "missing_id"),
    (line({"id": None, "prediction": 1}), "missing_id"),
    (line({"id": True, "prediction": 1}), "missing_id"),
    (line({"id": ["a"], "prediction": 1}), "missing_id"),
    (line({"id": {"a": 1}, "prediction": 1}), "missing_id"),
    (line({"id": "a"}), "missing_prediction"),
    (line({"id": "a", "prediction": None}), "invalid_class"),
    (line({"id": "a", "prediction": [1]}), "invalid_class"),
    (line({"id": "a", "prediction": {"x": 1}}), "invalid_class"),
    (line({"id": "a", "prediction": ""}), "invalid_class"),
    (b'{"id": "a", "prediction": NaN}', "invalid_class"),
    (b'{"id": "a", "prediction": 1, "confidence": NaN}', "invalid_confidence"),
    (line({"id": "a", "prediction": 1, "confidence": 1.5}), "invalid_confidence"),
    (line({"id": "a", "prediction": 1, "confidence": -0.01}), "invalid_confidence"),
    (line({"id": "a", "prediction": 1, "confidence": "abc"}), "invalid_confidence"),
    (line({"id": "a", "prediction": 1, "confidence": "0.5"}), "invalid_confidence"),
    (line({"id": "a", "prediction": 1, "confidence": True}), "invalid_confidence"),
    (line({"id": "a", "prediction": 1, "confidence": 10**400}), "invalid_confidence"),
    (line({"id": "a", "prediction": 1, "probabilities": [0.1, 0.9]}), "invalid_probabilities"),
    (line({"id": "a", "prediction": 1, "probabilities": {"1": 1.2}}), "invalid_probabilities"),
    (line({"id": "a", "prediction": 1, "probabilities": {"1": "0.9"}}), "invalid_probabilities"),
    (line({"id": "a", "prediction": 1, "probabilities": {"1": None}}), "invalid_probabilities"),
    (line({"id": "a", "prediction": 1, "probabilities": {"": 0.5}}), "invalid_probabilities"),
    (line({"id": "a", "prediction": 1, "probabilities": "0.9"}), "invalid_probabilities"),
    (line({"id": "a", "prediction": 1, "timestamp": "yesterday"}), "invalid_timestamp"),
    (line({"id": "a", "prediction": 1, "timestamp": "2026-02-30T00:00:00Z"}), "invalid_timestamp"),
    (line({"id": "a", "prediction": 1, "timestamp": "2026-11-26"}), "invalid_timestamp"),
    (line({"id": "a", "prediction": 1, "timestamp": True}), "invalid_timestamp"),
    (line({"id": "a", "prediction": 1, "timestamp": [1]}), "invalid_timestamp"),
    (b'{"id": "a", "prediction": 1, "timestamp": Infinity}', "invalid_timestamp"),
]


@pytest.mark.parametrize(("raw", "reason"), INVALID_CASES)
def test_invalid_prediction_lines(raw: bytes, reason: str) -> None:
    good = line({"id": "good", "prediction": 0})
    r = preds([good, raw, good])
    assert r.invalid == {reason: 1}
    assert r.records == 3 and r.batch.id.tolist() == ["good", "good"]
    assert reason in INVALID_REASONS


def test_line_too_long() -> None:
    spec = RecordSpec(model="m", max_line_bytes=40)
    short = line({"id": "a", "prediction": 1})
    long = line({"id": "a" * 40, "prediction": 1})
    r = preds([short, long], spec)
    assert r.invalid == {"line_too_long": 1} and len(r.batch) == 1


def test_first_failing_reason_only() -> None:
    r = preds([line({"confidence": 3, "timestamp": "bad"}),
               line({"id": "a", "prediction": None, "confidence": 3}),
               line({"id": "a", "model": "m", "prediction": 1, "confidence": 3, "probabilities": 1,
                     "timestamp": "x"})],
              RecordSpec())
    assert r.invalid == {"missing_id": 1, "missing_model": 1, "invalid_confidence": 1}


def test_invalid_label_lines() -> None:
    r = labels([line({"label": 1}), line({"id": "a"}), line({"id": "a", "label": None}),
                line({"id": "a", "label": 1, "timestamp": "nope"}), b"[]", b"{",
                line({"id": 5, "label": 0, "model": "m"})])
    assert r.invalid == {"missing_id": 1, "missing_label": 1, "invalid_class": 1,
                         "invalid_timestamp": 1, "not_an_object": 1, "invalid_json": 1}
    assert r.records == 7
    assert r.batch.id.tolist() == ["5"] and r.batch.model.tolist() == ["m"]


def test_label_model_fixed_or_from_record() -> None:
    recs = [line({"id": "a", "label": 1, "model": "x"}), line({"id": "b", "label": 1})]
    assert labels(recs).batch.model.tolist() == ["x", None]
    assert labels(recs, RecordSpec(model="fraud")).batch.model.tolist() == ["fraud", "fraud"]
    mapped = RecordSpec(fields={"model": "meta.model", "label": "truth"})
    r = labels([line({"id": "a", "truth": "cat", "meta": {"model": "zoo"}})], mapped)
    assert r.batch.model.tolist() == ["zoo"] and r.batch.label.tolist() == ["cat"]


def test_ids_become_text() -> None:
    r = preds([line({"id": 42, "prediction": 1}), line({"id": 7.0, "prediction": 1}),
               line({"id": "x-1", "prediction": 1})])
    assert r.batch.id.tolist() == ["42", "7", "x-1"]


def test_features_raw_scalars_or_none() -> None:
    spec = RecordSpec(model="m", feature_names=("a", "b", "c", "d", "e"))
    r = preds([line({"id": "1", "prediction": 1,
                     "features": {"a": 1, "b": "x", "c": None, "d": [1, 2], "e": True}}),
               line({"id": "2", "prediction": 1}),
               line({"id": "3", "prediction": 1, "features": [1, 2]})], spec)
    f = {k: feature_values(v) for k, v in r.batch.features.items()}
    assert f["a"] == [1, None, None] and f["b"] == ["x", None, None]
    assert f["c"] == [None, None, None] and f["d"] == [None, None, None]
    assert f["e"] == [True, None, None]
    # a numeric feature is a float64 column (NaN where absent), the others keep their values
    assert r.batch.features["a"].dtype == np.float64
    assert all(col.dtype == object for k, col in r.batch.features.items() if k != "a")
    assert all(col.shape == (3,) for col in r.batch.features.values())


def test_decoded_objects_parse_like_lines() -> None:
    recs = [{"id": "a", "prediction": 1, "confidence": 0.5, "timestamp": 1_700_000_000_000},
            [1], {"id": "b"}]
    from_lines = preds([line(r) for r in recs])
    from_objects = preds([], objects=recs)
    assert from_lines.invalid == from_objects.invalid == {"not_an_object": 1, "missing_prediction": 1}
    assert from_lines.batch.id.tolist() == from_objects.batch.id.tolist() == ["a"]
    assert from_objects.batch.timestamp.tolist() == [1_700_000_000.0]
    assert from_objects.records == 3


def test_empty_input() -> None:
    r = preds([], RecordSpec(model="m", feature_names=("f",)))
    assert len(r.batch) == 0 and r.records == 0 and r.newest_timestamp is None
    assert r.batch.features["f"].shape == (0,) and r.batch.timestamp.dtype == np.float64
    assert len(labels([]).batch) == 0


def test_newest_timestamp_ignores_invalid_records() -> None:
    r = preds([line({"id": "a", "prediction": 1, "timestamp": 100}),
               line({"id": "b", "prediction": 1, "timestamp": 300, "confidence": 9}),
               line({"id": "c", "prediction": 1, "timestamp": 200})])
    assert r.newest_timestamp == 200.0


# --- timestamps -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-26T10:00:00Z", epoch(2026, 11, 26, 10, 0, 0)),
    ("2026-11-26T10:00:00z", epoch(2026, 11, 26, 10, 0, 0)),
    ("2026-11-26 10:00:00Z", epoch(2026, 11, 26, 10, 0, 0)),
    ("2026-11-26T10:00:00", epoch(2026, 11, 26, 10, 0, 0)),  # no offset: UTC
    ("2026-11-26T10:00:00.250Z", epoch(2026, 11, 26, 10, 0, 0) + 0.25),
    ("2026-11-26T10:00:00.123456789Z", epoch(2026, 11, 26, 10, 0, 0) + 0.123456789),
    ("2026-11-26T12:30:00+02:30", epoch(2026, 11, 26, 10, 0, 0)),
    ("2026-11-26T05:00:00-0500", epoch(2026, 11, 26, 10, 0, 0)),
    ("2024-02-29T00:00:00Z", epoch(2024, 2, 29, 0, 0, 0)),
    ("1969-12-31T23:59:59Z", -1.0),
    ("2016-12-31T23:59:60Z", epoch(2017, 1, 1, 0, 0, 0)),
    (1_764_151_200, 1_764_151_200.0),
    (1_764_151_200.5, 1_764_151_200.5),
    (1_764_151_200_000, 1_764_151_200.0),
    (1_764_151_200_123, 1_764_151_200.123),
    (100_000_000_000, 100_000_000_000.0),  # exactly 1e11: still seconds
    (100_000_000_001, 100_000_000.001),
    ("1764151200", 1_764_151_200.0),
    ("1764151200000", 1_764_151_200.0),
    ("1.7641512e9", 1_764_151_200.0),
    (0, 0.0),
    (None, NOW),
])
def test_parse_timestamp(value: Any, expected: float) -> None:
    assert parse_timestamp(value, NOW) == pytest.approx(expected, abs=1e-6)
    assert parse_timestamps([value], NOW)[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("value", [
    "", "now", "2026-11-26", "2026-13-01T00:00:00Z", "2026-11-31T00:00:00Z", "2023-02-29T00:00:00Z",
    "2026-11-26T24:00:00Z", "2026-11-26T10:60:00Z", "2026-11-26T10:00:61Z", "2026-11-26T10:00:00+24:00",
    "2026-11-26T10:00:00Z\n", "\uff12\uff10\uff12\uff16-11-26T10:00:00Z", "nan", "inf", "1e400", "1_000",
    True, False, math.nan, math.inf, -math.inf, [1], {"t": 1}, 10**400,
])
def test_invalid_timestamps(value: Any) -> None:
    assert math.isnan(parse_timestamp(value, NOW))
    assert math.isnan(parse_timestamps([value], NOW)[0])


def test_vectorised_timestamps_match_the_scalar_path_on_a_block() -> None:
    values: list[Any] = [f"2026-{m:02d}-{d:02d}T{h:02d}:17:{s:02d}.{m * d}+01:00"
                         for m in range(1, 13) for d in (1, 15, 28, 31) for h in (0, 23) for s in (0, 59)]
    values += ["bad", None, "1764151200", 5, "2026-02-31T00:00:00Z"]
    scalar = np.array([parse_timestamp(v, NOW) for v in values])
    np.testing.assert_array_equal(parse_timestamps(values, NOW), scalar)
    texts = [v if isinstance(v, str) or v is None else str(v) for v in values]
    scalar_texts = np.array([parse_timestamp(v, NOW) for v in texts])
    np.testing.assert_array_equal(parse_timestamps(pa.array(texts, pa.string()), NOW), scalar_texts)
    numbers = pa.array([1, None, 1_764_151_200_000])
    np.testing.assert_array_equal(parse_timestamps(numbers, NOW), [1.0, NOW, 1_764_151_200.0])


_timestamp_values = st.one_of(
    rfc3339ish, st.text(max_size=12), st.none(), st.booleans(),
    st.integers(-10**15, 10**15), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10**15, 10**15).map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_timestamp_values, min_size=0, max_size=80))
def test_vectorised_timestamps_agree_with_scalar(values: list[Any]) -> None:
    scalar = np.array([parse_timestamp(v, NOW) for v in values], dtype=np.float64)
    np.testing.assert_array_equal(parse_timestamps(values, NOW), scalar)
    texts = [v for v in values if isinstance(v, str)] * 3  # enough to take the arrow path
    np.testing.assert_array_equal(
        parse_timestamps(pa.array(texts, pa.string()), NOW),
        np.array([parse_timestamp(v, NOW) for v in texts], dtype=np.float64))


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30)),
       st.integers(-23 * 60, 23 * 60))
def test_rfc3339_matches_datetime(dt: datetime, offset_minutes: int) -> None:
    tz = timezone(timedelta(minutes=offset_minutes))
    aware = dt.replace(tzinfo=tz)
    text = aware.isoformat()
    assert parse_timestamp(text, NOW) == pytest.approx(aware.timestamp(), abs=1e-6)


# --- blocks the block parser hands to the reference (tests/ingest/test_block_parser.py: the rest) ---

def test_block_starting_with_a_top_level_null() -> None:
    """A top-level ``null`` among objects is one not_an_object (pyarrow 26 used to crash on it)."""
    good = [line({"id": f"r{i}", "model": "m", "prediction": 1}) for i in range(100)]
    r = preds([b"null", *good])
    assert r.invalid == {"not_an_object": 1} and len(r.batch) == 100
    r = preds([*good, b"null", b'{"id": "z", "prediction": 1} null'])
    assert r.invalid == {"not_an_object": 1, "invalid_json": 1} and len(r.batch) == 100


def test_deeply_nested_block_falls_back() -> None:
    deep = b'{"id": "a", "model": "m", "prediction": 1, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    r = preds([deep] * 80)
    assert r.invalid == {"invalid_json": 80}  # json's recursion limit; a decoder could accept them
    shallow = b'{"id": "a", "model": "m", "prediction": 1, "x": ' + b"[" * 20 + b"]" * 20 + b"}"
    assert len(preds([shallow] * 80).batch) == 80


def test_lone_surrogates_never_reach_label_values() -> None:
    """``"\\ud800"`` is valid JSON but cannot be written as UTF-8 (labels, logs, checkpoints)."""
    s = '"\\ud800"'
    r = preds([f'{{"id": {s}, "prediction": 1}}'.encode(),
               f'{{"id": "a", "prediction": {s}}}'.encode(),
               f'{{"id": "b", "prediction": 1, "probabilities": {{{s}: 0.5}}}}'.encode(),
               f'{{"id": "c", "prediction": 1, "model_version": {s}, "features": {{"f": {s}}}}}'.encode(),
               b'{"id": "d", "prediction": "\\ud83d\\ude00"}'],
              RecordSpec(model="m", feature_names=("f",)))
    assert r.invalid == {"missing_id": 1, "invalid_class": 1, "invalid_probabilities": 1}
    assert r.batch.id.tolist() == ["c", "d"] and r.batch.model_version.tolist() == ["unknown", "unknown"]
    assert r.batch.features["f"].tolist() == [None, None] and r.batch.prediction.tolist()[1] == "\U0001f600"
    assert preds([f'{{"id": "a", "model": {s}, "prediction": 1}}'.encode()], RecordSpec()).invalid == {
        "missing_model": 1}
