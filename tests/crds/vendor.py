"""Vendor the progressive-delivery CRDs the canary tests validate against.

The originals (Apache-2.0; see README.md here) are large because of their descriptions, so the
repository keeps each file's CustomResourceDefinition documents as JSON with every
``description`` removed: the schemas themselves are unchanged. Regenerate after updating the
originals::

    python -m tests.crds.vendor /path/to/crds          # writes tests/crds/*.json
    python -m tests.crds.vendor --check /path/to/crds  # exit 1 if tests/crds differs from them

The originals are not in the repository (README.md here names their commits), so the check is a
command to run where they are, not a test that would have to skip on a clean clone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
FILES = ("argo-rollouts-analysistemplate.crd.yaml", "flagger.crd.yaml")


def strip_descriptions(node: Any) -> Any:
    """The node without any ``description`` key (a property *named* description is kept)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "description" and isinstance(v, str):
                continue
            out[k] = strip_descriptions(v)
        return out
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def from_original(path: Path) -> list[dict[str, Any]]:
    """The CRD documents of one original file, descriptions removed."""
    docs = yaml.safe_load_all(path.read_text())
    return [strip_descriptions(d) for d in docs if d and d.get("kind") == "CustomResourceDefinition"]


def vendored_path(original_name: str) -> Path:
    return HERE / original_name.replace(".yaml", ".json")


def dump(docs: list[dict[str, Any]]) -> str:
    return json.dumps(docs, indent=0, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    check = argv[:1] == ["--check"]
    args = argv[1:] if check else argv
    if len(args) != 1:
        print("usage: python -m tests.crds.vendor [--check] ORIGINAL_CRD_DIRECTORY", file=sys.stderr)
        return 2
    stale = []
    for name in FILES:
        text = dump(from_original(Path(args[0]) / name))
        if not check:
            vendored_path(name).write_text(text)
        elif vendored_path(name).read_text() != text:
            stale.append(name)
    for name in stale:
        print(f"tests/crds is stale for {name}: python -m tests.crds.vendor {args[0]}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
