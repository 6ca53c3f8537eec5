"""Reference files: read in the model's prediction-source format (JSONL, gzip, Parquet), used whole."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exporter.config import (
    Config,
    DriftConfig,
    FileSourceConfig,
    KServeSourceConfig,
    ModelConfig,
    SourceConfig,
    Window,
)
from exporter.core.drift_monitor import VersionDrift
from exporter.core.reference import (
    BOOL,
    MISSING,
    NOT_FINITE,
    NUMBER,
    STRING,
    RawColumn,
    Reference,
    ReferenceError,
    ReferenceStore,
    load_reference,
    reference_spec,
)
from exporter.ingest.records import RecordSpec

WINDOWS = (Window("1h", 3600.0),)


def model(path: Path | None = None, features: tuple[str, ...] = ("amount", "country")) -> ModelConfig:
    return ModelConfig(name="fraud", classes=("0", "1"),
                       drift=DriftConfig(reference=str(path) if path else None, features=features))


def mapped_source(**kw: Any) -> SourceConfig:
    return FileSourceConfig(name="fraud-predictions", kind="predictions", path="/x/*.jsonl",
                            model="fraud", fields={"id": "request_id", "prediction": "output.label",
                                                   "confidence": "output.score", "features": "input"}, **kw)


def mapped_record(i: int, amount: Any, country: Any, label: int = 1, score: float = 0.9) -> dict[str, Any]:
    # no request_id, no timestamp: a reference needs neither
    return {"output": {"label": label, "score": score}, "input": {"amount": amount, "country": country},
            "version": "7", "model": "other"}


def write_jsonl(path: Path, lines: list[Any], compress: bool = False) -> Path:
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    return path


def test_raw_column_kinds() -> None:
    col = RawColumn.from_values(np.array([1.5, 2, "x", True, None, float("nan"), 10**400, [1]], dtype=object), 8)
    assert col.kind.tolist() == [NUMBER, NUMBER, STRING, BOOL, MISSING, NOT_FINITE, NOT_FINITE, 5]
    assert col.number[:2].tolist() == [1.5, 2.0]
    assert col.text[2:4].tolist() == ["x", "true"]
    again = RawColumn.from_state(col.state())
    assert again.kind.tolist() == col.kind.tolist() and again.text.tolist() == col.text.tolist()
    np.testing.assert_array_equal(again.number, col.number)


@pytest.mark.parametrize("values", [
    [1.5, None, float("nan"), float("inf"), -2.0],  # floats and None: the vectorised path
    ["a", None, "", "b"],  # strings and None: the vectorised path
    [1.5, None, float("nan"), float("inf"), -2.0, 3],  # an int among them: the general path
    ["a", None, "", "b", True],
    [],
])
def test_raw_column_fast_and_general_paths_agree(values: list[Any]) -> None:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    col = RawColumn.from_values(arr, len(values))
    expected_kind = []
    for v in values:
        if v is None:
            expected_kind.append(MISSING)
        elif isinstance(v, bool):
            expected_kind.append(BOOL)
        elif isinstance(v, str):
            expected_kind.append(STRING)
        else:
            expected_kind.append(NUMBER if math.isfinite(v) else NOT_FINITE)
    assert col.kind.tolist() == expected_kind
    assert col.kind.dtype == np.int8 and col.number.dtype == np.float64 and col.text.dtype == object
    for k, v, num, text in zip(col.kind.tolist(), values, col.number.tolist(), col.text.tolist(), strict=True):
        assert (num == float(v)) if k == NUMBER else math.isnan(num)
        assert text == (v if k == STRING else ("true" if v is True else "") if k == BOOL else "")


@pytest.mark.parametrize("compress", [False, True])
def test_jsonl_reference_uses_the_source_field_mapping(tmp_path: Path, compress: bool) -> None:
    lines: list[Any] = [mapped_record(i, float(i), "DE" if i % 3 else "FR", label=i % 2) for i in range(30)]
    lines += ["{not json", json.dumps([1, 2]), json.dumps({"input": {"amount": 1.0}}),  # no prediction
              json.dumps({"output": {"label": 1, "score": 1.5}}), ""]
    path = write_jsonl(tmp_path / ("ref.jsonl.gz" if compress else "ref.jsonl"), lines, compress)
    cfg = Config(models=(model(path),), sources=(mapped_source(),))
    ref = load_reference(path, reference_spec(cfg, cfg.models[0]), "fraud")
    assert len(ref) == 30
    assert ref.origin == str(path)
    assert ref.feature("amount").number.tolist() == [float(i) for i in range(30)]
    assert ref.feature("country").text[:3].tolist() == ["FR", "DE", "DE"]
    assert ref.predicted_class[:3].tolist() == ["0", "1", "0"]
    assert ref.confidence.tolist() == [0.9] * 30
    assert ref.invalid_records == Counter({"invalid_json": 1, "not_an_object": 1, "missing_prediction": 1,
                                           "invalid_confidence": 1})


def test_parquet_reference_with_nested_columns(tmp_path: Path) -> None:
    rows = [mapped_record(i, float(i) / 2, ["A", "B", None][i % 3], score=0.5 + i / 100) for i in range(20)]
    path = tmp_path / "reference.data"  # the format is found by content, not by name
    pq.write_table(pa.Table.from_pylist(rows), path)
    cfg = Config(models=(model(path),), sources=(mapped_source(),))
    ref = load_reference(path, reference_spec(cfg, cfg.models[0]), "fraud")
    assert len(ref) == 20
    assert ref.feature("amount").number.tolist() == [i / 2 for i in range(20)]
    assert ref.feature("country").kind.tolist()[:3] == [STRING, STRING, MISSING]
    np.testing.assert_allclose(ref.confidence, [0.5 + i / 100 for i in range(20)])


def test_canonical_format_when_no_record_source(tmp_path: Path) -> None:
    kserve = KServeSourceConfig(name="ks", kind="predictions", model_from="inferenceservicename")
    cfg = Config(models=(model(),), sources=(kserve,))
    spec = reference_spec(cfg, cfg.models[0])
    assert spec.fields == {} and spec.feature_names == ("amount", "country")
    path = write_jsonl(tmp_path / "r.jsonl", [
        {"prediction": "1", "probabilities": {"0": 0.3, "1": 0.7}, "features": {"amount": 3, "country": "PL"}}])
    ref = load_reference(path, spec, "fraud")
    assert ref.confidence.tolist() == [0.7]  # derived from the probabilities, as for live records
    assert ref.feature("amount").number.tolist() == [3.0]


def test_reference_spec_prefers_the_models_own_source() -> None:
    generic = FileSourceConfig(name="all", kind="predictions", path="/a", fields={"prediction": "p"})
    other = FileSourceConfig(name="other", kind="predictions", path="/b", model="other",
                             fields={"prediction": "q"})
    labels = FileSourceConfig(name="labels", kind="labels", path="/c", model="fraud")
    own = mapped_source()
    cfg = Config(models=(model(),), sources=(generic, other, labels, own))
    assert reference_spec(cfg, cfg.models[0]).fields["prediction"] == "output.label"
    cfg = Config(models=(model(),), sources=(other, generic))
    assert reference_spec(cfg, cfg.models[0]).fields["prediction"] == "p"


@pytest.mark.parametrize("content", [None, b"", b"{bad\n[]\n", b"\x1f\x8bnot gzip", b"PAR1 not parquet"])
def test_unusable_files_raise(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "ref.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ReferenceError, match=str(path)):
        load_reference(path, RecordSpec(feature_names=("amount",)), "fraud")


def test_store_loads_once_shares_and_falls_back(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ref.jsonl", [mapped_record(i, float(i), "DE") for i in range(10)])
    m = model(path)
    cfg = Config(models=(m,), sources=(mapped_source(),))
    store = ReferenceStore(cfg)
    first = store.get(m)
    assert first is not None and len(first) == 10
    path.write_text("")  # not read again: the reference is loaded once per model
    assert store.get(m) is first
    # versions of the model share it, and have a complete reference at once
    v1 = VersionDrift(m, WINDOWS, store.get(m), lambda: ["0", "1"])
    v2 = VersionDrift(m, WINDOWS, store.get(m), lambda: ["0", "1"])
    assert v1.reference is v2.reference is first
    assert v1.reference_complete and v1.reference_samples == 10
    amounts = np.array([5.0, 6.0, 7.0], dtype=object)
    v1.add_predictions(np.array([1.0, 2.0, 3.0]), {"amount": amounts, "country": np.array(["DE"] * 3, dtype=object)},
                       np.full(3, 0.9), np.ones(3, dtype=np.int32), np.full(3, math.nan), 3.0)
    fd = next(f for f in v1.window_drift(0) if f.feature == "amount")
    assert not math.isnan(fd.psi) and fd.samples == 3
    assert "reference" not in v1.state()  # a file reference is not checkpointed: the file is
    # after a reload the (now empty) file is read again; unusable -> None (learn), error kept
    store.clear()
    assert store.get(m) is None
    assert "holds no valid prediction record" in store.errors["fraud"]
    assert store.get(model()) is None  # no file configured


def test_reference_state_round_trip() -> None:
    ref = Reference(features={"a": RawColumn.from_values(np.array([1.0, "x", None], dtype=object), 3)},
                    confidence=np.array([0.5, math.nan, 1.0]), predicted_class=np.array(["1", "0", "1"], dtype=object))
    again = Reference.from_state(ref.state())
    assert again.feature("a").kind.tolist() == ref.feature("a").kind.tolist()
    np.testing.assert_array_equal(again.confidence, ref.confidence)
    assert again.predicted_class.tolist() == ["1", "0", "1"]
    assert again.feature("missing").kind.tolist() == [MISSING] * 3
