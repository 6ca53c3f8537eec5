"""KServe's CloudEvents as they arrive over HTTP: binary or structured mode, percent-decoded
``ce-*`` attributes, the body (JSON or the Open Inference Protocol's binary tensors), and the
version hints an event carries (``ce-metadata``, ``ce-annotations``, the revision in ``ce-source``).
What the payload says is read by ``payloads``."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from exporter.foundation.reject_reasons import (
    INVALID_EVENT,
    INVALID_JSON,
    INVALID_REQUEST,
    INVALID_RESPONSE,
    MISSING_ID,
    UNSUPPORTED_CONTENT_TYPE,
    UNSUPPORTED_EVENT_TYPE,
)
from exporter.sources import oip_binary

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

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
    raw = headers.get(oip_binary.HEADER) or metadata_value(attrs.get("metadata"), oip_binary.HEADER)
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




def _json_object(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def metadata_value(raw: str | None, key: str) -> str | None:
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


def annotation_value(raw: str | None, key: str) -> str | None:
    """An annotation from KServe's ``ce-annotations`` (JSON: annotation key -> value; exact key)."""
    annotations = _json_object(raw)
    value = annotations.get(key) if annotations is not None else None
    return value if isinstance(value, str) else None
