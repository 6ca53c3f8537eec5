"""The registry of source types (``exporter.sources``) and that of their config classes
(``exporter.config.sources``) name the same types, each source kind built from its own class."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exporter.config import SOURCE_CONFIG_TYPES, FileSourceConfig, HTTPSourceConfig, SourceConfig
from exporter.sources import SOURCE_TYPES, build_source


def test_every_source_type_has_its_config_class() -> None:
    assert list(SOURCE_TYPES) == list(SOURCE_CONFIG_TYPES)
    for name, cls in SOURCE_TYPES.items():
        assert cls.config_type is SOURCE_CONFIG_TYPES[name]
        assert cls.config_type.type == name


@dataclass(frozen=True, kw_only=True)
class _PigeonConfig(SourceConfig):
    type: str = field(default="carrier-pigeon", init=False)


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown type 'carrier-pigeon' \\(known: file, http, kserve\\)"):
        build_source(_PigeonConfig(name="x", kind="labels"))


def test_a_config_of_another_type_is_refused(tmp_path: Path) -> None:
    class Mislabelled(HTTPSourceConfig):
        type = "file"  # type: ignore[assignment]

    with pytest.raises(TypeError, match="type 'file' is built from a FileSourceConfig, got a Mislabelled"):
        build_source(Mislabelled(name="x", kind="labels", url="http://x"))
    build_source(FileSourceConfig(name="f", kind="labels", path=str(tmp_path / "*.jsonl"))).close()


def test_a_polls_record_estimate_counts_lines_or_divides_its_bytes() -> None:
    """What the pipeline paces label sources by: a block's newlines plus its last line, or its bytes
    over the source's average record size once that is known; lines, objects and records refused
    before parsing count one each."""
    from collections import Counter

    from exporter.ingest.block_parser import Block
    from exporter.sources.base import Poll

    poll = Poll(blocks=[Block(b'{"a":1}\n{"a":2}'), Block(b""), Block(b'{"b":3}')], lines=[b"{}"], objects=[{}, {}],
                rejected=Counter(line_too_long=1))
    assert poll.records_estimate() == 3 + 1 + 2 + 1
    assert poll.records_estimate(bytes_per_record=5.5) == 4 + 1 + 2 + 1  # 22 bytes of blocks
    assert Poll().records_estimate() == 0 and Poll().records_estimate(10.0) == 0
