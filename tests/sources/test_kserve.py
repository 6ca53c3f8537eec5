"""KServeSource with real HTTP POSTs in KServe's payload-logger formats.

Events are posted to an ExporterHTTPServer with the source's handler registered, exactly as the
KServe agent sends them (binary-mode CloudEvents, v1 and Open Inference Protocol v2 bodies), and
then drained through the real pipeline together with labels from a file.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from exporter.config import (
    FileSourceConfig,
    KServeSourceConfig,
)
from exporter.core.pipeline import Pipeline
from exporter.http.server import ExporterHTTPServer, RenderedSnapshot, receiver_listener
from exporter.ingest.batches import PredictionBatch
from exporter.ingest.records import RecordSpec, parse_predictions
from exporter.report import catalogue
from exporter.report.snapshot import render
from exporter.sources.file_tail import FileTailSource
from exporter.sources.forwarder import Forwarder, forwardable_headers
from exporter.sources.kserve import (
    KSERVE_PATH,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    KServeSource,
    Rejected,
    parse_request,
    parse_response,
    parse_tensor,
    revision_from_source,
)
from tests.helpers import FakeClock as Clock
from tests.sources.kserve_models import CONFIG, IRIS, IRIS_FEATURES, T0, source_config


@dataclass
class Receiver:
    source: KServeSource
    server: ExporterHTTPServer
    clock: Clock
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{KSERVE_PATH}"

    def post(self, ce_type: str, body: Any, *, ce_id: str, isvc: str = "iris", revision: str = "00001",
             raw: bytes | None = None, **headers: str | None) -> requests.Response:
        h: dict[str, str | None] = {
            "Content-Type": "application/json",
            "Ce-Specversion": "1.0",
            "Ce-Id": ce_id,
            "Ce-Type": ce_type,
            # a sender that names the pod (real KServe sends http://localhost:9081/: tests/sources/test_kserve_real.py)
            "Ce-Source": f"http://localhost:9081/{isvc}-predictor-{revision}-deployment-6c9f7d8b5d-x7k2p",
            "Ce-Inferenceservicename": isvc,
            "Ce-Namespace": "models",
            "Ce-Component": "predictor",
            "Ce-Endpoint": "",
            "Ce-Time": "2026-01-01T00:00:10.123456789Z",
            "Ce-Metadata": "{}",
        }
        for k, v in headers.items():
            h[k.replace("_", "-")] = v
        data = raw if raw is not None else json.dumps(body).encode()
        return self.session.post(self.url, data=data, headers={k: v for k, v in h.items() if v is not None},
                                 timeout=5)

    def request(self, body: Any, ce_id: str, **kw: Any) -> requests.Response:
        return self.post(REQUEST_TYPE, body, ce_id=ce_id, **kw)

    def response(self, body: Any, ce_id: str, **kw: Any) -> requests.Response:
        return self.post(RESPONSE_TYPE, body, ce_id=ce_id, **kw)


def start_server(handler: Any, max_body_bytes: int = 10 << 20) -> ExporterHTTPServer:
    server = ExporterHTTPServer(("127.0.0.1", 0), RenderedSnapshot(), max_body_bytes=max_body_bytes)
    server.post_handlers[KSERVE_PATH] = handler
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def make_receiver() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(cfg: KServeSourceConfig | None = None, *, server_limit: int = 10 << 20, **kw: Any) -> Receiver:
        clock = Clock(T0 + 20)
        src = KServeSource(cfg or source_config(), CONFIG.model, clock=clock, **kw)
        r = Receiver(src, start_server(src.handle, server_limit), clock)
        made.append(r)
        return r

    yield make
    for r in made:
        r.server.shutdown()
        r.server.server_close()
        r.source.close()
        r.session.close()


def records(src: KServeSource, now: float = T0 + 30) -> list[dict[str, Any]]:
    poll = src.poll(now)
    src.commit(poll.token)
    return poll.objects


# --- formats, one by one -------------------------------------------------------------------------------


def test_v1_response_alone_records_the_prediction(make_receiver: Any) -> None:
    r = make_receiver()
    resp = r.response({"predictions": [1]}, "a1", isvc="sentiment")
    assert resp.status_code == 200  # KServe's logger treats anything but 200 as an error
    assert records(r.source) == [{"id": "a1", "model": "sentiment", "model_version": "00001",
                                  "timestamp": T0 + 10.123456789, "prediction": 1}]


def test_v1_batch_with_request_first_maps_list_rows_to_features(make_receiver: Any) -> None:
    r = make_receiver()
    rows = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
    assert r.request({"instances": rows}, "b1").status_code == 200
    assert r.response({"predictions": ["setosa", "versicolor", "virginica"]}, "b1").status_code == 200
    got = records(r.source)
    assert [g["id"] for g in got] == ["b1#0", "b1#1", "b1#2"]
    assert [g["prediction"] for g in got] == list(IRIS)
    assert got[1]["features"] == dict(zip(IRIS_FEATURES, rows[1], strict=True))
    assert r.source.pending_requests == 0


def test_response_before_request_still_gets_features_until_the_next_poll(make_receiver: Any) -> None:
    r = make_receiver()
    r.response({"predictions": [[0.1, 0.9]]}, "c1", isvc="sentiment")
    r.request({"instances": [{"length": 42, "lang": "de", "raw_text": "..." * 3, "nested": {"x": 1}}]},
              "c1", isvc="sentiment")
    [rec] = records(r.source)
    assert rec["id"] == "c1" and rec["prediction"] == "1" and rec["confidence"] == 0.9
    assert rec["probabilities"] == {"0": 0.1, "1": 0.9}
    assert rec["features"] == {"length": 42, "lang": "de"}  # only the model's drift features, scalars

    # a response drained by a poll: its late request adds nothing and is not kept
    r.response({"predictions": [0]}, "c2", isvc="sentiment")
    [rec2] = records(r.source)
    assert r.request({"instances": [{"length": 1, "lang": "en"}]}, "c2", isvc="sentiment").status_code == 200
    assert "features" not in rec2 and r.source.pending_requests == 0
    assert r.source.counters["late_requests"] == 1
    assert records(r.source) == []


def test_v2_probability_output_and_input_tensor(make_receiver: Any) -> None:
    r = make_receiver()
    req = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                       "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.1, 5.6, 2.4]}]}
    resp = {"model_name": "iris", "id": "d1", "outputs": [
        {"name": "predict_proba", "shape": [2, 3], "datatype": "FP32", "data": [[0.9, 0.05, 0.05], [0.1, 0.2, 0.7]]}]}
    assert r.response(resp, "d1").status_code == 200
    assert r.request(req, "d1").status_code == 200  # out of order, before the poll
    got = records(r.source)
    assert [(g["id"], g["prediction"], g["confidence"]) for g in got] == [("d1#0", "setosa", 0.9),
                                                                         ("d1#1", "virginica", 0.7)]
    assert got[1]["probabilities"] == {"setosa": 0.1, "versicolor": 0.2, "virginica": 0.7}
    assert got[1]["features"] == {"sepal_length": 6.7, "sepal_width": 3.1, "petal_length": 5.6, "petal_width": 2.4}


def test_v2_label_output_with_probabilities_and_named_input_columns(make_receiver: Any) -> None:
    r = make_receiver()
    r.request({"inputs": [
        {"name": "length", "shape": [2], "datatype": "INT64", "data": [12, 80]},
        {"name": "lang", "shape": [2, 1], "datatype": "BYTES", "data": [["en"], ["fr"]]},
    ]}, "e1", isvc="sentiment")
    r.response({"outputs": [
        {"name": "label", "shape": [2, 1], "datatype": "INT64", "data": [1, 1]},
        {"name": "probabilities", "shape": [2, 2], "datatype": "FP64", "data": [0.3, 0.7, 0.6, 0.4]},
    ]}, "e1", isvc="sentiment")
    got = records(r.source)
    # the label output wins; its confidence is the probability of that class (not the max)
    assert [(g["prediction"], g["confidence"]) for g in got] == [(1, 0.7), (1, 0.4)]
    assert [g["features"] for g in got] == [{"length": 12, "lang": "en"}, {"length": 80, "lang": "fr"}]


def test_structured_mode(make_receiver: Any) -> None:
    r = make_receiver()
    event = {"specversion": "1.0", "id": "f1", "type": RESPONSE_TYPE, "source": "sentiment-predictor-00003",
             "inferenceservicename": "sentiment", "time": "2026-01-01T00:00:05Z",
             "datacontenttype": "application/json", "data": {"predictions": [0]}}
    resp = r.session.post(r.url, data=json.dumps(event),
                          headers={"Content-Type": "application/cloudevents+json; charset=utf-8"})
    assert resp.status_code == 200
    import base64
    event2 = dict(event, id="f2", data_base64=base64.b64encode(b'{"predictions": [1]}').decode())
    del event2["data"]
    assert r.session.post(r.url, data=json.dumps(event2),
                          headers={"Content-Type": "application/cloudevents+json"}).status_code == 200
    got = records(r.source)
    assert [(g["id"], g["model_version"], g["timestamp"], g["prediction"]) for g in got] == [
        ("f1", "00003", T0 + 5, 0), ("f2", "00003", T0 + 5, 1)]


def test_version_header_from_post_or_ce_metadata(make_receiver: Any) -> None:
    r = make_receiver(source_config(version_header="X-Model-Version"))
    r.response({"predictions": [1]}, "g1", isvc="sentiment", **{"X-Model-Version": "v7"})
    r.response({"predictions": [1]}, "g2", isvc="sentiment", Ce_Metadata='{"X-Model-Version": ["v8"]}')
    r.response({"predictions": [1]}, "g3", isvc="sentiment")  # absent: the revision
    assert [g["model_version"] for g in records(r.source)] == ["v7", "v8", "00001"]


def test_timestamp_falls_back_to_arrival(make_receiver: Any) -> None:
    r = make_receiver()
    r.response({"predictions": [1]}, "h1", isvc="sentiment", Ce_Time=None)
    r.response({"predictions": [1]}, "h2", isvc="sentiment", Ce_Time=None,
               Ce_Recordedtime="2026-01-01T00:00:07Z")
    got = records(r.source)
    assert [g["timestamp"] for g in got] == [r.clock.t, T0 + 7]


def test_fixed_model_and_unknown_version(make_receiver: Any) -> None:
    r = make_receiver(source_config(model="sentiment", model_from=None))
    r.response({"predictions": [0]}, "i1", isvc="whatever", revision="abc")
    [rec] = records(r.source)
    assert rec["model"] == "sentiment" and "model_version" not in rec
    batch = parse_predictions([], RecordSpec.from_source(r.source.config), T0, [rec]).batch
    assert isinstance(batch, PredictionBatch)
    assert list(batch.model_version) == ["unknown"]


# --- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "reason"), [
    ({"raw": b"{not json"}, "invalid_json"),
    ({"raw": b""}, "invalid_json"),
    ({"Ce_Id": ""}, "missing_id"),
    ({"Ce_Type": "com.example.other"}, "unsupported_event_type"),
    ({"Ce_Inferenceservicename": ""}, "missing_model"),
    ({"Ce_Time": "yesterday"}, "invalid_timestamp"),
    ({"body": {"result": [1]}}, "invalid_response"),
    ({"body": {"predictions": 1}}, "invalid_response"),
    ({"body": {"predictions": [[0.5, 0.5]]}}, "invalid_probabilities"),  # iris has 3 classes
    ({"body": {"predictions": [[0.5, 1.5, 0.0]]}}, "invalid_probabilities"),
    ({"body": {"predictions": [None]}}, "invalid_response"),
    ({"body": {"predictions": [{"label": "setosa", "confidence": 2}]}}, "invalid_confidence"),
    ({"body": {"outputs": [{"name": "p", "shape": [2, 3], "datatype": "FP32", "data": [0.1, 0.9]}]}},
     "invalid_response"),
    ({"body": {"outputs": []}}, "invalid_response"),
    ({"Content_Type": "application/cloudevents-batch+json"}, "unsupported_content_type"),
])
def test_malformed_events_get_400_with_reason_and_are_counted(make_receiver: Any, kw: dict[str, Any],
                                                              reason: str) -> None:
    r = make_receiver()
    body = kw.pop("body", {"predictions": ["setosa"]})
    resp = r.response(body, "m1", **kw)
    assert resp.status_code == 400
    assert resp.text.startswith(f"{reason}: ")
    poll = r.source.poll(T0 + 30)
    assert poll.objects == [] and poll.rejected == {reason: 1}


def test_malformed_request_events(make_receiver: Any) -> None:
    r = make_receiver()
    assert r.request({"text": "hello"}, "n1").status_code == 400
    assert r.request({"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]},
                     "n2").status_code == 400
    assert r.request({"inputs": [{"name": "a", "shape": [2], "data": [1, 2]},
                                 {"name": "b", "shape": [3], "data": [1, 2, 3]}]}, "n3").status_code == 400
    assert r.post("org.kubeflow.serving.inference.request", None, ce_id="n4", raw=b"[1,2").status_code == 400
    assert r.source.poll(T0 + 30).rejected == {"invalid_request": 3, "invalid_json": 1}


def test_oversized_bodies_get_413(make_receiver: Any) -> None:
    # the source's own limit (below the server's): the body is read, then refused
    r = make_receiver(source_config(max_body_bytes=2000))
    big = {"predictions": ["setosa"] * 400}
    resp = r.response(big, "o1")
    assert resp.status_code == 413
    assert r.response({"predictions": ["setosa"]}, "o2").status_code == 200
    poll = r.source.poll(T0 + 30)
    assert poll.rejected == {"body_too_large": 1} and [o["id"] for o in poll.objects] == ["o2"]

    # the server's limit refuses on Content-Length before reading
    r2 = make_receiver(server_limit=1000)
    assert r2.response({"predictions": ["setosa"] * 100}, "o3").status_code == 413


def test_full_queue_answers_503_and_recovers_after_a_poll(make_receiver: Any) -> None:
    r = make_receiver(source_config(queue_size=2))
    assert [r.response({"predictions": ["setosa"]}, f"q{i}").status_code for i in range(3)] == [200, 200, 503]
    resp = r.response({"predictions": ["setosa"]}, "q3")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    poll = r.source.poll(T0 + 30)
    r.source.commit(poll.token)
    assert [o["id"] for o in poll.objects] == ["q0", "q1"] and poll.rejected == {"queue_full": 2}
    assert r.response({"predictions": ["setosa"]}, "q2").status_code == 200  # the logger's retry


def test_uncommitted_poll_is_returned_again(make_receiver: Any) -> None:
    r = make_receiver()
    r.response({"predictions": ["setosa"]}, "u1")
    r.response({"predictions": [1]}, "bad", raw=b"nope")
    first = r.source.poll(T0 + 30)
    r.response({"predictions": ["setosa"]}, "u2")
    again = r.source.poll(T0 + 35)  # the cycle that took `first` failed before commit
    assert again.objects == first.objects and again.rejected == first.rejected == {"invalid_json": 1}
    r.source.commit(again.token)
    nxt = r.source.poll(T0 + 40)
    assert [o["id"] for o in nxt.objects] == ["u2"] and nxt.rejected == {}
    r.source.commit(first.token)  # a stale token changes nothing
    assert r.source.poll(T0 + 45).objects == nxt.objects


def test_pending_requests_expire_and_are_bounded() -> None:
    clock = Clock(T0)
    src = KServeSource(source_config(), CONFIG.model, clock=clock, request_ttl=10.0, max_pending_requests=3)
    req = {"instances": [[1.0, 2.0, 3.0, 4.0]]}
    headers = {"ce-id": "", "ce-type": REQUEST_TYPE, "ce-inferenceservicename": "iris",
               "content-type": "application/json"}
    for i in range(5):
        assert src.handle(dict(headers, **{"ce-id": f"p{i}"}), json.dumps(req).encode()).status == 200
    assert src.pending_requests == 3 and src.counters["evicted_requests"] == 2
    clock.t += 11
    src.commit(src.poll(clock.t).token)
    assert src.pending_requests == 0 and src.counters["expired_requests"] == 3
    # a response whose request expired is still recorded, without features
    src.handle(dict(headers, **{"ce-id": "p4", "ce-type": RESPONSE_TYPE}), b'{"predictions": ["setosa"]}')
    [rec] = src.poll(clock.t).objects
    assert rec["id"] == "p4" and "features" not in rec


def test_request_and_response_row_counts_must_agree(make_receiver: Any) -> None:
    r = make_receiver()
    r.request({"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}, "w1")
    r.response({"predictions": ["setosa"]}, "w1")
    [rec] = records(r.source)
    assert "features" not in rec and r.source.counters["feature_row_mismatch"] == 1


def test_concurrent_posts_are_each_recorded_once(make_receiver: Any) -> None:
    r = make_receiver()
    errors: list[int] = []

    def worker(k: int) -> None:
        with requests.Session() as s:
            for i in range(25):
                cid = f"k{k}-{i}"
                for ce_type, body in ((RESPONSE_TYPE, {"predictions": ["virginica"]}),
                                      (REQUEST_TYPE, {"instances": [[1, 2, 3, 4]]})):
                    rr = s.post(r.url, data=json.dumps(body), timeout=10, headers={
                        "Content-Type": "application/json", "Ce-Id": cid, "Ce-Type": ce_type,
                        "Ce-Inferenceservicename": "iris"})
                    if rr.status_code != 200:
                        errors.append(rr.status_code)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    got: list[dict[str, Any]] = []
    while any(t.is_alive() for t in threads):
        got += records(r.source)
        time.sleep(0.01)
    for t in threads:
        t.join()
    got += records(r.source)
    assert errors == []
    assert sorted(g["id"] for g in got) == sorted(f"k{k}-{i}" for k in range(8) for i in range(25))


# --- own listener and forwarding -------------------------------------------------------------------------


def test_own_listener_without_auth() -> None:
    src = KServeSource(source_config(listen_address="127.0.0.1:0"), CONFIG.model)
    host, port = src.start_listener(receiver_listener)
    assert src.start_listener(receiver_listener) == (host, port)
    try:
        for path in (KSERVE_PATH, "/"):
            resp = requests.post(f"http://{host}:{port}{path}", data=b'{"predictions": [1]}', timeout=5, headers={
                "Content-Type": "application/json", "Ce-Id": f"l{path}", "Ce-Type": RESPONSE_TYPE,
                "Ce-Inferenceservicename": "sentiment"})
            assert resp.status_code == 200
        assert [o["id"] for o in src.poll(T0).objects] == [f"l{KSERVE_PATH}", "l/"]
    finally:
        src.close()
    with pytest.raises(ValueError):
        KServeSource(source_config()).start_listener(receiver_listener)


def test_listener_address_in_use_is_loud() -> None:
    a = KServeSource(source_config(listen_address="127.0.0.1:0"))
    _, port = a.start_listener(receiver_listener)
    b = KServeSource(source_config(name="other", listen_address=f"127.0.0.1:{port}"))
    try:
        with pytest.raises(OSError):
            b.start_listener(receiver_listener)
        assert not b.health.up and b.health.errors_total == 1
    finally:
        a.close()
        b.close()


@dataclass
class Capture:
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    status: int = 500
    delay: float = 0.0
    event: threading.Event = field(default_factory=threading.Event)


def start_capture(cap: Capture) -> ThreadingHTTPServer:
    class H(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(cap.delay)
            status = 200
            if cap.fail_next:
                cap.fail_next -= 1
                status = cap.status
            else:
                cap.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                cap.event.set()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def test_forwarding_sends_events_unchanged_without_slowing_the_receiver(make_receiver: Any) -> None:
    cap = Capture(delay=0.3)
    target = start_capture(cap)
    try:
        r = make_receiver(source_config(forward_to=(f"http://127.0.0.1:{target.server_address[1]}/events",)))
        body = {"predictions": ["setosa"]}
        started = time.monotonic()
        assert r.response(body, "fw1", Authorization="Basic c2VjcmV0").status_code == 200
        assert r.response(body, "fw2", raw=b"garbage").status_code == 400  # forwarded too
        assert time.monotonic() - started < 0.3  # did not wait for the slow target
        assert r.source.forwarder is not None and r.source.forwarder.flush(5)
        assert [b for _, b in cap.got] == [json.dumps(body).encode(), b"garbage"]
        h = cap.got[0][0]
        assert h["ce-id"] == "fw1" and h["ce-type"] == RESPONSE_TYPE and h["ce-inferenceservicename"] == "iris"
        assert h["ce-source"].endswith("iris-predictor-00001-deployment-6c9f7d8b5d-x7k2p")
        assert h["content-type"] == "application/json" and h["ce-time"] == "2026-01-01T00:00:10.123456789Z"
        assert "authorization" not in h  # our credentials are not the target's business
        stats = r.source.forwarder.stats[f"http://127.0.0.1:{target.server_address[1]}/events"]
        assert stats.forwarded == 2 and stats.failed == 0
    finally:
        target.shutdown()
        target.server_close()


def test_forwarder_retries_with_a_bound_and_drops_when_full() -> None:
    cap = Capture(fail_next=2)
    target = start_capture(cap)
    url = f"http://127.0.0.1:{target.server_address[1]}/"
    fw = Forwarder([url], backoff=0.01, max_attempts=3)
    try:
        fw.submit({"ce-id": "x", "content-length": "2", "host": "a"}, b"{}")
        assert fw.flush(5)
        assert fw.stats[url].forwarded == 1 and fw.stats[url].retries == 2
        assert "content-length" in cap.got[0][0] and cap.got[0][0]["ce-id"] == "x"  # recomputed, not copied

        cap.fail_next = 10
        fw.submit({"ce-id": "y"}, b"{}")
        assert fw.flush(5)
        assert fw.stats[url].failed == 1 and fw.stats[url].forwarded == 1
        cap.fail_next, cap.status = 1, 400  # a final answer: not retried
        fw.submit({"ce-id": "z"}, b"{}")
        assert fw.flush(5)
        assert fw.stats[url].failed == 2 and cap.fail_next == 0 and len(cap.got) == 1
    finally:
        fw.close()
        target.shutdown()
        target.server_close()

    slow = Capture(delay=0.5)
    target = start_capture(slow)
    fw = Forwarder([f"http://127.0.0.1:{target.server_address[1]}/"], queue_size=2)
    try:
        started = time.monotonic()
        for i in range(6):
            fw.submit({"ce-id": str(i)}, b"{}")
        assert time.monotonic() - started < 0.2
        assert fw.targets[0].stats.dropped >= 3
    finally:
        fw.close(timeout=3)
        target.shutdown()
        target.server_close()


def test_forwardable_headers() -> None:
    assert forwardable_headers({"Host": "x", "Content-Length": "3", "Authorization": "b", "ce-id": "1",
                                "traceparent": "00-ab", "Connection": "close"}) == {"ce-id": "1",
                                                                                   "traceparent": "00-ab"}


# --- parsing helpers ------------------------------------------------------------------------------------


def test_revision_from_source() -> None:
    assert revision_from_source("sentiment-predictor-00001-deployment-5d8f7c9b6-abcde") == "00001"
    assert revision_from_source("http://localhost:9081/sklearn-iris-predictor-default-00002-deployment-x-y") == "00002"
    assert revision_from_source("sentiment-predictor-00004") == "00004"
    assert revision_from_source("sentiment-predictor-7d9f8b6c5-12345") is None  # raw deployment pod
    assert revision_from_source("http://localhost:9081/") is None
    assert revision_from_source("") is None


def test_parse_response_variants() -> None:
    p = parse_response({"predictions": [[1], {"cat": 0.2, "dog": 0.8}, {"label": "dog", "score": 0.6},
                                        {"prediction": 1, "probabilities": [0.4, 0.6]}, True]}, None)
    assert [(x.prediction, x.confidence) for x in p] == [(1, None), ("dog", 0.8), ("dog", 0.6), (1, 0.6),
                                                         (True, None)]
    assert p[3].probabilities == {"0": 0.4, "1": 0.6}
    tie = parse_response({"predictions": [[0.5, 0.5]]}, ("a", "b"))[0]
    assert tie.prediction == "a"  # first on ties, like numpy.argmax
    v2 = parse_response({"outputs": [{"name": "o", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]}]}, None)
    assert [x.prediction for x in v2] == ["x", "y"]
    nested = parse_response({"outputs": [{"name": "p", "datatype": "FP32", "data": [[0.2, 0.8], [0.7, 0.3]]}]}, None)
    assert [x.prediction for x in nested] == ["1", "0"]
    assert parse_response({"predictions": []}, None) == []
    with pytest.raises(Rejected):
        parse_response([1, 2], None)


def test_parse_request_variants() -> None:
    assert parse_request({"instances": [3.5]}, ("a",)) == [{"a": 3.5}]
    assert parse_request({"instances": [[1, 2, 3]]}, ("a", "b")) == [{"a": 1, "b": 2}]
    assert parse_request({"instances": [[1, 2]]}, None) == [{}]
    assert parse_request({"instances": [{"a": 1, "b": [1]}]}, None) == [{"a": 1}]
    assert parse_request({"inputs": {"a": [1, 2], "b": ["x", "y"]}}, ("a",)) == [{"a": 1}, {"a": 2}]
    assert parse_request({"inputs": [[1, 2], [3, 4]]}, ("a", "b")) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert parse_request({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1.5]},
                                     {"name": "t", "shape": [1, 2], "datatype": "FP32", "data": [7, 8]}]},
                         ("a", "b", "c")) == [{"a": 1.5, "b": 7, "c": 8}]
    with pytest.raises(Rejected):
        parse_request({"instances": 3}, None)
    t = parse_tensor({"name": "x", "shape": [2, 2, 2], "data": list(range(8))}, "x", "r")
    assert t.rows == [[0, 1, 2, 3], [4, 5, 6, 7]] and t.width == 4


# --- through the pipeline, joined with labels from a file -------------------------------------------------


def test_pipeline_accuracy_exact_with_labels_from_a_file(make_receiver: Any, tmp_path: Path) -> None:
    r = make_receiver()
    labels_file = tmp_path / "labels.jsonl"
    labels_file.write_text("")
    labels = FileTailSource(FileSourceConfig(name="labels", kind="labels", path=str(labels_file)))
    clock = Clock(T0 + 60)
    p = Pipeline(CONFIG, clock, sources=[r.source, labels])
    truth: dict[str, Any] = {}

    # iris v1, batch of 3, request first
    r.request({"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]}, "iris-1")
    r.response({"predictions": ["setosa", "versicolor", "versicolor"]}, "iris-1")
    truth.update({"iris-1#0": "setosa", "iris-1#1": "versicolor", "iris-1#2": "virginica"})
    # iris v2 probabilities, response before request
    r.response({"outputs": [{"name": "p", "shape": [2, 3], "datatype": "FP32",
                             "data": [0.8, 0.1, 0.1, 0.2, 0.3, 0.5]}]}, "iris-2")
    r.request({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1] * 8}]}, "iris-2")
    truth.update({"iris-2#0": "setosa", "iris-2#1": "versicolor"})
    # iris v1 single, response without request, on revision 00002
    r.response({"predictions": [[0.1, 0.1, 0.8]]}, "iris-3", revision="00002")
    truth["iris-3"] = "virginica"
    # sentiment v1 probability rows and class ids
    for i, (pred, lab) in enumerate([(1, 1), (0, 1), (1, 0), (0, 0), (1, 1)]):
        r.response({"predictions": [[1 - pred * 0.9 - 0.05, pred * 0.9 + 0.05]]}, f"s-{i}", isvc="sentiment")
        truth[f"s-{i}"] = lab
    # garbage and a model the exporter does not know
    r.response({"predictions": [1]}, "junk", raw=b"{{{")
    r.response({"predictions": [1]}, "other-1", isvc="unmonitored")

    p.run_cycle()
    with labels_file.open("a") as f:
        for rid, lab in truth.items():
            f.write(json.dumps({"id": rid, "label": lab, "timestamp": T0 + 50}) + "\n")
    clock.t += 5
    p.run_cycle()

    iris1 = p.versions[("iris", "00001")].window_stats(0)
    assert (iris1.predictions, iris1.labeled, iris1.metrics.correct) == (5, 5, 3)
    assert iris1.metrics.accuracy == 3 / 5
    iris2 = p.versions[("iris", "00002")].window_stats(0)
    assert (iris2.labeled, iris2.metrics.correct) == (1, 1)
    sent = p.versions[("sentiment", "00001")].window_stats(0)
    assert (sent.labeled, sent.metrics.correct, sent.metrics.accuracy) == (5, 3, 3 / 5)
    assert sent.confidence.mean == pytest.approx(0.95)
    stats = p.source_stats["kserve"]
    assert stats.invalid == {"invalid_json": 1, "unknown_model": 1}
    assert stats.records == 13  # 12 predictions (invalid ones included) + 1 refused event
    assert p.source_stats["labels"].invalid == {}
    text = render(catalogue.families(p.build_report(clock.t))).decode()
    assert 'mlmon_exporter_invalid_records_total{reason="invalid_json",source="kserve"} 1.0' in text
    assert 'mlmon_exporter_source_up{source="kserve"} 1.0' in text
    assert 'mlmon_correct_predictions_total{model="iris",model_version="00001"} 3.0' in text

    # the same response again (a retry): a duplicate, not counted twice
    r.response({"predictions": [[0.1, 0.1, 0.8]]}, "iris-3", revision="00002")
    clock.t += 5
    p.run_cycle()
    assert p.source_stats["kserve"].invalid["duplicate"] == 1
    assert p.versions[("iris", "00002")].window_stats(0).predictions == 1


def test_uuid_ids_and_features_reach_the_batch(make_receiver: Any) -> None:
    r = make_receiver()
    cid = str(uuid.uuid4())
    r.request({"instances": [{"length": 7, "lang": "en"}, {"length": 9, "lang": "de"}]}, cid, isvc="sentiment")
    r.response({"predictions": [0, 1]}, cid, isvc="sentiment")
    poll = r.source.poll(T0 + 30)
    spec = RecordSpec.from_source(r.source.config, ("length", "lang"))
    batch = parse_predictions(poll.lines, spec, T0 + 30, poll.objects).batch
    assert isinstance(batch, PredictionBatch)
    assert list(batch.id) == [f"{cid}#0", f"{cid}#1"]
    assert list(batch.features["length"]) == [7, 9] and list(batch.features["lang"]) == ["en", "de"]
    assert list(batch.model_version) == ["00001", "00001"]
