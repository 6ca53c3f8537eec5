"""Checks of the shipped alerting rules (alerts/): structure, promtool, amtool, runbooks.

The PrometheusRule in alerts/mlmon-exporter.rules.yaml is the single source; these tests
extract its groups with alerts/extract_rules.py and run the real tools on them:
`promtool check rules`, `promtool test rules` (alerts/tests/rules_test.yaml),
`amtool check-config` and `amtool config routes test` on alerts/alertmanager-example.yaml.
A missing binary fails the test in CI (CI set) and skips it locally.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.helpers import require_tool

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
RULES = ALERTS / "mlmon-exporter.rules.yaml"
EXTRACT = ALERTS / "extract_rules.py"
UNIT_TESTS = ALERTS / "tests" / "rules_test.yaml"
AM_EXAMPLE = ALERTS / "alertmanager-example.yaml"
RUNBOOKS = ALERTS / "runbooks"
RUNBOOK_URL = "https://github.com/mlmon/mlmon-exporter/blob/main/alerts/runbooks/{}.md"
WEBHOOK_URL = "http://mlmon-exporter:9741/api/v1/alertmanager"
REQUIRED_ALERTS = {
    "MLModelAccuracyDrift",
    "MLModelAccuracyBelowThreshold",
    "MLModelLowConfidence",
    "MLModelDataDrift",
    "MLModelGroundTruthStale",
    "MLExporterSourceDown",
    "MLExporterDown",
}
RUNBOOK_SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation")
SEVERITIES = {"info", "warning", "critical"}
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _load_extract_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlmon_extract_rules", EXTRACT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


extract_rules = _load_extract_module()


require = require_tool


def run(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, **kwargs)


def duration_seconds(text: str) -> float:
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a Prometheus duration: {text!r}"
    return sum(int(n) * _DURATION_UNITS[u] for n, u in parts)


@pytest.fixture(scope="module")
def groups() -> list[dict[str, Any]]:
    return extract_rules.extract(RULES)["groups"]


@pytest.fixture(scope="module")
def alert_rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for g in groups for r in g["rules"] if "alert" in r]


@pytest.fixture(scope="module")
def recording_rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for g in groups for r in g["rules"] if "record" in r]


@pytest.fixture(scope="module")
def unit_tests() -> dict[str, Any]:
    return yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """tmp dir holding the extracted rules next to a copy of the unit-test file."""
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = run([sys.executable, EXTRACT, RULES, tmp_path / "rules.generated.yaml"])
    assert result.returncode == 0, result.stderr
    return tmp_path


# --- extraction ----------------------------------------------------------------------------


def test_source_is_one_prometheusrule_object() -> None:
    docs = list(yaml.safe_load_all(RULES.read_text(encoding="utf-8")))
    assert len(docs) == 1
    obj = docs[0]
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["kind"] == "PrometheusRule"
    assert obj["metadata"]["name"] == "mlmon-exporter"
    assert extract_rules.extract(RULES) == {"groups": obj["spec"]["groups"]}


def test_extract_cli_writes_groups(tmp_path: Path) -> None:
    out = tmp_path / "rules.yaml"
    result = run([sys.executable, EXTRACT, RULES, out])
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(out.read_text(encoding="utf-8")) == extract_rules.extract(RULES)
    assert "&id" not in out.read_text(encoding="utf-8"), "generated file should not use YAML anchors"


def test_extract_for_override_rewrites_alerts_only(tmp_path: Path) -> None:
    plain = extract_rules.extract(RULES)
    fast = extract_rules.extract(RULES, for_override="2s")
    for g_plain, g_fast in zip(plain["groups"], fast["groups"], strict=True):
        for r_plain, r_fast in zip(g_plain["rules"], g_fast["rules"], strict=True):
            if "alert" in r_plain:
                assert r_fast["for"] == "2s"
                assert {k: v for k, v in r_fast.items() if k != "for"} == {
                    k: v for k, v in r_plain.items() if k != "for"
                }
            else:
                assert r_fast == r_plain
    # the source object is not modified by an override
    assert extract_rules.extract(RULES) == plain
    out = tmp_path / "fast.yaml"
    assert run([sys.executable, EXTRACT, RULES, out, "--for-override", "2s"]).returncode == 0
    assert yaml.safe_load(out.read_text(encoding="utf-8")) == fast


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nspec: {groups: [{name: g, rules: []}]}\n", "apiVersion"),
        ("apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nspec: {}\n", "kind"),
        ("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nspec: {groups: []}\n", "spec.groups"),
        ("- a\n- b\n", "mapping"),
    ],
)
def test_extract_rejects_other_objects(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(extract_rules.RuleSourceError, match=message):
        extract_rules.extract(bad)
    result = run([sys.executable, EXTRACT, bad, tmp_path / "out.yaml"])
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_extract_rejects_bad_for_override() -> None:
    with pytest.raises(extract_rules.RuleSourceError, match="duration"):
        extract_rules.extract(RULES, for_override="2 seconds")


# --- promtool / amtool ---------------------------------------------------------------------


def test_promtool_check_rules(rules_dir: Path, tmp_path: Path) -> None:
    promtool = require("promtool")
    result = run([promtool, "check", "rules", "--lint=all", "--lint-fatal", rules_dir / "rules.generated.yaml"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    # the live-test variant is valid too
    fast = tmp_path / "fast.yaml"
    assert run([sys.executable, EXTRACT, RULES, fast, "--for-override", "2s"]).returncode == 0
    result = run([promtool, "check", "rules", fast])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_raw_prometheusrule() -> None:
    """Documents why the extraction step exists."""
    promtool = require("promtool")
    assert run([promtool, "check", "rules", RULES]).returncode != 0


def test_promtool_unit_tests(rules_dir: Path) -> None:
    promtool = require("promtool")
    result = run([promtool, "test", "rules", rules_dir / UNIT_TESTS.name])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_check_config() -> None:
    amtool = require("amtool")
    result = run([amtool, "check-config", AM_EXAMPLE])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _routes(*labels: str) -> list[str]:
    amtool = require("amtool")
    result = run([amtool, "config", "routes", "test", f"--config.file={AM_EXAMPLE}", *labels])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().split(",")


def _webhook_receivers() -> set[str]:
    config = yaml.safe_load(AM_EXAMPLE.read_text(encoding="utf-8"))
    return {
        r["name"]
        for r in config["receivers"]
        if any(w.get("url") == WEBHOOK_URL for w in r.get("webhook_configs") or [])
    }


def test_alertmanager_example_shape() -> None:
    config = yaml.safe_load(AM_EXAMPLE.read_text(encoding="utf-8"))
    assert _webhook_receivers() == {"mlmon-retrain"}
    retrain = [r for r in config["route"]["routes"] if r["receiver"] == "mlmon-retrain"]
    assert retrain and retrain[0]["group_by"] == ["alertname", "model", "model_version"]
    assert config["route"]["receiver"] not in _webhook_receivers()


def test_amtool_routes_retrain_alerts_to_the_webhook(alert_rules: list[dict[str, Any]]) -> None:
    webhook = _webhook_receivers()
    for rule in alert_rules:
        labels = [f"alertname={rule['alert']}", "model=fraud", "model_version=3"]
        labels += [f"{k}={v}" for k, v in rule["labels"].items()]
        receivers = _routes(*labels)
        if rule["labels"].get("action") == "retrain":
            assert webhook & set(receivers), (rule["alert"], receivers)
        else:
            assert not webhook & set(receivers), (rule["alert"], receivers)
            assert receivers == ["default"]
    # and the exact routing of a drift alert, verified by amtool itself
    amtool = require("amtool")
    result = run(
        [
            amtool, "config", "routes", "test", f"--config.file={AM_EXAMPLE}",
            "--verify.receivers=mlmon-retrain,default",
            "alertname=MLModelAccuracyDrift", "action=retrain", "severity=critical", "model=fraud",
        ]
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


# --- rule contents -------------------------------------------------------------------------


def test_required_alerts_present(alert_rules: list[dict[str, Any]]) -> None:
    names = {r["alert"] for r in alert_rules}
    assert names >= REQUIRED_ALERTS
    for name in names:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), f"{name} is not CamelCase"


def test_every_alert_has_metadata(alert_rules: list[dict[str, Any]]) -> None:
    for rule in alert_rules:
        name = rule["alert"]
        assert "for" in rule, name
        assert 60 <= duration_seconds(rule["for"]) <= 3 * 3600, f"{name}: for: {rule['for']} not realistic"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key, "").strip(), f"{name}: missing {key}"
        assert annotations["runbook_url"] == RUNBOOK_URL.format(name)


def test_accuracy_drift_severity_tiers(alert_rules: list[dict[str, Any]]) -> None:
    drift = [r for r in alert_rules if r["alert"] == "MLModelAccuracyDrift"]
    assert {r["labels"]["severity"] for r in drift} == {"info", "warning", "critical"}
    for rule in drift:
        assert rule["labels"]["action"] == "retrain"
        assert "mlmon_accuracy_drift_detected == 1" in rule["expr"]
        assert "mlmon_accuracy_drift_severity" in rule["expr"]
    assert all(r["labels"].get("action") != "retrain" for r in alert_rules if r["alert"] != "MLModelAccuracyDrift")


def test_model_alerts_have_min_samples_guard(alert_rules: list[dict[str, Any]]) -> None:
    for rule in alert_rules:
        if rule["alert"].startswith("MLModel"):
            assert "mlmon_min_samples" in rule["expr"], rule["alert"]
            assert "on (model, model_version)" in rule["expr"], rule["alert"]


def test_runbooks_exist_with_sections(alert_rules: list[dict[str, Any]]) -> None:
    for name in {r["alert"] for r in alert_rules}:
        path = RUNBOOKS / f"{name}.md"
        assert path.is_file(), f"missing runbook {path}"
        text = path.read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), path
        headings = re.findall(r"^## (.+?)\s*$", text, flags=re.M)
        assert headings == list(RUNBOOK_SECTIONS), (path, headings)
        diagnosis = text.split("## Diagnosis", 1)[1].split("## Mitigation", 1)[0]
        assert "```promql" in diagnosis, f"{path}: Diagnosis has no PromQL"
    extra = {p.stem for p in RUNBOOKS.glob("*.md")} - {r["alert"] for r in alert_rules}
    assert not extra, f"runbooks without an alert: {extra}"


def test_runbook_promql_parses(tmp_path: Path) -> None:
    """Every ```promql line of every runbook is valid PromQL (checked as a recording rule)."""
    promtool = require("promtool")
    rules = []
    for path in sorted(RUNBOOKS.glob("*.md")):
        for block in re.findall(r"```promql\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S):
            for line in filter(None, (ln.strip() for ln in block.splitlines())):
                rules.append({"record": f"runbook:check{len(rules)}:{path.stem.lower()}", "expr": line})
    assert len(rules) > 20
    out = tmp_path / "runbook-queries.yaml"
    out.write_text(yaml.safe_dump({"groups": [{"name": "runbooks", "rules": rules}]}), encoding="utf-8")
    result = run([promtool, "check", "rules", "--lint=none", out])
    assert result.returncode == 0, result.stdout + result.stderr


def test_recording_rule_names(recording_rules: list[dict[str, Any]]) -> None:
    names = [r["record"] for r in recording_rules]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"[a-z_]+:mlmon_[a-z_]+:[a-z0-9_]+", name), f"{name}: not level:metric:operations"
    for window in ("5m", "1h", "1d"):
        for name in (
            f"model_version:mlmon_accuracy:ratio_rate{window}",
            f"model_version_class:mlmon_precision:ratio_rate{window}",
            f"model_version_class:mlmon_recall:ratio_rate{window}",
        ):
            assert name in names


# --- unit-test coverage --------------------------------------------------------------------


def test_every_alert_has_firing_and_not_firing_case(
    alert_rules: list[dict[str, Any]], unit_tests: dict[str, Any]
) -> None:
    assert unit_tests["rule_files"] == ["rules.generated.yaml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in unit_tests["tests"]:
        for case in group.get("alert_rule_test") or []:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in alert_rules}
    assert names <= firing, f"no firing case for {names - firing}"
    assert names <= quiet, f"no not-firing case for {names - quiet}"
    # firing cases check annotations as well as labels for every alert
    annotated = {
        case["alertname"]
        for group in unit_tests["tests"]
        for case in group.get("alert_rule_test") or []
        for alert in case.get("exp_alerts") or []
        if alert.get("exp_annotations")
    }
    assert names <= annotated


def test_every_recording_rule_has_an_exact_value(
    recording_rules: list[dict[str, Any]], unit_tests: dict[str, Any]
) -> None:
    tested: set[str] = set()
    for group in unit_tests["tests"]:
        for case in group.get("promql_expr_test") or []:
            if case.get("exp_samples"):
                assert all("value" in s for s in case["exp_samples"]), case["expr"]
                tested.add(case["expr"].strip())
    missing = {r["record"] for r in recording_rules} - tested
    assert not missing, f"recording rules without an exact-value test: {missing}"
