"""Atomic checkpoints of the whole pipeline state, and their restore.

A checkpoint is one ``.npz`` file (numpy's zip of arrays, loaded with ``allow_pickle=False`` so
a crafted file cannot run code): a JSON tree of the state in which every numpy array is replaced
by a reference to an array member. It is written to a temp file, fsynced, renamed over the old
one and the directory fsynced, so a crash at any moment leaves either the old or the new
checkpoint, never a torn one. Object arrays (ids, class text, versions) are stored as unicode
arrays plus a mask for ``None``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from exporter.foundation.atomic_file import atomic_write

log = logging.getLogger(__name__)

#: 2: windows hold time buckets of statistics instead of events (0.2.0). A format-1 checkpoint
#: (event windows) is moved aside: its events cannot be re-bucketed without the drift reference
#: bins they were logged against, and a partial restore would mix old and new semantics.
FORMAT_VERSION = 2
CHECKPOINT_NAME = "checkpoint.npz"
_META = "__meta__"


class CheckpointError(Exception):
    """The checkpoint cannot be used; the message says why in words an operator can act on."""


def _pack(tree: Any, arrays: dict[str, npt.NDArray[Any]]) -> Any:
    if isinstance(tree, np.ndarray):
        key = f"a{len(arrays)}"
        if tree.dtype == object:
            values = tree.tolist()
            none = np.array([v is None for v in values], dtype=bool)
            arrays[key] = np.array(["" if v is None else str(v) for v in values], dtype=str)
            if none.any():
                arrays[key + "n"] = none
                return {"__obj__": key, "none": key + "n"}
            return {"__obj__": key}
        arrays[key] = tree
        return {"__arr__": key}
    if isinstance(tree, dict):
        return {"__dict__": [[k, _pack(v, arrays)] for k, v in tree.items()]}
    if isinstance(tree, list | tuple):
        return [_pack(v, arrays) for v in tree]
    if isinstance(tree, np.integer):
        return int(tree)
    if isinstance(tree, np.floating):
        return float(tree)
    return tree


def _unpack(tree: Any, arrays: Any) -> Any:
    if isinstance(tree, dict):
        if "__arr__" in tree:
            return arrays[tree["__arr__"]]
        if "__obj__" in tree:
            values = arrays[tree["__obj__"]].astype(object)
            if "none" in tree:
                values[arrays[tree["none"]]] = None
            return values
        if "__dict__" in tree:
            return {k: _unpack(v, arrays) for k, v in tree["__dict__"]}
        raise CheckpointError(f"unexpected node {sorted(tree)} in checkpoint")
    if isinstance(tree, list):
        return [_unpack(v, arrays) for v in tree]
    return tree




def encode(state: dict[str, Any], saved_at: float) -> bytes:
    arrays: dict[str, npt.NDArray[Any]] = {}
    meta = {"format": FORMAT_VERSION, "saved_at": saved_at, "state": _pack(state, arrays)}
    arrays[_META] = np.frombuffer(json.dumps(meta, allow_nan=True).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def decode(data: bytes) -> tuple[dict[str, Any], float]:
    """The state and when it was saved; CheckpointError for anything unusable."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise CheckpointError(f"not a readable checkpoint ({type(e).__name__}: {e})") from e
    if _META not in arrays:
        raise CheckpointError("not a checkpoint of this exporter (no metadata)")
    try:
        meta = json.loads(arrays[_META].tobytes().decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"checkpoint metadata is corrupt ({e})") from e
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if not isinstance(fmt, int):
        raise CheckpointError("checkpoint metadata has no format version")
    if fmt > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format {fmt} is newer than this exporter understands ({FORMAT_VERSION}); "
                              "it was written by a newer mlmon-exporter")
    if fmt < FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format {fmt} was written by mlmon-exporter 0.1 (windows of events); "
                              f"this version keeps bucketed windows (format {FORMAT_VERSION}) and cannot migrate it")
    return _unpack(meta["state"], arrays), float(meta.get("saved_at", 0.0))


class Checkpointer:
    """Saves and restores one checkpoint file in the state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / CHECKPOINT_NAME
        directory.mkdir(parents=True, exist_ok=True)
        self.last_success: float | None = None
        self.errors_total = 0
        self.restore_failures_total = 0
        self.last_duration = 0.0

    def save(self, state: dict[str, Any], now: float) -> bool:
        started = time.perf_counter()
        try:
            atomic_write(self.path, encode(state, now))
        except (OSError, ValueError, TypeError):
            self.errors_total += 1
            log.exception("checkpoint failed", extra={"path": str(self.path)})
            return False
        self.last_success = now
        self.last_duration = time.perf_counter() - started
        return True

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None (no checkpoint, or an unusable one moved aside)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            self._set_aside(f"cannot read checkpoint: {e}")
            return None
        try:
            state, saved_at = decode(data)
        except CheckpointError as e:
            self._set_aside(str(e))
            return None
        log.info("restoring checkpoint", extra={"path": str(self.path), "saved_at": saved_at})
        return state

    def _set_aside(self, reason: str) -> None:
        self.restore_failures_total += 1
        aside = self.path.with_name(f"{self.path.name}.unusable-{int(time.time())}")
        try:
            os.replace(self.path, aside)
        except OSError:
            aside = self.path
        log.error("CHECKPOINT NOT RESTORED, starting from empty state: %s", reason,
                  extra={"path": str(self.path), "moved_to": str(aside)})
