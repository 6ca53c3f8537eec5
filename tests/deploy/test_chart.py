"""The Helm chart (charts/mlmon-exporter), rendered and linted offline.

No helm binary exists here: `helm-python-sdk` (import `helm_python`, Helm 4.2 engine in a
wheel) renders and lints the chart; `kubernetes-validate --strict` checks every built-in
object against the Kubernetes 1.30 OpenAPI schemas; the Prometheus Operator objects
(ServiceMonitor, PodMonitor, PrometheusRule) are checked against the minimal strict schemas
below (the fields this chart renders, types and patterns taken from the operator's CRDs).

Locally a missing tool skips; under CI=true it fails (never a silent skip).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import missing

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlmon-exporter"
ALERTS = ROOT / "alerts" / "mlmon-exporter.rules.yaml"
CHART_RULES = CHART / "files" / "mlmon-exporter.rules.yaml"
DASHBOARD = CHART / "files" / "mlmon-exporter-dashboard.json"
EXAMPLE = ROOT / "examples" / "sidecar-deployment.yaml"
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "mlmon", "ml"
FULLNAME = f"{RELEASE}-mlmon-exporter"




try:
    import helm_python as helm
except ImportError:  # pragma: no cover - depends on the environment
    helm = None

try:
    import kubernetes_validate
except ImportError:  # pragma: no cover
    kubernetes_validate = None

try:
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    if helm is None:
        missing("helm-python-sdk (pip install helm-python-sdk==0.2.2)")
    with helm.Chart.load(CHART) as c:
        yield c


def render(chart: Any, values: dict[str, Any] | None = None, name: str = RELEASE) -> dict[str, str]:
    return chart.render(values or {}, name=name, namespace=NAMESPACE)  # type: ignore[no-any-return]


def docs_of(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object in a render (NOTES.txt is text, not YAML)."""
    out = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        out.extend(d for d in yaml.safe_load_all(text) if d)
    return out


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def deployment_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")


def exporter_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod_spec["containers"] if c["name"] == "mlmon-exporter")


# Every optional part on: the scenario the CI lints, renders and validates besides the defaults.
ALL_ON: dict[str, Any] = {
    "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"},
                       "relabelings": [{"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                                        "targetLabel": "node"}],
                       "metricRelabelings": [{"action": "drop", "sourceLabels": ["__name__"],
                                              "regex": "mlmon_exporter_poll_duration_seconds_bucket"}]},
    "podMonitor": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "additionalLabels": {"release": "kube-prometheus-stack"},
                       "openshiftLeafPrometheus": True},
    "grafanaDashboard": {"enabled": True, "annotations": {"k8s-sidecar-target-directory": "ML"}},
    "persistence": {"enabled": True, "size": "2Gi", "storageClass": "standard"},
    "webConfig": {"enabled": True, "config": {"basic_auth_users": {"prometheus": "$2y$10$abcdefghijklmnopqrstuv"}}},
    "extraConfigFiles": {"fraud-reference.jsonl": '{"id": "r1", "prediction": 1, "confidence": 0.9}\n'},
    "env": [{"name": "LABELS_TOKEN", "valueFrom": {"secretKeyRef": {"name": "labels", "key": "token"}}}],
    "extraArgs": ["--log.level=debug"],
    "podAnnotations": {"example.com/team": "ml"},
    "commonLabels": {"team": "ml"},
}

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "all-on": ALL_ON,
    "demo": {"demo": {"enabled": True}, "serviceMonitor": {"enabled": True}},
    "openshift": {**ALL_ON, "openshift": True},
    "sidecar": {"mode": "sidecar", "podMonitor": {"enabled": True,
                                                  "selector": {"matchLabels": {"app": "fraud-model"}}},
                "prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}},
}


# --------------------------------------------------------------------------------------------
# Minimal strict schemas for the Prometheus Operator objects (monitoring.coreos.com/v1).
# kubernetes-validate has no CRD schemas; these cover what the chart renders, with
# additionalProperties: false so a misspelt field fails like server-side strict validation.
# --------------------------------------------------------------------------------------------
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object", "required": ["name", "namespace"], "additionalProperties": False,
    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253},
                   "namespace": {"type": "string", "minLength": 1},
                   "labels": LABELS, "annotations": LABELS},
}
SELECTOR = {
    "type": "object", "additionalProperties": False,
    "properties": {"matchLabels": LABELS,
                   "matchExpressions": {"type": "array", "items": {
                       "type": "object", "required": ["key", "operator"], "additionalProperties": False,
                       "properties": {"key": {"type": "string"}, "operator": {"type": "string"},
                                      "values": {"type": "array", "items": {"type": "string"}}}}}},
}
RELABEL = {
    "type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "properties": {"action": {"type": "string", "enum": [
            "replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod", "labelmap", "LabelMap",
            "labeldrop", "LabelDrop", "labelkeep", "LabelKeep", "lowercase", "Lowercase", "uppercase",
            "Uppercase", "keepequal", "KeepEqual", "dropequal", "DropEqual"]},
            "modulus": {"type": "integer"}, "regex": {"type": "string"}, "replacement": {"type": "string"},
            "separator": {"type": "string"},
            "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}},
            "targetLabel": {"type": "string"}}}}
SECRET_KEY = {"type": "object", "required": ["key"], "additionalProperties": False,
              "properties": {"key": {"type": "string"}, "name": {"type": "string"}, "optional": {"type": "boolean"}}}
ENDPOINT_COMMON = {
    "path": {"type": "string"}, "scheme": {"type": "string", "enum": ["http", "https", "HTTP", "HTTPS"]},
    "interval": {"type": "string", "pattern": DURATION},
    "scrapeTimeout": {"type": "string", "pattern": DURATION},
    "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
    "tlsConfig": {"type": "object"},
    "basicAuth": {"type": "object", "additionalProperties": False,
                  "properties": {"username": SECRET_KEY, "password": SECRET_KEY}},
    "relabelings": RELABEL, "metricRelabelings": RELABEL,
}
NAMESPACE_SELECTOR = {"type": "object", "additionalProperties": False,
                      "properties": {"any": {"type": "boolean"},
                                     "matchNames": {"type": "array", "items": {"type": "string"}}}}


def _crd(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
            "properties": {"apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": kind},
                           "metadata": METADATA, "spec": spec}}


CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _crd("ServiceMonitor", {
        "type": "object", "required": ["endpoints", "selector"], "additionalProperties": False,
        "properties": {
            "selector": SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR, "jobLabel": {"type": "string"},
            "targetLabels": {"type": "array", "items": {"type": "string"}},
            "endpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "properties": {"port": {"type": "string"}, **ENDPOINT_COMMON}}}}}),
    "PodMonitor": _crd("PodMonitor", {
        "type": "object", "required": ["selector"], "additionalProperties": False,
        "properties": {
            "selector": SELECTOR, "namespaceSelector": NAMESPACE_SELECTOR, "jobLabel": {"type": "string"},
            "podTargetLabels": {"type": "array", "items": {"type": "string"}},
            "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                "type": "object", "additionalProperties": False,
                "properties": {"port": {"type": "string"}, "portNumber": {"type": "integer"},
                               **ENDPOINT_COMMON}}}}}),
    "PrometheusRule": _crd("PrometheusRule", {
        "type": "object", "required": ["groups"], "additionalProperties": False,
        "properties": {"groups": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["name", "rules"], "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "interval": {"type": "string", "pattern": DURATION},
                "query_offset": {"type": "string", "pattern": DURATION},
                "limit": {"type": "integer"}, "labels": LABELS,
                "partial_response_strategy": {"type": "string"},
                "rules": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["expr"], "additionalProperties": False,
                    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                    "properties": {
                        "alert": {"type": "string", "pattern": r"^[A-Z][A-Za-z0-9]*$"},
                        "record": {"type": "string", "pattern": r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"},
                        "expr": {"type": ["string", "integer"], "minLength": 1},
                        "for": {"type": "string", "pattern": DURATION},
                        "keep_firing_for": {"type": "string", "pattern": DURATION},
                        "labels": LABELS, "annotations": LABELS}}}}}}}}),
}


def validate_objects(docs: list[dict[str, Any]]) -> None:
    """kubernetes-validate (strict) for built-in kinds, the schemas above for the CRDs."""
    if kubernetes_validate is None:
        missing("kubernetes-validate")
    if jsonschema is None:
        missing("jsonschema")
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_SCHEMAS:
            errors = sorted(jsonschema.Draft7Validator(CRD_SCHEMAS[doc["kind"]]).iter_errors(doc), key=str)
            assert not errors, f"{where}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{where}: {e.message}")


# --------------------------------------------------------------------------------------------
# Chart metadata, lint
# --------------------------------------------------------------------------------------------
def test_chart_metadata(chart: Any) -> None:
    meta = chart.metadata
    assert meta["apiVersion"] == "v2" and meta["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", meta["version"])
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.M)
    assert version and meta["appVersion"] == version.group(1), "appVersion follows pyproject.toml's version"
    assert chart.schema is not None and chart.schema["$schema"] == "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize("scenario", ["defaults", "all-on", "sidecar"])
def test_lint_strict(scenario: str) -> None:
    if helm is None:
        missing("helm-python-sdk")
    report = helm.lint(CHART, SCENARIOS[scenario] or None, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == [], report
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


# --------------------------------------------------------------------------------------------
# Rendering and validation
# --------------------------------------------------------------------------------------------
def test_defaults_render_the_standalone_exporter_only(chart: Any) -> None:
    docs = docs_of(render(chart))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"], kinds
    for d in docs:
        assert d["metadata"]["namespace"] == NAMESPACE
        assert d["apiVersion"] != "monitoring.coreos.com/v1"


def test_every_optional_part_renders(chart: Any) -> None:
    docs = docs_of(render(chart, ALL_ON))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["ConfigMap", "ConfigMap", "Deployment", "PersistentVolumeClaim", "Pod",
                            "PodMonitor", "PrometheusRule", "Secret", "Service", "ServiceAccount",
                            "ServiceMonitor"]), kinds
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert one(docs, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for d in docs:
        assert d["metadata"]["labels"]["team"] == "ml", d["kind"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_objects_are_valid_kubernetes(chart: Any, scenario: str) -> None:
    validate_objects(docs_of(render(chart, SCENARIOS[scenario])))


@pytest.mark.parametrize("scenario", ["defaults", "all-on"])
def test_kubernetes_validate_cli_strict(chart: Any, scenario: str, tmp_path: Path) -> None:
    """The CLI itself, as a user would run it on `helm template` output (CRDs only warn)."""
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        missing("kubernetes-validate")
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(docs_of(render(chart, SCENARIOS[scenario]))))
    r = subprocess.run([exe, "--strict", "-k", KUBE_VERSION, str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ERROR" not in r.stdout + r.stderr


def test_crd_schemas_catch_mistakes() -> None:
    """The hand-written CRD schemas are not vacuous."""
    if jsonschema is None:
        missing("jsonschema")
    good = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "x", "namespace": "ml"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "http", "interval": "30s"}]}}
    validator = jsonschema.Draft7Validator(CRD_SCHEMAS["ServiceMonitor"])
    assert not list(validator.iter_errors(good))
    for mutate in (lambda d: d["spec"]["endpoints"][0].update(interval="30 seconds"),
                   lambda d: d["spec"]["endpoints"][0].update(intervall="30s"),
                   lambda d: d["spec"].pop("selector")):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert list(validator.iter_errors(bad)), bad


# --------------------------------------------------------------------------------------------
# Security
# --------------------------------------------------------------------------------------------
def pods_of(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    pods = [(f"Deployment/{d['metadata']['name']}", d["spec"]["template"]["spec"])
            for d in by_kind(docs, "Deployment")]
    pods += [(f"Pod/{d['metadata']['name']}", d["spec"]) for d in by_kind(docs, "Pod")]
    return pods


@pytest.mark.parametrize("scenario", ["defaults", "all-on", "demo"])
def test_security_context_is_restricted(chart: Any, scenario: str) -> None:
    """Pod Security Standards "restricted", for the exporter and the helm test pod."""
    pods = pods_of(docs_of(render(chart, SCENARIOS[scenario])))
    assert len(pods) == 2
    for where, spec in pods:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001 and psc["fsGroup"] == 10001, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), (where, key)
        assert not any("hostPath" in v for v in spec.get("volumes", [])), where
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not sc.get("privileged"), where
            assert c["resources"]["limits"]["memory"], where


def test_read_only_root_has_writable_tmp_and_state(chart: Any) -> None:
    spec = deployment_of(docs_of(render(chart)))["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in exporter_container(spec)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert "emptyDir" in volumes[mounts["/var/lib/mlmon"]["name"]]
    assert not mounts["/var/lib/mlmon"].get("readOnly")
    assert mounts["/etc/mlmon"]["readOnly"] is True


@pytest.mark.parametrize("how", ["switch", "null-values"])
def test_openshift_omits_uid_gid_fsgroup(chart: Any, how: str) -> None:
    values: dict[str, Any] = {"openshift": True} if how == "switch" else {
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
        "securityContext": {"runAsUser": None, "runAsGroup": None}}
    docs = docs_of(render(chart, values))
    for where, spec in pods_of(docs):
        contexts = [spec["securityContext"]] + [c["securityContext"] for c in spec["containers"]]
        for sc in contexts:
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(sc), (where, sc)
            assert sc["runAsNonRoot"] is True
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    validate_objects(docs)


# --------------------------------------------------------------------------------------------
# The exporter container
# --------------------------------------------------------------------------------------------
def test_container_args_ports_and_probes(chart: Any) -> None:
    docs = docs_of(render(chart, ALL_ON))
    c = exporter_container(deployment_of(docs)["spec"]["template"]["spec"])
    assert c["args"][:3] == ["--config.file=/etc/mlmon/config.yaml", "--web.listen-address=:9741",
                             "--state.directory=/var/lib/mlmon"]
    assert "--web.config.file=/etc/mlmon/web/web-config.yml" in c["args"]
    assert c["args"][-1] == "--log.level=debug"
    assert c["ports"] == [{"name": "mlmon-http", "containerPort": 9741, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "mlmon-http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "mlmon-http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/-/healthy"
    assert c["image"] == "mlmon-exporter:0.1.0"
    svc = one(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "mlmon-http"
    assert svc["spec"]["selector"] == deployment_of(docs)["spec"]["selector"]["matchLabels"]


def test_demo_mode_runs_the_demo(chart: Any) -> None:
    c = exporter_container(deployment_of(docs_of(render(chart, {"demo": {"enabled": True}})))
                           ["spec"]["template"]["spec"])
    assert c["args"][0] == "demo"
    assert not any(a.startswith("--config.file") for a in c["args"])


def test_image_digest_and_tag(chart: Any) -> None:
    def image(values: dict[str, Any]) -> str:
        spec = deployment_of(docs_of(render(chart, values)))["spec"]["template"]["spec"]
        return str(exporter_container(spec)["image"])

    digest = "sha256:" + "a" * 64
    assert image({"image": {"repository": "r.example/mlmon", "tag": "9.9.9"}}) == "r.example/mlmon:9.9.9"
    assert image({"image": {"repository": "r.example/mlmon", "digest": digest}}) == f"r.example/mlmon@{digest}"


def test_config_change_rolls_the_pods(chart: Any) -> None:
    def checksum(values: dict[str, Any]) -> str:
        dep = deployment_of(docs_of(render(chart, values)))
        return str(dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": {"global": {"poll_interval": "10s"}}})


def test_persistence(chart: Any) -> None:
    docs = docs_of(render(chart, {"persistence": {"enabled": True, "storageClass": "-"}}))
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == ""
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    dep = deployment_of(docs)
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    state = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "mlmon-state")
    assert state == {"name": "mlmon-state", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}}

    docs = docs_of(render(chart, {"persistence": {"enabled": True, "existingClaim": "mine"}}))
    assert not by_kind(docs, "PersistentVolumeClaim")
    state = next(v for v in deployment_of(docs)["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == "mlmon-state")
    assert state["persistentVolumeClaim"] == {"claimName": "mine"}


def test_existing_config_map_and_secret(chart: Any) -> None:
    docs = docs_of(render(chart, {"existingConfigMap": "my-config",
                                  "webConfig": {"enabled": True, "existingSecret": "my-web"}}))
    assert not by_kind(docs, "ConfigMap") and not by_kind(docs, "Secret")
    volumes = {v["name"]: v for v in deployment_of(docs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["mlmon-config"]["configMap"]["name"] == "my-config"
    assert volumes["mlmon-web-config"]["secret"]["secretName"] == "my-web"


# --------------------------------------------------------------------------------------------
# The exporter accepts the configuration the chart writes
# --------------------------------------------------------------------------------------------
DESIGN_EXAMPLE_CONFIG: dict[str, Any] = {
    "global": {"poll_interval": "5s", "windows": ["1h", "24h"], "version_idle_expiry": "7d"},
    "models": [{"name": "fraud", "task": "binary", "classes": ["0", "1"], "positive_class": "1",
                "thresholds": {"accuracy": 0.80, "drift": 0.05, "confidence": 0.75, "min_samples": 100,
                               "severity": {"high": 0.05, "critical": 0.10}},
                "baseline": {"accuracy": 0.92}, "join": {"ttl": "72h", "max_pending": 1000000},
                "drift": {"reference": "/etc/mlmon/fraud-reference.jsonl", "reference_size": 5000,
                          "features": ["amount", "age"], "methods": ["psi", "ks"]}}],
    "sources": [{"name": "fraud-predictions", "kind": "predictions", "type": "file",
                 "path": "/var/log/model/predictions-*.jsonl", "model": "fraud",
                 "fields": {"id": "request_id", "prediction": "output.label", "confidence": "output.score",
                            "model_version": "version"}},
                {"name": "fraud-labels", "kind": "labels", "type": "http",
                 "url": "http://labels.example.internal/api/labels", "interval": "30s",
                 "cursor_param": "since", "headers": {"Authorization": "Bearer ${LABELS_TOKEN}"}},
                {"name": "kserve", "kind": "predictions", "type": "kserve",
                 "model_from": "inferenceservicename"}],
    "retraining": {"endpoint": "http://pipelines.example.internal/api/v1/retrain", "cooldown": "6h",
                   "timeout": "10s", "training_config": {"epochs": 50, "batch_size": 32,
                                                         "learning_rate": 0.001, "early_stopping": True}},
    "history": {"directory": "/var/lib/mlmon/history", "interval": "5m"},
}


def _exporter_importable() -> bool:
    try:
        import exporter.cli  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("config", ["defaults", "design-example"])
def test_rendered_config_passes_config_check(chart: Any, config: str, tmp_path: Path) -> None:
    if not _exporter_importable():
        missing("the exporter package (exporter.cli)")
    values = {} if config == "defaults" else {"config": DESIGN_EXAMPLE_CONFIG}
    cm = next(d for d in by_kind(docs_of(render(chart, values)), "ConfigMap")
              if d["metadata"]["name"] == FULLNAME)
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    if config == "design-example":
        assert yaml.safe_load(path.read_text()) == DESIGN_EXAMPLE_CONFIG
    env = {**os.environ, "LABELS_TOKEN": "t0ken"}
    r = subprocess.run([sys.executable, "-m", "exporter", f"--config.file={path}", "--config.check"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


# --------------------------------------------------------------------------------------------
# values.schema.json and values.yaml
# --------------------------------------------------------------------------------------------
BAD_VALUES = [
    {"replicaCount": "2"},
    {"mode": "sidekick"},
    {"serviceMonitr": {"enabled": True}},
    {"serviceMonitor": {"enabled": "yes"}},
    {"serviceMonitor": {"interval": "30 seconds"}},
    {"image": {"pullPolicy": "Sometimes"}},
    {"image": {"digest": "latest"}},
    {"containerPort": 80},
    {"logFormat": "xml"},
    {"persistence": {"size": "lots"}},
    {"config": {"global": {"windows": []}}},
    {"config": {"sources": [{"name": "x", "kind": "predictions", "type": "kafka"}]}},
    {"config": {"modles": []}},
    {"commonLabels": {"team": 1}},
    {"podSecurityContext": {"runAsUser": -1}},
]


@pytest.mark.parametrize("values", BAD_VALUES, ids=lambda v: json.dumps(v)[:60])
def test_schema_refuses_bad_values(chart: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        render(chart, values)
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(chart.merge_values(values))


def test_schema_accepts_the_documented_values(chart: Any) -> None:
    for values in [*SCENARIOS.values(), {"config": DESIGN_EXAMPLE_CONFIG}]:
        chart.validate_schema(chart.merge_values(values))


def test_lint_reports_bad_values() -> None:
    if helm is None:
        missing("helm-python-sdk")
    report = helm.lint(CHART, {"replicaCount": "two"}, strict=True)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"]), report


def _walk_schema(values: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    if not schema.get("description"):
        problems.append(f"{path or '<root>'}: no description")
    if isinstance(values, dict):
        props = schema.get("properties", {})
        for key, value in values.items():
            if key in props:
                _walk_schema(value, props[key], f"{path}.{key}".lstrip("."), problems)
            elif not schema.get("additionalProperties"):
                problems.append(f"{path}.{key}: not in the schema")
    elif isinstance(values, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(values):
            _walk_schema(item, schema["items"], f"{path}[{n}]", problems)


def test_schema_describes_every_value(chart: Any) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    problems: list[str] = []
    _walk_schema(defaults, chart.schema, "", problems)
    # Every top-level key of the schema is a value users can find in values.yaml (except global).
    problems += [f"{k}: in the schema, not in values.yaml" for k in chart.schema["properties"]
                 if k not in defaults and k != "global"]
    assert not problems, "\n".join(problems)


def test_every_value_is_commented() -> None:
    """Each key in values.yaml has a comment on the line(s) above it or at its end."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^\s*(-\s+)?[A-Za-z_][\w.-]*:(\s|$)")
    uncommented = []
    for n, line in enumerate(lines):
        if not key.match(line) or re.search(r"\s#\s", line):
            continue
        above = lines[n - 1].strip() if n else ""
        if not above.startswith("#"):
            uncommented.append(f"values.yaml:{n + 1}: {line.strip()}")
    assert not uncommented, "\n".join(uncommented)


# --------------------------------------------------------------------------------------------
# PrometheusRule = alerts/, dashboard ConfigMap = files/
# --------------------------------------------------------------------------------------------
def test_rules_file_is_an_identical_copy_of_alerts() -> None:
    assert ALERTS.exists(), "alerts/mlmon-exporter.rules.yaml is missing"
    assert CHART_RULES.exists(), f"copy {ALERTS.relative_to(ROOT)} to {CHART_RULES.relative_to(ROOT)}"
    assert CHART_RULES.read_bytes() == ALERTS.read_bytes(), (
        f"{CHART_RULES.relative_to(ROOT)} differs from {ALERTS.relative_to(ROOT)}: "
        f"cp {ALERTS.relative_to(ROOT)} {CHART_RULES.relative_to(ROOT)}")


def test_prometheus_rule_renders_the_alerts_groups(chart: Any) -> None:
    source = yaml.safe_load(ALERTS.read_text())
    assert source["apiVersion"] == "monitoring.coreos.com/v1" and source["kind"] == "PrometheusRule"
    docs = docs_of(render(chart, {"prometheusRule": {"enabled": True, "namespace": "monitoring",
                                                     "additionalLabels": {"release": "kps"}}}))
    rule = one(docs, "PrometheusRule")
    assert rule["spec"]["groups"] == source["spec"]["groups"]
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert "openshift.io/prometheus-rule-evaluation-scope" not in rule["metadata"]["labels"]
    # Prometheus templates reach the cluster untouched by Helm.
    assert "{{ $labels." in yaml.safe_dump(rule["spec"])


def test_prometheus_rule_passes_promtool(chart: Any, tmp_path: Path) -> None:
    promtool = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if promtool is None:
        missing("promtool (apt-get install prometheus)")
    rule = one(docs_of(render(chart, {"prometheusRule": {"enabled": True}})), "PrometheusRule")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_config_map(chart: Any) -> None:
    docs = docs_of(render(chart, {"grafanaDashboard": {"enabled": True, "namespace": "grafana",
                                                       "additionalLabels": {"x": "y"}}}))
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["x"] == "y"
    assert cm["data"] == {DASHBOARD.name: DASHBOARD.read_text()}, "the JSON is shipped byte for byte"
    docs = docs_of(render(chart, {"grafanaDashboard": {"enabled": True, "label": "dash", "labelValue": "on"}}))
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["dash"] == "on"


# --------------------------------------------------------------------------------------------
# Sidecar mode
# --------------------------------------------------------------------------------------------
def test_sidecar_mode_renders_no_workload(chart: Any) -> None:
    docs = docs_of(render(chart, SCENARIOS["sidecar"]))
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "ConfigMap", "PodMonitor", "PrometheusRule"]
    pm = one(docs, "PodMonitor")
    assert pm["spec"]["selector"] == {"matchLabels": {"app": "fraud-model"}}
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "mlmon-http"


def test_sidecar_mode_refuses_a_service_monitor_and_an_unselective_pod_monitor(chart: Any) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"podMonitor\.selector is required"):
        render(chart, {"mode": "sidecar", "podMonitor": {"enabled": True}})
    with pytest.raises(helm.HelmRenderError, match=r"serviceMonitor\.enabled needs mode=standalone"):
        render(chart, {"mode": "sidecar", "serviceMonitor": {"enabled": True}})


PARENT_CHART_YAML = """\
apiVersion: v2
name: fraud-model
description: A model server chart that runs mlmon-exporter as a sidecar.
type: application
version: 1.0.0
appVersion: "1.4.2"
"""

# The model server's Deployment: the whole integration is the `$mlmon` context and two includes.
PARENT_DEPLOYMENT = """\
{{- $mlmon := dict "Values" (index .Values "mlmon-exporter") "Release" .Release }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-model
  namespace: {{ .Release.Namespace }}
  labels:
    app.kubernetes.io/name: fraud-model
    app.kubernetes.io/instance: {{ .Release.Name }}
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: fraud-model
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: fraud-model
        app.kubernetes.io/instance: {{ .Release.Name }}
      annotations:
        checksum/mlmon-config: {{ include "mlmon-exporter.checksum" $mlmon }}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: model
          image: registry.example.com/fraud-model:1.4.2
          args: ["--log-dir=/var/log/model"]
          ports:
            - name: http
              containerPort: 8080
          volumeMounts:
            - name: model-logs
              mountPath: /var/log/model
          resources:
            limits:
              memory: 1Gi
          securityContext:
            runAsNonRoot: true
            runAsUser: 10002
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
        {{- include "mlmon-exporter.container" $mlmon | nindent 8 }}
      volumes:
        - name: model-logs
          emptyDir:
            sizeLimit: 2Gi
        {{- include "mlmon-exporter.volumes" $mlmon | nindent 8 }}
"""


def example_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]


def render_parent(tmp_path: Path, mlmon_values: dict[str, Any]) -> list[dict[str, Any]]:
    parent = tmp_path / "fraud-model"
    (parent / "templates").mkdir(parents=True)
    (parent / "Chart.yaml").write_text(PARENT_CHART_YAML)
    (parent / "values.yaml").write_text(yaml.safe_dump({"mlmon-exporter": mlmon_values}))
    (parent / "templates" / "deployment.yaml").write_text(PARENT_DEPLOYMENT)
    shutil.copytree(CHART, parent / "charts" / "mlmon-exporter")
    with helm.Chart.load(parent) as c:
        return docs_of(c.render({}, name="fraud", namespace=NAMESPACE))


def test_sidecar_named_templates_from_a_parent_chart_match_the_example(chart: Any, tmp_path: Path) -> None:
    """A model server's chart includes the sidecar; its output is examples/sidecar-deployment.yaml."""
    example = example_docs()
    example_config = yaml.safe_load(one(example, "ConfigMap")["data"]["config.yaml"])
    example_pm = one(example, "PodMonitor")
    docs = render_parent(tmp_path, {
        "mode": "sidecar", "image": {"repository": "registry.example.com/mlmon-exporter", "tag": "0.1.0"},
        "config": example_config,
        "podMonitor": {"enabled": True, "selector": example_pm["spec"]["selector"],
                       "additionalLabels": {"release": "kube-prometheus-stack"}}})
    validate_objects(docs)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "PodMonitor"], kinds

    spec = deployment_of(docs)["spec"]["template"]["spec"]
    sidecar = exporter_container(spec)
    assert {"name": "model-logs", "mountPath": "/var/log/model", "readOnly": True} in sidecar["volumeMounts"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["mlmon-config"]["configMap"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]
    assert set(volumes) == {"model-logs", "mlmon-config", "mlmon-state", "mlmon-tmp"}
    sc = sidecar["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["capabilities"] == {"drop": ["ALL"]}

    ex_spec = deployment_of(example)["spec"]["template"]["spec"]
    assert exporter_container(ex_spec) == sidecar, "examples/sidecar-deployment.yaml is stale"
    ex_volumes = {v["name"]: v for v in ex_spec["volumes"]}
    for name in ("mlmon-config", "mlmon-state", "mlmon-tmp"):
        assert ex_volumes[name] == volumes[name], name
    assert one(example, "ConfigMap")["metadata"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]
    assert example_pm["spec"] == one(docs, "PodMonitor")["spec"]


def test_sidecar_include_needs_an_image_tag(chart: Any, tmp_path: Path) -> None:
    """From another chart .Chart.AppVersion is the parent's, so the tag must be explicit."""
    with pytest.raises(helm.HelmRenderError, match=r"image\.tag is required"):
        render_parent(tmp_path, {"mode": "sidecar"})


def test_optional_parts_are_gated_on_values_not_capabilities() -> None:
    for template in (CHART / "templates").rglob("*"):
        if template.is_file():
            assert ".Capabilities" not in template.read_text(), template.name


def test_sidecar_example_is_valid(tmp_path: Path) -> None:
    docs = example_docs()
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment", "PodMonitor"]
    validate_objects(docs)
    spec = deployment_of(docs)["spec"]["template"]["spec"]
    names = [c["name"] for c in spec["containers"]]
    assert "mlmon-exporter" in names and len(names) == 2
    model = next(c for c in spec["containers"] if c["name"] != "mlmon-exporter")
    sidecar = exporter_container(spec)
    shared = {m["name"] for m in model["volumeMounts"]} & {m["name"] for m in sidecar["volumeMounts"]}
    assert shared == {"model-logs"}, "model and exporter share the log volume"
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    for source in config["sources"]:
        if source["type"] == "file":
            assert source["path"].startswith("/var/log/model/"), source


def test_sidecar_example_config_passes_config_check(tmp_path: Path) -> None:
    if not _exporter_importable():
        missing("the exporter package (exporter.cli)")
    path = tmp_path / "config.yaml"
    path.write_text(one(example_docs(), "ConfigMap")["data"]["config.yaml"])
    r = subprocess.run([sys.executable, "-m", "exporter", f"--config.file={path}", "--config.check"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
