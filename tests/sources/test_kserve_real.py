"""KServe events as KServe really sends them, and the CloudEvents SDK as a real client.

Replays are written header by header as KServe's logger (``pkg/logger``, cloudevents sdk-go v2)
puts them on the wire (see /work/shared/reference/kserve-logger-real.md): Go's canonical header
names (``Ce-Id``, ``Ce-Specversion``, ``Ce-Inferenceservicename``), ``Ce-Source:
http://localhost:9081/`` (the agent's pod has no name when it is injected), an empty
``Ce-Endpoint``, ``Ce-Metadata: {}`` unless ``logger.metadataHeaders`` is set, nanosecond
``Ce-Time``, and the inference request's own Content-Type (JSON, missing, or curl's form
default). They go over a raw ``http.client`` connection so nothing rewrites them.
"""

from __future__ import annotations

import http.client
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import requests

from exporter.config import Config, ConfigError, GlobalConfig, ModelConfig, SourceConfig, Window, parse_config
from exporter.core.pipeline import Pipeline
from exporter.http.server import ExporterHTTPServer, RenderedSnapshot
from exporter.ingest.timestamps import parse_timestamp
from exporter.sources.kserve import KSERVE_PATH, REQUEST_TYPE, RESPONSE_TYPE, KServeSource
from tests.helpers import FakeClock
from tests.sources.kserve_models import CONFIG, IRIS, T0, source_config

KSERVE_SOURCE = "http://localhost:9081/"  # what KServe really sends as Ce-Source
CE_TIME = "2026-01-01T00:00:10.123456789Z"


def kserve_headers(ce_type: str, ce_id: str, *, isvc: str = "iris", content_type: str | None = "application/json",
                   metadata: str = "{}", annotations: str | None = None,
                   source: str = KSERVE_SOURCE) -> list[tuple[str, str]]:
    """The headers of one logger POST, in Go's casing and order of sdk-go's binary writer."""
    h = [("Ce-Id", ce_id), ("Ce-Source", source), ("Ce-Specversion", "1.0"), ("Ce-Time", CE_TIME),
         ("Ce-Type", ce_type), ("Ce-Component", "predictor"), ("Ce-Endpoint", ""),
         ("Ce-Inferenceservicename", isvc), ("Ce-Metadata", metadata), ("Ce-Namespace", "models"),
         ("Ce-Recordedtime", "2026-01-01T00:00:10.200000000Z")]
    if annotations is not None:
        h.append(("Ce-Annotations", annotations))
    if content_type is not None:
        h.append(("Content-Type", content_type))
    return h


@dataclass
class Wire:
    """A KServe source behind a real server; ``post`` sends headers exactly as given."""

    source: KServeSource
    server: ExporterHTTPServer

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def post(self, headers: list[tuple[str, str]], body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.putrequest("POST", KSERVE_PATH, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def drain(self) -> list[dict[str, Any]]:
        poll = self.source.poll(T0 + 30)
        self.source.commit(poll.token)
        return poll.objects


@pytest.fixture
def wire() -> Iterator[Any]:
    made: list[Wire] = []

    def make(cfg: SourceConfig | None = None) -> Wire:
        src = KServeSource(cfg or source_config(), CONFIG.model, clock=FakeClock(T0 + 20))
        server = ExporterHTTPServer(("127.0.0.1", 0), RenderedSnapshot())
        server.post_handlers[KSERVE_PATH] = src.handle
        server.serve_in_thread()
        w = Wire(src, server)
        made.append(w)
        return w

    yield make
    for w in made:
        w.server.shutdown()
        w.server.server_close()
        w.source.close()


# --- the version, for every way of configuring it ------------------------------------------------------

V1_REQUEST = {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
V1_RESPONSE = {"predictions": [[0.9, 0.05, 0.05], [0.1, 0.2, 0.7]]}
V2_REQUEST = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                          "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}
V2_RESPONSE = {"model_name": "iris", "id": "x", "outputs": [
    {"name": "output-0", "shape": [2, 3], "datatype": "FP32", "data": [0.9, 0.05, 0.05, 0.1, 0.2, 0.7]}]}

# (config keys, metadata header value, annotations header value, ce-source, expected version)
VERSION_CASES = {
    "ce-metadata key": ({"version_from": ("metadata", "X-Model-Version")},
                        '{"X-Model-Version":["7"],"X-Request-Id":["abc"]}', None, KSERVE_SOURCE, "7"),
    "ce-metadata key, other casing": ({"version_from": ("metadata", "x-model-version")},
                                      '{"X-Model-Version":["7"]}', None, KSERVE_SOURCE, "7"),
    "ce-annotations key": ({"version_from": ("annotation", "serving.kserve.io/model-version")}, "{}",
                           '{"serving.kserve.io/model-version":"canary-8"}', KSERVE_SOURCE, "canary-8"),
    "fixed model_version": ({"model_version": "3"}, "{}", None, KSERVE_SOURCE, "3"),
    "revision in ce-source": ({}, "{}", None,
                              "http://localhost:9081/iris-predictor-00004-deployment-6c9f7d8b5d-x7k2p", "00004"),
    "nothing configured": ({}, "{}", None, KSERVE_SOURCE, None),
    "key missing from the event": ({"version_from": ("metadata", "X-Model-Version")}, "{}", None,
                                   KSERVE_SOURCE, None),
}


@pytest.mark.parametrize("bodies", ["v1", "v2"])
@pytest.mark.parametrize("content_type", ["application/json", None, "application/x-www-form-urlencoded"])
@pytest.mark.parametrize("case", list(VERSION_CASES))
def test_replayed_kserve_events_get_the_configured_version(wire: Any, case: str, content_type: str | None,
                                                           bodies: str) -> None:
    keys, metadata, annotations, source, expected = VERSION_CASES[case]
    w = wire(source_config(**keys))
    request, response = (V1_REQUEST, V1_RESPONSE) if bodies == "v1" else (V2_REQUEST, V2_RESPONSE)

    def send(ce_type: str, body: Any) -> None:
        status, text = w.post(kserve_headers(ce_type, "batch-1", content_type=content_type, metadata=metadata,
                                             annotations=annotations, source=source),
                              json.dumps(body).encode())
        assert (status, text) == (200, b"ok\n")

    send(RESPONSE_TYPE, response)  # the response first: the logger's two events race
    send(REQUEST_TYPE, request)
    recs = w.drain()
    assert [r["id"] for r in recs] == ["batch-1#0", "batch-1#1"]
    assert [r.get("model_version") for r in recs] == [expected, expected]
    assert [r["prediction"] for r in recs] == ["setosa", "virginica"]
    assert [r["confidence"] for r in recs] == pytest.approx([0.9, 0.7])
    assert recs[1]["features"] == pytest.approx({"sepal_length": 6.7, "sepal_width": 3.0,
                                                 "petal_length": 5.2, "petal_width": 2.3})
    assert recs[0]["timestamp"] == parse_timestamp(CE_TIME, 0.0)
    assert recs[0]["timestamp"] == pytest.approx(T0 + 10.123456789, abs=1e-6)
    assert w.source.counters["version_unknown"] == (1 if expected is None and "model_version" not in keys else 0)


def test_canary_and_stable_stay_two_series_through_the_pipeline(wire: Any) -> None:
    """The bug this replaces: with ce-source http://localhost:9081/ both merged into `unknown`."""
    w = wire(source_config(version_from=("annotation", "serving.kserve.io/revision")))
    for i, rev in enumerate(["stable", "canary", "stable"]):
        status, _ = w.post(kserve_headers(RESPONSE_TYPE, f"r{i}", annotations=json.dumps(
            {"serving.kserve.io/revision": rev})), json.dumps({"predictions": ["setosa"]}).encode())
        assert status == 200
    cfg = Config(global_=GlobalConfig(windows=(Window("1h", 3600.0),)),
                 models=(ModelConfig(name="iris", task="multiclass", classes=IRIS),))
    clock = FakeClock(T0 + 30)
    p = Pipeline(cfg, clock, sources=[w.source])
    p.run_cycle()
    totals = {v: int(vs.predicted_total.sum()) for (_, v), vs in p.versions.items()}
    assert totals == {"stable": 2, "canary": 1}


def test_without_version_from_a_warning_names_the_fix(wire: Any, caplog: pytest.LogCaptureFixture) -> None:
    w = wire()
    for i in range(3):
        assert w.post(kserve_headers(RESPONSE_TYPE, f"u{i}"), b'{"predictions": [0]}')[0] == 200
    assert w.source.counters["version_unknown"] == 3
    warnings = [r.getMessage() for r in caplog.records if "version is 'unknown'" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited
    assert "no version_from configured" in warnings[0] and "Using with KServe" in warnings[0]


# --- percent-encoding and header names -----------------------------------------------------------------


def test_percent_encoded_and_lowercase_headers_decode(wire: Any) -> None:
    w = wire(source_config(version_from=("metadata", "X-Model-Version")))
    headers = [(k.lower(), v) for k, v in kserve_headers(RESPONSE_TYPE, "order%2F81", isvc="ir%69s")
               if k != "Ce-Metadata"]
    headers.append(("CE-METADATA", "{%22X-Model-Version%22:[%22v%207%22]}"))
    assert w.post(headers, b'{"predictions": [2]}')[0] == 200
    (rec,) = w.drain()
    assert (rec["id"], rec["model"], rec["model_version"]) == ("order/81", "iris", "v 7")
    assert rec["prediction"] == 2


# --- the CloudEvents SDK as a client -------------------------------------------------------------------


def _attributes(ce_type: str, ce_id: str) -> dict[str, Any]:
    return {"id": ce_id, "type": ce_type, "source": KSERVE_SOURCE, "specversion": "1.0",
            "inferenceservicename": "iris", "namespace": "models", "component": "predictor", "endpoint": "",
            "metadata": '{"X-Model-Version":["7"]}', "annotations": '{"serving.kserve.io/model-version":"9"}'}


def _core_message(mode: str, ce_type: str, ce_id: str, data: Any) -> tuple[dict[str, str], bytes]:
    from cloudevents.core.bindings.http import to_binary, to_structured
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    event = CloudEvent(attributes={**_attributes(ce_type, ce_id), "datacontenttype": "application/json"}, data=data)
    message = (to_binary if mode == "binary" else to_structured)(event, JSONFormat())
    return dict(message.headers), message.body


def _legacy_message(mode: str, ce_type: str, ce_id: str, data: Any) -> tuple[dict[str, str], bytes]:
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent

    event = CloudEvent(_attributes(ce_type, ce_id), data)
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return dict(headers), body if isinstance(body, bytes) else str(body).encode()


@pytest.mark.parametrize("api", ["core", "legacy"])
@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("version_from", [("metadata", "X-Model-Version"),
                                          ("annotation", "serving.kserve.io/model-version")])
def test_cloudevents_sdk_client(wire: Any, api: str, mode: str, version_from: tuple[str, str]) -> None:
    w = wire(source_config(version_from=version_from))
    make = _core_message if api == "core" else _legacy_message
    url = f"http://127.0.0.1:{w.port}{KSERVE_PATH}"
    for ce_type, data in ((REQUEST_TYPE, {"instances": [[5.1, 3.5, 1.4, 0.2]]}),
                          (RESPONSE_TYPE, {"predictions": [[0.2, 0.7, 0.1]]})):
        headers, body = make(mode, ce_type, "sdk-1", data)
        if api == "core" and mode == "binary":  # what issue 14 is about: the core API encodes
            assert "%22" in headers["ce-metadata"]
        r = requests.post(url, data=body, headers=headers, timeout=5)
        assert r.status_code == 200, r.text
    (rec,) = w.drain()
    assert rec["id"] == "sdk-1" and rec["model"] == "iris"
    assert rec["model_version"] == ("7" if version_from[0] == "metadata" else "9")
    assert (rec["prediction"], rec["confidence"]) == ("versicolor", pytest.approx(0.7))
    assert rec["features"] == pytest.approx({"sepal_length": 5.1, "sepal_width": 3.5,
                                             "petal_length": 1.4, "petal_width": 0.2})


# --- the Open Inference Protocol's binary tensor extension ----------------------------------------------


def binary_message(tensors_key: str, tensors: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, int]:
    """(body, header length) as a client of the extension writes it."""
    header = {tensors_key: [{"name": n, "datatype": dt, "shape": shape, "parameters": {"binary_data_size": len(raw)}}
                            for n, dt, shape, raw in tensors]}
    head = json.dumps(header).encode()
    return head + b"".join(raw for *_, raw in tensors), len(head)


def bytes_tensor(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


@pytest.mark.parametrize("dtype,np_type", [("FP32", "<f4"), ("FP64", "<f8"), ("FP16", "<f2")])
@pytest.mark.parametrize("with_length_header", [False, True])
def test_binary_probabilities(wire: Any, dtype: str, np_type: str, with_length_header: bool) -> None:
    w = wire()
    probs = np.array([[0.75, 0.125, 0.125], [0.25, 0.25, 0.5]], dtype=np_type)  # exact in every width
    body, n = binary_message("outputs", [("probs", dtype, [2, 3], probs.tobytes())])
    meta = json.dumps({"Inference-Header-Content-Length": [str(n)]}) if with_length_header else "{}"
    status, text = w.post(kserve_headers(RESPONSE_TYPE, "b1", content_type="application/octet-stream",
                                         metadata=meta), body)
    assert (status, text) == (200, b"ok\n")
    recs = w.drain()
    assert [(r["prediction"], r["confidence"]) for r in recs] == [("setosa", 0.75), ("virginica", 0.5)]
    assert recs[1]["probabilities"] == {"setosa": 0.25, "versicolor": 0.25, "virginica": 0.5}


@pytest.mark.parametrize("dtype", ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"])
def test_binary_integer_labels_and_features(wire: Any, dtype: str) -> None:
    w = wire()
    np_type = {"INT": "<i", "UINT": "<u"}[dtype.rstrip("0123456789")] + str(int(dtype.lstrip("UINT")) // 8)
    features = np.array([[5, 3, 1, 0], [6, 3, 5, 2], [7, 2, 6, 2]], dtype=np_type)
    req, _ = binary_message("inputs", [("input-0", dtype, [3, 4], features.tobytes())])
    resp, _ = binary_message("outputs", [("label", dtype, [3], np.array([0, 2, 1], dtype=np_type).tobytes())])
    assert w.post(kserve_headers(REQUEST_TYPE, "i1", content_type=None), req)[0] == 200
    assert w.post(kserve_headers(RESPONSE_TYPE, "i1", content_type=None), resp)[0] == 200
    recs = w.drain()
    assert [r["prediction"] for r in recs] == [0, 2, 1]
    assert recs[1]["features"] == {"sepal_length": 6, "sepal_width": 3, "petal_length": 5, "petal_width": 2}


def test_binary_bool_and_bytes_mixed_with_json_tensors(wire: Any) -> None:
    w = wire()
    header = {"outputs": [
        {"name": "label", "datatype": "BYTES", "shape": [3, 1], "parameters": {"binary_data_size": 0}},
        {"name": "flag", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}},
        {"name": "score", "datatype": "FP64", "shape": [3, 3], "data": [0.8, 0.1, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.8]},
    ]}
    labels = bytes_tensor(["setosa", "virginica", "versicolor"])
    header["outputs"][0]["parameters"]["binary_data_size"] = len(labels)  # type: ignore[index]
    head = json.dumps(header).encode()
    assert w.post(kserve_headers(RESPONSE_TYPE, "m1"), head + labels + bytes([1, 0, 1]))[0] == 200
    recs = w.drain()
    assert [r["prediction"] for r in recs] == ["setosa", "virginica", "versicolor"]
    # the confidence is the probability of the label in the score row, not its max
    assert [r["confidence"] for r in recs] == [0.8, 0.1, 0.1]

    from exporter.sources import oip_binary

    decoded = oip_binary.decode(head + labels + bytes([1, 0, 1]), len(head), "outputs")
    assert decoded["outputs"][1]["data"] == [True, False, True]


BAD_BINARY = {
    "truncated": lambda b, n: (b[:-3], n),
    "extra bytes": lambda b, n: (b + b"\x00\x00\x00\x00", n),
    "size not a whole number of FP32": lambda b, n: (b.replace(b'"binary_data_size": 24', b'"binary_data_size": 23'),
                                                     n),
    "header length past the body": lambda b, n: (b, len(b) + 10),
    "header length inside the JSON": lambda b, n: (b, n - 5),
    "shape disagrees": lambda b, n: (b.replace(b"[2, 3]", b"[3, 3]"), n),
}


@pytest.mark.parametrize("case", list(BAD_BINARY))
def test_broken_binary_body_is_one_invalid_record_never_5xx(wire: Any, case: str) -> None:
    w = wire()
    probs = np.array([[0.75, 0.125, 0.125], [0.25, 0.25, 0.5]], dtype="<f4")
    body, n = binary_message("outputs", [("probs", "FP32", [2, 3], probs.tobytes())])
    body, n = BAD_BINARY[case](body, n)
    meta = json.dumps({"Inference-Header-Content-Length": [str(n)]})
    status, text = w.post(kserve_headers(RESPONSE_TYPE, "bad", metadata=meta), body)
    assert status == 400, text
    assert text.startswith(b"invalid_response: binary tensor data: "), text
    poll = w.source.poll(T0 + 30)
    assert poll.objects == [] and dict(poll.rejected) == {"invalid_response": 1}


def test_broken_bytes_tensor_without_length_header(wire: Any) -> None:
    w = wire()
    raw = bytes_tensor(["setosa"])[:-2]  # the element runs past the tensor
    body, _ = binary_message("outputs", [("label", "BYTES", [1], raw)])
    status, text = w.post(kserve_headers(RESPONSE_TYPE, "bad2"), body)
    assert status == 400 and b"BYTES element of 6 bytes runs past the tensor" in text
    assert dict(w.source.poll(T0 + 30).rejected) == {"invalid_response": 1}


def test_not_json_and_not_binary_is_still_invalid_json(wire: Any) -> None:
    w = wire()
    status, text = w.post(kserve_headers(RESPONSE_TYPE, "x"), b"\xff\xfe not json")
    assert status == 400 and text.startswith(b"invalid_json: ")


# --- configuration -------------------------------------------------------------------------------------

BASE = {"models": [{"name": "iris"}], "sources": [{"name": "k", "kind": "predictions", "type": "kserve",
                                                    "model_from": "inferenceservicename"}]}


@pytest.mark.parametrize("raw,expected", [
    ({"metadata": "X-Model-Version"}, ("metadata", "X-Model-Version")),
    ({"annotation": "serving.kserve.io/model-version"}, ("annotation", "serving.kserve.io/model-version")),
    ({"header": "X-Version"}, ("header", "X-Version")),
    ("source_revision", ("source_revision", "")),
])
def test_version_from_config(raw: Any, expected: tuple[str, str]) -> None:
    cfg = json.loads(json.dumps(BASE))
    cfg["sources"][0]["version_from"] = raw
    assert parse_config(cfg).sources[0].version_from == expected


@pytest.mark.parametrize("raw,extra,message", [
    ({}, {}, "sources[0].version_from: must set exactly one of metadata, annotation, header, got none"),
    ({"metadata": "a", "annotation": "b"}, {},
     "sources[0].version_from: must set exactly one of metadata, annotation, header, got metadata, annotation"),
    ({"metadata": "X Version"}, {}, 'sources[0].version_from.metadata: must be an HTTP header name, got "X Version"'),
    ({"annotation": "not a key"}, {}, "sources[0].version_from.annotation: must be a Kubernetes annotation key"),
    ({"label": "x"}, {}, "sources[0].version_from.label: unknown key"),
    ("revision", {}, "sources[0].version_from: must be source_revision, or a mapping with one of metadata"),
    ({"metadata": "X"}, {"model_version": "3"},
     "sources[0].model_version: cannot be combined with version_from; set only one"),
    ({"metadata": "X"}, {"version_header": "X"},
     "sources[0].version_from: cannot be combined with version_header; set only one"),
])
def test_version_from_config_errors(raw: Any, extra: dict[str, Any], message: str) -> None:
    cfg = json.loads(json.dumps(BASE))
    cfg["sources"][0].update(version_from=raw, **extra)
    with pytest.raises(ConfigError) as info:
        parse_config(cfg)
    assert message in str(info.value)
