"""Reading numbers back out of a published Snapshot, by sample name and labels.

Retraining (the evidence of an alert), history (its rows) and the status page (its cards) read
the last cycle's numbers this way. It is a reader of the output, so it sits above the cycle and
below all three (it used to live in ``retrain``, which made history and the status page import
the retraining service). Issue 12's typed Report is to replace these lookups by metric name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exporter.report.snapshot import Sample, Snapshot


class SnapshotIndex:
    """Sample values of one Snapshot, looked up by sample name and exact label set.

    ``names`` restricts the index to those sample names (e.g. ``mlmon_accuracy_ratio``,
    ``mlmon_predictions_total``), which keeps a lookup from an HTTP thread cheap.
    """

    def __init__(self, snapshot: Snapshot, names: Iterable[str] | None = None) -> None:
        wanted = set(names) if names is not None else None
        self._samples: dict[str, list[Sample]] = {}
        self._values: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
        for fam in snapshot.families:
            if wanted is not None and not any(w.startswith(fam.name) for w in wanted):
                continue
            for s in fam.samples:
                if wanted is not None and s.name not in wanted:
                    continue
                self._samples.setdefault(s.name, []).append(s)
                self._values.setdefault(s.name, {})[frozenset(s.labels)] = s.value

    def value(self, name: str, labels: Mapping[str, str]) -> float | None:
        """The value of the sample with exactly these labels, or None."""
        return self._values.get(name, {}).get(frozenset(labels.items()))

    def samples(self, name: str, **match: str) -> list[Sample]:
        """Samples of ``name`` whose labels include ``match``, in exposition order."""
        out = []
        for s in self._samples.get(name, []):
            labels = dict(s.labels)
            if all(labels.get(k) == v for k, v in match.items()):
                out.append(s)
        return out


def sample_value(snapshot: Snapshot, name: str, labels: Mapping[str, str]) -> float | None:
    """One sample's value by name and exact label set (a convenience over ``SnapshotIndex``)."""
    return SnapshotIndex(snapshot, (name,)).value(name, labels)
