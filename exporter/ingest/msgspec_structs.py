"""The msgspec decoder of one source's field mapping: structs holding only the mapped paths.

Kept apart from the block parser that uses it, since it is a small compiler of its own: the
mapped paths become a tree of ``msgspec.defstruct`` types (renamed attributes, so any key text
works), and every key the mapping does not read is skipped by msgspec's C decoder without
building a Python object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from exporter.ingest.records import RecordSpec

UNSET = msgspec.UNSET


def build_decoder(kind: str, spec: RecordSpec, paths: Mapping[str, tuple[str, ...]],
                  unset_leaves: set[tuple[str, ...]], attrs: dict[tuple[str, ...], str], *,
                  typed: bool) -> msgspec.json.Decoder[Any] | None:
    """A decoder of list-of-structs holding just the mapped paths; None if two paths clash
    (one is a prefix of another), which only the per-record parser handles. ``typed``: the
    confidence and features as ``float | None``, probabilities as ``dict[str, float] | None``
    (integers become floats, as the reference's rules do; anything else is refused).

    ``attrs`` gets each path's struct attribute (the same for typed and untyped, built in the
    same order); ``unset_leaves`` are the paths whose absence must differ from null (UNSET)."""
    leaves = set(paths.values())
    if "features" in paths:
        leaves.discard(paths["features"])
        leaves |= {(*paths["features"], f) for f in spec.feature_names}
    tree: dict[str, Any] = {}
    for path in sorted(leaves, key=len):
        node = tree
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                return None
            node = child
        if path[-1] in node:
            return None  # a path through a leaf, or the same leaf twice (cannot happen after set())
        node[path[-1]] = path
    counter = iter(range(1 << 30))
    numbers: dict[tuple[str, ...], Any] = {}
    if typed and kind == "predictions":
        numbers[paths["confidence"]] = float | None
        numbers[paths["probabilities"]] = dict[str, float] | None
        if "features" in paths:
            numbers.update({(*paths["features"], f): float | None for f in spec.feature_names})

    def build(node: dict[str, Any], prefix: tuple[str, ...]) -> type:
        fields: list[tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        for key, sub in node.items():
            attr = f"f{next(counter)}"
            rename[attr] = key
            path = (*prefix, key)
            attrs[path] = attr
            if isinstance(sub, dict):
                fields.append((attr, build(sub, path) | None, None))
            elif path in unset_leaves:
                fields.append((attr, Any, UNSET))
            elif path in numbers:
                fields.append((attr, numbers[path], None))
            else:
                fields.append((attr, Any, None))
        return msgspec.defstruct(f"Rec{next(counter)}", fields, rename=rename, gc=False)

    return msgspec.json.Decoder(build(tree, ()))
