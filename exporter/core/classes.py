"""Class values of a model mapped to small integer indices.

Confusion matrices and per-class counters are numpy arrays indexed by class, so every class
value is turned into an index once, when it arrives. Classes come from the config, or are
discovered up to a cap so a misbehaving model cannot create unbounded label values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from exporter.config import ModelConfig


class ClassIndex:
    """Class text -> index, fixed by config or discovered up to ``capacity``."""

    def __init__(self, model: ModelConfig) -> None:
        if model.classes is not None:
            self.fixed = True
            initial: Sequence[str] = model.classes
            self.capacity = len(model.classes)
        else:
            self.fixed = False
            self.capacity = 2 if model.task == "binary" else model.max_classes
            initial = []
            if model.task == "binary":
                # the usual 0/1 model gets both classes from the start; others discover the negative
                initial = ["0", "1"] if model.positive_class in ("0", "1") else [model.positive_class]
        self.names: list[str] = list(initial)
        self._index = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, values: npt.NDArray[np.object_]) -> npt.NDArray[np.int32]:
        """Indices of the values; -1 for a value outside the fixed classes or beyond the cap."""
        index = self._index
        if not self.fixed:
            for v in sorted(set(values.tolist()) - index.keys()):
                if len(self.names) >= self.capacity:
                    break
                index[v] = len(self.names)
                self.names.append(v)
        return np.fromiter((index.get(v, -1) for v in values.tolist()), dtype=np.int32, count=values.size)

    def accepts(self, values: npt.NDArray[np.object_]) -> npt.NDArray[np.bool_]:
        """Which values are (or, while discovering, can become) classes of this model."""
        accepted: npt.NDArray[np.bool_] = self.encode(values) >= 0
        return accepted

    def restore(self, names: Sequence[str]) -> None:
        """Reinstate discovered classes in their original order (indices must not move)."""
        for name in names:
            if name not in self._index and len(self.names) < self.capacity:
                self._index[name] = len(self.names)
                self.names.append(name)
