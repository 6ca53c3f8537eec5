"""The strict config loader: the DESIGN §8 example loads, and each rule has its exact message.

Messages are part of the user interface (they are all a user sees when the exporter refuses to
start), so the tests pin them word for word, one ``invalid-<rule>.yaml`` file per rule, the way
blackbox_exporter's ``testdata/invalid-*.yml`` do.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from exporter.config import (
    TOP_LEVEL_KEYS,
    Config,
    ConfigError,
    KServeSourceConfig,
    ModelConfig,
    Window,
    load_config,
    parse_config,
)
from exporter.config.durations import format_duration, parse_duration

DATA = Path(__file__).resolve().parents[1] / "data" / "config"
ROOT = Path(__file__).resolve().parents[2]


def parse(text: str, environ: dict[str, str] | None = None) -> Config:
    return parse_config(yaml.safe_load(text), environ if environ is not None else {})


def error_of(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, environ)
    return str(info.value)


MINIMAL = "models:\n  - name: fraud\n"


# -- the design example ------------------------------------------------------------------------


def test_design_example_is_verbatim_from_design_md() -> None:
    """The contract travels with the code (DESIGN.md at the root), so this runs on any clone."""
    text = (ROOT / "DESIGN.md").read_text(encoding="utf-8")
    section = text[text.index("## 8. Configuration shape"):]
    block = section[section.index("```yaml\n") + len("```yaml\n"):]
    block = block[: block.index("```")]
    assert (DATA / "design-example.yaml").read_text(encoding="utf-8") == block


def test_design_example_loads() -> None:
    config = load_config(DATA / "design-example.yaml", {"LABELS_TOKEN": "s3cret"})

    assert config.global_.poll_interval == 5.0
    assert config.global_.windows == (Window("1h", 3600.0), Window("24h", 86400.0))
    assert config.global_.version_idle_expiry == 7 * 86400.0

    (fraud,) = config.models
    assert fraud.name == "fraud"
    assert fraud.task == "binary"
    assert fraud.classes == ("0", "1")
    assert fraud.positive_class == "1"
    thresholds = fraud.thresholds
    assert (thresholds.accuracy, thresholds.drift, thresholds.confidence) == (0.8, 0.05, 0.75)
    assert fraud.thresholds.min_samples == 100
    assert (fraud.thresholds.severity.high, fraud.thresholds.severity.critical) == (0.05, 0.10)
    assert fraud.baseline.accuracy == 0.92
    assert fraud.baseline.first_labeled is None
    assert fraud.join.ttl == 72 * 3600.0
    assert fraud.join.max_pending == 1_000_000
    assert fraud.drift.reference == "/etc/mlmon/fraud-reference.jsonl"
    assert fraud.drift.reference_size == 5000
    assert fraud.drift.features == ("amount", "age")
    assert fraud.drift.methods == ("psi", "ks")

    preds, labels, kserve = config.sources
    assert (preds.name, preds.kind, preds.type) == ("fraud-predictions", "predictions", "file")
    assert preds.path == "/var/log/model/predictions-*.jsonl"
    assert preds.model == "fraud"
    assert preds.fields == {
        "id": "request_id", "prediction": "output.label", "confidence": "output.score",
        "model_version": "version",
    }
    assert (labels.kind, labels.type, labels.model) == ("labels", "http", None)
    assert labels.url == "http://labels.example.internal/api/labels"
    assert labels.interval == 30.0
    assert labels.cursor_param == "since"
    assert labels.headers == {"Authorization": "Bearer s3cret"}
    assert (kserve.kind, kserve.type, kserve.model_from) == ("predictions", "kserve", "inferenceservicename")

    assert config.retraining.endpoint == "http://pipelines.example.internal/api/v1/retrain"
    assert config.retraining.cooldown == 6 * 3600.0
    assert config.retraining.timeout == 10.0
    assert config.retraining.training_config == {
        "epochs": 50, "batch_size": 32, "learning_rate": 0.001, "early_stopping": True,
    }
    assert config.history.directory == "/var/lib/mlmon/history"
    assert config.history.interval == 300.0
    assert config.model("fraud") is fraud


def test_design_example_without_its_variable_names_the_header() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(DATA / "design-example.yaml", {})
    assert str(info.value) == "sources[1].headers.Authorization: environment variable LABELS_TOKEN is not set"
    assert info.value.file == str(DATA / "design-example.yaml")


def test_full_example_sets_every_key() -> None:
    config = load_config(DATA / "full-example.yaml", {"LABELS_PASSWORD": "pw"})
    fraud, sentiment = config.models
    assert config.global_.windows[-1] == Window("7d", 7 * 86400.0)
    assert config.global_.checkpoint_interval == 30.0
    assert config.global_.ingest_threads == 1  # not the default (2)
    assert fraud.classes == ("legit", "fraud")
    assert fraud.positive_class == "fraud"
    assert fraud.baseline.first_labeled == 2000
    assert fraud.drift.thresholds.chi2_p_value == 0.001
    assert fraud.drift.max_categories == 30
    assert fraud.confidence_buckets == (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    assert fraud.label_delay_buckets == (300.0, 3600.0, 21600.0, 86400.0, 259200.0, 604800.0)
    assert (sentiment.task, sentiment.max_classes, sentiment.classes) == ("multiclass", 20, None)

    file_src, http_src, kserve_src = config.sources
    assert file_src.start_at == "end"
    assert file_src.max_line_bytes == 262144
    assert http_src.basic_auth is not None and http_src.basic_auth.password == "pw"
    assert http_src.tls.cert_file == "/etc/mlmon/client.pem"
    assert (http_src.timeout, http_src.max_pages_per_poll) == (5.0, 20)
    assert kserve_src.listen_address == "127.0.0.1:9742"
    assert kserve_src.version_from == ("metadata", "X-Model-Version")
    assert kserve_src.forward_to == ("http://event-archive.example.internal/kserve",)
    assert (kserve_src.max_body_bytes, kserve_src.queue_size) == (4194304, 500)
    assert (config.retraining.cooldown, config.retraining.max_attempts) == (12 * 3600.0, 3)
    assert config.history.interval == 900.0


def test_omitted_sections_take_the_dataclass_defaults() -> None:
    assert parse(MINIMAL) == Config(models=(ModelConfig(name="fraud"),))


def test_null_section_means_defaults() -> None:
    config = parse(MINIMAL + "    thresholds:\n    baseline:\nglobal:\n")
    assert config == Config(models=(ModelConfig(name="fraud"),))


def test_configuration_md_embeds_the_full_example() -> None:
    doc = (ROOT / "CONFIGURATION.md").read_text(encoding="utf-8")
    assert (DATA / "full-example.yaml").read_text(encoding="utf-8") in doc


def test_configuration_md_documents_every_key() -> None:
    from exporter import config as module

    doc = (ROOT / "CONFIGURATION.md").read_text(encoding="utf-8")
    keys: set[str] = set(TOP_LEVEL_KEYS)
    for name in dir(module):
        value = getattr(module, name)
        if name.endswith("_KEYS") and isinstance(value, tuple):
            keys.update(value)
    keys.update(k for ks in module.SOURCE_TYPE_KEYS.values() for k in ks)
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert missing == []


# -- one file per rule, exact message -----------------------------------------------------------

INVALID: dict[str, str] = {
    "unknown-top-level-key":
        'histroy: unknown key (did you mean "history"?); allowed keys: global, models, sources, retraining, '
        "history",
    "unknown-key":
        'models[0].thresholds.drfit: unknown key (did you mean "drift"?); allowed keys: accuracy, drift, '
        "confidence, min_samples, severity",
    "bool-not-number": "models[0].thresholds.accuracy: must be a number, got true",
    "threshold-out-of-range": "models[0].thresholds.drift: must be between 0 and 1, got 1.5",
    "min-samples-zero": "models[0].thresholds.min_samples: must be an integer >= 1, got 0",
    "min-samples-float": "models[0].thresholds.min_samples: must be an integer, got 10.5",
    "severity-order": "models[0].thresholds.severity.high: must not exceed critical (0.1), got 0.2",
    "no-models": "models: at least one model is required",
    "models-not-list": "models: must be a list, got a mapping",
    "duplicate-model-name": 'models[1].name: duplicate model name "fraud" (also models[0])',
    "model-name-charset": 'models[0].name: must contain only letters, digits and _ . : -, got "fraud model"',
    "model-name-missing": "models[0].name: is required",
    "task-unknown": 'models[0].task: must be one of binary, multiclass, got "regression"',
    "binary-class-count": "models[0].classes: a binary model needs exactly 2 classes, got 3",
    "duplicate-class": 'models[0].classes[2]: duplicate class "1"',
    "positive-class-not-in-classes":
        'models[0].positive_class: must be one of classes "legit", "fraud", got "yes"',
    "positive-class-default-missing":
        'models[0].positive_class: is required when classes do not include the default "1" '
        '(classes: "legit", "fraud")',
    "positive-class-multiclass": "models[0].positive_class: only valid for task binary",
    "baseline-both": "models[0].baseline: set either accuracy or first_labeled, not both",
    "baseline-first-labeled-zero": "models[0].baseline.first_labeled: must be an integer >= 1, got 0",
    "join-ttl-not-duration": "models[0].join.ttl: must be a duration such as 30s, 5m, 1h30m or 7d, got 72",
    "drift-method-unknown": 'models[0].drift.methods[1]: must be one of psi, ks, js, chi2, got "wasserstein"',
    "drift-methods-empty": "models[0].drift.methods: must list at least one of psi, ks, js, chi2",
    "drift-feature-builtin":
        'models[0].drift.features[1]: "confidence" is always monitored; list input features only',
    "buckets-not-increasing":
        "models[0].confidence_buckets[2]: must be greater than the previous bucket (0.9), got 0.8",
    "windows-empty": "global.windows: must list at least one window",
    "windows-duplicate": "global.windows[2]: duplicate window 60m (same length as 1h)",
    "duration-invalid":
        'global.poll_interval: invalid duration "5 minutes"; use a number and unit such as 30s, 5m, 1h30m '
        "or 7d (units: ms, s, m, h, d, w, y)",
    "duration-zero": "global.poll_interval: must be greater than 0, got 0s",
    "source-unknown-model": 'sources[0].model: unknown model "frod"; configured models: fraud',
    "source-duplicate-name": 'sources[1].name: duplicate source name "preds" (also sources[0])',
    "source-key-for-other-type": "sources[0].url: not valid for type file (only for type http)",
    "source-unknown-key":
        'sources[0].start: unknown key (did you mean "start_at"?); allowed keys: name, kind, type, model, '
        "model_version, fields, max_line_bytes, path, start_at, max_bytes_per_poll",
    "source-type-unknown": 'sources[0].type: must be one of file, http, kserve, got "kafka"',
    "source-file-path-missing": "sources[0].path: is required",
    "source-http-url-scheme":
        'sources[0].url: must be an http:// or https:// URL, got "ftp://labels.example.internal/labels"',
    "source-kserve-labels": "sources[0].type: kserve requires kind predictions, got labels",
    "source-model-twice": "sources[0].model: cannot be combined with fields.model; set only one",
    "source-fields-label-in-predictions":
        "sources[0].fields.label: not valid for kind predictions (labels come from a labels source)",
    "source-fields-prediction-in-labels":
        "sources[0].fields.prediction: not valid for kind labels; a labels source may map only id, label, "
        "timestamp, model",
    "source-basic-auth-and-header": "sources[0].basic_auth: cannot be combined with an Authorization header",
    "source-tls-cert-without-key": "sources[0].tls: cert_file and key_file must be set together",
    "source-listen-address":
        'sources[0].listen_address: must be host:port such as 127.0.0.1:9742 or :9742, got "localhost"',
    "retraining-endpoint":
        'retraining.endpoint: must be an http:// or https:// URL, got "pipelines.example.internal/retrain"',
    "retraining-training-config":
        "retraining.training_config.max_loss: must be a finite number (JSON has no inf), got inf",
    "many-errors": "\n".join([
        "global.windows[1]: duplicate window 1h",
        "models[0].thresholds.accuracy: must be between 0 and 1, got 1.2",
        "models[0].thresholds.drift: must be between 0 and 1, got -0.1",
        'models[1].name: duplicate model name "fraud" (also models[0])',
        'sources[0].kind: must be one of predictions, labels, got "prediction"',
        "sources[0].path: is required",
    ]),
}


@pytest.mark.parametrize("rule", sorted(INVALID))
def test_invalid_file_is_refused_with_exact_message(rule: str) -> None:
    path = DATA / f"invalid-{rule}.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert str(info.value) == INVALID[rule]
    assert info.value.errors == INVALID[rule].split("\n")
    assert info.value.file == str(path)


def test_every_invalid_file_has_a_case() -> None:
    files = {p.name[len("invalid-"):-len(".yaml")] for p in DATA.glob("invalid-*.yaml")}
    assert files == set(INVALID)


# -- more rules, inline ---------------------------------------------------------------------------

A = "models: [{name: a}]\n"

INLINE: list[tuple[str, str]] = [
    ("[1, 2]", "(top level): must be a mapping, got a list"),
    ("{1: x, models: [{name: a}]}", "(top level): keys must be strings, got 1"),
    ("models: [fraud]", 'models[0]: must be a mapping, got "fraud"'),
    ("models: []", "models: at least one model is required"),
    # YAML 1.1 reads unquoted yes/no as booleans: the error says so and how to quote them
    ("models: [{name: a, classes: [yes, no]}]",
     "models[0].classes[0]: must be a string or an integer, got true: YAML reads unquoted yes/no, on/off and "
     'true/false as booleans; quote class names, e.g. classes: ["yes", "no"]\n'
     "models[0].classes[1]: must be a string or an integer, got false: YAML reads unquoted yes/no, on/off and "
     'true/false as booleans; quote class names, e.g. classes: ["yes", "no"]'),
    ('models: [{name: a, classes: ["yes", "no"], positive_class: yes}]',
     "models[0].positive_class: must be a string or an integer, got true: YAML reads unquoted yes/no, on/off "
     'and true/false as booleans; quote class names, e.g. classes: ["yes", "no"]'),
    # an invalid task is one error, with a hint; no spurious complaint from checks for the default binary
    ("models: [{name: a, task: multi-class, classes: [a, b, c]}]",
     'models[0].task: must be one of binary, multiclass, got "multi-class" (did you mean "multiclass"?)'),
    ("models: [{name: a, task: Multiclass, classes: [a, b, c], max_classes: 5, positive_class: a}]",
     'models[0].task: must be one of binary, multiclass, got "Multiclass" (did you mean "multiclass"?)'),
    ("models: [{name: a, task: multiclass, classes: [x]}]",
     "models[0].classes: a multiclass model needs at least 2 classes, got 1"),
    ("models: [{name: a, max_classes: 5}]", "models[0].max_classes: only valid for task multiclass"),
    ("models: [{name: a, task: multiclass, classes: [x, y], max_classes: 5}]",
     "models[0].max_classes: only used when classes are discovered; remove it or classes"),
    ("models: [{name: a, thresholds: {accuracy: .nan}}]",
     "models[0].thresholds.accuracy: must be between 0 and 1, got nan"),
    ("models: [{name: a, thresholds: {confidence: '0.8'}}]",
     'models[0].thresholds.confidence: must be a number, got "0.8"'),
    ("models: [{name: a, drift: {thresholds: {psi: 0}}}]",
     "models[0].drift.thresholds.psi: must be a finite number greater than 0, got 0"),
    ("models: [{name: a, drift: {features: [amount, amount]}}]",
     'models[0].drift.features[1]: duplicate feature "amount"'),
    ("models: [{name: a, drift: {methods: [ks, ks]}}]", "models[0].drift.methods[1]: duplicate method ks"),
    ("models: [{name: a, confidence_buckets: []}]",
     "models[0].confidence_buckets: must list at least one bucket"),
    ("models: [{name: a, confidence_buckets: [0, 0.5]}]",
     "models[0].confidence_buckets[0]: must be a finite number greater than 0, got 0"),
    ("models: [{name: a, label_delay_buckets: [1h, 30]}]",
     "models[0].label_delay_buckets[1]: must be greater than the previous bucket (3600.0), got 30"),
    ("models: [{name: a, label_delay_buckets: [true]}]",
     "models[0].label_delay_buckets[0]: must be a number of seconds or a duration, got true"),
    (A + "global: {windows: 1h}", 'global.windows: must be a list, got "1h"'),
    (A + "global: {windows: [1h, 1h]}", "global.windows[1]: duplicate window 1h"),
    (A + "global: {ingest_threads: 3}",
     "global.ingest_threads: must be 1 or 2 (one thread parses while the pipeline thread applies), got 3"),
    (A + "global: {checkpoint_interval: 1.5h}",
     'global.checkpoint_interval: invalid duration "1.5h"; use a number and unit such as 30s, 5m, 1h30m '
     "or 7d (units: ms, s, m, h, d, w, y)"),
    (A + "sources: [~]", "sources[0]: must be a mapping, got null"),
    (A + "sources: [{type: file, path: x, model: a}]",
     "sources[0].name: is required\nsources[0].kind: is required"),
    (A + "sources: [{name: s, kind: predictions, path: x, model: a}]",
     "sources[0].type: is required"),
    (A + "sources: [{name: s, kind: predictions, type: kserve}]",
     "sources[0]: a predictions source needs model, fields.model or model_from to know which model its "
     "records belong to"),
    (A + "sources: [{name: s, kind: predictions, type: kserve, model: a, "
     "model_from: inferenceservicename}]",
     "sources[0].model: cannot be combined with model_from; set only one"),
    (A + "sources: [{name: s, kind: predictions, type: kserve, model: a, "
     "model_from: servicename}]",
     'sources[0].model_from: must be one of inferenceservicename, got "servicename"'),
    (A + "sources: [{name: s, kind: predictions, type: kserve, model: a, model_version: '1', "
     "version_header: X-Version}]",
     "sources[0].model_version: cannot be combined with version_header; set only one"),
    (A + "sources: [{name: s, kind: predictions, type: kserve, model: a, "
     "version_header: 'X Version'}]",
     'sources[0].version_header: must be an HTTP header name, got "X Version"'),
    (A + "sources: [{name: s, kind: predictions, type: kserve, model: a, "
     "listen_address: ':70000'}]",
     'sources[0].listen_address: must be host:port such as 127.0.0.1:9742 or :9742, got ":70000"'),
    (A + "sources:\n"
     "- {name: s, kind: predictions, type: kserve, model: a, listen_address: ':9742'}\n"
     "- {name: t, kind: predictions, type: kserve, model: a, listen_address: ':9742'}",
     'sources[1].listen_address: ":9742" is already used by sources[0]'),
    (A + "sources: [{name: s, kind: predictions, type: kserve, model: a, forward_to: [x]}]",
     'sources[0].forward_to[0]: must be an http:// or https:// URL, got "x"'),
    (A + "sources: [{name: s, kind: labels, type: file, path: x, model_version: '3'}]",
     "sources[0].model_version: not valid for kind labels (a label joins its prediction by id)"),
    (A + "sources: [{name: s, kind: labels, type: file, path: x, fields: {id: 'a..b'}}]",
     'sources[0].fields.id: must be a dotted path such as output.label, got "a..b"'),
    (A + "sources: [{name: s, kind: labels, type: file, path: x, fields: {lable: y}}]",
     'sources[0].fields.lable: unknown key (did you mean "label"?); '
     "allowed keys: id, label, timestamp, model"),
    (A + "sources: [{name: s, kind: labels, type: file, path: x, start_at: middle}]",
     'sources[0].start_at: must be one of beginning, end, got "middle"'),
    (A + "sources: [{name: s, kind: labels, type: http}]", "sources[0].url: is required"),
    (A + "sources: [{name: s, kind: labels, type: http, url: 'http://x', "
     "tls: {insecure_skip_verify: true}}]",
     "sources[0].tls: only used with an https:// url"),
    (A + "sources: [{name: s, kind: labels, type: http, url: 'https://x', "
     "tls: {insecure_skip_verify: 'yes'}}]",
     'sources[0].tls.insecure_skip_verify: must be true or false, got "yes"'),
    (A + "sources: [{name: s, kind: labels, type: http, url: 'http://x', headers: {X-N: 3}}]",
     "sources[0].headers.X-N: must be a string, got 3"),
    (A + "sources: [{name: s, kind: labels, type: http, url: 'http://x', "
     "basic_auth: {username: u}}]",
     "sources[0].basic_auth.password: is required"),
    (A + "sources: [{name: s, kind: labels, type: http, url: 'http://x', interval: 0s}]",
     "sources[0].interval: must be greater than 0, got 0s"),
    (A + "sources: [{name: s, kind: labels, type: file, path: x, interval: 1m}]",
     "sources[0].interval: not valid for type file (only for type http)"),
    (A + "retraining: {max_attempts: 0}", "retraining.max_attempts: must be an integer >= 1, got 0"),
    (A + "retraining: {training_config: [epochs]}",
     "retraining.training_config: must be a mapping, got a list"),
    (A + "history: {interval: 5}",
     "history.interval: must be a duration such as 30s, 5m, 1h30m or 7d, got 5"),
]


@pytest.mark.parametrize(("text", "message"), INLINE)
def test_inline_rule(text: str, message: str) -> None:
    assert error_of(text) == message


def test_labels_source_may_omit_model_and_ints_become_text() -> None:
    config = parse(
        "models: [{name: digits, task: multiclass, classes: [0, 1, 2]}, {name: b, classes: [0, 1], "
        "positive_class: 1}]\n"
        "sources: [{name: l, kind: labels, type: file, path: x}, "
        "{name: p, kind: predictions, type: file, path: y, model: digits, model_version: 3}]"
    )
    assert config.models[0].classes == ("0", "1", "2")
    assert config.models[1].positive_class == "1"
    assert config.sources[0].model is None
    assert config.sources[1].model_version == "3"


def test_retraining_cooldown_may_be_zero() -> None:
    config = parse(MINIMAL + "retraining: {cooldown: '0'}")
    assert config.retraining.cooldown == 0.0
    assert config.retraining.endpoint is None


def test_source_defaults_per_type() -> None:
    config = parse(
        MINIMAL + "sources: [{name: k, kind: predictions, type: kserve, model_from: inferenceservicename}]"
    )
    defaults = KServeSourceConfig(name="k", kind="predictions", model_from="inferenceservicename")
    assert config.sources == (defaults,)


# -- ${VAR} ---------------------------------------------------------------------------------------


def test_env_expansion_in_every_string_value() -> None:
    config = parse(
        "models: [{name: '${MODEL}'}]\n"
        "sources: [{name: s, kind: labels, type: http, url: 'https://${HOST}/labels',"
        " headers: {X-A: '${A}${A}-$${LITERAL}', X-B: 'cost $5 and $$'}}]\n"
        "retraining: {training_config: {tags: ['${A}'], nested: {note: '${A}'}}}\n"
        "global: {windows: ['${WINDOW}']}",
        {"MODEL": "fraud", "HOST": "labels:8443", "A": "x", "WINDOW": "2h"},
    )
    assert config.models[0].name == "fraud"
    assert config.sources[0].url == "https://labels:8443/labels"
    assert config.sources[0].headers == {"X-A": "xx-${LITERAL}", "X-B": "cost $5 and $$"}
    assert config.retraining.training_config == {"tags": ["x"], "nested": {"note": "x"}}
    assert config.global_.windows == (Window("2h", 7200.0),)


def test_env_expansion_of_an_empty_variable() -> None:
    config = parse(MINIMAL + "sources: [{name: s, kind: labels, type: http, url: 'https://x', "
                   "headers: {X-A: 'v${EMPTY}'}}]", {"EMPTY": ""})
    assert config.sources[0].headers == {"X-A": "v"}


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLMON_TEST_MODEL", "from-env")
    config = parse_config(yaml.safe_load("models: [{name: '${MLMON_TEST_MODEL}'}]"))
    assert config.models[0].name == "from-env"


def test_missing_variable_is_reported_once_per_path() -> None:
    # The unexpanded text would also fail the URL check; only the real cause is reported.
    assert error_of(MINIMAL + "sources: [{name: s, kind: labels, type: http, url: '${URL}'}]\n"
                    "history: {directory: '${DIR}'}") == (
        "sources[0].url: environment variable URL is not set\n"
        "history.directory: environment variable DIR is not set"
    )


def test_malformed_references() -> None:
    assert error_of(MINIMAL + "history: {directory: 'a${'}") == (
        'history.directory: invalid reference "${"; write ${NAME}, or $${ for a literal "${"'
    )
    assert error_of(MINIMAL + "history: {directory: '${1X}'}") == (
        'history.directory: invalid reference "${1X}"; write ${NAME}, or $${ for a literal "${"'
    )


def test_expanded_values_stay_strings() -> None:
    assert error_of(MINIMAL.replace("fraud", "fraud\n    thresholds: {min_samples: '${N}'}"), {"N": "5"}) == (
        'models[0].thresholds.min_samples: must be an integer, got "5"'
    )


# -- files and YAML -------------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - name: a\n   task: binary\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: invalid YAML at line 3, column 4: expected <block end>, but found '<block mapping start>'"
    )


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("models:\n  - name: a\n    name: b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f'{path}: invalid YAML at line 3, column 5: duplicate key "name"'


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: cannot read: No such file or directory"
    assert info.value.file == str(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: cannot read: Is a directory")):
        load_config(tmp_path)


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"models: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read: not UTF-8 text (invalid start byte)"


def test_empty_file_has_no_models(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == "models: at least one model is required"


def test_dates_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "dates.yaml"
    path.write_text(
        MINIMAL + "sources: [{name: p, kind: predictions, type: file, path: x, model: fraud, "
        "model_version: 2026-01-01}]\nretraining: {training_config: {since: 2026-01-01}}\n"
    )
    config = load_config(path)
    assert config.sources[0].model_version == "2026-01-01"
    assert config.retraining.training_config == {"since": "2026-01-01"}


def test_config_error_is_a_value_error_with_errors_list() -> None:
    error = ConfigError(["a: one", "b: two"], file="x.yaml")
    assert isinstance(error, ValueError)
    assert str(error) == "a: one\nb: two"
    assert error.errors == ["a: one", "b: two"]
    assert ConfigError("c: three").errors == ["c: three"]


# -- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0), ("0s", 0.0), ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("72h", 259200.0),
        ("7d", 604800.0), ("1w", 604800.0), ("1y", 365 * 86400.0), ("1h30m", 5400.0),
        ("1d12h30m15s250ms", 131415.25), ("90m", 5400.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1.5h", "5 m", "30m1h", "1h1h", "-5m", "5M", "1s500", "ms", "h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f'invalid duration "{text}"; use a number and unit')):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (30, "30s"), (300, "5m"), (5400, "1h30m"), (86400, "1d"),
     (604800, "1w"), (691200, "1w1d"), (90.25, "1m30s250ms"), (365 * 86400, "1y")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_format_duration_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)


def test_max_versions() -> None:
    cfg = parse_config({"models": [{"name": "m", "max_versions": 3}]})
    assert cfg.models[0].max_versions == 3
    with pytest.raises(ConfigError, match=r"models\[0\]\.max_versions: must be an integer >= 1, got 0"):
        parse_config({"models": [{"name": "m", "max_versions": 0}]})
