"""The one compiled part, the JSON line scanner (exporter/ingest/_linescan.c); everything else is
in pyproject.toml. ``optional``: without a C compiler the install still succeeds and ingest uses
the msgspec path, which gives the same results, slower; the startup log line ("listening") says
which one is in use (``json_reader``)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "exporter.ingest._linescan",
            sources=["exporter/ingest/_linescan.c"],
            extra_compile_args=["-O2", "-std=c11", "-pthread", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    ]
)
