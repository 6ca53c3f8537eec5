"""The inference payloads of KServe's logger: v1 ``predictions`` / ``instances`` and Open Inference
Protocol v2 ``outputs`` / ``inputs`` tensors, turned into predictions (class, confidence,
probabilities) and feature rows. A payload that is neither is ``Rejected`` with its reason."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.foundation.reject_reasons import (
    INVALID_CONFIDENCE,
    INVALID_PROBABILITIES,
    INVALID_REQUEST,
    INVALID_RESPONSE,
)
from exporter.ingest.records import class_text
from exporter.sources.kserve.cloudevents import Rejected

_PREDICTION_KEYS = ("prediction", "label", "class", "predicted_class")
_CONFIDENCE_KEYS = ("confidence", "score", "probability")


@dataclass
class Prediction:
    prediction: Any
    confidence: float | None = None
    probabilities: dict[str, float] | None = None


# --- CloudEvents -----------------------------------------------------------------------------




def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(float(v)))


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | bool | int | float)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


@dataclass
class Tensor:
    name: str
    datatype: str
    rows: list[list[Any]]
    width: int


def parse_tensor(t: Any, what: str, reason: str) -> Tensor:
    """An OIP v2 tensor as one flat row per batch item (the first shape dimension)."""
    if not isinstance(t, dict):
        raise Rejected(reason, f"{what} must be an object with name, shape, datatype, data")
    name = t.get("name")
    data = t.get("data")
    if not isinstance(data, list):
        raise Rejected(reason, f"{what}: data must be an array")
    shape = t.get("shape")
    if shape is None:
        nested = bool(data) and all(isinstance(x, list) for x in data)
        rows = [_flatten(x) for x in data] if nested else [[x] for x in data]
        width = len(rows[0]) if rows else 0
        if any(len(r) != width for r in rows):
            raise Rejected(reason, f"{what}: ragged data")
    else:
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise Rejected(reason, f"{what}: shape must be an array of non-negative integers")
        flat = _flatten(data)
        if math.prod(shape) != len(flat):
            raise Rejected(reason, f"{what}: shape {shape} does not match {len(flat)} data values")
        if not shape:
            rows, width = [flat], len(flat)
        else:
            width = math.prod(shape[1:])
            if width == 0 and shape[0] > 0:
                # [n, 0] carries no values: building n empty rows would let 80 bytes cost n rows
                raise Rejected(reason, f"{what}: shape {shape} has no values per instance")
            rows = [flat[i * width:(i + 1) * width] for i in range(shape[0])]
    return Tensor(name=str(name) if name is not None else "", datatype=str(t.get("datatype", "")),
                  rows=rows, width=width)


def _probability_row(row: Sequence[Any], classes: Sequence[str] | None, what: str) -> Prediction:
    names = classes if classes is not None else [str(i) for i in range(len(row))]
    if len(row) != len(names):
        raise Rejected(INVALID_PROBABILITIES,
                       f"{what}: {len(row)} probabilities but the model has {len(names)} classes")
    if not all(_is_number(p) and 0.0 <= float(p) <= 1.0 for p in row):
        raise Rejected(INVALID_PROBABILITIES, f"{what}: probabilities must be numbers in [0, 1]")
    values = [float(p) for p in row]
    best = max(range(len(values)), key=values.__getitem__)  # first index on ties
    return Prediction(names[best], values[best], dict(zip(names, values, strict=True)))


def _probability_object(obj: Mapping[str, Any], what: str) -> Prediction:
    probs: dict[str, float] = {}
    for k, p in obj.items():
        if not (_is_number(p) and 0.0 <= float(p) <= 1.0):
            raise Rejected(INVALID_PROBABILITIES, f"{what}: probabilities must be numbers in [0, 1]")
        probs[k] = float(p)
    best = max(probs, key=probs.__getitem__)  # first key on ties
    return Prediction(best, probs[best], probs)


def _v1_prediction(item: Any, classes: Sequence[str] | None, what: str) -> Prediction:
    if isinstance(item, list):
        if len(item) == 1:
            return _v1_prediction(item[0], classes, what)
        if item and all(_is_number(x) for x in item):
            return _probability_row(item, classes, what)
        raise Rejected(INVALID_RESPONSE, f"{what}: a list must be a probability row")
    if isinstance(item, dict):
        key = next((k for k in _PREDICTION_KEYS if k in item), None)
        if key is None:
            if item and all(_is_number(v) for v in item.values()):
                return _probability_object(item, what)
            raise Rejected(INVALID_RESPONSE, f"{what}: an object must hold {', '.join(_PREDICTION_KEYS)} "
                                             "or class probabilities")
        pred = item[key]
        if not _is_scalar(pred):
            raise Rejected(INVALID_RESPONSE, f"{what}: {key} must be a class id or label")
        out = Prediction(pred)
        raw_probs = item.get("probabilities")
        if isinstance(raw_probs, list):
            out.probabilities = _probability_row(raw_probs, classes, what).probabilities
        elif isinstance(raw_probs, dict) and raw_probs:
            out.probabilities = _probability_object(raw_probs, what).probabilities
        elif raw_probs is not None and raw_probs != {}:
            raise Rejected(INVALID_PROBABILITIES, f"{what}: probabilities must be an object or a row")
        ckey = next((k for k in _CONFIDENCE_KEYS if item.get(k) is not None), None)
        if ckey is not None:
            c = item[ckey]
            if not (_is_number(c) and 0.0 <= float(c) <= 1.0):
                raise Rejected(INVALID_CONFIDENCE, f"{what}: {ckey} must be a number in [0, 1]")
            out.confidence = float(c)
        elif out.probabilities:
            out.confidence = out.probabilities.get(class_text(pred) or "")
        return out
    if item is None or not _is_scalar(item):
        raise Rejected(INVALID_RESPONSE, f"{what}: not a class id, label or probability row")
    return Prediction(item)


def parse_response(data: Any, classes: Sequence[str] | None) -> list[Prediction]:
    """The predictions in a v1 or v2 response body, one per instance."""
    if not isinstance(data, dict):
        raise Rejected(INVALID_RESPONSE, "the response body must be a JSON object")
    if "predictions" in data:
        preds = data["predictions"]
        if not isinstance(preds, list):
            raise Rejected(INVALID_RESPONSE, '"predictions" must be an array')
        return [_v1_prediction(p, classes, f"predictions[{i}]") for i, p in enumerate(preds)]
    if "outputs" in data:
        outputs = data["outputs"]
        if not isinstance(outputs, list) or not outputs:
            raise Rejected(INVALID_RESPONSE, '"outputs" must be a non-empty array of tensors')
        tensors = [parse_tensor(t, f"outputs[{i}]", INVALID_RESPONSE) for i, t in enumerate(outputs)]
        label = next((t for t in tensors if t.width == 1), None)
        probs = next((t for t in tensors if t.width > 1 and t.datatype.upper() != "BYTES"
                      and all(_is_number(x) for r in t.rows for x in r)), None)
        if label is None and probs is None:
            raise Rejected(INVALID_RESPONSE, "no output with one class or one probability row per instance")
        rows: list[Prediction] | None = None
        if probs is not None:
            rows = [_probability_row(r, classes, f"output {probs.name!r} row {i}") for i, r in enumerate(probs.rows)]
        if label is None:
            assert rows is not None
            return rows
        out: list[Prediction] = []
        for i, r in enumerate(label.rows):
            value = r[0]
            if not _is_scalar(value):
                raise Rejected(INVALID_RESPONSE, f"output {label.name!r} row {i}: not a class id or label")
            out.append(Prediction(value))
        if rows is not None:
            if len(rows) != len(out):
                raise Rejected(INVALID_RESPONSE, "the label and probability outputs have different batch sizes")
            for p, pr in zip(out, rows, strict=True):
                probabilities = pr.probabilities or {}
                p.probabilities = probabilities
                p.confidence = probabilities.get(class_text(p.prediction) or "", pr.confidence)
        return out
    raise Rejected(INVALID_RESPONSE, 'the response has neither "predictions" (v1) nor "outputs" (v2)')


def _v1_row(row: Any, names: Sequence[str] | None) -> dict[str, Any]:
    if isinstance(row, dict):
        keep = None if names is None else set(names)
        return {k: v for k, v in row.items() if _is_scalar(v) and (keep is None or k in keep)}
    if not names:
        return {}
    if isinstance(row, list):
        return {n: v for n, v in zip(names, row, strict=False) if _is_scalar(v)}
    return {names[0]: row} if _is_scalar(row) else {}


def parse_request(data: Any, names: Sequence[str] | None) -> list[dict[str, Any]]:
    """One feature dict per instance of a v1 or v2 request body (see the module doc).

    ``names`` are the model's ``drift.features``, or None when unknown (keep named values only).
    """
    if not isinstance(data, dict):
        raise Rejected(INVALID_REQUEST, "the request body must be a JSON object")
    if "instances" in data:
        rows = data["instances"]
        if not isinstance(rows, list):
            raise Rejected(INVALID_REQUEST, '"instances" must be an array')
        return [_v1_row(r, names) for r in rows]
    if "inputs" not in data:
        raise Rejected(INVALID_REQUEST, 'the request has neither "instances" (v1) nor "inputs"')
    inputs = data["inputs"]
    if isinstance(inputs, dict):  # v1 columnar: {"name": [value per instance]}
        columns = {k: v for k, v in inputs.items() if isinstance(v, list)}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise Rejected(INVALID_REQUEST, 'the columns of "inputs" have different lengths')
        n = lengths.pop() if lengths else 0
        keep = None if names is None else set(names)
        return [{k: col[i] for k, col in columns.items() if (keep is None or k in keep) and _is_scalar(col[i])}
                for i in range(n)]
    if not isinstance(inputs, list):
        raise Rejected(INVALID_REQUEST, '"inputs" must be an array or an object')
    if not all(isinstance(t, dict) and "data" in t for t in inputs):
        return [_v1_row(r, names) for r in inputs]  # v1 "inputs" holding rows
    tensors = [parse_tensor(t, f"inputs[{i}]", INVALID_REQUEST) for i, t in enumerate(inputs)]
    sizes = {len(t.rows) for t in tensors}
    if len(sizes) > 1:
        raise Rejected(INVALID_REQUEST, "the input tensors have different batch sizes")
    n = sizes.pop() if sizes else 0
    named = set(names) if names is not None else None
    by_name = [t for t in tensors if t.width == 1 and (named is None or t.name in named)]
    by_name_ids = {id(t) for t in by_name}
    positional = [t for t in tensors if id(t) not in by_name_ids] if names else []
    given = {t.name for t in by_name}
    remaining = [name for name in names or () if name not in given]
    out: list[dict[str, Any]] = []
    for i in range(n):
        feats = {t.name: t.rows[i][0] for t in by_name if _is_scalar(t.rows[i][0])}
        if positional:
            values = [v for t in positional for v in t.rows[i]]
            feats.update((name, v) for name, v in zip(remaining, values, strict=False) if _is_scalar(v))
        out.append(feats)
    return out


