"""``type: kserve``: receive KServe's payload-logger CloudEvents and turn them into predictions.

KServe's logger (``spec.predictor.logger``) POSTs one CloudEvent per inference request and one
per response, in binary mode: the body is the raw request/response and the attributes are
``ce-*`` headers (``ce-id`` shared by the pair, ``ce-type``
``org.kubeflow.serving.inference.request|response``, ``ce-source`` the pod,
``ce-inferenceservicename``, ``ce-namespace``, ``ce-component``, ``ce-endpoint``, ``ce-time``,
``ce-metadata``, ``ce-annotations``). Header names are case-insensitive (KServe writes Go's
``Ce-Id``) and values are percent-decoded, as the CloudEvents HTTP binding requires (Go's SDK
sends them raw, Python's core SDK encodes them). The ``Content-Type`` is the inference request's
own (``application/json``, missing, or a ``curl -d`` default ``application/x-www-form-urlencoded``)
and is not trusted: the body is read as JSON whatever it says. Structured mode (``Content-Type:
application/cloudevents+json``, attributes and ``data`` / ``data_base64`` in one JSON object) is
accepted too. A body using the Open Inference Protocol's binary tensor extension (a JSON header
followed by raw tensor bytes; ``oip_binary``) is decoded into ordinary tensors.

**Receiving.** ``handle(headers, body)`` is the POST handler (the app registers it at
``/api/v1/kserve``; ``start_listener(listen)`` serves it on ``listen_address`` too, without auth). It
validates the event, builds canonical prediction records (DESIGN §3) and puts them on a bounded
queue of ``queue_size`` events; the pipeline drains the queue on each poll. Answers: ``200``
accepted (KServe's logger treats anything else as an error), ``400`` with ``<reason>: <detail>``
for a malformed event, ``413`` for a body over ``max_body_bytes``, ``503`` when the queue is full.
Every refusal is counted by reason in ``rejected_since_last_poll``, which the next poll hands to
the pipeline (``mlmon_exporter_invalid_records_total{reason}``). Note that KServe's logger does
not retry, so an event refused with 503 is lost: size ``queue_size`` for the events arriving in
one ``poll_interval``.

**Responses** give the predictions. v1 ``{"predictions": [...]}``, one item per instance:

* a class id or label (``1``, ``"cat"``; a one-element list such as ``[1]`` is unwrapped);
* a probability row ``[0.1, 0.9]`` over the model's ``classes`` by position (class ``i`` is
  ``str(i)`` when the model has no ``classes``): the argmax (first on ties) is the prediction,
  its probability the confidence; a row whose length differs from the classes is refused;
* a probability object ``{"cat": 0.8, "dog": 0.2}``: the same, keyed by class;
* an object with ``prediction`` (or ``label``, ``class``, ``predicted_class``) and optionally
  ``confidence`` (or ``score``, ``probability``) and ``probabilities`` (object or row).

Open Inference Protocol v2 ``{"outputs": [{"name", "shape", "datatype", "data"}]}``: the first
dimension of ``shape`` is the batch; ``data`` may be flat (row-major) or nested. The first
output with one value per instance gives the predictions (class ids or ``BYTES`` labels); the
first numeric output with several values per instance is a probability row per instance. With
both, the prediction is the label output and the confidence the probability of that class; with
only probabilities, the argmax as above.

**Ids, model, version, time.** A batch of one gives one record with id ``ce-id``; a batch of n
gives ``<ce-id>#0`` ... ``<ce-id>#<n-1>``. The model is the source's ``model`` if set, else
``ce-inferenceservicename``. The version comes from ``version_from``: a key of ``ce-metadata``
(the request headers listed in the InferenceService's ``logger.metadataHeaders``, a JSON object
of header -> list of values), a key of ``ce-annotations`` (the annotations listed in
``logger.metadataAnnotations``, a JSON object), or a header of the POST itself; a fixed
``model_version`` in the config overrides all. When that is missing from an event, or nothing is
configured, it is the predictor revision in ``ce-source`` (``00001`` in
``sentiment-predictor-00001-deployment-6c9f...``) where there is one, else ``unknown``. Real
KServe sends ``ce-source: http://localhost:9081/`` (the agent is injected before the pod has a
name), so without ``version_from`` every version is ``unknown``: a warning says so, once a
minute, and ``counters["version_unknown"]`` counts the events. (``version_header: X`` is the
older spelling of a POST header, then a ``ce-metadata`` key.) The timestamp is ``ce-time`` (the occurrence
time since KServe 0.18, the send time before), else ``ce-recordedtime``, else the arrival time.

**Requests** give the features, mapped to the model's ``drift.features``:

* v1 ``instances`` rows that are objects: their keys are feature names;
* v1 rows that are lists: column ``i`` is the ``i``-th name of ``drift.features``; a scalar row
  is the first feature; columnar v1 ``{"inputs": {"name": [values...]}}`` is keyed by name;
* v2 ``inputs`` tensors: a tensor named like a configured feature gives that feature (one value
  per instance); the columns of all other tensors, in input order, map by position to the
  ``drift.features`` not given by name (in their configured order).

Only JSON scalars are kept. Without a model lookup (see the constructor) object keys and v2
tensor names are kept as they are and positional columns are dropped.

**Pairing request and response** (same ``ce-id``, either order). A response is queued as soon as
it arrives and never waits for its request. A request that arrives first waits (at most
``request_ttl`` seconds, at most ``max_pending_requests`` of them, oldest dropped first) and its
features go onto the response's records when that arrives. A request arriving after its response
still attaches its features while the response is queued, i.e. until the next poll (at most one
``poll_interval``); after that it is dropped (counted in ``counters["late_requests"]``), and the
prediction stays recorded without features. A request whose row count differs from its
response's is not attached (``counters["feature_row_mismatch"]``). A request is validated (400
when it is not v1/v2) but never counted as a record: it only adds features.

**Forwarding** (``forward_to``): every event this handler reads is re-sent unchanged to each URL
by ``Forwarder``, in the background, whether this exporter could use it or not (a 400 here may
be a fine event for the other receiver); except events refused with 413 (too large to read) or
503 (a sender that retries would have them forwarded twice).

**Delivery.** ``poll`` drains the queue into ``Poll.objects``; until ``commit`` the drained
records stay in flight and a repeated ``poll`` returns them again, so a failed cycle does not
lose them. Queued events live in memory only: a crash loses what was received since the last
poll (the logger does not resend either way).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import requests

from exporter.config import KServeSourceConfig, ModelConfig, SourceConfig
from exporter.foundation.clock import Clock
from exporter.foundation.http_messages import Listener, ListenerFactory, PostHandler, Response
from exporter.foundation.reject_reasons import (
    BODY_TOO_LARGE,
    INVALID_CONFIDENCE,
    INVALID_EVENT,
    INVALID_JSON,
    INVALID_PROBABILITIES,
    INVALID_REQUEST,
    INVALID_RESPONSE,
    INVALID_TIMESTAMP,
    MISSING_ID,
    MISSING_MODEL,
    QUEUE_FULL,
    UNSUPPORTED_CONTENT_TYPE,
    UNSUPPORTED_EVENT_TYPE,
)
from exporter.ingest.records import class_text
from exporter.ingest.timestamps import parse_timestamp
from exporter.sources import oip_binary
from exporter.sources.base import ModelLookup, Poll, Source, SourceContext
from exporter.sources.forwarder import Forwarder

log = logging.getLogger(__name__)

KSERVE_PATH = "/api/v1/kserve"
REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

# reasons (values of the `reason` label of mlmon_exporter_invalid_records_total): exporter.foundation.reject_reasons

DEFAULT_REQUEST_TTL = 60.0
DEFAULT_MAX_PENDING_REQUESTS = 10_000


_PREDICTION_KEYS = ("prediction", "label", "class", "predicted_class")
_CONFIDENCE_KEYS = ("confidence", "score", "probability")
# Knative pod names: <isvc>-predictor[-default]-00001-deployment-<hash>-<hash>; or a revision name.
_REVISION_RES = (
    re.compile(r"-(\d{5})-deployment(?:-|$)"),
    re.compile(r"-(?:predictor|transformer|explainer)(?:-default|-canary)?-(\d{5})$"),
)


class Rejected(Exception):
    """An event refused with 400: ``reason`` is the metric label, ``detail`` the explanation."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class CloudEvent:
    """One received event: its attributes (lowercase names, without ``ce-``) and decoded data."""

    id: str
    type: str
    attributes: dict[str, str]
    data: Any


@dataclass
class Prediction:
    prediction: Any
    confidence: float | None = None
    probabilities: dict[str, float] | None = None


# --- CloudEvents -----------------------------------------------------------------------------


def _json(raw: bytes | str, what: str) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not text.strip():
            raise ValueError("empty")
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise Rejected(INVALID_JSON, f"{what} is not JSON ({type(e).__name__})") from None


def parse_cloudevent(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """Decode a binary- or structured-mode CloudEvent; ``Rejected`` if it is not a KServe event.

    ``headers`` have lowercase names (as the server passes them).
    """
    mime = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if mime == STRUCTURED_CONTENT_TYPE:
        envelope = _json(body, "structured CloudEvent")
        if not isinstance(envelope, dict):
            raise Rejected(INVALID_EVENT, "a structured CloudEvent must be a JSON object")
        attrs = {k.lower(): _attr_text(v) for k, v in envelope.items()
                 if k not in ("data", "data_base64") and v is not None}
        if "data_base64" in envelope:
            try:
                raw = base64.b64decode(str(envelope["data_base64"]), validate=True)
            except (binascii.Error, ValueError):
                raise Rejected(INVALID_EVENT, "data_base64 is not base64") from None
            data = _json(raw, "data")
        else:
            data = envelope.get("data")
            if isinstance(data, str):
                data = _json(data, "data")
    elif mime.startswith("application/cloudevents"):
        raise Rejected(UNSUPPORTED_CONTENT_TYPE, f"{mime} (batch mode) is not supported")
    else:
        # the binding percent-encodes values; Go's SDK does not, and a raw value holds no '%'
        # escapes in practice (KServe's own values are URLs, names, JSON of header values)
        attrs = {k[3:].lower(): unquote(v) if "%" in v else v for k, v in headers.items()
                 if k[:3].lower() == "ce-"}
        data = None
    event_id = attrs.get("id", "").strip()
    if not event_id:
        raise Rejected(MISSING_ID, "the event has no id (ce-id)")
    event_type = attrs.get("type", "")
    if event_type not in (REQUEST_TYPE, RESPONSE_TYPE):
        raise Rejected(UNSUPPORTED_EVENT_TYPE,
                       f"type {event_type!r} is not {REQUEST_TYPE} or {RESPONSE_TYPE}")
    if mime != STRUCTURED_CONTENT_TYPE:
        data = decode_body(body, event_type, _binary_header_length(headers, attrs))
    return CloudEvent(id=event_id, type=event_type, attributes=attrs, data=data)


def decode_body(body: bytes, event_type: str, header_length: int | None = None) -> Any:
    """The event's data: JSON, or an OIP binary-extension message decoded into JSON tensors.

    ``header_length`` is ``Inference-Header-Content-Length`` when the sender passed it on; without
    it a body that is not JSON is tried as a JSON header followed by tensor bytes.
    """
    reason, key = (INVALID_REQUEST, "inputs") if event_type == REQUEST_TYPE else (INVALID_RESPONSE, "outputs")
    if header_length is None:
        try:
            return _json(body, "the body")
        except Rejected:
            header_length = oip_binary.json_prefix_length(body, key)
            if header_length is None:
                raise
    try:
        return oip_binary.decode(body, header_length, key)
    except oip_binary.BinaryTensorError as e:
        raise Rejected(reason, f"binary tensor data: {e}") from None


def _binary_header_length(headers: Mapping[str, str], attrs: Mapping[str, str]) -> int | None:
    """``Inference-Header-Content-Length`` of the POST, or forwarded in ``ce-metadata``."""
    raw = headers.get(oip_binary.HEADER) or _metadata_value(attrs.get("metadata"), oip_binary.HEADER)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit():
        raise Rejected(INVALID_EVENT, f"Inference-Header-Content-Length {raw[:32]!r} is not a number")
    return int(raw)


def _attr_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def revision_from_source(source: str) -> str | None:
    """The Knative revision number in a KServe ``ce-source`` (a pod or revision name), if any."""
    name = source.rstrip("/").rsplit("/", 1)[-1]
    for pattern in _REVISION_RES:
        m = pattern.search(name)
        if m:
            return m.group(1)
    return None


# --- bodies ----------------------------------------------------------------------------------


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


# --- the source ------------------------------------------------------------------------------


@dataclass
class _Queued:
    """One response event waiting for the next poll."""

    event_id: str
    records: list[dict[str, Any]]
    has_features: bool = False


@dataclass
class _Inflight:
    token: int
    objects: list[dict[str, Any]]
    rejected: Counter[str] = field(default_factory=Counter)


class KServeSource(Source):
    """A ``type: kserve`` source (``kind: predictions``).

    ``models`` looks a model's config up by name (pass ``Config.model``): it supplies the
    ``classes`` that probability rows map onto and the ``drift.features`` that request columns
    map onto; without it class ``i`` is ``str(i)`` and only named features are kept (the runtime
    passes, through ``build``, a lookup that follows config reloads). ``listen`` makes the
    listener ``start()`` opens when ``listen_address`` is set. ``clock`` gives arrival times.
    ``forward_session`` is the ``requests.Session`` the forwarder uses (tests).

    Without ``listen_address`` it serves ``POST /api/v1/kserve`` on the exporter's own server
    (``routes()``); with one, on that address only.
    """

    config_type = KServeSourceConfig
    config: KServeSourceConfig

    def __init__(self, config: KServeSourceConfig, models: ModelLookup | None = None, *,
                 listen: ListenerFactory | None = None,
                 clock: Clock = time.time, request_ttl: float = DEFAULT_REQUEST_TTL,
                 max_pending_requests: int = DEFAULT_MAX_PENDING_REQUESTS,
                 forward_session: requests.Session | None = None) -> None:
        super().__init__(config)
        if config.kind != "predictions":
            raise ValueError(f"source {config.name!r}: a kserve source receives predictions (kind: predictions)")
        self.models = models
        self._listen = listen
        self.clock = clock
        self.request_ttl = request_ttl
        self.max_pending_requests = max_pending_requests
        self.rejected_since_last_poll: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()  # events, records, late_requests, ... (for logs/tests)
        self._lock = threading.Lock()
        self._queue: deque[_Queued] = deque()
        self._queued: dict[str, _Queued] = {}  # ce-id -> its response event still in the queue
        self._pending: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self._drained: OrderedDict[str, float] = OrderedDict()  # ce-id -> until when a request is late
        self._inflight: _Inflight | None = None
        self._token = 0
        self._last_reject_log: dict[str, float] = {}
        self.forwarder = Forwarder(config.forward_to, forward_session) if config.forward_to else None
        self.listener: Listener | None = None
        self._listener_thread: threading.Thread | None = None
        self.health.up = True

    # --- receiving ---------------------------------------------------------------------------

    def handle(self, headers: dict[str, str], body: bytes) -> Response:
        """The POST handler: validate, enqueue, answer at once (never waits on the pipeline)."""
        if len(body) > self.config.max_body_bytes:
            self._reject(BODY_TOO_LARGE, f"body over {self.config.max_body_bytes} bytes")
            return Response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request body too large\n")
        now = self.clock()
        try:
            event = parse_cloudevent(headers, body)
            if event.type == RESPONSE_TYPE:
                resp = self._on_response(event, headers, now)
            else:
                resp = self._on_request(event, now)
        except Rejected as r:
            self._reject(r.reason, r.detail)
            resp = Response(HTTPStatus.BAD_REQUEST, f"{r.reason}: {r.detail}\n".encode())
        if self.forwarder is not None and resp.status != HTTPStatus.SERVICE_UNAVAILABLE:
            self.forwarder.submit(headers, body)
        return resp

    def _reject(self, reason: str, detail: str) -> None:
        with self._lock:
            self.rejected_since_last_poll[reason] += 1
        self._warn_limited(reason, "source %s: KServe event refused: %s: %s", self.name, reason, detail)

    def _warn_limited(self, key: str, msg: str, *args: Any) -> None:
        """Log at most once a minute per ``key``, so a flood of bad events stays readable."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_reject_log.get(key, -math.inf) < 60.0:
                return
            self._last_reject_log[key] = now
        log.warning(msg, *args)

    def _model(self, event: CloudEvent) -> str:
        model = self.config.model or event.attributes.get("inferenceservicename", "").strip()
        if not model:
            raise Rejected(MISSING_MODEL, "no ce-inferenceservicename and no model configured")
        return model

    def _model_config(self, model: str) -> ModelConfig | None:
        return self.models(model) if self.models is not None else None

    def _version(self, event: CloudEvent, headers: Mapping[str, str]) -> str | None:
        """The configured version (see the module doc); None lets the pipeline say ``unknown``."""
        value: str | None = self.config.model_version  # fixed: the pipeline would set it anyway
        wanted = self.config.version_from
        if value is None and wanted is not None:
            kind, key = wanted
            if kind == "metadata":
                value = _metadata_value(event.attributes.get("metadata"), key)
            elif kind == "annotation":
                value = _annotation_value(event.attributes.get("annotations"), key)
            elif kind == "header":
                value = headers.get(key.lower())
        elif value is None and self.config.version_header:
            key = self.config.version_header.lower()
            value = headers.get(key) or _metadata_value(event.attributes.get("metadata"), key)
        if value and value.strip():
            return value.strip()
        revision = revision_from_source(event.attributes.get("source", ""))
        if revision is None:
            self.counters["version_unknown"] += 1
            self._warn_limited("version_unknown", "source %s: %s; the version is 'unknown'",
                               self.name, self._version_hint(event))
        return revision

    def _version_hint(self, event: CloudEvent) -> str:
        wanted = self.config.version_from
        source = event.attributes.get("source", "")
        if wanted is None or wanted[0] == "source_revision":
            return (f"no version_from configured and ce-source {source[:80]!r} names no predictor revision "
                    "(KServe sends http://localhost:9081/): see 'Using with KServe' in the README")
        where = {"metadata": "ce-metadata (list it in the InferenceService's logger.metadataHeaders)",
                 "annotation": "ce-annotations (list it in the InferenceService's logger.metadataAnnotations)",
                 "header": "the POST's headers"}[wanted[0]]
        return f"event {event.id[:64]!r} has no {wanted[1]!r} in {where}"

    def _timestamp(self, event: CloudEvent, now: float) -> float:
        raw = event.attributes.get("time") or event.attributes.get("recordedtime")
        if not raw:
            return now
        t = parse_timestamp(raw.strip(), now)
        if math.isnan(t):
            raise Rejected(INVALID_TIMESTAMP, f"ce-time {raw[:64]!r} is not an RFC 3339 time")
        return t

    def _on_response(self, event: CloudEvent, headers: Mapping[str, str], now: float) -> Response:
        model = self._model(event)
        mc = self._model_config(model)
        preds = parse_response(event.data, mc.classes if mc is not None else None)
        ts = self._timestamp(event, now)
        version = self._version(event, headers)
        n = len(preds)
        records: list[dict[str, Any]] = []
        for i, p in enumerate(preds):
            rec: dict[str, Any] = {"id": event.id if n == 1 else f"{event.id}#{i}", "model": model,
                                   "timestamp": ts, "prediction": p.prediction}
            if version is not None:
                rec["model_version"] = version
            if p.confidence is not None:
                rec["confidence"] = p.confidence
            if p.probabilities:
                rec["probabilities"] = p.probabilities
            records.append(rec)
        queued = _Queued(event.id, records)
        with self._lock:
            if len(self._queue) >= self.config.queue_size:
                self.rejected_since_last_poll[QUEUE_FULL] += 1
                self.counters["queue_full"] += 1
                full = True
            else:
                full = False
                pending = self._pending.pop(event.id, None)
                if pending is not None:
                    self._attach(queued, pending[1])
                self._queue.append(queued)
                self._queued[event.id] = queued
                self.counters["responses"] += 1
                self.counters["records"] += n
        if full:
            self._warn_limited(QUEUE_FULL, "source %s: KServe event queue full (%d events); answering 503",
                               self.name, self.config.queue_size)
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, b"queue full, retry later\n",
                            headers=(("Retry-After", "1"),))
        return Response(HTTPStatus.OK, b"ok\n")

    def _on_request(self, event: CloudEvent, now: float) -> Response:
        model = self._model(event)
        if self.models is None:
            names: tuple[str, ...] | None = None
        else:
            mc = self.models(model)
            names = mc.drift.features if mc is not None else ()
        rows = parse_request(event.data, names)
        with self._lock:
            self.counters["requests"] += 1
            queued = self._queued.get(event.id)
            if queued is not None:
                if not queued.has_features:
                    self._attach(queued, rows)
            elif event.id in self._drained:
                self.counters["late_requests"] += 1
            elif any(rows):
                self._expire(now)
                self._pending[event.id] = (now + self.request_ttl, rows)
                self._pending.move_to_end(event.id)
                while len(self._pending) > self.max_pending_requests:
                    self._pending.popitem(last=False)
                    self.counters["evicted_requests"] += 1
        return Response(HTTPStatus.OK, b"ok\n")

    def _attach(self, queued: _Queued, rows: list[dict[str, Any]]) -> None:
        """Put a request's feature rows onto its response's records (lock held)."""
        if len(rows) != len(queued.records):
            self.counters["feature_row_mismatch"] += 1
            return
        for rec, feats in zip(queued.records, rows, strict=True):
            if feats:
                rec["features"] = feats
        queued.has_features = True

    def _expire(self, now: float) -> None:
        """Drop pending requests and late-request markers past their time (lock held)."""
        while self._pending:
            key, (until, _) = next(iter(self._pending.items()))
            if until > now:
                break
            del self._pending[key]
            self.counters["expired_requests"] += 1
        while self._drained:
            key, until = next(iter(self._drained.items()))
            if until > now:
                break
            del self._drained[key]

    # --- Source interface ------------------------------------------------------------------------

    def poll(self, now: float) -> Poll:
        with self._lock:
            self._expire(self.clock())
            if self._inflight is None:
                events = list(self._queue)
                self._queue.clear()
                until = self.clock() + self.request_ttl
                for ev in events:
                    if self._queued.get(ev.event_id) is ev:
                        del self._queued[ev.event_id]
                    self._drained[ev.event_id] = until
                    self._drained.move_to_end(ev.event_id)
                while len(self._drained) > self.max_pending_requests:
                    self._drained.popitem(last=False)
                self._token += 1
                self._inflight = _Inflight(self._token, [r for ev in events for r in ev.records],
                                           self.rejected_since_last_poll)
                self.rejected_since_last_poll = Counter()
            inflight = self._inflight
        self.health.polled_once = True
        if self.health.up:
            self.health.last_success = now
        return Poll(objects=list(inflight.objects), rejected=Counter(inflight.rejected), token=inflight.token)

    def commit(self, token: Any) -> None:
        with self._lock:
            if self._inflight is not None and self._inflight.token == token:
                self._inflight = None

    @property
    def queued_events(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def pending_requests(self) -> int:
        with self._lock:
            return len(self._pending)

    # --- where it receives ---------------------------------------------------------------------------

    @classmethod
    def build(cls, config: SourceConfig, context: SourceContext) -> KServeSource:
        if not isinstance(config, KServeSourceConfig):
            raise TypeError(f"source {config.name!r}: a kserve source needs a KServeSourceConfig, got {config!r}")
        return cls(config, context.models, listen=context.listen)

    def routes(self) -> Mapping[str, PostHandler]:
        """``POST /api/v1/kserve`` on the shared server, unless it has an address of its own."""
        return {} if self.config.listen_address else {KSERVE_PATH: self.handle}

    def max_request_bytes(self) -> int:
        return self.config.max_body_bytes if self.routes() else 0

    def start(self) -> None:
        """Open the own listener when ``listen_address`` is set and a ``listen`` factory was
        given (idempotent: a source kept across a reload keeps its listener)."""
        if self.config.listen_address and self._listen is not None:
            self.start_listener(self._listen)

    def start_listener(self, listen: ListenerFactory) -> tuple[str, int]:
        """Serve ``handle`` on ``listen_address`` (POST ``/api/v1/kserve`` and ``/``), without auth.

        ``listen`` makes the listener (the runtime passes ``server.receiver_listener``; the source
        does not import the HTTP server above it). Returns the bound (host, port). Raises
        ``OSError`` when the address cannot be bound (the source is marked down and the error
        counted first), ``ValueError`` without an address.
        """
        if self.listener is not None:
            host, port = self.listener.server_address[:2]
            return str(host), int(port)
        if not self.config.listen_address:
            raise ValueError(f"source {self.name!r}: no listen_address configured")
        try:
            server = listen(self.config.listen_address, self.config.max_body_bytes)
        except OSError as e:
            self.health.up = False
            self.health.errors_total += 1
            log.error("source %s: cannot listen on %s: %s", self.name, self.config.listen_address, e)
            raise
        server.post_handlers[KSERVE_PATH] = self.handle
        server.post_handlers["/"] = self.handle
        self.listener = server
        self._listener_thread = server.serve_in_thread()
        host, port = server.server_address[:2]
        log.info("source %s: receiving KServe events on %s:%s", self.name, host, port)
        return str(host), int(port)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.shutdown()
            self.listener.server_close()
            if self._listener_thread is not None:
                self._listener_thread.join(timeout=5)
            self.listener = None
        if self.forwarder is not None:
            self.forwarder.close()


def _json_object(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _metadata_value(raw: str | None, key: str) -> str | None:
    """A header from KServe's ``ce-metadata`` (JSON: header name -> list of values; the first
    value; names case-insensitive, as HTTP header names are)."""
    meta = _json_object(raw)
    if meta is None:
        return None
    key = key.lower()
    for k, v in meta.items():
        if k.lower() == key:
            if isinstance(v, list):
                v = v[0] if v else None
            return v if isinstance(v, str) else None
    return None


def _annotation_value(raw: str | None, key: str) -> str | None:
    """An annotation from KServe's ``ce-annotations`` (JSON: annotation key -> value; exact key)."""
    annotations = _json_object(raw)
    value = annotations.get(key) if annotations is not None else None
    return value if isinstance(value, str) else None
