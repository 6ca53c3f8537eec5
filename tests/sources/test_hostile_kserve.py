"""Hostile input at the KServe CloudEvents receiver: broken CloudEvents, arbitrary headers and
bodies, amplifying tensors. Every event gets 200 / 400 / 413 / 503, every refusal is counted
exactly once by reason, and the valid predictions around them give exact numbers.

Seeded (derandomized) hypothesis fuzzers call ``KServeSource.handle`` directly, with labels from
a real tailed file, always through ``Pipeline``.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exporter.core.pipeline import Pipeline
from exporter.http.server import Response
from exporter.sources import FileTailSource, KServeSource
from exporter.sources.kserve import REQUEST_TYPE, RESPONSE_TYPE
from tests.helpers import FakeClock, append
from tests.sources.hostile import (
    CLASSES,
    OFFSET_MS,
    PROB,
    T0,
    T0_MS,
    Truth,
    check,
    classify_raw,
    config,
    dumps,
    fuzz,
    invalid_of,
    rfc3339,
    samples,
    val,
    valid_labels,
)

KSERVE_MAX_BODY = 4096


def ce_headers(ce_id: str, ce_type: str = RESPONSE_TYPE, *, version: str = "00001", ts_ms: int | None = None,
               isvc: str = "m") -> dict[str, str]:
    h = {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": ce_id, "ce-type": ce_type,
         "ce-source": f"http://localhost:9081/{isvc}-predictor-{version}-deployment-6c9f7d8b5d-x7k2p",
         "ce-inferenceservicename": isvc, "ce-namespace": "models", "ce-component": "predictor"}
    if ts_ms is not None:
        h["ce-time"] = rfc3339(ts_ms)
    return h


@dataclass(frozen=True)
class KValid:
    rows: tuple[tuple[float, float], ...]
    style: str  # v1rows | v1objects | v2
    version: str
    ts_ms: int

    def body(self) -> bytes:
        if self.style == "v1rows":
            return dumps({"predictions": [list(r) for r in self.rows]})
        if self.style == "v1objects":
            return dumps({"predictions": [{"prediction": int(a < b), "confidence": max(a, b)} for a, b in self.rows]})
        flat = [x for r in self.rows for x in r]
        return dumps({"outputs": [{"name": "probs", "shape": [len(self.rows), 2], "datatype": "FP64", "data": flat}]})

    def records(self, ce_id: str) -> list[tuple[str, str, float]]:
        n = len(self.rows)
        return [(ce_id if n == 1 else f"{ce_id}#{i}", "0" if a >= b else "1", max(a, b))
                for i, (a, b) in enumerate(self.rows)]


k_valid = st.builds(KValid, rows=st.lists(st.tuples(PROB, PROB), min_size=1, max_size=3).map(tuple),
                    style=st.sampled_from(["v1rows", "v1objects", "v2"]),
                    version=st.sampled_from(["00001", "00002"]), ts_ms=OFFSET_MS.map(lambda o: T0_MS - o))

_OK_BODY = b'{"predictions": [[0.25, 0.75]]}'


def _kbad(reason: str, status: int = 400, **kw: Any) -> dict[str, Any]:
    return {"reason": reason, "status": status, **kw}


K_BAD_EVENTS = [
    _kbad("missing_id", drop=("ce-id",)),
    _kbad("missing_id", set={"ce-id": "   "}),
    _kbad("unsupported_content_type", set={"content-type": "application/cloudevents-batch+json"}),
    _kbad("missing_model", drop=("ce-inferenceservicename",)),
    _kbad("missing_model", drop=("ce-inferenceservicename",), type=REQUEST_TYPE, body=b'{"instances": [[1]]}'),
    _kbad("invalid_json", body=b""),
    _kbad("invalid_json", body=b"{not json"),
    _kbad("invalid_json", body=b"[" * 2000 + b"]" * 2000),  # too deep for json
    _kbad("invalid_json", body=b'{"predictions": [[0.25, 0.75]]}\xff'),
    _kbad("invalid_response", body=b"[1, 2]"),
    _kbad("invalid_response", body=b"null"),
    _kbad("invalid_response", body=b'{"predictions": 5}'),
    _kbad("invalid_response", body=b'{"foo": 1}'),
    _kbad("invalid_response", body=b'{"outputs": []}'),
    _kbad("invalid_response", body=b'{"predictions": [[0.5, NaN]]}'),
    _kbad("invalid_response", body=b'{"predictions": [null]}'),
    _kbad("invalid_response", body=b'{"outputs": [{"name": "o", "shape": [2, 2], "data": [1, 2, 3]}]}'),
    _kbad("invalid_probabilities", body=b'{"predictions": [[0.5, 1.5]]}'),
    _kbad("invalid_probabilities", body=b'{"predictions": [[0.1, 0.2, 0.7]]}'),
    _kbad("invalid_probabilities", body=b'{"predictions": [{"prediction": 1, "probabilities": [2, 0]}]}'),
    _kbad("invalid_confidence", body=b'{"predictions": [{"prediction": 1, "confidence": 2}]}'),
    _kbad("invalid_confidence", body=b'{"predictions": [{"prediction": 1, "confidence": "high"}]}'),
    _kbad("invalid_timestamp", set={"ce-time": "yesterday"}),
    _kbad("invalid_request", type=REQUEST_TYPE, body=b'{"nope": 1}'),
    _kbad("invalid_request", type=REQUEST_TYPE, body=b'"x"'),
    _kbad("body_too_large", status=413, body=b'{"predictions": [' + b"[0.5, 0.5], " * 1000 + b"[1, 0]]}"),
    _kbad("invalid_event", set={"content-type": "application/cloudevents+json"}, body=b"[1]"),
    _kbad("invalid_event", set={"content-type": "application/cloudevents+json"},
          body=b'{"id": "s", "type": "' + RESPONSE_TYPE.encode() + b'", "data_base64": "!!"}'),
    _kbad("invalid_json", set={"content-type": "application/cloudevents+json"}, body=b"{"),
    # accepted by the receiver, refused by the pipeline
    _kbad("unknown_class", status=200, body=b'{"predictions": ["7"]}'),
    _kbad("unknown_model", status=200, set={"ce-inferenceservicename": "zzz"}),
]

k_bad = st.one_of(
    st.sampled_from(K_BAD_EVENTS),  # listed first and twice: most bad events come from the list
    st.sampled_from(K_BAD_EVENTS),
    st.text(max_size=40).filter(lambda s: s not in (REQUEST_TYPE, RESPONSE_TYPE)).map(
        lambda s: _kbad("unsupported_event_type", set={"ce-type": s})),
    st.binary(max_size=300).filter(lambda b: classify_raw(b, 1 << 30) in ("invalid_json", None)).map(
        lambda b: _kbad("invalid_json", body=b)),
)


@fuzz(80)
@given(st.data())
def test_kserve_fuzzed_exact(data: st.DataObject) -> None:
    truth = Truth("m")
    windows = {"10m": 600.0, "1h": 3600.0}
    with tempfile.TemporaryDirectory() as tmp:
        lf = Path(tmp) / "labels.jsonl"
        lf.touch()
        cfg = config([
            {"name": "kserve", "kind": "predictions", "type": "kserve", "model_from": "inferenceservicename",
             "max_body_bytes": KSERVE_MAX_BODY, "queue_size": 10_000},
            {"name": "labels", "kind": "labels", "type": "file", "path": str(lf)},
        ], list(windows))
        clock = FakeClock(T0)
        ks = KServeSource(cfg.sources[0], cfg.model, clock=clock)
        labels_src = FileTailSource(cfg.sources[1])
        p = Pipeline(cfg, clock, sources=[ks, labels_src])
        sent: list[tuple[dict[str, str], bytes, int]] = []  # valid response events and their record count
        n_events = 0
        try:
            for _ in range(data.draw(st.integers(1, 5), label="cycles")):
                for kind in data.draw(st.lists(st.sampled_from(["ok", "ok", "bad", "dup", "req"]), max_size=15)):
                    n_events += 1
                    ce_id = f"e{n_events}"
                    bad: dict[str, Any] = {}
                    if kind == "dup" and sent:
                        h, body, n = data.draw(st.sampled_from(sent))
                        truth.count("kserve", "duplicate", n)
                        want = 200
                    elif kind in ("ok", "dup"):
                        ev = data.draw(k_valid)
                        h, body = ce_headers(ce_id, version=ev.version, ts_ms=ev.ts_ms), ev.body()
                        recs = ev.records(ce_id)
                        for rid, cls, conf in recs:
                            truth.preds[rid] = (ev.version, cls, conf, ev.ts_ms / 1000)
                            truth.count("kserve", None)
                        sent.append((h, body, len(recs)))
                        want = 200
                    elif kind == "req":  # a request event only adds features: not a record
                        h, body, want = ce_headers(ce_id, REQUEST_TYPE), dumps({"instances": [[1, 2]]}), 200
                    else:
                        bad = data.draw(k_bad)
                        h = ce_headers(ce_id, bad.get("type", RESPONSE_TYPE), ts_ms=T0_MS - 5000)
                        for k in bad.get("drop", ()):
                            h.pop(k)
                        h.update(bad.get("set", {}))
                        body = bad.get("body", _OK_BODY)
                        truth.count("kserve", bad["reason"])
                        want = bad["status"]
                    r = ks.handle(dict(h), body)
                    assert r.status == want, (h, body[:200], r.body)
                    if want == 400:
                        assert r.body.decode().startswith(f"{bad['reason']}: "), r.body
                # labels for some of the predictions so far (read after them in this cycle)
                ids = sorted(i for i in truth.preds if i not in truth.labels)
                for rid in data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=8)) if ids else []:
                    vl = data.draw(valid_labels)
                    append(lf, vl.line(rid) + b"\n")
                    truth.labels[rid] = (vl.cls, vl.ts_ms / 1000)
                    truth.count("labels", None)
                p.run_cycle()
                clock.t += 1
            p.run_cycle()
            check(p, truth, windows, clock.t, sources={"kserve": "predictions", "labels": "labels"})
        finally:
            ks.close()
            labels_src.close()


def test_kserve_every_listed_bad_event_gets_its_reason() -> None:
    """The fuzzer draws from ``K_BAD_EVENTS``; here each is sent once, so none goes untried."""
    cfg = config([{"name": "kserve", "kind": "predictions", "type": "kserve", "model_from": "inferenceservicename",
                   "max_body_bytes": KSERVE_MAX_BODY}], ["1h"])
    ks = KServeSource(cfg.sources[0], cfg.model, clock=FakeClock(T0))
    p = Pipeline(cfg, FakeClock(T0), sources=[ks])
    want: Counter[str] = Counter()
    for i, bad in enumerate(K_BAD_EVENTS):
        h = ce_headers(f"b{i}", bad.get("type", RESPONSE_TYPE), ts_ms=T0_MS - 5000)
        for k in bad.get("drop", ()):
            h.pop(k)
        h.update(bad.get("set", {}))
        r = ks.handle(h, bad.get("body", _OK_BODY))
        assert r.status == bad["status"], (bad, r.body)
        if r.status == 400:
            assert r.body.decode().startswith(bad["reason"] + ": "), (bad, r.body)
        want[bad["reason"]] += 1
    p.run_cycle()
    ks.close()
    assert p.source_stats["kserve"].invalid == want
    assert p.source_stats["kserve"].records == sum(want.values())


HEADER_NAMES = ["content-type", "ce-id", "ce-type", "ce-source", "ce-inferenceservicename", "ce-time", "ce-metadata",
                "ce-specversion", "ce-recordedtime", "ce-endpoint", "x-junk"]
KEYS = ["predictions", "outputs", "instances", "inputs", "name", "shape", "datatype", "data", "prediction",
        "confidence", "probabilities", "label", "score", "id", "type", "data_base64", "specversion"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats() | PROB | st.text(max_size=8)
    | st.sampled_from([*CLASSES, "BYTES", "FP32", RESPONSE_TYPE]),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), c, max_size=4),
    max_leaves=25,
)


@st.composite
def chaos_event(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    h: dict[str, str] = {}
    if draw(st.booleans()):
        h = ce_headers(draw(st.text(max_size=6)) or "x", draw(st.sampled_from([REQUEST_TYPE, RESPONSE_TYPE])),
                       isvc=draw(st.sampled_from(["m", "m", "zzz", ""])))
    for name in draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=5)):
        h[name] = draw(st.text(max_size=40) | st.sampled_from(
            ["application/json", "application/cloudevents+json", REQUEST_TYPE, RESPONSE_TYPE, "m",
             "2026-01-01T00:00:00Z", '{"x-version": ["7"]}', "not a time", "\x00", "é"]))
    body = draw(st.one_of(
        st.binary(max_size=300),
        json_values.map(dumps),
        st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4).map(dumps),
        st.just(b"x" * (KSERVE_MAX_BODY + 1)),
    ))
    return h, body


@fuzz(150)
@given(st.lists(chaos_event(), min_size=1, max_size=30))
def test_kserve_random_events_never_crash(events: list[tuple[dict[str, str], bytes]]) -> None:
    """Arbitrary headers and bodies: always 200 / 400 / 413 / 503, each refusal counted once,
    and every record the pipeline reads is either applied or counted invalid."""
    cfg = config([{"name": "kserve", "kind": "predictions", "type": "kserve", "model_from": "inferenceservicename",
                   "max_body_bytes": KSERVE_MAX_BODY, "queue_size": 20}], ["1h"])
    clock = FakeClock(T0)
    ks = KServeSource(cfg.sources[0], cfg.model, clock=clock)
    p = Pipeline(cfg, clock, sources=[ks])
    for i, (h, body) in enumerate(events):
        before = sum(ks.rejected_since_last_poll.values())
        r = ks.handle(dict(h), body)
        assert isinstance(r, Response)
        assert r.status in (200, 400, 413, 503), (h, body[:200], r)
        # a refusal is counted once, an accepted event not at all (its records are, later)
        assert sum(ks.rejected_since_last_poll.values()) - before == (r.status != 200), (h, body[:200], r)
        if i % 10 == 9:
            p.run_cycle()
            clock.t += 1
    p.run_cycle()
    m = samples(p)
    records = val(m, "mlmon_exporter_records_total", 0.0, source="kserve")
    applied = sum(v for (n, _), v in m.items() if n == "mlmon_predictions_total")
    assert records == applied + sum(invalid_of(m, "kserve").values())
    ks.close()


def test_kserve_zero_width_tensor_does_not_amplify() -> None:
    """An 80-byte event declaring shape [n, 0] must not make the receiver build n rows."""
    cfg = config([{"name": "kserve", "kind": "predictions", "type": "kserve", "model_from": "inferenceservicename"}],
                 ["1h"])
    ks = KServeSource(cfg.sources[0], cfg.model, clock=FakeClock(T0))
    n = 1_000_000
    timings = {}
    for ce_type, key in ((RESPONSE_TYPE, "outputs"), (REQUEST_TYPE, "inputs")):
        body = dumps({key: [{"name": "x", "datatype": "FP32", "shape": [n, 0], "data": []}]})
        started = time.perf_counter()
        r = ks.handle(ce_headers("z" + key, ce_type), body)
        timings[key] = round(time.perf_counter() - started, 2)
        assert r.status in (200, 400)
    ks.close()
    assert max(timings.values()) < 0.25, f"seconds per {len(body)}-byte event: {timings}"
