"""Arrow's buffers come from the process's C allocator unless ARROW_DEFAULT_MEMORY_POOL says
otherwise (exporter/__init__.py says why). Checked in fresh interpreters: the pool is chosen once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import exporter, pyarrow; print(pyarrow.default_memory_pool().backend_name)"


@pytest.mark.parametrize(("env", "backend"), [({}, "system"), ({"ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}, "mimalloc")])
def test_arrow_allocates_with_the_system_allocator_unless_told_otherwise(env: dict[str, str], backend: str) -> None:
    base = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == backend
