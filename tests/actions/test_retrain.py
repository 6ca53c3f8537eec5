"""The retraining webhook against real HTTP servers: a recording server stands in for the
pipeline endpoint, and the webhook is also exercised through the exporter's own HTTP server."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.actions.alertmanager import parse_webhook
from exporter.actions.evidence import Evidence, evidence_from_pipeline, evidence_from_report
from exporter.actions.retrain import CLOUDEVENTS_CONTENT_TYPE, EVENT_TYPE, STATE_FILE, RetrainingService, dedup_key
from exporter.config import RetrainingConfig
from exporter.http.server import ExporterHTTPServer, RenderedSnapshot
from exporter.report import catalogue
from exporter.report.model import Report
from exporter.report.snapshot import render
from tests.helpers import FakeClock as Clock
from tests.helpers import version_report, window_report
from tests.stack import RecordingServer, Reply

T0 = 1_795_000_000.0
TRAINING = {"epochs": 50, "batch_size": 32, "learning_rate": 0.001, "early_stopping": True}



@dataclass(frozen=True)
class Win:
    accuracy: float
    samples: int
    detected: bool
    severity: str


def report_of(versions: dict[tuple[str, str], tuple[float, dict[str, Win]]]) -> Report:
    """A Report holding the given versions' windowed numbers."""
    return Report(T0, True, tuple(
        version_report(model, version, [window_report(name, accuracy=w.accuracy, labeled=w.samples,
                                                      accuracy_drop=baseline - w.accuracy, drift_detected=w.detected,
                                                      severity=w.severity) for name, w in windows.items()],
                       baseline_accuracy=baseline)
        for (model, version), (baseline, windows) in versions.items()))


DRIFTING = report_of({
    ("fraud", "3"): (0.92, {"1h": Win(0.796, 250, True, "critical"), "24h": Win(0.85, 4000, True, "high")}),
    ("fraud", "4"): (0.92, {"1h": Win(0.93, 300, False, "low"), "24h": Win(0.925, 5000, False, "low")}),
})


class Holder:
    """Stands in for the pipeline: something with a ``report`` attribute."""

    def __init__(self, report: Report) -> None:
        self.report = report


def alert(status: str = "firing", version: str = "3", window: str = "1h", severity: str = "warning",
          action: str | None = "retrain", **extra_labels: str) -> dict[str, Any]:
    labels = {"alertname": "MLModelAccuracyDrift", "model": "fraud", "model_version": version,
              "window": window, "severity": severity, "instance": "127.0.0.1:9741", "job": "mlmon-exporter",
              **extra_labels}
    if action is not None:
        labels["action"] = action
    return {"status": status, "labels": labels, "annotations": {"summary": "drift"},
            "startsAt": "2026-11-26T16:13:07.944Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-26T17:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": f"fp-{version}-{window}-{severity}"}


def payload(*alerts: dict[str, Any], **extra: Any) -> bytes:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    doc = {"receiver": "mlmon-retrain", "status": status, "alerts": list(alerts),
           "groupLabels": {"alertname": "MLModelAccuracyDrift"}, "commonLabels": {}, "commonAnnotations": {},
           "externalURL": "http://127.0.0.1:9093", "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0,
           **extra}
    return json.dumps(doc).encode()


@pytest.fixture
def pipeline_endpoint() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


def make_service(endpoint: str | None, state_dir: Path | None, clock: Clock | None = None,
                 report: Report = DRIFTING, **cfg: Any) -> RetrainingService:
    config = RetrainingConfig(endpoint=endpoint, cooldown=cfg.pop("cooldown", 3600.0),
                              timeout=cfg.pop("timeout", 2.0), max_attempts=cfg.pop("max_attempts", 4),
                              training_config=cfg.pop("training_config", TRAINING))
    return RetrainingService(config, state_dir, evidence_from_pipeline(Holder(report)), clock or Clock(T0),
                             backoff_base=cfg.pop("backoff_base", 0.01), **cfg)


@pytest.fixture
def service_factory() -> Iterator[Any]:
    made: list[RetrainingService] = []

    def factory(*args: Any, **kw: Any) -> RetrainingService:
        s = make_service(*args, **kw)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.close()


def events(server: RecordingServer) -> list[dict[str, Any]]:
    return [r.json() for r in server.snapshot()]


# -- the request ----------------------------------------------------------------------------------


def test_firing_retrain_alert_sends_one_structured_cloudevent(
        pipeline_endpoint: RecordingServer, service_factory: Any, tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = service_factory(pipeline_endpoint.url, tmp_path, clock)
    # one group: both windows and two severity tiers of version 3, plus an alert without action
    resp = svc.handle({}, payload(alert(window="1h"), alert(window="24h"), alert(severity="critical"),
                                  alert(action=None, alertname="MLModelLowConfidence")))
    assert resp.status == 200, resp.body
    assert json.loads(resp.body) == {"status": "ok", "requests": {"fraud/3": "queued"}}
    assert svc.wait_idle(10)
    [req] = pipeline_endpoint.snapshot()
    assert req.method == "POST"
    assert req.headers["content-type"] == CLOUDEVENTS_CONTENT_TYPE
    ev = req.json()
    assert ev["specversion"] == "1.0"
    assert ev["type"] == EVENT_TYPE == "io.mlmon.retraining.requested"
    assert ev["source"] == "mlmon-exporter"
    assert ev["id"] == dedup_key("fraud", "3", T0, 3600.0)
    assert ev["time"] == "2026-11-18T11:06:40.000Z"
    assert ev["datacontenttype"] == "application/json"
    data = ev["data"]
    assert data["model"] == "fraud" and data["model_version"] == "3"
    assert data["trigger_time"] == ev["time"]
    # evidence: the drifting window with the largest drop (1h: 0.92 - 0.796 = 0.124)
    assert data["reason"] == "Accuracy drop: 12.40%"
    # the version's drift tier, not the alert's severity label ("warning")
    assert data["severity"] == "critical"
    assert data["evidence"] == {"window": "1h", "accuracy": pytest.approx(0.796), "baseline": 0.92,
                                "drop": pytest.approx(0.124), "samples": 250}
    assert data["training_config"] == TRAINING
    assert {a["window"] for a in data["alerts"]} == {"1h", "24h"}
    assert svc.results()["sent"] == 1
    assert svc.last_request("fraud", "3") == T0


def test_repeats_inside_the_cooldown_send_nothing_and_after_it_send_again(
        pipeline_endpoint: RecordingServer, service_factory: Any, tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = service_factory(pipeline_endpoint.url, tmp_path, clock, cooldown=3600.0)
    assert json.loads(svc.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "queued"}
    assert svc.wait_idle(10)
    for dt in (1.0, 600.0, 3599.0):  # Alertmanager's repeat notifications
        clock.t = T0 + dt
        assert json.loads(svc.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "deduplicated"}
    assert svc.wait_idle(10)
    assert len(pipeline_endpoint.snapshot()) == 1
    # another version has its own cooldown
    assert json.loads(svc.handle({}, payload(alert(version="4"))).body)["requests"] == {"fraud/4": "queued"}
    clock.t = T0 + 3600.0
    assert json.loads(svc.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "queued"}
    assert svc.wait_idle(10)
    evs = events(pipeline_endpoint)
    assert [(e["data"]["model_version"]) for e in evs] == ["3", "4", "3"]
    assert evs[0]["id"] != evs[2]["id"]
    assert svc.results() == {"sent": 3, "failed": 0, "deduplicated": 3, "logged": 0, "invalid": 0}


def test_cooldown_survives_a_restart(pipeline_endpoint: RecordingServer, tmp_path: Path) -> None:
    clock = Clock(T0)
    first = make_service(pipeline_endpoint.url, tmp_path, clock)
    first.handle({}, payload(alert()))
    assert first.wait_idle(10)
    first.close()
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["versions"][0]["cooldown_from"] == T0
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temp file left behind

    clock.t = T0 + 1800.0
    second = make_service(pipeline_endpoint.url, tmp_path, clock)
    try:
        assert json.loads(second.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "deduplicated"}
        assert second.last_request("fraud", "3") == T0  # the gauge survives too
        clock.t = T0 + 3600.0
        assert json.loads(second.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "queued"}
        assert second.wait_idle(10)
    finally:
        second.close()
    assert len(pipeline_endpoint.snapshot()) == 2


def test_an_undelivered_request_is_delivered_after_a_restart(tmp_path: Path) -> None:
    with RecordingServer(default=Reply(503)) as down:
        first = make_service(down.url, tmp_path, max_attempts=100, backoff_base=30.0)
        first.handle({}, payload(alert()))
        down.wait_for_count(1, 10)
        first.close()
        original = down.snapshot()[0].json()
    with RecordingServer() as up:
        second = make_service(up.url, tmp_path)
        try:
            assert second.wait_idle(10)
        finally:
            second.close()
        [ev] = events(up)
    assert ev == original  # same event, same id: the consumer can deduplicate
    assert second.results()["sent"] == 1


def test_resolved_alerts_send_nothing(pipeline_endpoint: RecordingServer, service_factory: Any,
                                      tmp_path: Path) -> None:
    svc = service_factory(pipeline_endpoint.url, tmp_path)
    resp = svc.handle({}, payload(alert(status="resolved"), alert(status="resolved", window="24h")))
    assert resp.status == 200
    assert json.loads(resp.body)["requests"] == {}
    assert svc.wait_idle(5)
    assert pipeline_endpoint.snapshot() == []
    assert not svc.retraining_triggered("fraud", "3")
    # a resolved notification does not end the cooldown either
    svc.handle({}, payload(alert()))
    svc.handle({}, payload(alert(status="resolved")))
    assert json.loads(svc.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "deduplicated"}
    assert svc.wait_idle(10)
    assert len(pipeline_endpoint.snapshot()) == 1


# -- delivery ----------------------------------------------------------------------------------------


def test_retries_on_5xx_then_succeeds(service_factory: Any, tmp_path: Path) -> None:
    with RecordingServer(replies=[Reply(500), Reply(503, headers=(("Retry-After", "0"),))]) as server:
        svc = service_factory(server.url, tmp_path, max_attempts=5)
        svc.handle({}, payload(alert()))
        assert svc.wait_idle(10)
        reqs = server.snapshot()
    assert len(reqs) == 3
    assert len({r.json()["id"] for r in reqs}) == 1  # a retry is the same event
    assert reqs[1].received - reqs[0].received >= 0.01  # backoff
    assert svc.results()["sent"] == 1 and svc.results()["failed"] == 0


def test_retries_a_timeout(service_factory: Any, tmp_path: Path) -> None:
    with RecordingServer(replies=[Reply(200, delay=1.0)]) as server:
        svc = service_factory(server.url, tmp_path, timeout=0.2)
        svc.handle({}, payload(alert()))
        assert svc.wait_idle(10)
        assert len(server.snapshot()) == 2
    assert svc.results()["sent"] == 1


def test_gives_up_after_max_attempts_and_a_later_notification_tries_again(
        service_factory: Any, tmp_path: Path) -> None:
    clock = Clock(T0)
    with RecordingServer(default=Reply(500)) as server:
        svc = service_factory(server.url, tmp_path, clock, max_attempts=3)
        svc.handle({}, payload(alert()))
        assert svc.wait_idle(10)
        assert len(server.snapshot()) == 3
        assert svc.results()["failed"] == 1
        assert svc.last_request("fraud", "3") is None
        # giving up ended the cooldown: Alertmanager's next repeat tries again
        clock.t += 60
        assert json.loads(svc.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "queued"}
        assert svc.wait_idle(10)
        assert len(server.snapshot()) == 6
    assert svc.results()["failed"] == 2


def test_connection_refused_is_retried_then_given_up(service_factory: Any, tmp_path: Path) -> None:
    server = RecordingServer().start()
    url = server.url
    server.stop()  # nothing listens there any more
    svc = service_factory(url, tmp_path, max_attempts=2)
    svc.handle({}, payload(alert()))
    assert svc.wait_idle(10)
    assert svc.results()["failed"] == 1


def test_a_4xx_answer_is_not_retried(service_factory: Any, tmp_path: Path) -> None:
    with RecordingServer(default=Reply(400, b"bad event")) as server:
        svc = service_factory(server.url, tmp_path, max_attempts=5)
        svc.handle({}, payload(alert()))
        assert svc.wait_idle(10)
        assert len(server.snapshot()) == 1
    assert svc.results()["failed"] == 1


def test_the_webhook_answers_at_once_while_the_pipeline_is_slow(service_factory: Any, tmp_path: Path) -> None:
    with RecordingServer(default=Reply(200, delay=0.8)) as server:
        svc = service_factory(server.url, tmp_path, timeout=5.0)
        started = time.monotonic()
        resp = svc.handle({}, payload(alert()))
        assert time.monotonic() - started < 0.5
        assert resp.status == 200
        assert svc.wait_idle(10)
    assert svc.results()["sent"] == 1


def test_endpoint_unset_logs_and_counts_the_request(service_factory: Any, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    svc = service_factory(None, tmp_path)
    with caplog.at_level(logging.INFO, logger="exporter.actions.retrain"):
        body = json.loads(svc.handle({}, payload(alert())).body)
    assert body["requests"] == {"fraud/3": "logged"}
    [rec] = [r for r in caplog.records if "logged, not sent" in r.getMessage()]
    logged = json.loads(rec.__dict__["event"])
    assert logged["type"] == EVENT_TYPE and logged["data"]["reason"] == "Accuracy drop: 12.40%"
    assert json.loads(svc.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "deduplicated"}
    assert svc.results() == {"sent": 0, "failed": 0, "deduplicated": 1, "logged": 1, "invalid": 0}
    assert svc.last_request("fraud", "3") == T0


# -- the payload ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (json.dumps({"alerts": []}).encode(), "version"),
    (json.dumps({"version": "3", "alerts": []}).encode(), "version"),
    (json.dumps({"version": "4"}).encode(), "alerts: must be a list"),
    (json.dumps({"version": "4", "alerts": {}}).encode(), "alerts: must be a list"),
    (json.dumps({"version": "4", "alerts": ["x"]}).encode(), "alerts[0]: must be an object"),
    (json.dumps({"version": "4", "alerts": [{"status": "pending", "labels": {}}]}).encode(), "alerts[0].status"),
    (json.dumps({"version": "4", "alerts": [{"status": "firing"}]}).encode(), "alerts[0].labels"),
    (json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {"a": 1}}]}).encode(),
     "alerts[0].labels"),
])
def test_malformed_payloads_get_400_with_a_reason(body: bytes, reason: str, service_factory: Any,
                                                   pipeline_endpoint: RecordingServer, tmp_path: Path) -> None:
    svc = service_factory(pipeline_endpoint.url, tmp_path)
    resp = svc.handle({}, body)
    assert resp.status == 400
    assert reason in resp.body.decode()
    assert svc.wait_idle(5)
    assert pipeline_endpoint.snapshot() == []


def test_unknown_fields_are_ignored(pipeline_endpoint: RecordingServer, service_factory: Any,
                                    tmp_path: Path) -> None:
    svc = service_factory(pipeline_endpoint.url, tmp_path)
    a = {**alert(), "silencedBy": [], "someFutureField": {"x": 1}}
    resp = svc.handle({}, payload(a, notification_reason="repeat_interval",
                                  routeLabels={"action": "retrain"}, groupKey=None))
    assert resp.status == 200, resp.body
    assert svc.wait_idle(10)
    assert len(pipeline_endpoint.snapshot()) == 1


def test_parse_webhook_keeps_what_the_receiver_uses() -> None:
    [a] = parse_webhook(payload(alert()))
    assert a.status == "firing" and a.labels["action"] == "retrain"
    assert a.starts_at == "2026-11-26T16:13:07.944Z" and a.fingerprint == "fp-3-1h-warning"


def test_retrain_alert_without_model_labels_is_counted_invalid(
        pipeline_endpoint: RecordingServer, service_factory: Any, tmp_path: Path) -> None:
    svc = service_factory(pipeline_endpoint.url, tmp_path)
    a = alert()
    del a["labels"]["model_version"]
    assert svc.handle({}, payload(a)).status == 200
    assert svc.wait_idle(5)
    assert pipeline_endpoint.snapshot() == []
    assert svc.results()["invalid"] == 1


def test_unknown_version_still_requests_retraining_without_evidence(
        pipeline_endpoint: RecordingServer, service_factory: Any, tmp_path: Path) -> None:
    svc = service_factory(pipeline_endpoint.url, tmp_path)
    svc.handle({}, payload(alert(version="99")))
    assert svc.wait_idle(10)
    [ev] = events(pipeline_endpoint)
    assert ev["data"]["evidence"] is None and ev["data"]["severity"] is None
    assert "MLModelAccuracyDrift" in ev["data"]["reason"]


def test_through_the_exporters_http_server(pipeline_endpoint: RecordingServer, service_factory: Any,
                                           tmp_path: Path) -> None:
    svc = service_factory(pipeline_endpoint.url, tmp_path)
    server = ExporterHTTPServer(("127.0.0.1", 0), RenderedSnapshot())
    server.post_handlers["/api/v1/alertmanager"] = svc.handle
    server.serve_in_thread()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/alertmanager"
        ok = requests.post(url, data=payload(alert()), headers={"Content-Type": "application/json"}, timeout=5)
        assert ok.status_code == 200
        bad = requests.post(url, data=b"nope", timeout=5)
        assert bad.status_code == 400 and "not valid JSON" in bad.text
    finally:
        server.shutdown()
        server.server_close()
    assert svc.wait_idle(10)
    assert len(pipeline_endpoint.snapshot()) == 1


# -- metrics, evidence, ids -----------------------------------------------------------------------


def test_families_expose_results_and_last_request(pipeline_endpoint: RecordingServer, service_factory: Any,
                                                  tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = service_factory(pipeline_endpoint.url, tmp_path, clock)
    svc.handle({}, payload(alert()))
    svc.handle({}, payload(alert(), alert(status="resolved", version="4")))
    svc.handle({}, b"garbage")
    assert svc.wait_idle(10)
    text = render(catalogue.families(Report(clock(), True, retraining=svc.stats()))).decode()
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert values[("mlmon_retraining_requests_total", (("result", "sent"),))] == 1
    assert values[("mlmon_retraining_requests_total", (("result", "deduplicated"),))] == 1
    assert values[("mlmon_retraining_requests_total", (("result", "failed"),))] == 0
    assert values[("mlmon_retraining_last_request_timestamp_seconds",
                   (("model", "fraud"), ("model_version", "3")))] == T0
    assert values[("mlmon_retraining_alerts_received_total", (("status", "firing"),))] == 2
    assert values[("mlmon_retraining_alerts_received_total", (("status", "resolved"),))] == 1
    assert values[("mlmon_retraining_invalid_payloads_total", ())] == 1
    assert values[("mlmon_retraining_pending_requests", ())] == 0


def test_evidence_picks_the_drifting_window_with_the_largest_drop() -> None:
    snap = report_of({("m", "1"): (0.9, {
        "5m": Win(0.5, 10, False, "critical"),  # bigger drop, but too few samples: not drift
        "1h": Win(0.82, 200, True, "high"),
        "24h": Win(0.78, 900, True, "critical"),
    })})
    ev = evidence_from_report(snap, "m", "1")
    assert ev is not None
    assert ev == Evidence("24h", 0.78, 0.9, ev.drop, 900, "critical", True)
    assert ev.drop == pytest.approx(0.12)
    calm = report_of({("m", "1"): (0.9, {"1h": Win(0.91, 50, False, "low"), "24h": Win(0.89, 90, False, "low")})})
    first = evidence_from_report(calm, "m", "1")
    assert first is not None and first.window == "1h" and first.severity == "low"
    assert evidence_from_report(calm, "m", "2") is None
    assert evidence_from_pipeline(Holder(snap))("m", "1") == ev


def test_evidence_json_has_no_nan() -> None:
    ev = Evidence("1h", math.nan, 0.9, math.nan, 0, "low")
    assert json.dumps(ev.as_json(), allow_nan=False)
    assert ev.as_json()["accuracy"] is None


def test_evidence_of_a_version_without_windows_is_none() -> None:
    assert evidence_from_report(Report(T0, True, (version_report("m", "1", []),)), "m", "1") is None
    assert evidence_from_report(DRIFTING, "fraud", "3") == Evidence("1h", 0.796, 0.92, 0.92 - 0.796, 250,
                                                                     "critical", True)


def test_dedup_key_never_repeats_for_requests_a_cooldown_apart() -> None:
    c = 6 * 3600.0
    assert dedup_key("m", "1", T0, c) == dedup_key("m", "1", T0 + 1, c) or (T0 + 1) // c != T0 // c
    for t in (T0, T0 + 123.4, T0 + c - 0.001):
        assert dedup_key("m", "1", t, c) != dedup_key("m", "1", t + c, c)
    assert dedup_key("m", "1", T0, c) != dedup_key("m", "2", T0, c)
    assert dedup_key("m", "1", T0, 0.0) != dedup_key("m", "1", T0 + 0.5, 0.0)


def test_retraining_triggered_since(pipeline_endpoint: RecordingServer, service_factory: Any,
                                    tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = service_factory(pipeline_endpoint.url, tmp_path, clock)
    assert not svc.retraining_triggered("fraud", "3")
    svc.handle({}, payload(alert()))
    assert svc.retraining_triggered("fraud", "3")
    assert svc.retraining_triggered("fraud", "3", since=T0 - 300)
    assert not svc.retraining_triggered("fraud", "3", since=T0)
    assert not svc.retraining_triggered("fraud", "4", since=T0 - 300)


def test_reconfigure_applies_a_new_cooldown(pipeline_endpoint: RecordingServer, service_factory: Any,
                                            tmp_path: Path) -> None:
    clock = Clock(T0)
    svc = service_factory(pipeline_endpoint.url, tmp_path, clock, cooldown=3600.0)
    svc.handle({}, payload(alert()))
    assert svc.wait_idle(10)
    svc.reconfigure(replace(svc.config, cooldown=60.0))
    clock.t += 61
    assert json.loads(svc.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "queued"}
    assert svc.wait_idle(10)


def test_a_damaged_state_file_is_survived(pipeline_endpoint: RecordingServer, tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{torn")
    svc = make_service(pipeline_endpoint.url, tmp_path)
    try:
        assert json.loads(svc.handle({}, payload(alert())).body)["requests"] == {"fraud/3": "queued"}
        assert svc.wait_idle(10)
    finally:
        svc.close()
    assert json.loads((tmp_path / STATE_FILE).read_text())["format"] == 1
