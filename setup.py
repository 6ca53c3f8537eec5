"""The compiled parts, the JSON line scanner (exporter/ingest/_linescan.c), ingest's whole-column
helpers (exporter/ingest/_columns.c) and the join/drift kernels (exporter/core/_kernels.c);
everything else is in pyproject.toml. ``optional``: without a C
compiler the install still succeeds and ingest uses the msgspec path, the join's hash table and the
drift slots their numpy code, which give the same results, slower; the startup log line
("listening") says which is in use (``json_reader``, ``join_kernels``)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "exporter.ingest._linescan",
            sources=["exporter/ingest/_linescan.c"],
            depends=["exporter/ingest/_ingest_c.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        ),
        Extension(
            "exporter.ingest._columns",
            sources=["exporter/ingest/_columns.c"],
            depends=["exporter/ingest/_ingest_c.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        ),
        Extension(
            "exporter.core._kernels",
            sources=["exporter/core/_kernels.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        ),
    ]
)
