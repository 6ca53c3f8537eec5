"""Every test of tests/core runs twice: with the compiled code (exporter/core/_kernels.c: the
join's hash table, a drift feature's slots and bins, the joined ids' sorted searches;
exporter/ingest/_columns.c: line bounds and guards, id hashes, first occurrences by hash) and with
the numpy code it replaces, which must give the same results (tests/core/test_kernels.py and
tests/ingest/test_line_scanner.py compare the two directly)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.core import drift_features, id_table, joined_ids
from exporter.ingest import compiled_columns
from tests.helpers import missing

PATHS = ("compiled", "numpy")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel_path" in metafunc.fixturenames and metafunc.module.__name__ != "tests.core.test_kernels":
        metafunc.parametrize("kernel_path", PATHS, indirect=True)


@pytest.fixture(autouse=True)
def kernel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    path: str = getattr(request, "param", "compiled")
    if path == "numpy":
        monkeypatch.setattr(id_table, "_kernels", None)
        monkeypatch.setattr(drift_features, "_kernels", None)
        monkeypatch.setattr(joined_ids, "_kernels", None)
        monkeypatch.setattr(compiled_columns, "AVAILABLE", False)
    elif not id_table.AVAILABLE:  # a failure under CI, which installs gcc and Python's headers
        missing("the compiled core kernels (setup.py builds them where gcc and Python.h are)")
    yield path
