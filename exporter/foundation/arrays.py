"""Names for the numpy array types the exporter passes around, so every module spells them alike.

Columns of a batch (``ObjArray`` of ids and classes, ``FloatArray`` of timestamps and
confidences), index and count arrays (``IntArray``), masks (``BoolArray``), and the few special
widths some modules store (hashed ids, kinds of reference values).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]
HashArray = npt.NDArray[np.uint64]
KindArray = npt.NDArray[np.int8]


def repeated(value: object, n: int) -> ObjArray:
    """An object column holding ``value`` n times: the same object in every row. ``np.full(n,
    text, dtype=object)`` goes through a unicode array and makes a new string per row (16 times
    slower for a source's fixed model, and n strings instead of one)."""
    out: ObjArray = np.empty(n, dtype=object)
    out.fill(value)
    return out
