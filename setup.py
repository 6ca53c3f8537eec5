"""The compiled parts: the JSON line scanner (exporter/ingest/_linescan.c), ingest's whole-column
helpers (exporter/ingest/_columns.c) and the join/drift kernels (exporter/core/_kernels.c);
everything else is in pyproject.toml. ``optional``: without a C compiler the install still
succeeds and ingest uses the msgspec path, the columns, the join's hash table and the drift slots
their numpy code, which give the same results, slower; the startup log line ("listening") says
which is in use (``json_reader``, ``ingest_columns``, ``join_kernels``)."""

from setuptools import Extension, setup

ARGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]
SHARED = ["exporter/ingest/_ingest_c.h"]  # what the two ingest modules share


def compiled(module: str, depends: list[str] | None = None) -> Extension:
    """``exporter.x._y`` from ``exporter/x/_y.c``, optional (see above)."""
    return Extension(module, sources=[module.replace(".", "/") + ".c"], depends=depends or [],
                     extra_compile_args=ARGS, optional=True)


setup(
    ext_modules=[
        compiled("exporter.ingest._linescan", SHARED),
        compiled("exporter.ingest._columns", SHARED),
        compiled("exporter.core._kernels"),
    ]
)
