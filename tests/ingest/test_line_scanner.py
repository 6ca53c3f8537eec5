"""The compiled line scanner (exporter/ingest/_linescan.c) takes exactly the plainly valid lines,
and what it gives for them is the per-record reference's result, down to the bits of every number.

Which lines it takes is asserted line by line (``native_records``), so a scanner that silently
left everything to msgspec would fail here, not pass by falling back. The seeded fuzzers of
test_block_parser.py and test_records.py run every case through it as well (``both_paths``).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np
import pytest

from exporter.foundation import cores as cores_module
from exporter.ingest import compiled_columns, line_scanner
from exporter.ingest.batch_ops import positive_probabilities
from exporter.ingest.batches import ProbabilityTable, concat_batches
from exporter.ingest.block_parser import NATIVE_MISSES, NATIVE_RUN_MIN, Block, BlockParser
from exporter.ingest.ids import encode_ids, stable_id_hashes
from exporter.ingest.records import RecordSpec, _labels_per_record, _predictions_per_record
from tests.helpers import missing
from tests.ingest.reference import NOW, assert_same_result, both_paths


@pytest.fixture(autouse=True)
def _scanner_built() -> None:
    if not line_scanner.AVAILABLE:  # a failure under CI, which installs gcc and Python's headers
        missing("the compiled line scanner (setup.py builds it where gcc and Python.h are)")
    if not compiled_columns.AVAILABLE:
        missing("the compiled ingest columns (setup.py builds them where gcc and Python.h are)")


SPEC = RecordSpec(model="m", feature_names=("a", "b"))
LABELS = RecordSpec()
BASE = '"id":"r1","prediction":1,"timestamp":1764151200'


def _taken(kind: str, spec: RecordSpec, raw: bytes) -> bool:
    parser = BlockParser(kind, spec, small_run=1)
    got = parser.parse_lines([raw], NOW)
    ref = (_predictions_per_record if kind == "predictions" else _labels_per_record)([raw], spec, NOW, ())
    assert_same_result(got, ref)
    return parser.native_records == 1


TAKEN = [
    "{" + BASE + "}",
    '{"id":7,"prediction":true,"timestamp":1764151200123}',
    '{"id":"r1","prediction":"cat","confidence":null,"probabilities":null,"features":null}',
    '{"id":"é-ü","prediction":0,"probabilities":{},"timestamp":"2026-11-26T10:00:00Z"}',
    '{"id":"r1","prediction":-3,"timestamp":"yesterday"}',  # taken; the timestamp is then refused
    '{"id":"r1","prediction":1,"confidence":1,"probabilities":{"0":0,"1":1.0,"ü":0.5e-1}}',
    '{"id":"r1","prediction":1,"features":{"a":null,"b":[1,{"x":"\\n"}]}}',
    '{"id":"r1","prediction":1,"features":{"a":{"k":1},"b":-0}}',
    '{"id":"r1","prediction":1,"features":5}',
    '{"id":"r1","prediction":1,"features":{"a":1E2,"b":-0.0,"a ":"text is fine where unmapped"}}',
    '{"id":"r1","prediction":1,"features":{"a":123456789012345678901234567890,"b":1e-320}}',
    # escapes anywhere unmapped are fine (an escaped key at a mapped level is not: see LEFT)
    '{ "id" : "r1" ,\t"prediction" : 1 , "other" : {"deep": [[[]]], "x\\"y": "\\ud800", "k\\u0041": 1}, "": [] }',
    '{"id":"r1","prediction":1,"model_version":"v1","model":"ignored: fixed by the source"}',
    '{"id":"123456789012345678","prediction":1}',
]

LEFT = [
    '{"id":"r\\u0031","prediction":1}',  # escaped mapped text
    '{"i\\u0064":"r1","prediction":1}',  # an escaped key could spell a mapped one
    '{"id":"r1","id":"r2","prediction":1}',  # repeated mapped key: json keeps the last
    '{"id":"r1","prediction":1,"features":{"a":1,"a":2}}',
    '{"id":"r1","prediction":1,"probabilities":{"0":0.5,"0":0.25}}',
    '{"id":-0,"prediction":1}',  # str(int("-0")) is "0"
    '{"id":1.5,"prediction":1}',
    '{"id":1234567890123456789,"prediction":1}',  # 19 digits
    '{"id":true,"prediction":1}',
    '{"id":"","prediction":1}',
    '{"id":"r1"}',  # missing prediction
    '{"id":"r1","prediction":null}',
    '{"id":"r1","prediction":1,"features":{"a":1e400}}',
    '{"id":"r1","prediction":1,"features":{"a":NaN}}',
    '{"id":"r1","prediction":1,"features":{"a":"DE"}}',
    '{"id":"r1","prediction":1,"features":{"a":false}}',
    '{"id":"r1","prediction":1,"confidence":Infinity}',
    '{"id":"r1","prediction":1,"confidence":1.5}',
    '{"id":"r1","prediction":1,"confidence":true}',
    '{"id":"r1","prediction":1,"probabilities":{"0":"0.5"}}',
    '{"id":"r1","prediction":1,"probabilities":{"":0.5}}',
    '{"id":"r1","prediction":1,"probabilities":[0.5]}',
    '{"id":"r1","prediction":1,"timestamp":true}',
    '{"id":"r1","prediction":1,"timestamp":"2026-11-26T10:00:00\\u005a"}',
    '{"id":"r1","prediction":1,}',  # invalid JSON
    '{"id":"r1","prediction":01}',
    '{"id":"r1","prediction":1}{"id":"r2"}',  # extra data
    '{"id":"r1","prediction":1,"x":"\x01"}',  # a raw control character
    '{"id":"r1","prediction":1,"x":' + "[" * 70 + "]" * 70 + "}",  # deeper than the scanner goes
]


@pytest.mark.parametrize("raw", TAKEN)
def test_the_scanner_takes_plainly_valid_lines(raw: str) -> None:
    assert _taken("predictions", SPEC, raw.encode())


@pytest.mark.parametrize("raw", LEFT)
def test_the_scanner_leaves_every_other_line_to_the_decoders(raw: str) -> None:
    assert not _taken("predictions", SPEC, raw.encode())


@pytest.mark.parametrize(("raw", "taken"), [
    ('{"id":"r1","label":1}', True),
    ('{"id":"r1","label":false,"model":null}', True),
    ('{"id":"r1","label":"cat","model":"fraud","timestamp":"2026-11-26 10:00:00"}', True),
    ('{"id":"r1","label":1,"model":3}', True),
    ('{"id":"r1","label":1,"model":""}', False),  # the reference makes that None: left to it
    ('{"id":"r1","label":1.0}', False),
    ('{"id":"r1","label":1,"model":[1]}', False),
])
def test_labels(raw: str, taken: bool) -> None:
    assert _taken("labels", LABELS, raw.encode()) is taken


def test_versions_and_models_from_records() -> None:
    spec = RecordSpec(feature_names=("a",))
    assert _taken("predictions", spec, b'{"id":"r1","model":"fraud","prediction":1,"model_version":3}')
    assert _taken("predictions", spec, b'{"id":"r1","model":"fraud","prediction":1,"model_version":null}')
    assert _taken("predictions", spec, b'{"id":"r1","model":"fraud","prediction":1}')  # version "unknown"
    assert _taken("predictions", spec, b'{"id":"r1","model":true,"prediction":1,"model_version":false}')
    assert not _taken("predictions", spec, b'{"id":"r1","prediction":1}')  # missing model
    assert not _taken("predictions", spec, b'{"id":"r1","model":"fraud","prediction":1,"model_version":""}')


def test_nested_paths_and_a_features_object_under_them() -> None:
    spec = RecordSpec(fields={"id": "request.id", "prediction": "out.class", "features": "request.inputs"},
                      model="m", feature_names=("a.b", "c"))
    assert _taken("predictions", spec, b'{"request":{"id":"r1","inputs":{"a.b":1.5,"c":2}},"out":{"class":1}}')
    assert _taken("predictions", spec, b'{"request":{"id":"r1","inputs":[1]},"out":{"class":1}}')
    assert not _taken("predictions", spec, b'{"request":"r1","out":{"class":1}}')  # no id under a text
    assert not _taken("predictions", spec, b'{"request":{"id":"r1"},"request":{"id":"r2"},"out":{"class":1}}')
    # clashing paths are the reference's alone: no scanner at all
    clash = RecordSpec(fields={"id": "a", "prediction": "a.b"}, model="m")
    assert BlockParser("predictions", clash)._scanner is None


def _bits(values: np.ndarray) -> list[int]:
    return [struct.unpack("<q", struct.pack("<d", v))[0] for v in values.tolist()]


def test_numbers_are_read_to_the_bit_as_float_reads_them() -> None:
    """Literals of every shape (up to 25 digits, exponents to +-330, signs, zeros), against
    ``float()`` of ``json.loads``' value, compared as bit patterns (so -0.0 is not 0.0)."""
    rng = np.random.default_rng(20261204)
    literals = ["0", "-0", "0.0", "-0.0", "1e22", "1e23", "9007199254740993", "-9007199254740993",
                "0.1", "2.2250738585072011e-308", "4.9e-324", "2e-324", "1.7976931348623157e308",
                "123456789012345.6", "1234567890123456.7", "0.000001e-300", "5e-1", "1E+2"]
    for _ in range(4000):
        digits = "".join(rng.choice(list("0123456789"), size=int(rng.integers(1, 26))))
        intpart = digits.lstrip("0") or "0"
        lit = ("-" if rng.random() < 0.3 else "") + intpart
        if rng.random() < 0.6:
            lit += "." + "".join(rng.choice(list("0123456789"), size=int(rng.integers(1, 12))))
        if rng.random() < 0.5:
            lit += "e" + str(int(rng.integers(-330, 330)))
        literals.append(lit)
    lines = [f'{{"id":"r{i}","prediction":1,"features":{{"a":{lit}}}}}'.encode() for i, lit in enumerate(literals)]
    parser = BlockParser("predictions", SPEC, small_run=1)
    got = parser.parse_lines(lines, NOW)
    assert_same_result(got, _predictions_per_record(lines, SPEC, NOW, ()))
    finite = [lit for lit in literals if np.isfinite(float(json.loads(lit)))]
    assert parser.native_records == len(finite)  # the rest (beyond double range) went to msgspec
    want = np.array([float(json.loads(lit)) for lit in literals])
    col = got.batch.features["a"]  # type: ignore[union-attr]
    assert col.dtype == np.float64
    assert _bits(col) == _bits(want)


def test_repr_length_numbers_and_exact_halfway_cases() -> None:
    """16-19 significant digits (what ``repr`` writes) take the scanner's 128-bit integer path:
    exact midpoints between two doubles (must round to even) and their neighbours, written with
    the decimal point and exponent moved about, and random ones, bit for bit against ``float()``."""
    rng = np.random.default_rng(7)
    literals: list[str] = []
    for _ in range(1500):
        d = float(rng.integers(2**53, 10**19 // 2, dtype=np.uint64))
        mid = (int(d) + int(np.nextafter(d, np.inf))) // 2  # an integer for d >= 2^54; 2^53 + 1 included
        for m in (mid - 1, mid, mid + 1):
            text = str(m)
            k = int(rng.integers(0, len(text)))
            shifted = f"{text[:len(text) - k]}.{text[len(text) - k:]}" if k else text
            literals += [text, f"{shifted}e{k}", f"{text}e-{int(rng.integers(1, 22))}"]
    for _ in range(3000):
        digits = int(rng.integers(16, 20))
        mant = str(int(rng.integers(10 ** (digits - 1), 10**digits - 1, dtype=np.uint64)))
        point = int(rng.integers(0, digits))
        literals.append(f"{mant[:digits - point]}.{mant[digits - point:]}" if point else mant)
        literals[-1] += f"e{int(rng.integers(-21, 20))}" if rng.random() < 0.5 else ""
    literals += ["9007199254740993", "9007199254740995", "18014398509481987", "0.30000000000000004",
                 "1.7976931348623157e308", "2.2250738585072014e-308", "9999999999999999999e19"]
    # products beyond 64 bits just above a tie: the guard bit set, the next ten bits zero, and a
    # lower bit set that only a sticky bit carries past the cut to 64 bits (found by a seeded search)
    literals += ["5247671363634024637e7", "9861498276795883350e5", "6277629349673278205e10",
                 "9283565486113750967e9", "3954527812569708655e15", "1007617518506184631e8"]
    lines = [f'{{"id":"r{i}","prediction":1,"features":{{"a":{lit}}}}}'.encode() for i, lit in enumerate(literals)]
    parser = BlockParser("predictions", SPEC, small_run=1)
    got = parser.parse_lines(lines, NOW)
    assert parser.native_records == len(lines)
    assert _bits(got.batch.features["a"]) == _bits(np.array([float(lit) for lit in literals]))  # type: ignore[union-attr]


def test_many_distinct_classes_past_the_text_cache() -> None:
    """Classes, models and versions are interned in a bounded cache; past it they are still right."""
    lines = [json.dumps({"id": f"r{i}", "prediction": f"class-{i % 3000}", "model_version": str(i % 700)}).encode()
             for i in range(9000)]
    assert both_paths(lines, SPEC, "p") == 1.0


def test_a_source_the_scanner_mostly_leaves_stops_being_scanned() -> None:
    """Text features: every line goes on to msgspec, so after NATIVE_MISSES long runs the scanner
    is no longer asked (the lines are not read twice), and the results stay the reference's."""
    lines = [json.dumps({"id": f"r{i}", "prediction": 1, "features": {"a": "DE"}}).encode()
             for i in range(NATIVE_RUN_MIN)]
    parser = BlockParser("predictions", SPEC)
    data = b"\n".join(lines)
    for k in range(NATIVE_MISSES):
        assert parser._scanner is not None, k
        got, _ = parser.parse([Block(data)], NOW)
        assert_same_result(got, _predictions_per_record(lines, SPEC, NOW, ()))
    assert parser._scanner is None and parser.native_records == 0
    assert parser.fast_records == NATIVE_MISSES * len(lines)


def test_a_mixed_block_keeps_record_order_and_refusal_positions() -> None:
    """Runs the scanner takes and runs it leaves alternate; rows and first refusals stay in order."""
    rng = np.random.default_rng(5)
    lines: list[bytes] = []
    for i in range(3000):
        rec: dict[str, Any] = {"id": f"r{i}", "prediction": int(rng.integers(0, 2)),
                               "features": {"a": float(rng.normal()), "b": 1}}
        u = rng.random()
        if u < 0.05:
            rec["features"]["b"] = "text"  # left to msgspec
        elif u < 0.08:
            rec["confidence"] = 2  # refused by the reference
        elif u < 0.1:
            rec["timestamp"] = "not a time"  # taken, then refused for its timestamp
        lines.append(json.dumps(rec).encode())
    assert both_paths(lines, SPEC, "p") == 1.0
    parser = BlockParser("predictions", SPEC, small_run=1)
    parser.parse([Block(b"\n".join(lines))], NOW)
    assert 0.85 * len(lines) < parser.native_records < 0.97 * len(lines)


def test_text_that_is_not_utf8_is_left_not_raised() -> None:
    """The block parser sends lines that are not UTF-8 to the reference before the scanner sees
    them; called directly, the scanner leaves them too (overlong forms and encoded surrogates
    included), rather than raising halfway through a block."""
    parser = BlockParser("predictions", RecordSpec(model="m"))
    assert parser._scanner is not None
    lines = [b'{"id":"\xff","prediction":1}', b'{"id":"\xc0\xaf","prediction":1}',
             b'{"id":"\xed\xa0\x80","prediction":1}', b'{"id":"r","prediction":1,"probabilities":{"\xf5":1}}',
             b'{"id":"r","prediction":1,"timestamp":"\xe2\x82"}', '{"id":"\u00e9\U0001f600","prediction":1}'.encode()]
    data = b"\n".join(lines)
    ends = np.cumsum([len(x) + 1 for x in lines]) - 1
    taken, scanned = parser._scanner.scan(data, ends - [len(x) for x in lines], ends, NOW)
    assert taken.tolist() == [False] * 5 + [True]
    assert scanned.part(0, 1).batch.id.tolist() == ["\u00e9\U0001f600"]


def test_lines_read_again_with_the_gil_keep_their_place() -> None:
    """A block is scanned without the GIL until a line with a number only CPython's parser reads;
    that line is scanned again and written with the GIL, and the pass goes on after it. With such
    lines and lines left to msgspec scattered over a large block, the batch is the per-record
    reference's, row for row."""
    rng = np.random.default_rng(11)
    lines: list[bytes] = []
    for i in range(12_000):
        p = [round(float(x), 4) for x in rng.dirichlet([1, 1, 1])]
        rec: dict[str, Any] = {"id": f"r{i}", "prediction": int(rng.integers(0, 3)), "timestamp": 1.7e9 + i,
                               "probabilities": {"0": p[0], "1": p[1], "2": p[2]},
                               "features": {"a": float(rng.normal()), "b": round(float(rng.normal()), 3)}}
        u = rng.random()
        if u < 0.02:
            rec["features"]["a"] = "text"  # left to msgspec
        elif u < 0.04:
            rec["features"]["b"] = 1.5e-300  # beyond the fast paths: scanned again with the GIL
        elif u < 0.05:
            rec["probabilities"]["1"] = 1.5e-30  # the same, inside probabilities
        lines.append(json.dumps(rec).encode())
    data = b"\n".join(lines)
    parser = BlockParser("predictions", SPEC)
    assert parser._scanner is not None
    got, _ = parser.parse([Block(data)], NOW)
    assert 0.95 * len(lines) < parser.native_records < len(lines)
    assert_same_result(got, _predictions_per_record(lines, SPEC, NOW, ()))


@pytest.mark.parametrize(("files", "cores"), [
    ({"cpu.max": "max 100000\n"}, None),  # no quota: the affinity's cores
    ({"cpu.max": "150000 100000\n"}, 1),  # 1.5 CPUs: one whole core
    ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU: still one thread
    ({"cpu.max": "400000 100000\n"}, None),  # more than the machine has: the affinity's
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu.max": "garbage"}, None),
])
def test_usable_cores_follow_the_cgroup_quota(tmp_path: Any, files: dict[str, str], cores: int | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert cores_module.usable_cores(tmp_path) == (affinity if cores is None else min(cores, affinity))


@pytest.mark.parametrize(("text", "threads"), [("", 2), ("global: {ingest_threads: 1}\n", 1),
                                                ("global: {ingest_threads: 2}\n", 2)])
def test_ingest_threads_reach_the_pipeline_cut_to_the_usable_cores(tmp_path: Any, text: str, threads: int) -> None:
    """Parsing ahead on a second thread is the default, where the process may use two cores."""
    from exporter.config import load_config
    from exporter.core.pipeline import Pipeline

    config = tmp_path / "config.yaml"
    config.write_text(text + "models: [{name: m, classes: ['0', '1']}]\n"
                      f"sources: [{{name: p, kind: predictions, type: file, path: '{tmp_path}/p.jsonl', model: m}},\n"
                      f"          {{name: l, kind: labels, type: file, path: '{tmp_path}/l.jsonl'}}]\n")
    pipeline = Pipeline(load_config(config))
    assert pipeline._ingest_threads == min(threads, cores_module.USABLE_CORES)
    assert all(parser._scanner is not None for parser in pipeline._parsers.values())


def test_probabilities_come_as_a_table_that_reads_like_the_dicts() -> None:
    """The scanner hands probabilities over as numbers (a ProbabilityTable); its dicts, and the
    positive class's probability read from it, equal what the dict-per-record column gives:
    several class lists in one block, a one-class list (its complement), none, an empty object."""
    recs: list[dict[str, Any]] = [
        {"probabilities": {"0": 0.25, "1": 0.75}}, {"probabilities": {"1": 0.5, "0": 0.5}},
        {"probabilities": {"0": 0.9}}, {"probabilities": {"1": 0.4}}, {}, {"probabilities": {}},
        {"probabilities": {"a": 0.2, "b": 0.3, "c": 0.5}}, {"probabilities": None},
        {"probabilities": {"0": 0.125, "1": 0.875}},
    ]
    lines = [json.dumps({"id": f"r{i}", "prediction": 1, **r}).encode() for i, r in enumerate(recs)]
    parser = BlockParser("predictions", SPEC)
    got = parser.parse_lines(lines, NOW)
    assert parser.native_records == len(lines)
    table = got.batch.probabilities  # type: ignore[union-attr]
    assert isinstance(table, ProbabilityTable) and len(table.classes) == 5
    want = _predictions_per_record(lines, SPEC, NOW, ()).batch.probabilities  # type: ignore[union-attr]
    assert table.to_objects().tolist() == want.tolist()
    for positive in ("1", "0", "b", "zz"):
        np.testing.assert_array_equal(positive_probabilities(table, positive),
                                      positive_probabilities(want, positive))  # type: ignore[arg-type]
    picked = table[np.array([True, False, True, False, True, False, True, False, True])]
    assert picked.to_objects().tolist() == want[::2].tolist()  # type: ignore[index]


def test_parts_of_one_scan_stay_a_table_and_mixed_parts_join_it() -> None:
    """A line the scanner leaves (here to msgspec) joins the poll's table as numbers, so one odd
    line does not turn the whole poll back into dicts; the dicts read from it are the reference's."""
    lines = [json.dumps({"id": f"r{i}", "prediction": 1, "probabilities": {"0": 0.5, "1": 0.25 + i / 100},
                         "features": {"a": "text" if i == 5 else 1.0}}).encode() for i in range(10)]
    lines.append(json.dumps({"id": "r10", "prediction": 1, "probabilities": {"z": 1}, "features": {"a": "t"}}).encode())
    got = BlockParser("predictions", SPEC, small_run=1).parse_lines(lines, NOW)  # 0-4 scanned, 5 msgspec, 6-9 ...
    assert isinstance(got.batch.probabilities, ProbabilityTable)  # type: ignore[union-attr]
    assert got.batch.probabilities.classes == (("0", "1"), ("z",))  # type: ignore[union-attr]
    assert_same_result(got, _predictions_per_record(lines, SPEC, NOW, ()))
    data = b"\n".join(lines[:5] + lines[6:10])
    taken, scanned = BlockParser("predictions", SPEC)._scanner.scan(  # type: ignore[union-attr]
        data, *_bounds(lines[:5] + lines[6:10]), NOW)
    assert taken.all()
    joined = concat_batches([scanned.part(0, 4).batch, scanned.part(4, 9).batch])
    assert isinstance(joined.probabilities, ProbabilityTable) and len(joined.probabilities) == 9  # type: ignore[union-attr]


def _bounds(lines: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    ends = np.cumsum([len(x) + 1 for x in lines]) - 1
    return ends - np.array([len(x) for x in lines]), ends


def test_more_class_lists_than_a_scan_keeps_go_on_to_msgspec() -> None:
    lines = [json.dumps({"id": f"r{i}", "prediction": 1, "probabilities": {f"c{i}": 1.0}}).encode()
             for i in range(100)]
    parser = BlockParser("predictions", SPEC)
    got = parser.parse_lines(lines, NOW)
    assert parser.native_records == 64  # MAX_CLASS_SETS in _linescan.c
    assert_same_result(got, _predictions_per_record(lines, SPEC, NOW, ()))


def test_more_distinct_texts_than_a_scan_keeps_go_on_to_msgspec() -> None:
    """Texts are codes into the scan's table of distinct texts (1,024: MAX_TEXTS in _linescan.c).
    The version's "unknown" takes one entry, so the 1,024th class is the first text that does not
    fit: that line and every later new class go on to msgspec, and the rows stay the reference's.
    Later lines whose texts are in the table are still taken."""
    lines = [json.dumps({"id": f"r{i}", "prediction": f"c{i}"}).encode() for i in range(1100)]
    lines += [json.dumps({"id": f"s{i}", "prediction": f"c{i}", "model_version": "unknown"}).encode()
              for i in range(5)]
    parser = BlockParser("predictions", SPEC)
    got = parser.parse_lines(lines, NOW)
    assert parser.native_records == 1023 + 5
    assert parser.fast_records == len(lines)
    assert_same_result(got, _predictions_per_record(lines, SPEC, NOW, ()))
    assert got.batch.prediction.tolist() == [f"c{i}" for i in range(1100)] + [f"c{i}" for i in range(5)]


def test_tables_of_several_scans_join_into_one() -> None:
    """A poll's blocks are scanned one by one; their tables join with the class lists merged (and
    codes renumbered), equal to the dicts of every row in order."""
    blocks = [[{"0": 0.25, "1": 0.75}, None, {"a": 1.0}], [{"a": 0.5}, {"0": 0.5, "1": 0.5}, {"x": 0.1, "y": 0.9}]]
    parser = BlockParser("predictions", SPEC)
    got, _ = parser.parse([Block(b"\n".join(json.dumps({"id": f"r{i}", "prediction": 1, "probabilities": p}).encode()
                                            for i, p in enumerate(b))) for b in blocks], NOW)
    table = got.batch.probabilities  # type: ignore[union-attr]
    assert isinstance(table, ProbabilityTable) and len(table.classes) == 3
    assert table.to_objects().tolist() == [p for b in blocks for p in b]


def test_ids_come_with_their_bytes_and_stable_hashes() -> None:
    """Every id length around the 8-byte words the hash is made of, multi-byte UTF-8 and integer
    ids: the scanner's Arrow bytes and hashes equal ``encode_ids`` and ``stable_id_hashes``."""
    ids: list[Any] = ["x" * k for k in range(1, 41)] + ["é" * k for k in range(1, 10)]
    ids += ["日本語-id", 7, -12, 123456789012]
    lines = [json.dumps({"id": i, "prediction": 1}, ensure_ascii=False).encode() for i in ids]
    parser = BlockParser("predictions", SPEC)
    got = parser.parse_lines(lines, NOW)
    assert parser.native_records == len(lines)
    keys = got.batch.id_keys
    assert keys is not None
    assert keys.encoded.equals(encode_ids(got.batch.id))
    np.testing.assert_array_equal(keys.hashes, stable_id_hashes([str(i) for i in ids]))


def _guard_cases() -> list[bytes]:
    """Lines around every guard's edge (see block_parser's "Line guards")."""
    pad = b'"x":"' + b"a" * 2100 + b'"'
    return [
        b"", b"{}", b"{", b"}", b" {}", b"{} ", b"{}\r", b'{"id":"r1"}',
        b"{" + b"[" * 399 + b"]" * 399 + b"," + pad + b"}",  # 400 brackets with the first: at the limit
        b"{" + b"[" * 400 + b"]" * 400 + b"," + pad + b"}",  # 401: suspect
        b"{" + b"[" * 450 + b"]" * 450 + b"}",  # too many, but not a long line: not checked
        b'{"n":' + b"7" * 3999 + b"}",  # a digit run just short of the limit
        b'{"n":' + b"7" * 4000 + b"}",
        b'{"n":1' + b"0" * 1999 + b',"m":' + b"9" * 2001 + b"}",  # long, two runs under the limit
        '{"id":"é日本\U0001f600"}'.encode(), b'{"id":"\xff"}', b'{"id":"\xc0\xaf"}', b'{"id":"\xed\xa0\x80"}',
        b'{"id":"\xf4\x90\x80\x80"}', b'{"id":"\xe2\x82"}', b'{"id":"abcdefg\xe9"}',
        b'{"' + b"b" * 3000 + b'\xe9"}',  # a bad byte past the eight-byte ASCII steps
    ]


def test_line_bounds_and_guards_in_c_are_the_numpy_rules() -> None:
    """The C line bounds and guards against the block parser's numpy rules (its fallback where the
    extension is not built), on seeded blocks of lines at every guard's edge, with and without a
    final newline, and a max_line_bytes that cuts through them."""
    from exporter.ingest import block_parser

    cases = _guard_cases()
    rng = np.random.default_rng(23)
    for trial in range(200):
        lines = [cases[i] for i in rng.integers(0, len(cases), int(rng.integers(1, 30)))]
        data = b"\n".join(lines) + (b"\n" if trial % 2 else b"")
        if not data:  # the block parser never guards an empty block
            continue
        starts, ends = compiled_columns.line_bounds(data)
        nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        all_starts, all_ends = np.r_[0, nl + 1], np.r_[nl, len(data)]
        keep = all_ends > all_starts
        np.testing.assert_array_equal(starts, all_starts[keep])
        np.testing.assert_array_equal(ends, all_ends[keep])
        for s, e in ((starts, ends), (all_starts, all_ends)):  # the block parser's bounds, and with empty lines
            for limit in (1_000_000, 3000, 11, 10):  # 11: the length of {"id":"r1"}
                got = compiled_columns.line_guards(data, s, e, limit)
                want = block_parser._line_guards(data, s, e, limit)
                np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}, limit {limit}")
    # each case alone, so that a rule no seeded block happened to reach is still compared
    for line in cases[1:]:
        s, e = np.array([0]), np.array([len(line)])
        got = compiled_columns.line_guards(line, s, e, 10**6)[0]
        assert got == block_parser._line_guards(line, s, e, 10**6)[0], line


def test_a_fixed_model_is_one_object_in_every_row() -> None:
    """A source's fixed model and version fill their columns with the same string object, not a
    new string per row (``np.full`` with a text makes one per row: 16 times slower)."""
    spec = RecordSpec(model="m", model_version="v1")
    lines = [json.dumps({"id": f"r{i}", "prediction": 1}).encode() for i in range(100)]
    for native in (True, False):
        got = BlockParser("predictions", spec, native=native).parse_lines(lines, NOW).batch
        for col in (got.model, got.model_version):  # type: ignore[union-attr]
            assert col.tolist() == [col[0]] * 100 and len({id(x) for x in col}) == 1, native


def _spec_hash(data: bytes) -> int:
    """stable_id_hashes' docstring, one id at a time in plain Python integers."""
    mask = (1 << 64) - 1
    golden = 0x9E3779B97F4A7C15

    def mix(z: int) -> int:
        z ^= z >> 30
        z = (z * 0xBF58476D1CE4E5B9) & mask
        z ^= z >> 27
        z = (z * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    total = 0
    for j in range(0, len(data), 8):
        word = int.from_bytes(data[j:j + 8].ljust(8, b"\0"), "little")
        total = (total + mix(word ^ mix(((j // 8 + 1) * golden) & mask))) & mask
    return mix((total + (len(data) + 1) * golden) & mask)


def test_the_c_id_hash_is_the_numpy_hash_and_the_spec() -> None:
    """stable_id_hashes runs in C where the compiled columns are built; the numpy hash (the fallback) and
    a plain-Python reading of the docstring give the same bits: every length around the 8-byte
    words, empty and multi-byte ids, one width throughout (numpy's fixed-width branch), a sliced
    array (an offset into its buffers) and large_binary."""
    import pyarrow as pa

    from exporter.ingest import ids as ids_module

    rng = np.random.default_rng(31)
    mixed = [bytes(rng.integers(0, 256, k, dtype=np.uint8)) for k in range(0, 41)] + ["é日本".encode()] * 3
    fixed = [f"req-{i:010d}".encode() for i in range(50)]
    for values in (mixed, fixed):
        for arr in (pa.array(values, type=pa.binary()), pa.array(values, type=pa.large_binary()),
                    pa.array(values, type=pa.binary()).slice(3, len(values) - 5)):
            got = stable_id_hashes(arr)
            off_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
            off = np.frombuffer(arr.buffers()[1], dtype=off_type)[arr.offset:arr.offset + len(arr) + 1]
            np.testing.assert_array_equal(got, ids_module._hash_binary_numpy(off.astype(np.int64), arr.buffers()[2]))
            assert got.tolist() == [_spec_hash(v) for v in arr.to_pylist()]
    assert stable_id_hashes(pa.array([], type=pa.binary())).size == 0
    assert stable_id_hashes(pa.array([b""], type=pa.binary())).tolist() == [_spec_hash(b"")]
