"""Prediction and label batches: the columnar form every source's records are turned into.

A poll yields many records at once; keeping them as numpy columns lets the join and the window
updates work on whole batches instead of per-event Python objects. The parsers here map each
source's own field names (dotted paths) onto the canonical record of DESIGN §3 and count what
they reject by reason instead of raising.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


import numpy as np
import numpy.typing as npt

ObjArray = npt.NDArray[np.object_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PredictionBatch:
    """Valid prediction records, one row per record, all columns the same length."""

    id: ObjArray  # str
    model: ObjArray  # str; from the record or fixed by the source
    model_version: ObjArray  # str
    timestamp: FloatArray  # epoch seconds; arrival time when the record has none
    prediction: ObjArray  # normalised class text (DESIGN §2 "Classes")
    confidence: FloatArray  # in [0, 1]; NaN when neither given nor derivable from probabilities
    probabilities: ObjArray  # dict[str, float] (class text -> probability) or None
    features: dict[str, ObjArray] = field(default_factory=dict)  # name -> raw value or None

    def __len__(self) -> int:
        return len(self.id)


@dataclass(frozen=True)
class LabelBatch:
    """Valid label records."""

    id: ObjArray  # str
    label: ObjArray  # normalised class text
    timestamp: FloatArray  # epoch seconds; arrival time when the record has none
    model: ObjArray  # str, or None when the record names no model

    def __len__(self) -> int:
        return len(self.id)


@dataclass
class ParseResult:
    """What a parser returns: the valid rows, and how many records were rejected by reason."""

    batch: PredictionBatch | LabelBatch
    invalid: Counter[str] = field(default_factory=Counter)
    records: int = 0  # records read, valid or not (mlmon_exporter_records_total)
    newest_timestamp: float | None = None  # for mlmon_exporter_source_lag_seconds


def empty_predictions(feature_names: tuple[str, ...] = ()) -> PredictionBatch:
    def obj() -> ObjArray:
        return np.empty(0, dtype=object)

    return PredictionBatch(
        id=obj(), model=obj(), model_version=obj(), timestamp=np.empty(0), prediction=obj(),
        confidence=np.empty(0), probabilities=obj(), features={f: obj() for f in feature_names},
    )


def empty_labels() -> LabelBatch:
    return LabelBatch(
        id=np.empty(0, dtype=object), label=np.empty(0, dtype=object), timestamp=np.empty(0),
        model=np.empty(0, dtype=object),
    )


