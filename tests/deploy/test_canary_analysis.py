"""Canary gating on model quality (issue 16): the chart's Argo Rollouts AnalysisTemplate and
Flagger MetricTemplates.

* Every rendered object, and every object in the README section "Gating canaries on model
  quality", is checked with ``jsonschema`` against the ``openAPIV3Schema`` of the controllers'
  real CRDs (vendored in tests/crds without their descriptions; made strict: an unknown field
  fails, as with ``kubectl --validate=strict``).
* The PromQL runs against a real Prometheus that scrapes a real exporter fed two versions of
  one model: "1" at accuracy 0.93 and "2" at 0.79. The controllers' own decision rules are
  applied to the query results (Argo: successCondition / failureCondition, neither true is
  Inconclusive; Flagger: an empty result is "no values found", else thresholdRange): a bad
  canary fails, a good one passes (the same data with the roles reversed), a canary below the
  minimum labelled predictions is inconclusive / has no sample, and a drifting canary fails
  the data-drift gate.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.crds import vendor
from tests.helpers import free_port, missing
from tests.stack import Stack, prometheus_config, running_stack

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlmon-exporter"
README = ROOT / "README.md"
RULES = ROOT / "alerts" / "mlmon-exporter.rules.yaml"
EXTRACT = ROOT / "alerts" / "extract_rules.py"
RELEASE, NAMESPACE = "mlmon", "ml"
JOB = "mlmon-exporter"

try:
    import helm_python as helm
except ImportError:  # pragma: no cover - depends on the environment
    helm = None

try:
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None

BOTH_ON = {"canaryAnalysis": {"argo": {"enabled": True}, "flagger": {"enabled": True}}}


# --------------------------------------------------------------------------------------------
# Rendering and CRD schemas
# --------------------------------------------------------------------------------------------
def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    if helm is None:
        missing("helm-python-sdk (pip install helm-python-sdk==0.2.2)")
    with helm.Chart.load(CHART) as chart:
        out: dict[str, str] = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(out.items()):
        if path.endswith((".yaml", ".yml")):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def _strict(schema: Any) -> Any:
    """The CRD schema with ``additionalProperties: false`` on every object that lists its
    properties (and does not preserve unknown fields): the API server's strict field
    validation rejects unknown fields, plain JSON Schema would accept them."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema of every served version in tests/crds."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name in vendor.FILES:
        for crd in json.loads(vendor.vendored_path(name).read_text()):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                if v.get("served"):
                    out[(f"{group}/{v['name']}", kind)] = _strict(v["schema"]["openAPIV3Schema"])
    return out


def schema_errors(doc: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    if jsonschema is None:
        missing("jsonschema")
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    assert key in schemas, f"no CRD for {key}"
    validator = jsonschema.Draft7Validator(schemas[key])
    return sorted(f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc))


def test_vendored_crds_hold_the_kinds_the_chart_renders() -> None:
    kinds = {k for _, k in crd_schemas()}
    assert {"AnalysisTemplate", "MetricTemplate", "Canary"} <= kinds


def test_templates_are_off_by_default() -> None:
    kinds = {d["kind"] for d in render({})}
    assert not kinds & {"AnalysisTemplate", "MetricTemplate"}, kinds
    only_argo = {d["kind"] for d in render({"canaryAnalysis": {"argo": {"enabled": True}}})}
    assert "AnalysisTemplate" in only_argo and "MetricTemplate" not in only_argo
    only_flagger = {d["kind"] for d in render({"canaryAnalysis": {"flagger": {"enabled": True}}})}
    assert "MetricTemplate" in only_flagger and "AnalysisTemplate" not in only_flagger


@pytest.mark.parametrize("values", [
    BOTH_ON,
    {"canaryAnalysis": {"range": "5m", "driftWindow": "24h", "minSamples": 50,
                        "argo": {"enabled": True, "count": 0, "initialDelay": "10m", "inconclusiveLimit": 2},
                        "flagger": {"enabled": True}}},
], ids=["defaults", "tuned"])
def test_rendered_objects_match_their_crds(values: dict[str, Any]) -> None:
    schemas = crd_schemas()
    docs = [d for d in render(values) if d["kind"] in ("AnalysisTemplate", "MetricTemplate")]
    assert sorted(d["kind"] for d in docs) == ["AnalysisTemplate"] + ["MetricTemplate"] * 3
    for doc in docs:
        errors = schema_errors(doc, schemas)
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors}"


def test_lint_strict_with_both_templates() -> None:
    if helm is None:
        missing("helm-python-sdk")
    report = helm.lint(CHART, BOTH_ON, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("values", [
    {"canaryAnalysis": {"range": "2h"}},  # no recording rule for that range
    {"canaryAnalysis": {"minSamples": 0}},
    {"canaryAnalysis": {"minAccuracy": 85}},
    {"canaryAnalysis": {"prometheusAddress": "prometheus:9090"}},
    {"canaryAnalysis": {"argo": {"enabled": "yes"}}},
    {"canaryAnalysis": {"argo": {"interval": "5 minutes"}}},
    {"canaryAnalysis": {"flagger": {"enabeld": True}}},
], ids=lambda v: json.dumps(v))
def test_schema_refuses_bad_canary_values(values: dict[str, Any]) -> None:
    if helm is None:
        missing("helm-python-sdk")
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_strict_crd_schemas_catch_mistakes() -> None:
    """The validation is not vacuous: a misspelt field, a wrong type and a missing required
    field each fail."""
    schemas = crd_schemas()
    at = next(d for d in render(BOTH_ON) if d["kind"] == "AnalysisTemplate")
    mt = next(d for d in render(BOTH_ON) if d["kind"] == "MetricTemplate")
    assert not schema_errors(at, schemas) and not schema_errors(mt, schemas)
    bad = copy.deepcopy(at)
    bad["spec"]["metrics"][0]["successCondtion"] = bad["spec"]["metrics"][0].pop("successCondition")
    assert any("successCondtion" in e for e in schema_errors(bad, schemas))
    bad = copy.deepcopy(at)
    bad["spec"]["metrics"][0]["failureLimit"] = [1]
    assert schema_errors(bad, schemas)
    bad = copy.deepcopy(mt)
    del bad["spec"]["provider"]
    assert any("provider" in e for e in schema_errors(bad, schemas))


def readme_section() -> str:
    text = README.read_text()
    m = re.search(r"^## Gating canaries on model quality\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README has no section 'Gating canaries on model quality'"
    return m.group(1)


def readme_objects() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for block in re.findall(r"```yaml\n(.*?)```", readme_section(), re.S):
        docs.extend(d for d in yaml.safe_load_all(block) if isinstance(d, dict) and "kind" in d)
    return docs


def test_readme_objects_are_valid_and_match_the_chart() -> None:
    """The README's objects are ready to paste: valid against the CRDs, and the templates
    are exactly what the chart renders (so the README cannot go stale)."""
    schemas = crd_schemas()
    docs = readme_objects()
    kinds = sorted(d["kind"] for d in docs)
    assert {"AnalysisTemplate", "MetricTemplate", "Canary", "Rollout"} <= set(kinds), kinds
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in schemas:
            errors = schema_errors(doc, schemas)
            assert not errors, f"README {doc['kind']}/{doc['metadata']['name']}: {errors}"
    rendered = {(d["kind"], d["metadata"]["name"]): d["spec"] for d in render(BOTH_ON)
                if d["kind"] in ("AnalysisTemplate", "MetricTemplate")}
    for doc in docs:
        if doc["kind"] in ("AnalysisTemplate", "MetricTemplate"):
            assert rendered.get((doc["kind"], doc["metadata"]["name"])) == doc["spec"], (
                f"README {doc['kind']}/{doc['metadata']['name']} differs from the chart's render")
    # the Canary and the Rollout reference the rendered templates and pass every variable/argument
    canary = next(d for d in docs if d["kind"] == "Canary")
    refs = {m["templateRef"]["name"]: m for m in canary["spec"]["analysis"]["metrics"]}
    assert set(refs) == {n for k, n in rendered if k == "MetricTemplate"}
    for m in refs.values():
        assert set(m["templateVariables"]) == {"model", "canaryVersion", "stableVersion", "minSamples"}
    rollout = next(d for d in docs if d["kind"] == "Rollout")
    text = json.dumps(rollout)
    assert f"{RELEASE}-mlmon-exporter-model-quality" in text
    assert '"canary-version"' in text and '"stable-version"' in text


# --------------------------------------------------------------------------------------------
# The controllers' decision rules, applied to a real query result
# --------------------------------------------------------------------------------------------
def argo_substitute(text: str, args: dict[str, str]) -> str:
    out = re.sub(r"\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}", lambda m: args[m.group(1)], text)
    assert "{{" not in out, out
    return out


_ARGO_CONDITION = re.compile(r"^(len\(result\)|result\[0\]|[0-9.]+|>=|<=|==|>|<|&&|\|\||[ ()])+$")


def argo_condition(expr: str, result: list[float]) -> bool:
    """Evaluate the subset of Argo's expr language the chart's conditions use (len(result),
    result[0], numbers, comparisons, && and ||). ``&&`` short-circuits, as in expr."""
    assert _ARGO_CONDITION.match(expr), f"condition outside the tested subset: {expr!r}"
    py = expr.replace("&&", " and ").replace("||", " or ")
    return bool(eval(py, {"__builtins__": {}}, {"result": result, "len": len}))


def argo_phase(metric: dict[str, Any], result: list[float]) -> str:
    """Argo Rollouts' evaluate.EvaluateResult: failure wins; neither true is Inconclusive."""
    success = argo_condition(metric["successCondition"], result)
    failure = argo_condition(metric["failureCondition"], result)
    if failure:
        return "Failed"
    return "Successful" if success else "Inconclusive"


def flagger_substitute(text: str, variables: dict[str, str]) -> str:
    out = re.sub(r"\{\{\s*variables\.([A-Za-z0-9_]+)\s*\}\}", lambda m: variables[m.group(1)], text)
    assert "{{" not in out, out
    return out


def flagger_verdict(result: list[float], threshold: dict[str, float]) -> str:
    """Flagger's Prometheus provider and thresholdRange check: an empty (or NaN) result is
    "no values found" (the canary halts), a value outside [min, max] fails."""
    if not result or math.isnan(result[-1]):
        return "no sample"
    value = result[-1]
    if "min" in threshold and value < threshold["min"]:
        return "failed"
    if "max" in threshold and value > threshold["max"]:
        return "failed"
    return "passed"


# --------------------------------------------------------------------------------------------
# A real exporter and Prometheus
# --------------------------------------------------------------------------------------------
MODEL = "ranker"
MIN_SAMPLES = 100
N = 300  # labelled predictions of each main version
THRESHOLDS = {"min-accuracy": "0.85", "max-accuracy-drop": "0.05"}


def records(version: str, n: int, accuracy: float, rng: random.Random, conf: tuple[float, float],
            now: float) -> tuple[str, str]:
    """Predictions and labels; exactly round(n * (1 - accuracy)) wrong, spread evenly, so any
    prefix the exporter reads already has about the final accuracy."""
    err = 1.0 - accuracy
    preds, labels = [], []
    for i in range(n):
        rid = f"v{version}-{i}"
        pred = i % 2
        wrong = math.floor((i + 1) * err + 1e-9) > math.floor(i * err + 1e-9)
        preds.append({"id": rid, "model_version": version, "timestamp": now, "prediction": pred,
                      "confidence": round(rng.uniform(*conf), 4)})
        labels.append({"id": rid, "label": 1 - pred if wrong else pred, "timestamp": now})
    return ("".join(json.dumps(p) + "\n" for p in preds), "".join(json.dumps(x) + "\n" for x in labels))


@dataclass
class Live:
    stack: Stack
    docs: list[dict[str, Any]]

    def values(self, query: str) -> list[float]:
        return [float(r["value"][1]) for r in self.stack.query(query)]

    def argo(self, metric: str, canary: str, stable: str, min_samples: int = MIN_SAMPLES) -> tuple[str, list[float]]:
        at = next(d for d in self.docs if d["kind"] == "AnalysisTemplate")
        defaults = {a["name"]: a.get("value") for a in at["spec"]["args"]}
        args = {**defaults, **THRESHOLDS, "model": MODEL, "canary-version": canary, "stable-version": stable,
                "min-samples": str(min_samples)}
        m = next(x for x in at["spec"]["metrics"] if x["name"] == metric)
        resolved = {k: argo_substitute(m[k], args) for k in ("successCondition", "failureCondition")}
        result = self.values(argo_substitute(m["provider"]["prometheus"]["query"], args))
        return argo_phase(resolved, result), result

    def flagger(self, metric: str, canary: str, stable: str, threshold: dict[str, float],
                min_samples: int = MIN_SAMPLES) -> tuple[str, list[float]]:
        mt = next(d for d in self.docs if d["kind"] == "MetricTemplate"
                  and d["metadata"]["name"] == f"{RELEASE}-mlmon-exporter-{metric}")
        variables = {"model": MODEL, "canaryVersion": canary, "stableVersion": stable,
                     "minSamples": str(min_samples)}
        result = self.values(flagger_substitute(mt["spec"]["query"], variables))
        return flagger_verdict(result, threshold), result


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    d = tmp_path_factory.mktemp("canary")
    docs = render({"canaryAnalysis": {"range": "5m", "driftWindow": "1h",
                                      "argo": {"enabled": True}, "flagger": {"enabled": True}}})
    with running_stack(d) as stack:
        rng = random.Random(16)
        now = time.time()
        healthy = (0.80, 0.99)
        ref, _ = records("ref", 1000, 0.9, rng, healthy, now)
        (d / "reference.jsonl").write_text(ref)
        batches = [records("1", N, 0.93, rng, healthy, now),  # stable-quality version
                   records("2", N, 0.79, rng, healthy, now),  # the bad one
                   records("3", 20, 0.95, rng, healthy, now),  # too few labels
                   records("4", N, 0.93, rng, (0.50, 0.65), now)]  # accurate, inputs drifted
        preds, labels = d / "predictions.jsonl", d / "labels.jsonl"
        preds.write_text("".join(p for p, _ in batches))
        labels.touch()
        cfg = d / "exporter.yaml"
        cfg.write_text(f"""
global: {{poll_interval: 1s, windows: [1h, 24h]}}
models:
  - name: {MODEL}
    task: binary
    classes: ["0", "1"]
    thresholds: {{min_samples: {MIN_SAMPLES}}}
    baseline: {{accuracy: 0.93}}
    drift: {{reference: "{d / 'reference.jsonl'}"}}
sources:
  - {{name: predictions, kind: predictions, type: file, path: "{preds}", model: {MODEL}}}
  - {{name: labels, kind: labels, type: file, path: "{labels}"}}
""")
        port = free_port()
        stack.spawn("exporter", [sys.executable, "-m", "exporter", f"--config.file={cfg}",
                                 f"--web.listen-address=127.0.0.1:{port}", f"--state.directory={d / 'state'}"],
                    cwd=ROOT)
        stack.wait(lambda: requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).ok, 30, "exporter ready")
        rules = d / "rules.yml"
        subprocess.run([sys.executable, str(EXTRACT), str(RULES), str(rules)], check=True)
        stack.start_prometheus(prometheus_config({JOB: f"127.0.0.1:{port}"}, [rules]))
        stack.wait_until_scraping(JOB)
        # every version's counters scraped at 0 first, so increase() counts every label
        stack.wait(lambda: len(stack.query(f'mlmon_correct_predictions_total{{model="{MODEL}"}} == 0')) == 4,
                   30, "zero counters scraped")
        (d / "labels.jsonl").write_text("".join(lab for _, lab in batches))
        live = Live(stack, docs)
        # settled: every version's recording rule and the drift flags are there
        stack.wait(lambda: all(live.values(f'model_version:mlmon_accuracy:ratio_rate5m{{model="{MODEL}", '
                                           f'model_version="{v}"}}') for v in "1234"), 60, "recording rules")
        stack.wait(lambda: live.values(f'mlmon_data_drift_detected{{model="{MODEL}", model_version="4", '
                                       'window="1h"} == 1'), 60, "version 4 drift flag")
        stack.wait(lambda: abs(live.values('model_version:mlmon_accuracy:ratio_rate5m{model_version="2"}')[0]
                               - 0.79) < 1e-9, 30, "version 2 accuracy settled")
        yield live


def test_recording_rules_see_the_two_accuracies(live: Live) -> None:
    acc = {v: live.values(f'model_version:mlmon_accuracy:ratio_rate5m{{model="{MODEL}", model_version="{v}"}}')
           for v in "12"}
    assert acc["1"] == [pytest.approx(0.93)]
    assert acc["2"] == [pytest.approx(0.79)]


def test_argo_fails_the_bad_canary_and_passes_the_good_one(live: Live) -> None:
    # stable "1" (0.93), canary "2" (0.79): accuracy below 0.85 and 14 points worse than stable
    phase, result = live.argo("canary-accuracy", canary="2", stable="1")
    assert (phase, result) == ("Failed", [pytest.approx(0.79)])
    phase, result = live.argo("canary-accuracy-drop", canary="2", stable="1")
    assert (phase, result) == ("Failed", [pytest.approx(0.14)])
    assert live.argo("canary-data-drift", canary="2", stable="1") == ("Successful", [0.0])
    # the reverse: stable "2", canary "1"
    assert live.argo("canary-accuracy", canary="1", stable="2") == ("Successful", [pytest.approx(0.93)])
    assert live.argo("canary-accuracy-drop", canary="1", stable="2") == ("Successful", [pytest.approx(-0.14)])
    assert live.argo("canary-data-drift", canary="1", stable="2")[0] == "Successful"


def test_argo_is_inconclusive_below_the_minimum_samples(live: Live) -> None:
    # canary "3" has 20 labelled predictions (< 100): nothing is measured, nothing passes
    for metric in ("canary-accuracy", "canary-accuracy-drop", "canary-data-drift"):
        assert live.argo(metric, canary="3", stable="1") == ("Inconclusive", []), metric
    # the same 300-label versions with the minimum raised above their count: inconclusive too,
    # whichever way round (a failing canary is not failed on too little evidence either)
    for canary, stable in (("2", "1"), ("1", "2")):
        for metric in ("canary-accuracy", "canary-accuracy-drop", "canary-data-drift"):
            assert live.argo(metric, canary, stable, min_samples=10 * N)[0] == "Inconclusive", (metric, canary)
    # a stable version below the minimum makes the comparison inconclusive, not the accuracy
    assert live.argo("canary-accuracy-drop", canary="1", stable="3")[0] == "Inconclusive"
    assert live.argo("canary-accuracy", canary="1", stable="3")[0] == "Successful"


def test_argo_fails_a_drifting_canary(live: Live) -> None:
    assert live.argo("canary-data-drift", canary="4", stable="1") == ("Failed", [1.0])
    assert live.argo("canary-accuracy", canary="4", stable="1")[0] == "Successful"


def test_flagger_verdicts(live: Live) -> None:
    acc, drop, drift = {"min": 0.85}, {"max": 0.05}, {"max": 0}
    assert live.flagger("canary-accuracy", "2", "1", acc)[0] == "failed"
    assert live.flagger("canary-accuracy-drop", "2", "1", drop)[0] == "failed"
    assert live.flagger("canary-data-drift", "2", "1", drift)[0] == "passed"
    assert live.flagger("canary-accuracy", "1", "2", acc)[0] == "passed"
    assert live.flagger("canary-accuracy-drop", "1", "2", drop)[0] == "passed"
    assert live.flagger("canary-data-drift", "1", "2", drift)[0] == "passed"
    assert live.flagger("canary-data-drift", "4", "1", drift)[0] == "failed"
    for metric, threshold in (("canary-accuracy", acc), ("canary-accuracy-drop", drop), ("canary-data-drift", drift)):
        assert live.flagger(metric, "3", "1", threshold) == ("no sample", []), metric
        assert live.flagger(metric, "2", "1", threshold, min_samples=10 * N) == ("no sample", []), metric
