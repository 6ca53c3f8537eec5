"""An immutable picture of every metric, built once per cycle and read by every scrape.

The pipeline thread computes all numbers and freezes them here; scrapes only read the latest
Snapshot (an atomic reference swap), so a scrape never waits for ingestion, never sees a
half-updated cycle, and never recomputes anything. The text exposition is rendered from these
families directly, with label sets pre-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

LabelPairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    name: str  # full sample name, e.g. mlmon_predictions_total or ..._bucket
    labels: LabelPairs
    value: float


@dataclass(frozen=True)
class Family:
    """A metric family: ``name`` is the family name (counters without ``_total``)."""

    name: str
    type: str  # gauge | counter | histogram | info
    help: str
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Snapshot:
    families: tuple[Family, ...]
    created: float
    ready: bool = False


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}.0"
    return repr(float(value))


def render_labels(labels: LabelPairs) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def render(families: Iterable[Family]) -> bytes:
    """Prometheus text format 0.0.4, as prometheus-client's generate_latest would write it."""
    out: list[str] = []
    for fam in families:
        if not fam.samples:
            continue
        ftype = "gauge" if fam.type == "info" else fam.type
        # text format 0.0.4 names counters and info metrics by their sample name
        name = fam.name + {"info": "_info", "counter": "_total"}.get(fam.type, "")
        out.append(f"# HELP {name} {fam.help.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}\n")
        out.append(f"# TYPE {name} {ftype}\n")
        out.extend(f"{s.name}{render_labels(s.labels)} {_format_value(s.value)}\n" for s in fam.samples)
    return "".join(out).encode("utf-8")


@dataclass
class FamilyBuilder:
    """Collects samples per family while a snapshot is being built."""

    name: str
    type: str
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, labels: Mapping[str, str] | LabelPairs, value: float, suffix: str = "") -> None:
        pairs = tuple(labels.items()) if isinstance(labels, Mapping) else labels
        if not suffix:
            suffix = {"info": "_info", "counter": "_total"}.get(self.type, "")
        self.samples.append(Sample(self.name + suffix, pairs, float(value)))

    def histogram(self, labels: LabelPairs, bounds: Iterable[float], cumulative: Iterable[int],
                  total: float, count: int) -> None:
        for le, c in zip([*list(bounds), math.inf], cumulative, strict=True):
            le_text = "+Inf" if math.isinf(le) else _format_value(le)
            self.samples.append(Sample(self.name + "_bucket", (*labels, ("le", le_text)), float(c)))
        self.samples.append(Sample(self.name + "_count", labels, float(count)))
        self.samples.append(Sample(self.name + "_sum", labels, float(total)))

    def freeze(self) -> Family:
        return Family(self.name, self.type, self.help, tuple(self.samples))


class SnapshotBuilder:
    """Families in the order they are first declared."""

    def __init__(self) -> None:
        self._families: dict[str, FamilyBuilder] = {}

    def family(self, name: str, type_: str, help_: str) -> FamilyBuilder:
        fam = self._families.get(name)
        if fam is None:
            fam = self._families[name] = FamilyBuilder(name, type_, help_)
        return fam

    def build(self, created: float, ready: bool) -> Snapshot:
        return Snapshot(tuple(f.freeze() for f in self._families.values()), created, ready)
