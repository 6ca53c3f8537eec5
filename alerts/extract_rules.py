#!/usr/bin/env python3
"""Extract plain Prometheus rule groups from the PrometheusRule object in alerts/.

alerts/mlmon-exporter.rules.yaml is the single source of truth: a Prometheus Operator
``PrometheusRule``. ``promtool check rules`` / ``promtool test rules`` and a plain Prometheus
``rule_files:`` entry want ``{groups: [...]}``, so this step checks the object's apiVersion and
kind and writes its ``spec.groups`` unchanged.

    python alerts/extract_rules.py alerts/mlmon-exporter.rules.yaml /tmp/rules.yaml
    python alerts/extract_rules.py IN OUT --for-override 2s   # live end-to-end tests only

``--for-override`` rewrites the ``for:`` of every alerting rule; it exists for live tests
against a real Prometheus, where waiting the production ``for:`` is not an option. Never ship
its output.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

API_VERSION = "monitoring.coreos.com/v1"
KIND = "PrometheusRule"
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


class RuleSourceError(ValueError):
    """The input is not a PrometheusRule object we can extract."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Multi-line PromQL stays readable in the generated file (block style).
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        # Shared annotations (YAML anchors in the source) are written out in full.
        return True


_Dumper.add_representer(str, _str_presenter)


def extract_from_object(obj: Any, for_override: str | None = None, source: str = "<input>") -> dict[str, Any]:
    """Return ``{"groups": spec.groups}`` of a loaded PrometheusRule object."""
    if not isinstance(obj, dict):
        raise RuleSourceError(f"{source}: expected a YAML mapping (one PrometheusRule object)")
    if obj.get("apiVersion") != API_VERSION:
        raise RuleSourceError(f"{source}: apiVersion must be {API_VERSION!r}, got {obj.get('apiVersion')!r}")
    if obj.get("kind") != KIND:
        raise RuleSourceError(f"{source}: kind must be {KIND!r}, got {obj.get('kind')!r}")
    spec = obj.get("spec")
    groups = spec.get("groups") if isinstance(spec, dict) else None
    if not isinstance(groups, list) or not groups:
        raise RuleSourceError(f"{source}: spec.groups must be a non-empty list")
    groups = copy.deepcopy(groups)
    if for_override is not None:
        if not _DURATION.match(for_override):
            raise RuleSourceError(f"--for-override: {for_override!r} is not a Prometheus duration")
        for group in groups:
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    rule["for"] = for_override
    return {"groups": groups}


def extract(path: str | Path, for_override: str | None = None) -> dict[str, Any]:
    """Load the PrometheusRule file at ``path`` and return ``{"groups": spec.groups}``."""
    with open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    if len(docs) != 1:
        raise RuleSourceError(f"{path}: expected exactly one YAML document, found {len(docs)}")
    return extract_from_object(docs[0], for_override, source=str(path))


def dump(rules: dict[str, Any]) -> str:
    """Serialise extracted rules as YAML, keeping key order and block-style PromQL."""
    return yaml.dump(rules, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write spec.groups of a PrometheusRule as a rule file.")
    parser.add_argument("input", help="PrometheusRule YAML (alerts/mlmon-exporter.rules.yaml)")
    parser.add_argument("output", help="rule file to write ('-' for stdout)")
    parser.add_argument("--for-override", metavar="DURATION", help="replace every alert's for: (live tests only)")
    args = parser.parse_args(argv)
    try:
        rules = extract(args.input, args.for_override)
    except (OSError, yaml.YAMLError, RuleSourceError) as exc:
        print(f"extract_rules: {exc}", file=sys.stderr)
        return 1
    text = dump(rules)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"extract_rules: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
