"""The compiled kernels (exporter/core/_kernels.c) against the numpy code they replace.

The join's hash table (``IdTable``): seeded random workloads of inserts, probes, removes
(tombstones), renumbering and rebuilds, with hashes made to collide (a few home slots and tags
for everything, and whole 64-bit hashes shared by different ids, so only ``same`` tells them
apart), run through a table filled by the numpy rounds and one filled in C. Every probe of either
table by either path must give the true rows; probing one table by both paths must give the same
slots and ask ``same`` about the same candidates. A drift feature's slots and PSI bins: compared
with ``np.searchsorted`` itself, for values at, between and beyond the reference values, -0.0, ±inf,
NaN and heavy duplicates, with and without the guide table.

Both suites that use these (tests/core/conftest.py) run once with each path as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
import pytest

from exporter.core import drift_features, id_table
from exporter.core.drift_features import FeatureModel
from exporter.core.id_table import EMPTY, TOMB, IdTable, size_for
from exporter.core.reference import NUMBER
from exporter.foundation.arrays import IntArray
from exporter.report.model import NUMERIC
from exporter.stats.drift import bin_counts, quantile_edges
from tests.helpers import missing


@pytest.fixture(autouse=True)
def _kernels_built() -> None:
    if not id_table.AVAILABLE:  # a failure under CI, which installs gcc and Python's headers
        missing("the compiled core kernels (setup.py builds them where gcc and Python.h are)")


@contextmanager
def numpy_path() -> Iterator[None]:
    """The numpy code, in both modules, for the duration."""
    saved = id_table._kernels, drift_features._kernels
    id_table._kernels = drift_features._kernels = None
    try:
        yield
    finally:
        id_table._kernels, drift_features._kernels = saved


# -- the hash table ---------------------------------------------------------------------------------

class Model:
    """Ids with their hashes (chosen to collide) and the row each live id has."""

    def __init__(self, rng: np.random.Generator, n_ids: int) -> None:
        # a few tags and low parts: many ids share a home slot, a tag, or the whole hash
        tags = rng.choice(np.array([0, 1, 0xFFFF, 0x8000], dtype=np.uint64), n_ids)
        low = rng.integers(0, max(2, n_ids // 4), n_ids, dtype=np.uint64)
        self.hash = (tags << np.uint64(48)) | low
        self.row_of: dict[int, int] = {}  # live id -> row
        self.id_at: dict[int, int] = {}  # row -> id (live or not)
        self.next_row = 0

    def same(self, log: list[tuple[int, int]], query_ids: IntArray) -> id_table.Same:
        def same(rows: IntArray, queries: IntArray) -> npt.NDArray[np.bool_]:
            assert rows.dtype == np.int64 and queries.dtype == np.int64
            assert bool((rows >= 0).all())
            log.extend(zip(rows.tolist(), queries.tolist(), strict=True))
            return np.array([self.id_at[r] == query_ids[q] for r, q in zip(rows.tolist(), queries.tolist(),
                                                                            strict=True)], dtype=bool)
        return same


def _probe(table: IdTable, model: Model, ids: IntArray,
           compiled: bool) -> tuple[IntArray, IntArray, list[tuple[int, int]]]:
    log: list[tuple[int, int]] = []
    h = model.hash[ids]
    if compiled:
        rows, slots = table.probe(h, model.same(log, ids))
    else:
        with numpy_path():
            rows, slots = table.probe(h, model.same(log, ids))
    return rows, slots, log


def _check_probe(tables: list[IdTable], model: Model, ids: IntArray) -> dict[int, IntArray]:
    """Probe every table by both paths: the true rows; the same slots and candidates per table."""
    want = np.array([model.row_of.get(int(i), -1) for i in ids], dtype=np.int64)
    found: dict[int, IntArray] = {}
    for t, table in enumerate(tables):
        got = [_probe(table, model, ids, compiled) for compiled in (False, True)]
        for rows, slots, _ in got:
            assert rows.tolist() == want.tolist()
            assert bool((slots[rows < 0] == -1).all())
            assert table.slots[slots[rows >= 0]].tolist() == rows[rows >= 0].tolist()
        (_, np_slots, np_log), (_, c_slots, c_log) = got
        assert c_slots.tolist() == np_slots.tolist()
        assert sorted(c_log) == sorted(np_log)  # the same candidates asked about
        found[t] = c_slots
    return found


def _fill(table: IdTable, model: Model, ids: IntArray, rows: IntArray, compiled: bool) -> None:
    if compiled:
        table.insert(model.hash[ids], rows)
    else:
        with numpy_path():
            table.insert(model.hash[ids], rows)


def _check_used(a: IdTable, b: IdTable) -> None:
    """``used`` counts the slots that are not EMPTY (live and tombstones) in either table. Linear
    probing fills the same set of slots whatever order the keys are placed in, so the two agree
    until a removal: the tombstones are then where each table had the removed keys, and a later
    key may take a tombstone in one table and an EMPTY slot in the other (a rebuild comes a little
    earlier or later; no lookup differs)."""
    for t in (a, b):
        assert t.used == int(np.count_nonzero(t.slots != EMPTY))
    if not (a.slots == TOMB).any() and not (b.slots == TOMB).any():
        assert ((a.slots == EMPTY) == (b.slots == EMPTY)).all()


@pytest.mark.parametrize("seed", range(12))
def test_the_compiled_table_finds_what_the_numpy_rounds_find(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_ids = int(rng.integers(40, 400))
    model = Model(rng, n_ids)
    first = int(rng.choice([16, 17, 31, 64]))
    tables = [IdTable(first), IdTable(first)]  # filled by numpy, by C
    for _ in range(60):
        op = rng.random()
        absent = np.array(sorted(set(range(n_ids)) - set(model.row_of)), dtype=np.int64)
        if op < 0.35 and absent.size:  # insert new ids (rebuilding first where they would not fit)
            new = rng.permutation(absent)[: int(rng.integers(1, max(2, absent.size // 3) + 1))]
            for t in range(2):  # each rebuilt when it has no room (as ArrivalBuffer._reserve does)
                if tables[t].needs_room(new.size):
                    live = np.array(sorted(model.row_of, key=model.row_of.__getitem__), dtype=np.int64)
                    tables[t] = IdTable(size_for(len(model.row_of) + new.size))
                    _fill(tables[t], model, live, np.array([model.row_of[int(i)] for i in live], dtype=np.int64),
                          t == 1)
            rows = np.arange(model.next_row, model.next_row + new.size, dtype=np.int64)
            for t, table in enumerate(tables):
                _fill(table, model, new, rows, t == 1)
            for i, r in zip(new.tolist(), rows.tolist(), strict=True):
                model.row_of[i] = r
                model.id_at[r] = i
            model.next_row += new.size
        elif op < 0.6 and model.row_of:  # remove some live ids at the slots a probe found
            live = np.array(list(model.row_of), dtype=np.int64)
            gone = rng.choice(live, int(rng.integers(1, live.size + 1)), replace=False)
            slots = _check_probe(tables, model, gone)
            for t, table in enumerate(tables):
                table.remove(np.concatenate((slots[t], [-1])))
                assert bool((table.slots[slots[t]] == TOMB).all())
            for i in gone.tolist():
                del model.row_of[i]
        elif op < 0.68 and model.row_of:  # the entries were compacted: rows renumbered
            order = sorted(model.row_of, key=model.row_of.__getitem__)
            new_row = {model.row_of[i]: r for r, i in enumerate(order)}

            def new_rows(rows: IntArray, new_row: dict[int, int] = new_row) -> npt.NDArray[np.int32]:
                return np.array([new_row[r] for r in rows.tolist()], dtype=np.int32)

            for table in tables:
                table.renumber(new_rows)
            model.row_of = {i: r for r, i in enumerate(order)}
            model.id_at = {r: i for i, r in model.row_of.items()}
            model.next_row = len(order)
        # probe: live, removed and never-seen ids, repeated
        ids = rng.integers(0, n_ids, int(rng.integers(0, 3 * n_ids)))
        _check_probe(tables, model, ids)
        _check_used(*tables)


def test_a_probe_passes_tombstones_and_wraps_at_the_end() -> None:
    table = IdTable(16)
    h = np.array([15 | (7 << 48)] * 4, dtype=np.uint64)  # one home (the last slot), one tag, one hash
    table.insert(h, np.arange(4, dtype=np.int64))
    assert table.slots.tolist()[:3] == [1, 2, 3] and table.slots[15] == 0
    table.remove(np.array([15, 0, 1], dtype=np.int64))
    for compiled in (True, False):
        if compiled:
            rows, slots = table.probe(h[:1], lambda r, q: r == 3)
        else:
            with numpy_path():
                rows, slots = table.probe(h[:1], lambda r, q: r == 3)
        assert (rows.tolist(), slots.tolist()) == ([3], [2])
    used = table.used
    table.insert(np.array([15 | (9 << 48)], dtype=np.uint64), np.array([9], dtype=np.int64))
    assert table.slots[15] == 9 and table.used == used  # the tombstone taken again: not counted twice


def test_the_kernels_check_their_arrays() -> None:
    k = id_table._kernels
    assert k is not None
    slots = np.full(16, EMPTY, dtype=np.int32)
    tags = np.zeros(16, dtype=np.uint16)
    with pytest.raises(TypeError):
        k.insert(slots, tags, np.zeros(2, dtype=np.int64), np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError):
        k.insert(slots, tags, np.zeros(2, dtype=np.uint64), np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError):
        k.probe(slots.astype(np.int64), tags, np.zeros(1, dtype=np.uint64), None, np.zeros(1, dtype=np.int64),
                np.zeros(1, dtype=np.int64))
    # a table without an EMPTY slot: a probe goes round once and stops, an insert refuses
    full = np.full(16, TOMB, dtype=np.int32)
    rows, at = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    k.probe(full, tags, np.array([3], dtype=np.uint64), None, rows, at)
    assert (rows.tolist(), at.tolist()) == ([-1], [-1])
    k.insert(full, tags, np.arange(16, dtype=np.uint64), np.arange(16, dtype=np.int64))
    with pytest.raises(RuntimeError):
        k.insert(full, tags, np.array([3], dtype=np.uint64), np.array([16], dtype=np.int64))


# -- drift slots and PSI bins -------------------------------------------------------------------------

def _feature(ref: npt.NDArray[np.float64]) -> FeatureModel:
    ref = np.sort(ref)
    edges = quantile_edges(ref, 10)
    return FeatureModel("x", NUMERIC, NUMBER, edges, ref, (), bin_counts(ref, edges), "psi")


def _references(rng: np.random.Generator) -> Iterator[tuple[str, npt.NDArray[np.float64]]]:
    yield "normal", rng.normal(size=2000)  # the guide table is used
    yield "few distinct", rng.integers(-3, 4, 500).astype(np.float64)  # no guide
    yield "duplicates", np.repeat(rng.normal(size=80), rng.integers(1, 30, 80))  # guide, ties at the edges
    yield "clustered", np.concatenate((rng.normal(size=300) * 1e-9, [1e6]))  # too crowded for a guide
    yield "signed zeros", np.concatenate((rng.normal(size=200), [0.0, -0.0, 0.0, 5e-324, -5e-324]))
    yield "wide", rng.normal(size=500) * 10.0 ** rng.integers(-300, 300, 500)
    yield "one value", np.full(50, 2.5)
    yield "none", np.empty(0)


def _values(rng: np.random.Generator, uniq: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    parts = [rng.normal(size=n) * (float(np.abs(uniq).max()) if uniq.size else 1.0),
             np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324, -5e-324, 1e308, -1e308])]
    if uniq.size:
        parts += [rng.choice(uniq, n),  # exact reference values, many times
                  np.nextafter(rng.choice(uniq, n), np.inf), np.nextafter(rng.choice(uniq, n), -np.inf),
                  (uniq[:-1] + uniq[1:]) / 2, [uniq[0] - 1.0, uniq[-1] + 1.0]]
    v = rng.permutation(np.concatenate(parts))
    return np.asarray(v, dtype=np.float64)


def _expected(f: FeatureModel, v: npt.NDArray[np.float64]) -> tuple[IntArray, IntArray]:
    uniq = np.unique(f.ref_sorted)
    b = np.searchsorted(uniq, v, side="left")
    at = np.append(uniq, np.nan)[b] == v
    return 2 * b + at, np.searchsorted(f.edges, v, side="left")


@pytest.mark.parametrize("seed", range(4))
def test_slots_and_psi_bins_are_numpys_searchsorted(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    for name, ref in _references(rng):
        f = _feature(ref)
        uniq = np.unique(f.ref_sorted)
        for n in (0, 1, 63, 64, 3000):
            v = _values(rng, uniq, n)
            want_slots, want_bins = _expected(f, v)
            slots = f.slots(v)
            bins = f.psi_bins(v, slots)
            assert slots.dtype == np.int64 and bins.dtype == np.int8, name
            assert slots.tolist() == want_slots.tolist(), name
            assert bins.tolist() == want_bins.tolist(), name
            both = f._slots_bins_compiled(v, True)  # encode's one pass for both
            assert both[0].tolist() == want_slots.tolist() and both[1].tolist() == want_bins.tolist(), name
            # the numpy path: the same, where it can take the values (its guide cells are computed
            # from the values, so NaN -- never a valid feature value, see reference.NUMBER -- is left out)
            finite = v[~np.isnan(v)] if f._guide is not None and v.size >= 64 else v
            with numpy_path():
                np_slots = f.slots(finite)
                np_bins = f.psi_bins(finite, np_slots)
            fs, fb = _expected(f, finite)
            assert np_slots.tolist() == fs.tolist() and np_bins.tolist() == fb.tolist(), name
            assert np_bins.dtype == bins.dtype


def test_psi_bins_refuses_a_slot_out_of_range() -> None:
    f = _feature(np.arange(10.0))
    for bad in (-1, f.n_slots):
        with pytest.raises(ValueError):
            f.psi_bins(np.array([1.0]), np.array([bad], dtype=np.int64))


def test_encode_gives_the_same_columns_on_both_paths() -> None:
    from exporter.core.reference import RawColumn

    rng = np.random.default_rng(7)
    f = _feature(rng.normal(size=1000))
    for values in (rng.normal(size=500).tolist(), [*rng.normal(size=300).tolist(), None, "a", True, 1.0] * 3):
        col = RawColumn.from_values(values, len(values))
        got = f.encode(col)
        with numpy_path():
            want = f.encode(col)
        assert got.keys() == want.keys()
        for k in got:
            assert got[k].tolist() == want[k].tolist(), k
            # slots: int64 in C; the numpy guide steps in int32 (counted by bincount either way)
            assert got[k].dtype == want[k].dtype or (k == "f:x" and got[k].dtype == np.int64), k


def test_searchsorted_right_of_sorted_queries_is_numpys() -> None:
    """The joined ids' search: every answer gallops on from the one before. Seeded segments with
    runs of equal hashes, queries equal to entries, between them, before the first and after the
    last, repeated queries, and the empty cases, against ``np.searchsorted(side="right")``."""
    from exporter.core.joined_ids import _searchsorted_right

    rng = np.random.default_rng(41)
    top = np.iinfo(np.uint64).max
    for trial in range(300):
        n = int(rng.choice([0, 1, 2, 7, 100, 5000]))
        a = np.sort(rng.integers(0, 1 << int(rng.choice([4, 20, 64])), n, dtype=np.uint64, endpoint=False))
        k = int(rng.choice([0, 1, 5, 300]))
        q = rng.integers(0, 1 << 20, k, dtype=np.uint64)
        if n and k:
            q[: k // 2] = a[rng.integers(0, n, k // 2)]  # hits
        q = np.sort(np.concatenate([q, np.array([0, top], dtype=np.uint64)[: int(rng.integers(0, 3))]]))
        got = _searchsorted_right(a, q)
        np.testing.assert_array_equal(got, np.searchsorted(a, q, side="right"), err_msg=f"trial {trial}")


def test_merge_sorted_is_the_numpy_merge() -> None:
    """Merging two joined-id segments: hashes and offsets equal to the numpy merge's, with equal
    hashes within and across the two (the older segment's first), and either side empty."""
    from exporter.core import joined_ids
    from exporter.core.joined_ids import _HashSegment

    rng = np.random.default_rng(43)
    for trial in range(200):
        na, nb = (int(rng.choice([0, 1, 3, 50, 2000])) for _ in range(2))
        top = 1 << int(rng.choice([3, 12, 64]))
        older = _HashSegment.of(0, rng.integers(0, top, na, dtype=np.uint64, endpoint=False))
        newer = _HashSegment.of(na + int(rng.integers(0, 5)), rng.integers(0, top, nb, dtype=np.uint64, endpoint=False))
        got = older.merge(newer)
        compiled = joined_ids._kernels
        try:
            joined_ids._kernels = None
            want = older.merge(newer)
        finally:
            joined_ids._kernels = compiled
        np.testing.assert_array_equal(got.hashes, want.hashes, err_msg=f"trial {trial}")
        np.testing.assert_array_equal(got.offsets, want.offsets, err_msg=f"trial {trial}")
        assert got.start == want.start == 0
