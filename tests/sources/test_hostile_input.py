"""Hostile input at every source kind: the exporter stays up, memory stays bounded, every bad
record is counted exactly once by reason, and the valid records around them give exact numbers.

A seeded (derandomized) hypothesis fuzzer mixes valid records, whose numbers are recomputed
here directly, with malformed ones whose reason is known: random bytes, invalid UTF-8, huge
lines, deep nesting, JSON that is not an object, NaN / infinite / out-of-range confidences, bad
timestamps, broken CloudEvents, garbage HTTP pages. Everything goes through the real parts:
real files tailed by ``FileTailSource``, a real ``http.server`` polled by ``HTTPSource``,
``KServeSource.handle`` and the real exporter process, always through ``Pipeline``.

Cases that can kill the interpreter (a C-level crash on deeply nested JSON) run in a child
process, so a crash fails one test instead of the whole run.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import Config, parse_config
from exporter.core.pipeline import Pipeline
from exporter.http.server import Response
from exporter.report import catalogue
from exporter.report.snapshot import render
from exporter.sources import FileTailSource, HTTPSource, KServeSource
from exporter.sources.kserve import REQUEST_TYPE, RESPONSE_TYPE
from tests.helpers import free_port, wait_for

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
T0_MS = int(T0 * 1000)
CLASSES = ("0", "1")
LIMIT = 4096  # max_line_bytes of the fuzzed sources: "huge" stays cheap to generate
KSERVE_MAX_BODY = 4096


def fuzz(max_examples: int) -> settings:
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


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


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(p: Pipeline) -> Samples:
    text = render(catalogue.families(p.report)).decode("utf-8")
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


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


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


# --- file sources ----------------------------------------------------------------------------


@dataclass
class Stream:
    """Lines to append to one file, cut into chunks at arbitrary byte positions."""

    lines: list[bytes] = field(default_factory=list)

    def __repr__(self) -> str:
        return "Stream([" + ", ".join(short(line, 80) for line in self.lines) + "])"

    def chunks(self, cuts: list[int]) -> list[bytes]:
        data = b"".join(line + b"\n" for line in self.lines)
        bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
        return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def file_scenario(draw: st.DrawFn) -> tuple[Truth, Stream, Stream, list[bytes], list[int], list[int]]:
    truth = Truth("m")
    preds, labels, late = Stream(), Stream(), []
    valid_lines: list[bytes] = []
    # "objects": every line a JSON object (blocks of 64+ such lines take the vectorised path)
    # "uniform": every record written the same way, so blocks of 64+ lines take the vectorised
    # path, and only mistakes that path judges itself (values of the right JSON type)
    mode = draw(st.sampled_from(["mixed", "objects", "uniform"]))
    kinds = {"mixed": ["ok", "ok", "bad", "bad", "dup"], "objects": ["ok"] * 6 + ["bad", "dup"],
             "uniform": ["ok"] * 8 + ["bad", "dup"]}
    pred_strategy, bad_strategy = valid_preds, bad_preds if mode == "mixed" else field_bad_preds
    if mode == "uniform":
        forms = {"cls_form": draw(st.integers(0, 2)), "version_form": draw(st.integers(0, 2)),
                 "conf_style": draw(st.sampled_from(["confidence", "both"])), "nest": 0, "unicode_id": False,
                 "ts_style": draw(st.sampled_from(TS_STYLES))}
        pred_strategy = valid_pred_strategy(**forms)
        text_ts = forms["ts_style"] in ("text", "rfc3339", "offset")
        bad_strategy = st.one_of(
            st.just(Bad("missing_id", drop=("id",))),
            st.just(Bad("missing_prediction", drop=("prediction",))),
            st.sampled_from([-0.5, 1.5, 2.0, 1e300]).map(lambda v: Bad("invalid_confidence", changes=(
                ("confidence", v), ("prediction", [1, "1", 1.0][forms["cls_form"]]),
                ("timestamp", ts_value(T0_MS - 5000, forms["ts_style"]))))),
            st.sampled_from([2, 7]).map(lambda v: Bad("unknown_class", changes=(
                ("prediction", [v, str(v), float(v)][forms["cls_form"]]),
                ("timestamp", ts_value(T0_MS - 5000, forms["ts_style"]))))),
            st.sampled_from(["yesterday", "2026-02-30T00:00:00Z"] if text_ts else [0.0]).map(
                lambda v: Bad("invalid_timestamp" if text_ts else None, changes=(("timestamp", v),))),
        ).filter(lambda b: b.reason is not None)
    size = draw(st.integers(0, 200))
    for kind in draw(st.lists(st.sampled_from(kinds[mode]), min_size=size, max_size=size)):
        n = len(preds.lines)
        if kind == "ok":
            vp = draw(pred_strategy)
            rid = f"p{n}" + ("-ü✓" if vp.unicode_id else "")
            line = vp.line(rid)
            truth.preds[rid] = (vp.version, vp.cls, vp.confidence(), vp.ts_ms / 1000)
            valid_lines.append(line)
            truth.count("preds", None)
        elif kind == "dup" and valid_lines:
            line = draw(st.sampled_from(valid_lines))
            truth.count("preds", "duplicate")
        else:
            bad = draw(bad_strategy)
            line = bad.line(f"xp{n}", PRED_BASE)
            if bad.reason is not None:
                truth.count("preds", bad.reason)
        preds.lines.append(line)

    pred_ids = list(truth.preds)
    label_lines: list[bytes] = []
    size = draw(st.integers(0, 150))
    kinds = {"mixed": ["ok", "ok", "orphan", "bad", "bad", "dup"], "objects": ["ok"] * 6 + ["orphan", "bad", "dup"],
             "uniform": ["ok"] * 8 + ["orphan", "dup"]}
    bad_strategy = bad_labels if mode == "mixed" else field_bad_labels
    for kind in draw(st.lists(st.sampled_from(kinds[mode]), min_size=size, max_size=size)):
        n = len(labels.lines)
        if kind == "ok" and len(truth.labels) < len(pred_ids):
            rid = draw(st.sampled_from([i for i in pred_ids if i not in truth.labels]))
        elif kind == "orphan":
            rid = f"o{n}"
        elif kind == "dup" and label_lines:
            labels.lines.append(draw(st.sampled_from(label_lines)))
            truth.count("labels", "duplicate")
            continue
        else:
            bad = draw(bad_strategy)
            labels.lines.append(bad.line(f"xl{n}", LABEL_BASE))
            if bad.reason is not None:
                truth.count("labels", bad.reason)
            continue
        vl = draw(valid_labels)
        line = vl.line(rid)
        truth.labels[rid] = (vl.cls, vl.ts_ms / 1000)
        truth.count("labels", None)
        label_lines.append(line)
        labels.lines.append(line)
    # labels of a class the model does not have, for predictions that arrived before them
    unlabelled = [i for i in pred_ids if i not in truth.labels]
    for rid in draw(st.lists(st.sampled_from(unlabelled), unique=True, max_size=3)) if unlabelled else []:
        late.append(dumps({"id": rid, "label": draw(st.sampled_from(["7", 7, "yes"]))}))
        truth.count("labels", "unknown_class")
    cuts = st.lists(st.integers(0, 1 << 30), max_size=4)
    return truth, preds, labels, late, draw(cuts), draw(cuts)


@fuzz(60)
@given(file_scenario())
def test_file_sources_fuzzed(scenario: tuple[Truth, Stream, Stream, list[bytes], list[int], list[int]]) -> None:
    truth, preds, labels, late, pred_cuts, label_cuts = scenario
    windows = {"10m": 600.0, "1h": 3600.0}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pf, lf = d / "preds.jsonl", d / "labels.jsonl"
        pf.touch()
        lf.touch()
        cfg = config([
            {"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m",
             "max_line_bytes": LIMIT},
            {"name": "labels", "kind": "labels", "type": "file", "path": str(lf), "max_line_bytes": LIMIT},
        ], list(windows))
        clock = Clock(T0)
        sources = [FileTailSource(s) for s in cfg.sources]
        p = Pipeline(cfg, clock, sources=sources)
        pc, lc = preds.chunks(pred_cuts), labels.chunks(label_cuts)
        try:
            for i in range(max(len(pc), len(lc))):
                if i < len(pc):
                    append(pf, pc[i])
                if i < len(lc):
                    append(lf, lc[i])
                p.run_cycle()
                clock.t += 1
            append(lf, b"".join(line + b"\n" for line in late))
            p.run_cycle()
            check(p, truth, windows, clock.t, sources={"preds": "predictions", "labels": "labels"})
        finally:
            for s in sources:
                s.close()


def test_huge_line_streams_past_with_bounded_memory(tmp_path: Path) -> None:
    """A 10 MB line (over the default 1 MiB limit) written in two halves between polls is
    skipped as it streams past: counted once, never held whole, the lines around it kept."""
    pf = tmp_path / "preds.jsonl"
    cfg = config([{"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m"}], ["1h"])
    line_size = 10 << 20
    huge = dumps({"id": "huge", "prediction": 1, "pad": "x" * line_size})
    before = b"".join(dumps({"id": f"a{i}", "prediction": i % 2, "confidence": 0.5}) + b"\n" for i in range(100))
    after = b"".join(dumps({"id": f"b{i}", "prediction": 1, "confidence": 0.5}) + b"\n" for i in range(100))
    pf.write_bytes(before + huge[: line_size // 2])
    src = FileTailSource(cfg.sources[0])
    p = Pipeline(cfg, Clock(T0), sources=[src])
    p.run_cycle()  # warm-up: imports, first allocations
    tracemalloc.start()
    try:
        append(pf, huge[line_size // 2:] + b"\n" + after)
        tracemalloc.reset_peak()
        p.run_cycle()
        p.run_cycle()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        src.close()
    stats = p.source_stats["preds"]
    assert stats.records == 201
    assert dict(stats.invalid) == {"line_too_long": 1}
    assert p.joiner.pending_count("m") == 200
    # bounded by the line limit (1 MiB) and the read chunk, not by the line
    assert peak < line_size // 2, f"peak {peak / 2**20:.1f} MiB while skipping a {line_size >> 20} MiB line"


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


@pytest.mark.parametrize(("kind", "depth", "n_good"), [
    ("file", 100_000, 10),  # a small block
    ("file", 2_000, 100),  # guarded before the block decoder sees it: the per-record parser
    ("file", 100_000, 100),
    ("http", 100_000, 100),  # JSON lines from an HTTP source take the same path
])
def test_deeply_nested_json_is_invalid_json_not_a_crash(kind: str, depth: int, n_good: int) -> None:
    r = subprocess.run([sys.executable, "-c", DEEP_CHILD, kind, str(depth), str(n_good)],
                       capture_output=True, text=True, timeout=120)
    tail = r.stderr[-1500:]
    assert r.returncode == 0, f"{kind} source, nesting {depth}: child exited {r.returncode}\n{tail}"
    assert json.loads(r.stdout) == {"records": n_good + 1, "invalid": {"invalid_json": 1}, "pending": n_good}


def test_lone_surrogate_in_a_label_value_does_not_freeze_metrics(tmp_path: Path) -> None:
    """``"\\ud800"`` is valid JSON but not encodable text: as a model version (or a discovered
    class) it must not reach a label value that the exposition then cannot encode."""
    pf = tmp_path / "preds.jsonl"
    pf.write_bytes(b'{"id": "a", "prediction": 1, "confidence": 0.5, "model_version": "\\ud800"}\n'
                   b'{"id": "b", "prediction": 1, "confidence": 0.5, "model_version": "1"}\n')
    cfg = config([{"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m"}], ["1h"])
    src = FileTailSource(cfg.sources[0])
    p = Pipeline(cfg, Clock(T0), sources=[src])
    try:
        p.run_cycle()
        text = render(catalogue.families(p.report)).decode("utf-8")  # what every scrape serves
    finally:
        src.close()
    assert 'mlmon_window_predictions{model="m",model_version="1",window="1h"} 1.0' in text


def test_label_of_unknown_class_is_counted_the_same_in_either_order(tmp_path: Path) -> None:
    """A label whose class the model does not have is the label source's invalid record, and
    does not use up its prediction, whether it arrives before or after that prediction."""
    results = []
    for order in ("prediction first", "label first"):
        d = tmp_path / order.replace(" ", "-")
        d.mkdir()
        pf, lf = d / "p.jsonl", d / "l.jsonl"
        pf.touch()
        lf.touch()
        cfg = config([{"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m"},
                      {"name": "labels", "kind": "labels", "type": "file", "path": str(lf)}], ["1h"])
        sources = [FileTailSource(s) for s in cfg.sources]
        clock = Clock(T0)
        p = Pipeline(cfg, clock, sources=sources)
        pred = (pf, b'{"id": "a", "prediction": 1, "confidence": 0.9}\n')
        bad = (lf, b'{"id": "a", "label": "7"}\n')
        steps = [pred, bad] if order == "prediction first" else [bad, pred]
        for path, data in [*steps, (lf, b'{"id": "a", "label": 1}\n')]:
            append(path, data)
            p.run_cycle()
            clock.t += 1
        m = samples(p)
        results.append((order, {s: dict(invalid_of(m, s)) for s in ("preds", "labels")},
                        val(m, "mlmon_correct_predictions_total", model="m", model_version="unknown")))
        for s in sources:
            s.close()
    want = {"preds": {}, "labels": {"unknown_class": 1}}
    assert results == [("prediction first", want, 1.0), ("label first", want, 1.0)]


# --- the HTTP source -------------------------------------------------------------------------


class PageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.pages: deque[tuple[int, str, bytes]] = deque()
        self.served = 0
        super().__init__(("127.0.0.1", 0), _PageHandler)


class _PageHandler(BaseHTTPRequestHandler):
    server: PageServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status, ctype, body = self.server.pages.popleft() if self.server.pages else (200, "application/json", b"[]")
        self.server.served += 1
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    srv = PageServer()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


HTTP_MAX_RESPONSE = 4 << 20  # pages of the fuzzer stay far below; one error page is above


def test_http_page_with_a_huge_line(page_server: PageServer) -> None:
    """A 10 MB line in a JSON-lines page: counted as too long; the poll holds the page (up to
    ``max_response_bytes``) and its decoded lines, a small multiple of the body, no more."""
    huge = dumps({"id": "huge", "label": 1, "pad": "x" * (10 << 20)})
    body = b'{"id": "a", "label": 1}\n' + huge + b'\n{"id": "b", "label": 0}\n'
    url = f"http://127.0.0.1:{page_server.server_address[1]}/labels"
    cfg = config([{"name": "lbl", "kind": "labels", "type": "http", "url": url, "interval": "1s"}], ["1h"])
    src = HTTPSource(cfg.sources[0])
    clock = Clock(T0)
    p = Pipeline(cfg, clock, sources=[src])
    page_server.pages.clear()
    page_server.pages.extend([(200, "application/json", b"[]"), (200, "application/x-ndjson", body)])
    try:
        p.run_cycle()  # warm-up
        clock.t += 100
        tracemalloc.start()
        try:
            p.run_cycle()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        src.close()
    assert src.health.up
    stats = p.source_stats["lbl"]
    assert (stats.records, dict(stats.invalid)) == (3, {"line_too_long": 1})
    assert peak < 5 * len(body), f"peak {peak / 2**20:.1f} MiB for a {len(body) / 2**20:.1f} MiB page"


def _label_item(bad: Bad, rid: str) -> tuple[str | None, Any] | None:
    """A malformed label as an item of a JSON array page, with its reason; None when it has no
    such form (bytes that are not JSON, and the size limit, exist only for lines)."""
    if bad.raw is not None:
        reason = classify_raw(bad.raw, 1 << 30)
        return (reason, json.loads(bad.raw.decode())) if reason == "not_an_object" else None
    if bad.pad:
        return None
    return bad.reason, json.loads(bad.line(rid, LABEL_BASE).decode())


HTTP_ERROR_BODIES = [
    b"42", b"true", b'"text"', b"null", b'{"items": 5}', b'{"items": {}}', b'{"items": [], "next_cursor": {"a": 1}}',
    b'{"items": [], "next_cursor": 1.5}', b'[{"id": "\xff"}]', b"\xff\xfe[]",
    b"[" * 100_000, b"[" + b'{"id": "big", "label": 1},' * 200_000 + b"1]",  # over max_response_bytes
]
HTTP_EMPTY_BODIES = [b"", b"  \n", b"\xef\xbb\xbf", b"[]", b'{"items": []}']


@dataclass
class Page:
    status: int
    ctype: str
    body: bytes
    error: bool

    def __repr__(self) -> str:  # falsifying examples stay readable
        return f"Page({self.status}, {self.ctype!r}, {short(self.body)}, error={self.error})"


@st.composite
def http_scenario(draw: st.DrawFn) -> tuple[Truth, list[bytes], list[Page]]:
    """Predictions for a file, and the label pages an HTTP store serves one per poll, with the
    truth of what a correct exporter makes of them."""
    truth = Truth("m")
    pred_lines = []
    for i, vp in enumerate(draw(st.lists(valid_preds, max_size=40))):
        pred_lines.append(vp.line(f"p{i}"))
        truth.preds[f"p{i}"] = (vp.version, vp.cls, vp.confidence(), vp.ts_ms / 1000)
        truth.count("preds", None)
    pred_ids = list(truth.preds)
    pages: list[Page] = []
    sent: list[dict[str, Any]] = []  # valid labels on pages that were read
    n = 0
    for kind in draw(st.lists(st.sampled_from(["array", "items", "lines", "ndjson", "error", "empty"]),
                              min_size=1, max_size=14)):
        if kind == "error":
            status, body = draw(st.one_of(
                st.tuples(st.sampled_from([400, 401, 404, 500, 503]), st.binary(max_size=50)),
                st.binary(max_size=200).map(lambda b: (200, b"<html>" + b)),
                st.sampled_from(HTTP_ERROR_BODIES).map(lambda b: (200, b)),
            ))
            pages.append(Page(status, "application/json", body, error=True))
            continue
        if kind == "empty":
            pages.append(Page(200, "application/json", draw(st.sampled_from(HTTP_EMPTY_BODIES)), error=False))
            continue
        items: list[Any] = []
        lines: list[bytes] = []
        if kind == "lines":  # plain JSON lines must start with a JSON line: a label that waits
            n += 1
            first = draw(valid_labels)
            lines.append(first.line(f"o{n}"))
            truth.labels[f"o{n}"] = (first.cls, first.ts_ms / 1000)
            truth.count("lbl", None)
            sent.append(json.loads(lines[0]))
        for what in draw(st.lists(st.sampled_from(["ok", "ok", "orphan", "bad", "bad", "dup"]), min_size=1,
                                  max_size=12)):
            n += 1
            if what == "bad":
                bad = draw(bad_labels)
                if kind in ("array", "items"):
                    item = _label_item(bad, f"xl{n}")
                    if item is not None:
                        items.append(item[1])
                        truth.count("lbl", item[0])
                else:
                    line = bad.line(f"xl{n}", LABEL_BASE).rstrip(b"\r")  # the source strips CRLF's CR
                    lines.append(line)
                    if line.strip():
                        truth.count("lbl", classify_raw(line) if bad.raw is not None else bad.reason)
                continue
            if what == "dup" and sent:
                rec = draw(st.sampled_from(sent))
                truth.count("lbl", "duplicate")
            else:
                free = [i for i in pred_ids if i not in truth.labels]
                rid = draw(st.sampled_from(free)) if what == "ok" and free else f"o{n}"
                vl = draw(valid_labels)
                rec = json.loads(vl.line(rid))
                truth.labels[rid] = (vl.cls, vl.ts_ms / 1000)
                truth.count("lbl", None)
                sent.append(rec)
            items.append(rec)
            lines.append(dumps(rec))
        if kind == "array":
            pages.append(Page(200, "application/json", dumps(items), False))
        elif kind == "items":
            pages.append(Page(200, "application/json", dumps({"items": items, "next_cursor": f"c{n}"}), False))
        else:
            ctype = "application/x-ndjson" if kind == "ndjson" else "application/json"
            pages.append(Page(200, ctype, b"\n".join(lines) + b"\n", False))
    return truth, pred_lines, pages


@fuzz(60)
@given(http_scenario())
def test_http_source_fuzzed(page_server: PageServer, scenario: tuple[Truth, list[bytes], list[Page]]) -> None:
    truth, pred_lines, pages = scenario
    windows = {"1h": 3600.0, "24h": 86400.0}
    with tempfile.TemporaryDirectory() as tmp:
        pf = Path(tmp) / "preds.jsonl"
        pf.write_bytes(b"".join(line + b"\n" for line in pred_lines))
        page_server.pages.clear()
        page_server.pages.extend((pg.status, pg.ctype, pg.body) for pg in pages)
        url = f"http://127.0.0.1:{page_server.server_address[1]}/labels"
        cfg = config([
            {"name": "preds", "kind": "predictions", "type": "file", "path": str(pf), "model": "m"},
            {"name": "lbl", "kind": "labels", "type": "http", "url": url, "interval": "1s", "timeout": "5s",
             "max_line_bytes": LIMIT},
        ], list(windows))
        clock = Clock(T0)
        http_src = HTTPSource(cfg.sources[1], rng=random.Random(1), max_response_bytes=HTTP_MAX_RESPONSE)
        sources = [FileTailSource(cfg.sources[0]), http_src]
        p = Pipeline(cfg, clock, sources=sources)
        try:
            served = page_server.served
            for pg in pages:
                p.run_cycle()
                assert http_src.health.up == (not pg.error), pg
                clock.t += 20  # past any backoff (at most 10 intervals)
            assert page_server.served - served == len(pages)
            assert http_src.health.errors_total == sum(pg.error for pg in pages)
            check(p, truth, windows, clock.t - 20, sources={"preds": "predictions", "lbl": "labels"})
        finally:
            for s in sources:
                s.close()


# --- KServe ----------------------------------------------------------------------------------


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
        clock = Clock(T0)
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
    ks = KServeSource(cfg.sources[0], cfg.model, clock=Clock(T0))
    p = Pipeline(cfg, Clock(T0), sources=[ks])
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
    clock = Clock(T0)
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
    ks = KServeSource(cfg.sources[0], cfg.model, clock=Clock(T0))
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


# --- the real exporter process -----------------------------------------------------------------


def spawn(cfg: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "exporter", f"--config.file={cfg}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def scrape(url: str) -> Samples:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def raw_request(port: int, data: bytes) -> bytes:
    """Send bytes and end the request (half-close); the first bytes of the answer, if any."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        try:
            return s.recv(200)
        except OSError:
            return b""


REAL_BAD = [
    (b"\xff\xfe garbage", "invalid_json"),
    (b'{"id": "u\xc0\xaf", "prediction": 1}', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'{"id": "c", "prediction": 1, "confidence": NaN}', "invalid_confidence"),
    (b'{"id": "t", "prediction": 1, "timestamp": "x"}', "invalid_timestamp"),
    (b'{"id": "n", "prediction": 1, "j": ' + b"[" * 5000, "invalid_json"),
    (b"x" * (2 << 20), "line_too_long"),
    (b'{"id": "k%d", "prediction": "7"}', "unknown_class"),
]


def test_real_exporter_stays_up_and_exact(tmp_path: Path) -> None:
    rng = random.Random(20260101)
    pf, lf = tmp_path / "preds.jsonl", tmp_path / "labels.jsonl"
    preds, labels, want_invalid = [], [], Counter()
    correct = total = 0
    for i in range(300):
        cls = rng.choice(CLASSES)
        preds.append(dumps({"id": f"p{i}", "prediction": int(cls), "confidence": rng.random(),
                            "timestamp": T0 - 1}))  # far in the past for the wall clock: only counters
        if i % 3:
            lab = rng.choice(CLASSES)
            labels.append(dumps({"id": f"p{i}", "label": lab}))
            total += 1
            correct += lab == cls
        if i % 7 == 0:
            bad, reason = REAL_BAD[(i // 7) % len(REAL_BAD)]
            preds.append(bad.replace(b"%d", str(i).encode()))
            want_invalid[reason] += 1
    pf.write_bytes(b"".join(x + b"\n" for x in preds))
    lf.write_bytes(b"".join(x + b"\n" for x in labels))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
global: {{poll_interval: 200ms, windows: [1h]}}
models:
  - {{name: m, classes: ["0", "1"], baseline: {{accuracy: 0.9}}}}
  - {{name: k, classes: ["0", "1"], baseline: {{accuracy: 0.9}}}}
sources:
  - {{name: preds, kind: predictions, type: file, path: "{pf}", model: m}}
  - {{name: labels, kind: labels, type: file, path: "{lf}"}}
  - {{name: kserve, kind: predictions, type: kserve, model_from: inferenceservicename, max_body_bytes: 65536}}
""")
    port = free_port()
    proc = spawn(cfg, port, tmp_path / "exporter.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 30, "exporter ready")
        # hostile KServe events and hostile HTTP
        statuses: Counter[int] = Counter()
        for j in range(150):
            h = {"ce-id": f"k{j}", "ce-type": rng.choice([RESPONSE_TYPE, REQUEST_TYPE, "x"]),
                 "ce-inferenceservicename": rng.choice(["k", "k", "nope"]), "content-type": "application/json"}
            body = rng.choice([
                bytes(rng.randrange(256) for _ in range(rng.randrange(200))),
                dumps({"predictions": [[rng.random(), rng.random()] for _ in range(rng.randrange(4))]}),
                dumps({"predictions": [rng.choice([0, 1, "1", 7, None, [0.5], {"a": 1}])]}),
                b'{"predictions": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                b"x" * 70_000,
            ])
            r = requests.post(f"{url}/api/v1/kserve", data=body, headers=h, timeout=5)
            statuses[r.status_code] += 1
        assert set(statuses) <= {200, 400, 413, 503}, statuses
        for junk in (b"GARBAGE\r\n\r\n", b"POST /api/v1/kserve HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                     b"POST /api/v1/kserve HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
                     b"GET /metrics?" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00"):
            assert not raw_request(port, junk).startswith(b"HTTP/1.1 2"), junk[:40]
        # a body cut short by the client: the server reads what came and the receiver refuses it
        answer = raw_request(port, b"POST /api/v1/kserve HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        statuses[int(answer.split()[1])] += 1
        assert requests.get(f"{url}/-/healthy", timeout=2).status_code == 200

        refused = sum(n for s, n in statuses.items() if s != 200)

        def ingested() -> Samples | None:
            m = scrape(url)
            kserve_refusals = sum(v for k, v in invalid_of(m, "kserve").items()
                                  if k not in ("duplicate", "unknown_class", "unknown_model"))
            return m if val(m, "mlmon_exporter_records_total", 0.0, source="preds") == len(preds) and \
                val(m, "mlmon_exporter_records_total", 0.0, source="labels") == len(labels) and \
                kserve_refusals >= refused else None

        m = wait_for(ingested, 30, "all lines read")
        assert invalid_of(m, "preds") == want_invalid
        assert invalid_of(m, "labels") == Counter()
        base = {"model": "m", "model_version": "unknown"}
        assert val(m, "mlmon_correct_predictions_total", **base) == correct
        assert sum(v for (n, k), v in m.items() if n == "mlmon_labeled_predictions_total"
                   and dict(k)["model"] == "m") == total
        # the KServe source: every record applied or counted, every refusal counted
        records = val(m, "mlmon_exporter_records_total", 0.0, source="kserve")
        applied = sum(v for (n, k), v in m.items() if n == "mlmon_predictions_total" and dict(k)["model"] == "k")
        inv = invalid_of(m, "kserve")
        assert records == applied + sum(inv.values())
        refusals = sum(v for k, v in inv.items() if k not in ("duplicate", "unknown_class", "unknown_model"))
        assert refusals == refused
        assert proc.poll() is None
    finally:
        proc.terminate()
        rc = proc.wait(15)
    assert rc == 0, (tmp_path / "exporter.log").read_text()[-3000:]


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_real_exporter_survives_a_deeply_nested_line(tmp_path: Path, depth: int) -> None:
    """One ordinary-looking JSON-lines batch with a deeply nested record in it: the exporter
    counts it as invalid JSON and keeps reading (not: dies, or stops ingesting for good)."""
    pf = tmp_path / "preds.jsonl"
    pf.write_bytes(b"".join(dumps({"id": f"a{i}", "prediction": 1, "confidence": 0.5}) + b"\n" for i in range(10)))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"""
global: {{poll_interval: 100ms, windows: [1h]}}
models: [{{name: m, classes: ["0", "1"]}}]
sources: [{{name: preds, kind: predictions, type: file, path: "{pf}", model: m}}]
""")
    port = free_port()
    proc = spawn(cfg, port, tmp_path / "exporter.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: val(scrape(url), "mlmon_exporter_records_total", 0.0, source="preds") == 10, 30, "first lines")
        deep = b'{"id": "deep", "prediction": 1, "j": ' + b"[" * depth + b"]" * depth + b"}"
        append(pf, b"".join(dumps({"id": f"b{i}", "prediction": 1}) + b"\n" for i in range(70)) + deep + b"\n")
        try:
            m = wait_for(lambda: (lambda m: m if val(m, "mlmon_exporter_records_total", 0.0, source="preds") == 81
                                  else None)(scrape(url)), 15, "the batch with the deep line read")
        except (TimeoutError, requests.ConnectionError) as e:
            log = (tmp_path / "exporter.log").read_text()[-1500:]
            state = "alive but no longer ingesting" if proc.poll() is None else f"dead (exit {proc.poll()})"
            pytest.fail(f"nesting {depth}: exporter {state} ({type(e).__name__})\n{log}")
        assert invalid_of(m, "preds") == Counter({"invalid_json": 1})
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)

