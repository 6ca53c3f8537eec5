"""Fixtures of the HTTP tests."""

from __future__ import annotations

import pytest

from tests.http.pki import PKI, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))
