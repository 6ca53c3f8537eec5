"""The hostile-input suite's shared vocabulary (tests/sources/test_hostile_*.py,
tests/test_hostile_exporter.py): valid records whose numbers are recomputed directly, malformed
ones with the reason they must be counted under, the ``Truth`` a correct exporter shows and
``check``, which compares every exported number with it.

The malformed records are the same for every source kind: random bytes, invalid UTF-8, huge
lines, deep nesting, JSON that is not an object, NaN / infinite / out-of-range confidences, bad
timestamps. The fuzzers are seeded (``fuzz``: derandomized, no example database), so a run
sees the same examples every time.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from exporter.config import Config, parse_config
from exporter.core.pipeline import Pipeline
from exporter.report import catalogue
from exporter.report.snapshot import render
from tests.helpers import Samples, text_samples

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
T0_MS = int(T0 * 1000)
CLASSES = ("0", "1")
LIMIT = 4096  # max_line_bytes of the fuzzed sources: "huge" stays cheap to generate


def fuzz(max_examples: int) -> settings:
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


# --- building lines --------------------------------------------------------------------------


class Raw(str):
    """A JSON token written as is (``1e400``, ``NaN``), where ``json.dumps`` cannot write it."""


def dumps(obj: Any) -> bytes:
    raws: list[str] = []

    def swap(v: Any) -> Any:
        if isinstance(v, Raw):
            raws.append(str(v))
            return f"\x00RAW{len(raws) - 1}\x00"
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(obj))
    for i, r in enumerate(raws):
        text = text.replace(f'"\\u0000RAW{i}\\u0000"', r)
    return text.encode()


def rfc3339(ts_ms: int, offset_min: int = 0) -> str:
    secs, ms = divmod(ts_ms, 1000)
    dt = datetime.fromtimestamp(secs, tz=timezone(timedelta(minutes=offset_min)))
    if offset_min == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"
    z = dt.strftime("%z")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}{z[:3]}:{z[3:]}"


def ts_value(ts_ms: int, style: str) -> Any:
    if style == "s":
        return ts_ms / 1000
    if style == "ms":
        return ts_ms
    if style == "text":
        return repr(ts_ms / 1000)
    if style == "offset":
        return rfc3339(ts_ms, 150)
    return rfc3339(ts_ms)


def short(b: bytes, keep: int = 120) -> str:
    return repr(b) if len(b) <= keep else f"{b[:keep]!r}...<{len(b)} bytes>"


def classify_raw(line: bytes, limit: int = LIMIT) -> str | None:
    """The reason a raw line is refused for, by the rules every parser shares: None when it is
    not a record at all (blank), ``"object"`` when it decodes to a JSON object."""
    if not line.strip():
        return None
    if len(line) > limit:
        return "line_too_long"
    try:
        value = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return "invalid_json"
    return "object" if isinstance(value, dict) else "not_an_object"


TS_STYLES = ("s", "ms", "text", "rfc3339", "offset")
# seconds before T0 for every valid timestamp: the 10m window's edge (T0 - 600 + a few cycles)
# is never near one, so window membership does not depend on rounding
OFFSET_MS = st.one_of(st.integers(1_000, 500_000), st.integers(700_000, 3_000_000))
PROB = st.floats(0.0, 1.0, allow_nan=False)


@dataclass(frozen=True)
class ValidPred:
    version: str
    cls: str
    cls_form: int
    version_form: int
    conf: float
    other: float
    conf_style: str
    ts_ms: int
    ts_style: str
    nest: int
    unicode_id: bool

    def confidence(self) -> float:
        return self.conf if self.conf_style != "probabilities" else max(self.conf, self.other)

    def line(self, rid: str) -> bytes:
        cls_value = [int(self.cls), self.cls, float(self.cls), self.cls == "1"][self.cls_form]
        version = [self.version, int(self.version), float(self.version)][self.version_form]
        rec: dict[str, Any] = {"id": rid, "model_version": version, "prediction": cls_value,
                               "timestamp": ts_value(self.ts_ms, self.ts_style)}
        if self.conf_style in ("confidence", "both"):
            rec["confidence"] = self.conf
        if self.conf_style in ("probabilities", "both"):
            rec["probabilities"] = {"0": self.conf, "1": self.other}
        if self.nest:
            rec["extra"] = json.loads("[" * self.nest + "]" * self.nest)
        return dumps(rec)


def valid_pred_strategy(**fixed: Any) -> st.SearchStrategy[ValidPred]:
    forms: dict[str, st.SearchStrategy[Any]] = {
        "cls_form": st.integers(0, 3), "version_form": st.integers(0, 2),
        "conf_style": st.sampled_from(["confidence", "probabilities", "both"]),
        "ts_style": st.sampled_from(TS_STYLES), "nest": st.sampled_from([0, 0, 0, 2, 65, 400]),
        "unicode_id": st.booleans(),
    }
    forms.update({k: st.just(v) for k, v in fixed.items()})
    return st.builds(ValidPred, version=st.sampled_from(["1", "2"]), cls=st.sampled_from(CLASSES), conf=PROB,
                     other=PROB, ts_ms=OFFSET_MS.map(lambda o: T0_MS - o), **forms)


valid_preds = valid_pred_strategy()


@dataclass(frozen=True)
class ValidLabel:
    cls: str
    cls_form: int
    ts_ms: int
    ts_style: str
    with_model: bool

    def line(self, rid: str) -> bytes:
        value = [int(self.cls), self.cls, float(self.cls), self.cls == "1"][self.cls_form]
        rec: dict[str, Any] = {"id": rid, "label": value, "timestamp": ts_value(self.ts_ms, self.ts_style)}
        if self.with_model:
            rec["model"] = "m"
        return dumps(rec)


valid_labels = st.builds(
    ValidLabel, cls=st.sampled_from(CLASSES), cls_form=st.integers(0, 3), ts_ms=OFFSET_MS.map(lambda o: T0_MS - o),
    ts_style=st.sampled_from(TS_STYLES), with_model=st.booleans(),
)


@dataclass(frozen=True)
class Bad:
    """A malformed record and the reason it must be counted under (None: not a record)."""

    reason: str | None
    raw: bytes | None = None  # the line as is
    changes: tuple[tuple[str, Any], ...] = ()  # else: a base record with these fields set
    drop: tuple[str, ...] = ()  # ... and these removed
    pad: int = 0  # ... padded to at least this many bytes

    def __repr__(self) -> str:
        raw = "" if self.raw is None else f", raw={short(self.raw)}"
        return f"Bad({self.reason!r}{raw}, changes={self.changes!r}, drop={self.drop!r}, pad={self.pad})"

    def line(self, rid: str, base: dict[str, Any]) -> bytes:
        if self.raw is not None:
            return self.raw
        rec = {"id": rid, **base}
        rec.update(self.changes)
        for k in self.drop:
            rec.pop(k, None)
        out = dumps(rec)
        if self.pad > len(out):
            rec["pad"] = "x" * (self.pad - len(out))
            out = dumps(rec)
        return out


PRED_BASE: dict[str, Any] = {"model_version": "1", "prediction": 1, "confidence": 0.5, "timestamp": T0 - 10}
LABEL_BASE: dict[str, Any] = {"label": 1, "timestamp": T0 - 10}

BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xf4\x90\x80\x80"]
NOT_OBJECTS = [b"[]", b"[1, 2]", b'[{"id": "a", "prediction": 1}]', b"1", b"-0.5e3", b'"text"', b"null",
               b"true", b"NaN", b"-Infinity", b"1e999", b'""']
BAD_TIMESTAMPS: list[Any] = ["yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T25:00:00Z",
                             "2026-01-01T00:00:00+24:00", "2026-01-01", "", " ", True, False, [1], {"t": 1},
                             Raw("NaN"), Raw("Infinity"), Raw("1e400"), Raw("-1e400"), 10**400, "1e999"]
NO_ID: list[Any] = [None, "", True, False, [], {}, ["a"], {"id": "a"}, Raw("NaN"), Raw("1e400")]
BAD_CLASSES: list[Any] = [None, "", [], [1], {}, {"c": 1}, Raw("NaN"), Raw("Infinity")]
BAD_CONFIDENCES: list[Any] = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), -0.001, 1.000001, 2, -1,
                              "0.5", True, False, [0.5], {"v": 0.5}]
BAD_PROBABILITIES: list[Any] = [[0.5, 0.5], "x", 1, True, {"0": 1.5}, {"0": -0.1}, {"0": Raw("NaN")}, {"": 0.5},
                                {"0": "0.5"}, {"0": None}, {"0": True}, {"0": [0.5]}]


def _raw_bad(raw: bytes) -> Bad:
    reason = classify_raw(raw)
    assert reason != "object"
    return Bad(reason, raw=raw)


random_lines = st.one_of(
    st.binary(min_size=0, max_size=200),
    st.binary(max_size=200).map(lambda b: b"{" + b),  # passes the block decoder's first-byte guard
).map(lambda b: b.replace(b"\n", b" ")).filter(lambda b: classify_raw(b) != "object").map(_raw_bad)


def _broken(rec: bytes, how: int, k: int) -> bytes:
    if how == 0:
        return rec[: 1 + k % (len(rec) - 1)]  # truncated: an object prefix is never complete
    return [rec + b" " + rec, rec + b"x", rec[:-1] + b",}", rec.replace(b'"', b"'"),
            b"\xef\xbb\xbf" + rec, rec.replace(b'"id": "', b'"id": "\x01'), rec.replace(b"{", b"{/*c*/", 1)][how - 1]


_sample_rec = dumps({"id": "q", **PRED_BASE})

raw_bad = st.one_of(  # lines that are not a JSON object, or too long: the same for every source
    random_lines,
    st.tuples(st.sampled_from(BAD_UTF8), st.integers(0, len(_sample_rec))).map(
        lambda t: Bad("invalid_json", raw=_sample_rec[: t[1]] + t[0] + _sample_rec[t[1]:])),
    st.tuples(st.integers(0, 7), st.integers(0, 10_000)).map(
        lambda t: Bad("invalid_json", raw=_broken(_sample_rec, t[0], t[1]))),
    st.sampled_from(NOT_OBJECTS).map(lambda b: Bad("not_an_object", raw=b)),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                 lambda c: st.lists(c, max_size=3), max_leaves=6).map(
        lambda v: Bad("not_an_object", raw=json.dumps(v).encode())),
    st.integers(1_000, 100_000).map(  # unterminated deep nesting: invalid JSON at any depth
        lambda d: Bad("line_too_long" if d + 40 > LIMIT else "invalid_json",
                      raw=b'{"id": "deep", "prediction": 1, "j": ' + b"[" * d)),
    st.integers(LIMIT + 1, 4 * LIMIT).map(lambda n: Bad("line_too_long", raw=b"\xff" * n)),
    st.sampled_from([b"", b"   ", b"\t", b"\r", b" \r\t "]).map(lambda b: Bad(None, raw=b)),
)

field_bad = st.one_of(  # JSON objects with one field wrong
    st.integers(LIMIT + 1, 4 * LIMIT).map(lambda n: Bad("line_too_long", pad=n)),
    st.sampled_from(NO_ID).map(lambda v: Bad("missing_id", changes=(("id", v),))),
    st.just(Bad("missing_id", drop=("id",))),
    st.sampled_from(BAD_TIMESTAMPS).map(lambda v: Bad("invalid_timestamp", changes=(("timestamp", v),))),
    st.text(st.characters(blacklist_categories=("Nd", "Cs")), max_size=30).map(
        lambda s: Bad("invalid_timestamp", changes=(("timestamp", s),))),
)

field_bad_preds = st.one_of(
    field_bad,
    st.just(Bad("missing_prediction", drop=("prediction",))),
    st.sampled_from(BAD_CLASSES).map(lambda v: Bad("invalid_class", changes=(("prediction", v),))),
    st.sampled_from(["2", 2, 1.5, "yes", -1, "01", " 1", "1.0"]).map(
        lambda v: Bad("unknown_class", changes=(("prediction", v),))),
    st.sampled_from(BAD_CONFIDENCES).map(lambda v: Bad("invalid_confidence", changes=(("confidence", v),))),
    st.floats(allow_nan=False).filter(lambda x: not 0 <= x <= 1).map(
        lambda v: Bad("invalid_confidence", changes=(("confidence", v),))),
    st.sampled_from(BAD_PROBABILITIES).map(lambda v: Bad("invalid_probabilities", changes=(("probabilities", v),))),
)
bad_preds = st.one_of(raw_bad, field_bad_preds)

field_bad_labels = st.one_of(
    field_bad,
    st.just(Bad("missing_label", drop=("label",))),
    st.sampled_from(BAD_CLASSES).map(lambda v: Bad("invalid_class", changes=(("label", v),))),
    st.sampled_from(["zzz", "other"]).map(lambda v: Bad("unknown_model", changes=(("model", v),))),
)
bad_labels = st.one_of(raw_bad, field_bad_labels)


# --- the truth, computed directly ------------------------------------------------------------


@dataclass
class Truth:
    model: str
    preds: dict[str, tuple[str, str, float, float]] = field(default_factory=dict)  # id -> version, class, conf, ts
    labels: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> class, ts (first valid label)
    records: Counter[str] = field(default_factory=Counter)
    invalid: dict[str, Counter[str]] = field(default_factory=dict)

    def count(self, source: str, reason: str | None, n: int = 1) -> None:
        self.records[source] += n
        if reason is not None:
            self.invalid.setdefault(source, Counter())[reason] += n


def samples(p: Pipeline) -> Samples:
    """Every sample of the pipeline's snapshot, read back from the text every scrape serves."""
    return text_samples(render(catalogue.families(p.report)))


def val(m: Samples, name: str, default: float | None = None, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    if default is not None:
        return m.get(key, default)
    return m[key]


def invalid_of(m: Samples, source: str) -> Counter[str]:
    """Non-zero invalid-record counts of ``source`` (every reason it can produce is exported at 0)."""
    return Counter({dict(k)["reason"]: int(v) for (n, k), v in m.items()
                    if n == "mlmon_exporter_invalid_records_total" and dict(k)["source"] == source and v})


def check(p: Pipeline, truth: Truth, windows: dict[str, float], now: float, *, sources: dict[str, str]) -> None:
    """Compare every number the exporter shows with a direct computation from ``truth``.

    ``sources`` maps source name -> kind (predictions | labels).
    """
    m = samples(p)
    for src in sources:
        assert val(m, "mlmon_exporter_records_total", 0.0, source=src) == truth.records[src], src
        assert invalid_of(m, src) == truth.invalid.get(src, Counter()), src
    # records_total = valid + invalid, for every predictions source together (one model)
    n_invalid = sum(sum(truth.invalid.get(s, Counter()).values()) for s, k in sources.items() if k == "predictions")
    n_records = sum(truth.records[s] for s, k in sources.items() if k == "predictions")
    applied = sum(v for (n, k), v in m.items() if n == "mlmon_predictions_total" and dict(k)["model"] == truth.model)
    assert applied == len(truth.preds) == n_records - n_invalid

    versions = sorted({v for v, *_ in truth.preds.values()})
    shown = sorted(dict(k)["model_version"] for (n, k) in m if n == "mlmon_model_info")
    assert shown == versions
    joined = {i for i in truth.labels if i in truth.preds}
    for v in versions:
        base = {"model": truth.model, "model_version": v}
        mine = {i: x for i, x in truth.preds.items() if x[0] == v}
        for cls in CLASSES:
            want = sum(1 for x in mine.values() if x[1] == cls)
            assert val(m, "mlmon_predictions_total", **base, predicted_class=cls) == want, (v, cls)
        outcomes = [(mine[i][1], truth.labels[i][0], truth.labels[i][1]) for i in mine if i in joined]
        for pc in CLASSES:
            for tc in CLASSES:
                want = sum(1 for o in outcomes if o[0] == pc and o[1] == tc)
                assert val(m, "mlmon_labeled_predictions_total", **base, predicted_class=pc, true_class=tc) == want
        assert val(m, "mlmon_correct_predictions_total", **base) == sum(1 for o in outcomes if o[0] == o[1])
        for w, length in windows.items():
            cutoff = now - length
            wl = {**base, "window": w}
            in_pred = [x for x in mine.values() if x[3] > cutoff]
            assert val(m, "mlmon_window_predictions", **wl) == len(in_pred), (v, w)
            in_out = [o for o in outcomes if o[2] > cutoff]
            assert val(m, "mlmon_window_labeled_predictions", **wl) == len(in_out), (v, w)
            acc = val(m, "mlmon_accuracy_ratio", **wl)
            if in_out:
                assert acc == pytest.approx(sum(o[0] == o[1] for o in in_out) / len(in_out), rel=1e-12), (v, w)
            else:
                assert math.isnan(acc)
            mean = val(m, "mlmon_confidence_mean_ratio", **wl)
            if in_pred:
                assert mean == pytest.approx(sum(x[2] for x in in_pred) / len(in_pred), abs=1e-8), (v, w)
            else:
                assert math.isnan(mean)
    assert val(m, "mlmon_exporter_join_pending", model=truth.model) == len(truth.preds) - len(joined)
    # every valid label either joined or still waits as an orphan
    orphans = len(truth.labels) - len(joined)
    assert sum(p.joiner.waiting_count(m) for m in [*p.joiner.models, None]) == orphans
    for src, kind in sources.items():
        if kind == "labels":
            n_bad = sum(truth.invalid.get(src, Counter()).values())
            assert truth.records[src] - n_bad == len(truth.labels)


def config(sources: list[dict[str, Any]], windows: list[str], models: tuple[str, ...] = ("m",)) -> Config:
    return parse_config({
        "global": {"windows": windows},
        "models": [{"name": name, "classes": list(CLASSES), "baseline": {"accuracy": 0.9}} for name in models],
        "sources": sources,
    })


# --- deeply nested JSON: in a child process, since a crash there kills the interpreter -------

DEEP_CHILD = r'''
import json, sys, tempfile, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from exporter.config import parse_config
from exporter.core.pipeline import Pipeline

kind, depth, n_good = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
good = [json.dumps({"id": f"p{i}", "prediction": i % 2, "confidence": 0.75}).encode() for i in range(n_good)]
deep = b'{"id": "deep", "prediction": 1, "junk": ' + b"[" * depth + b"]" * depth + b"}"
body = b"\n".join(good[: n_good // 2] + [deep] + good[n_good // 2:]) + b"\n"
if kind == "file":
    path = Path(tempfile.mkdtemp()) / "preds.jsonl"
    path.write_bytes(body)
    src = {"name": "s", "kind": "predictions", "type": "file", "path": str(path), "model": "m"}
else:
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    src = {"name": "s", "kind": "predictions", "type": "http", "model": "m",
           "url": f"http://127.0.0.1:{srv.server_address[1]}/"}
cfg = parse_config({"models": [{"name": "m", "classes": ["0", "1"]}], "sources": [src]})
p = Pipeline(cfg, lambda: 1767225600.0)
p.run_cycle()
st = p.source_stats["s"]
print(json.dumps({"records": st.records, "invalid": dict(st.invalid), "pending": p.joiner.pending_count("m")}))
'''
