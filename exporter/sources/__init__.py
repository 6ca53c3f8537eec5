"""Source kinds by their config ``type``, so the pipeline builds sources without knowing them.

Each source kind lives in its own module and registers its class in ``SOURCE_TYPES``; its config
class (``Source.config_type``) is registered under the same name in
``exporter.config.sources.SOURCE_CONFIG_TYPES``.
"""

from __future__ import annotations

from collections.abc import Sequence

from exporter.config import SourceConfig
from exporter.sources.base import ModelLookup, Poll, Source, SourceContext, SourceHealth
from exporter.sources.file_tail import FileTailSource
from exporter.sources.http_poll import HTTPSource
from exporter.sources.kserve import KServeSource

SOURCE_TYPES: dict[str, type[Source]] = {"file": FileTailSource, "http": HTTPSource, "kserve": KServeSource}


def config_warnings(configs: Sequence[SourceConfig]) -> list[str]:
    """What each source's type has to say about its config before starting (``--config.check``):
    problems that do not make it invalid, e.g. a file glob that matches nothing yet."""
    return [w for c in configs if c.type in SOURCE_TYPES for w in SOURCE_TYPES[c.type].config_warnings(c)]


def build_source(config: SourceConfig, context: SourceContext | None = None) -> Source:
    """The source for ``config``, by its ``type``, given what the runtime provides (``context``;
    none by default); ValueError for a type with no class."""
    try:
        cls = SOURCE_TYPES[config.type]
    except KeyError:
        known = ", ".join(sorted(SOURCE_TYPES))
        raise ValueError(f"source {config.name!r}: unknown type {config.type!r} (known: {known})") from None
    if not isinstance(config, cls.config_type):
        raise TypeError(f"source {config.name!r}: type {config.type!r} is built from a {cls.config_type.__name__}, "
                        f"got a {type(config).__name__}")
    return cls.build(config, context if context is not None else SourceContext())


__all__ = [
    "SOURCE_TYPES",
    "FileTailSource",
    "HTTPSource",
    "KServeSource",
    "ModelLookup",
    "Poll",
    "Source",
    "SourceContext",
    "SourceHealth",
    "build_source",
    "config_warnings",
]
