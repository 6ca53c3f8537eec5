"""The vectorised column operations give exactly their per-record twins' results."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import ModelConfig
from exporter.core.classes import ClassIndex
from exporter.ingest.batch_ops import (
    encode_by_value,
    factorize,
    first_occurrences,
    groups,
    model_rows,
    positive_probabilities,
    spread,
)
from tests.helpers import obj

SEEDED = settings(max_examples=300, deadline=None, derandomize=True, database=None)


def first_occurrences_reference(ids: np.ndarray) -> np.ndarray:
    """The set loop the column version replaces: first occurrence of each id within a batch."""
    seen: set[Any] = set()
    return np.array([not (i in seen or seen.add(i)) for i in ids.tolist()], dtype=bool)  # type: ignore[func-returns-value]


def positive_probabilities_reference(probabilities: np.ndarray, positive: str) -> np.ndarray:
    """The per-record rule, written as a loop: the positive class's probability; with one other
    class named, its complement; else NaN."""
    out = np.full(len(probabilities), math.nan)
    for i, probs in enumerate(probabilities.tolist()):
        if not probs:
            continue
        p = probs.get(positive)
        if p is not None:
            out[i] = p
        elif len(probs) == 1:
            out[i] = 1.0 - next(iter(probs.values()))
    return out


def groups_reference(values: np.ndarray) -> list[tuple[str, list[int]]]:
    out: dict[str, list[int]] = {}
    for i, v in enumerate(values.tolist()):
        out.setdefault(str(v), []).append(i)
    return sorted(out.items())


_values = st.lists(st.one_of(st.sampled_from(["a", "b", "", "3", "é", "a "]), st.none(), st.just(3)), max_size=40)


@SEEDED
@given(_values)
def test_first_occurrences_matches_the_set_loop(values: list[Any]) -> None:
    ids = obj(values)
    np.testing.assert_array_equal(first_occurrences(ids), first_occurrences_reference(ids))


@SEEDED
@given(_values)
def test_groups_match_a_dict_of_lists(values: list[Any]) -> None:
    got = [(k, rows.tolist()) for k, rows in groups(obj(values))]
    assert got == groups_reference(obj(values))


@SEEDED
@given(_values, st.lists(st.booleans(), min_size=40, max_size=40))
def test_groups_of_a_subset_from_the_whole_columns_codes_match_a_dict_of_lists(values: list[Any],
                                                                              keep: list[bool]) -> None:
    """The pipeline factorises a batch's versions once and groups the rows it kept with those
    codes: values only the dropped rows held must not appear as empty groups."""
    whole = obj(values)
    mask = np.array(keep[:len(values)], dtype=bool)
    codes, uniques = factorize(whole)
    got = [(k, rows.tolist()) for k, rows in groups(whole[mask], (codes[mask], uniques))]
    assert got == groups_reference(whole[mask])


@SEEDED
@given(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=30))
def test_factorize_of_a_column_of_one_text_matches_pandas(values: list[str]) -> None:
    """One text in the whole column is found by comparing, not hashing: same codes and uniques."""
    codes, uniques = factorize(obj(values))
    p_codes, p_uniques = pd.factorize(obj(values))
    assert codes.tolist() == p_codes.tolist() and uniques.tolist() == list(p_uniques)


@SEEDED
@given(st.lists(st.sampled_from(["0", "1", "2", "x", "y", "z", ""]), max_size=30), st.booleans())
def test_encode_by_value_matches_the_encoder(values: list[str], fixed: bool) -> None:
    model = ModelConfig(name="m", task="multiclass", classes=("0", "1", "2") if fixed else None, max_classes=4)
    a, b = ClassIndex(model), ClassIndex(model)
    np.testing.assert_array_equal(encode_by_value(a.encode, obj(values)), b.encode(obj(values)))
    assert a.names == b.names  # discovery adds the same classes in the same order


_probs = st.one_of(st.none(), st.dictionaries(st.sampled_from(["0", "1", "2"]), st.floats(0, 1), max_size=3))


@SEEDED
@given(st.lists(_probs, max_size=30), st.sampled_from(["1", "0"]))
def test_positive_probabilities_match_the_loop(probs: list[Any], positive: str) -> None:
    np.testing.assert_array_equal(positive_probabilities(obj(probs), positive),
                                  positive_probabilities_reference(obj(probs), positive))


def test_positive_probability_complement_and_absent() -> None:
    got = positive_probabilities(obj([{"0": 0.25}, {"1": 0.75}, None, {}, {"0": 0.2, "2": 0.3}]), "1")
    np.testing.assert_array_equal(got, [0.75, 0.75, np.nan, np.nan, np.nan])


@SEEDED
@given(st.lists(st.sampled_from(["m", "n", "o"]), min_size=1, max_size=30), st.lists(st.booleans(), min_size=30,
                                                                                    max_size=30))
def test_model_rows_and_spread_match_the_masks(models: list[str], keep: list[bool]) -> None:
    """``model_rows`` names each model in name order with its rows (None: all of them), and
    ``spread`` puts a mask over a model's rows back on the whole batch."""
    column = obj(models)
    got = [(name, np.ones(len(models), dtype=bool) if sel is None else sel) for name, sel in model_rows(column)]
    expected = [(name, column == name) for name in sorted(set(models))]
    assert [(n, m.tolist()) for n, m in got] == [(n, m.tolist()) for n, m in expected]
    for _, sel in expected:
        ok = np.array(keep[:int(sel.sum())], dtype=bool)
        whole = spread(sel, ok)
        assert np.flatnonzero(whole).tolist() == np.flatnonzero(sel)[ok].tolist()
