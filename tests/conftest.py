"""Fixtures and options shared by the test modules (plain helpers live in tests/helpers.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests.helpers import require_tool

# Every property test is seeded: derandomized (the examples follow from the test's source) and no
# example database, so a run finds what the previous one found and a planted bug is caught every
# time, not two runs in three. Settings a test gives itself are applied on top of these.
settings.register_profile("seeded", derandomize=True, database=None, deadline=None)
settings.load_profile("seeded")


def pytest_configure(config: pytest.Config) -> None:
    # When a hypothesis test fails, its pytest plugin imports libcst to suggest an @example patch,
    # and libcst warns about mypy_extensions.TypedDict; under filterwarnings=error that warning
    # turned every fuzzer failure into an INTERNALERROR that ended the run and hid the failure.
    config.addinivalue_line("filterwarnings",
                            "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files (tests/data/golden/) from the current output instead of "
                          "comparing with them; same as MLMON_UPDATE_GOLDEN=1")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether golden files are to be rewritten (``--update-golden`` or ``MLMON_UPDATE_GOLDEN=1``)."""
    return bool(request.config.getoption("--update-golden")) or os.environ.get("MLMON_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of ``promtool`` (a failure under ``CI``, a skip elsewhere, when it is missing)."""
    return require_tool("promtool")
