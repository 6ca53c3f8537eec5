"""Alertmanager webhook -> deduplicated, cooled-down retraining requests (CloudEvents).

``POST /api/v1/alertmanager`` receives Alertmanager's webhook payload (version 4). For every
firing alert labelled ``action="retrain"`` it asks the configured pipeline endpoint, once per
model version and cooldown, to retrain: a structured-mode CloudEvent
(``application/cloudevents+json``, ``type`` ``io.mlmon.retraining.requested``) whose ``data``
carries model, version, trigger time, reason, severity, the evidence and the training config
(DESIGN §2, §8).

Deduplication and cooldown
--------------------------
A request for a model version starts its cooldown; further firing notifications for that
version inside ``retraining.cooldown`` send nothing (counted ``deduplicated``). The gate is
"last request + cooldown", not a fixed time bucket: buckets would let two requests through a
few seconds apart when they straddle a bucket boundary. The CloudEvent ``id`` is nevertheless
``sha256(model, version, floor(trigger_time / cooldown))``: two requests the gate lets through
are at least one cooldown apart, so they always get different ids, while replicas (or a retry
after a lost response) asking for the same version at about the same time send the same id,
which a consumer can deduplicate on (CloudEvents: ``source`` + ``id`` identify an event).
All alerts of one payload for the same version (one per window and severity tier) make one
request. Resolved alerts send nothing.

The cooldown, the last request time and any request still being delivered are persisted in
``<state_dir>/retraining.json`` (temp file + fsync + rename) before the webhook answers, so a
restart neither forgets a cooldown nor drops an accepted request: undelivered requests are
delivered after the restart, with their original id.

Delivery
--------
The webhook only decides and queues; one background thread delivers, so Alertmanager is
answered at once and never waits for the pipeline. A delivery is retried with exponential
backoff (``backoff_base * 2**(attempt-1)``, capped, honouring ``Retry-After``) on 5xx, 408,
429, timeouts and connection errors, up to ``retraining.max_attempts`` attempts; any other
answer, or the last failed attempt, gives up (``failed``). Giving up also ends the cooldown,
so Alertmanager's next repeat notification tries again. Without ``retraining.endpoint`` the
request is logged instead of sent (``logged``), with the cooldown applied all the same.

Severity and evidence
---------------------
``data.severity`` is the version's accuracy-drift tier (``low``/``high``/``critical``) at the
time of the alert, from the exporter's own numbers, not the alert's ``severity`` label
(DESIGN §2). The evidence is read from the latest published Report (typed values, never the
rendered text or live pipeline state, because the webhook runs on an HTTP thread): of the
windows with detected drift, the one with the largest accuracy drop, else the first configured
window (``actions.evidence``; the webhook payload is read by ``actions.alertmanager``). The
service's own counters are handed out as ``RetrainingStats`` (``stats``); the
catalogue names them.

About 480 lines, over the house's 400: the cooldown gate, its persistence and the delivery thread
share one lock and one state file, so they stay one class.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import requests

from exporter.actions.alertmanager import PayloadError, WebhookAlert, parse_webhook
from exporter.actions.evidence import Evidence, EvidenceLookup
from exporter.config import RetrainingConfig
from exporter.foundation.atomic_file import atomic_write
from exporter.foundation.clock import Clock
from exporter.foundation.http_messages import Response
from exporter.report.model import RetrainingStats

log = logging.getLogger(__name__)

EVENT_TYPE = "io.mlmon.retraining.requested"
DEFAULT_SOURCE = "mlmon-exporter"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
STATE_FILE = "retraining.json"
STATE_FORMAT = 1
WEBHOOK_PATH = "/api/v1/alertmanager"
# Every result of mlmon_retraining_requests_total, exported from the start at 0.
RESULTS = ("sent", "failed", "deduplicated", "logged", "invalid")
# A version's entry is forgotten once its cooldown is over and nothing happened for this long.
STATE_RETENTION = 30 * 86400.0

VersionKey = tuple[str, str]


def rfc3339(t: float) -> str:
    """``2026-11-26T10:00:00.000Z``: UTC, millisecond precision."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# The retraining request
# --------------------------------------------------------------------------------------------


def dedup_key(model: str, version: str, trigger_time: float, cooldown: float) -> str:
    """The CloudEvent id: sha256 of model, version and the cooldown period of the trigger time."""
    period = str(math.floor(trigger_time / cooldown)) if cooldown > 0 else repr(trigger_time)
    return hashlib.sha256(f"{model}\x00{version}\x00{period}".encode()).hexdigest()


def build_event(model: str, version: str, trigger_time: float, evidence: Evidence | None,
                config: RetrainingConfig, alerts: Sequence[WebhookAlert] = (),
                source: str = DEFAULT_SOURCE) -> dict[str, Any]:
    """The structured-mode CloudEvent of one retraining request."""
    if evidence is not None and math.isfinite(evidence.drop):
        reason = f"Accuracy drop: {evidence.drop:.2%}"
    else:
        names = sorted({a.labels.get("alertname", "?") for a in alerts}) or ["?"]
        reason = f"Alert {', '.join(names)} fired; no accuracy evidence for this version in the exporter"
    return {
        "specversion": "1.0",
        "type": EVENT_TYPE,
        "source": source,
        "id": dedup_key(model, version, trigger_time, config.cooldown),
        "time": rfc3339(trigger_time),
        "subject": f"{model}/{version}",
        "datacontenttype": "application/json",
        "data": {
            "model": model,
            "model_version": version,
            "trigger_time": rfc3339(trigger_time),
            "reason": reason,
            "severity": evidence.severity if evidence is not None else None,
            "evidence": evidence.as_json() if evidence is not None else None,
            "training_config": dict(config.training_config),
            "alerts": [
                {
                    "alertname": a.labels.get("alertname"),
                    "severity": a.labels.get("severity"),
                    "window": a.labels.get("window"),
                    "starts_at": a.starts_at,
                    "fingerprint": a.fingerprint,
                }
                for a in alerts
            ],
        },
    }


@dataclass
class _VersionState:
    cooldown_from: float | None = None  # start of the running cooldown; None: no cooldown
    last_triggered: float | None = None  # last request accepted (any outcome), for history
    last_request: float | None = None  # trigger time of the last request sent or logged
    pending: dict[str, Any] | None = None  # the CloudEvent still being delivered
    pending_time: float | None = None
    attempts: int = 0

    def latest(self) -> float:
        return max((t for t in (self.cooldown_from, self.last_triggered, self.last_request) if t is not None),
                   default=-math.inf)


@dataclass
class _Delivery:
    outcome: str  # ok | retry | fail
    detail: str
    retry_after: float | None = None
    status: int | None = field(default=None)


class RetrainingService:
    """The Alertmanager webhook receiver and the retraining request sender.

    ``handle`` is the POST handler for ``/api/v1/alertmanager``; ``stats`` hands out the
    counters behind the ``mlmon_retraining_*`` metrics; ``close`` stops the delivery thread (requests
    not yet delivered stay in the state file and are sent after the next start).
    """

    def __init__(self, config: RetrainingConfig, state_dir: Path | str | None = None,
                 evidence: EvidenceLookup | None = None, clock: Clock = time.time,
                 session: requests.Session | None = None, *, source: str = DEFAULT_SOURCE,
                 backoff_base: float = 1.0, backoff_max: float = 60.0) -> None:
        self._config = config
        self._state_path = Path(state_dir) / STATE_FILE if state_dir is not None else None
        self._evidence = evidence
        self._clock = clock
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._source = source
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._cond = threading.Condition()
        self._versions: dict[VersionKey, _VersionState] = {}
        self._results: Counter[str] = Counter()
        self._received: Counter[str] = Counter()
        self._invalid_payloads = 0
        self._due: list[tuple[float, int, VersionKey]] = []  # (monotonic due time, seq, key)
        self._seq = 0
        self._inflight = 0
        self._stop = False
        self._load()
        with self._cond:
            for key, st in self._versions.items():
                if st.pending is not None:
                    log.info("retraining request still undelivered from before the restart, sending it",
                             extra={"model": key[0], "model_version": key[1], "id": st.pending.get("id")})
                    self._schedule(key, 0.0)
        self._worker = threading.Thread(target=self._run, name="retraining", daemon=True)
        self._worker.start()

    # -- configuration -------------------------------------------------------------------------
    @property
    def config(self) -> RetrainingConfig:
        return self._config

    def reconfigure(self, config: RetrainingConfig) -> None:
        """Apply a reloaded ``retraining:`` block; cooldowns and pending requests are kept."""
        with self._cond:
            self._config = config
            self._cond.notify_all()

    # -- the webhook ---------------------------------------------------------------------------
    def handle(self, headers: Mapping[str, str], body: bytes) -> Response:
        """POST /api/v1/alertmanager. Decides and queues; never waits for the pipeline."""
        try:
            alerts = parse_webhook(body)
        except PayloadError as e:
            with self._cond:
                self._invalid_payloads += 1
            log.warning("alertmanager webhook: payload refused", extra={"reason": str(e)})
            return Response(HTTPStatus.BAD_REQUEST, f"invalid Alertmanager webhook payload: {e}\n".encode())
        now = self._clock()
        groups: dict[VersionKey, list[WebhookAlert]] = {}
        results: dict[str, str] = {}
        with self._cond:
            for a in alerts:
                if a.labels.get("action") != "retrain":
                    continue
                self._received[a.status] += 1
                if a.status != "firing":
                    continue
                model, version = a.labels.get("model"), a.labels.get("model_version")
                if not model or not version:
                    self._results["invalid"] += 1
                    log.warning("retrain alert without model and model_version labels, ignored",
                                extra={"alertname": a.labels.get("alertname"), "labels": json.dumps(a.labels)})
                    continue
                groups.setdefault((model, version), []).append(a)
            for key, group in groups.items():
                results[f"{key[0]}/{key[1]}"] = self._trigger(key, group, now)
        body_out = json.dumps({"status": "ok", "requests": results}, sort_keys=True).encode() + b"\n"
        return Response(HTTPStatus.OK, body_out, "application/json")

    def _trigger(self, key: VersionKey, alerts: Sequence[WebhookAlert], now: float) -> str:
        """Under the lock: deduplicate, or build, persist and queue (or log) one request."""
        model, version = key
        cfg = self._config
        st = self._versions.setdefault(key, _VersionState())
        if (st.cooldown_from is not None and now < st.cooldown_from + cfg.cooldown) or st.pending is not None:
            self._results["deduplicated"] += 1
            log.debug("retraining request deduplicated (cooldown)", extra={"model": model, "model_version": version})
            return "deduplicated"
        evidence: Evidence | None = None
        if self._evidence is not None:
            try:
                evidence = self._evidence(model, version)
            except Exception:  # evidence is a nice-to-have; the request must still go out
                log.exception("retraining evidence lookup failed", extra={"model": model, "model_version": version})
        event = build_event(model, version, now, evidence, cfg, alerts, self._source)
        st.cooldown_from = now
        st.last_triggered = now
        if cfg.endpoint is None:
            st.last_request = now
            self._results["logged"] += 1
            log.info("retraining request (no retraining.endpoint configured: logged, not sent)",
                     extra={"model": model, "model_version": version, "event": json.dumps(event)})
            self._save()
            return "logged"
        st.pending, st.pending_time, st.attempts = event, now, 0
        self._save()
        self._schedule(key, 0.0)
        log.info("retraining request queued", extra={"model": model, "model_version": version,
                                                     "id": event["id"], "reason": event["data"]["reason"]})
        return "queued"

    # -- delivery --------------------------------------------------------------------------------
    def _schedule(self, key: VersionKey, delay: float) -> None:
        self._seq += 1
        heapq.heappush(self._due, (time.monotonic() + delay, self._seq, key))
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._due or self._due[0][0] > time.monotonic()):
                    self._cond.wait(self._due[0][0] - time.monotonic() if self._due else None)
                if self._stop:
                    return
                _, _, key = heapq.heappop(self._due)
                st = self._versions.get(key)
                if st is None or st.pending is None:
                    continue
                event, cfg = st.pending, self._config
                st.attempts += 1
                attempt = st.attempts
                self._inflight += 1
            try:
                result = (self._post(cfg.endpoint, event, cfg.timeout) if cfg.endpoint is not None
                          else _Delivery("logged", "no endpoint configured"))
            except Exception as e:  # never let the worker die
                log.exception("retraining delivery crashed")
                result = _Delivery("retry", f"unexpected error: {e!r}")
            with self._cond:
                self._inflight -= 1
                self._finish(key, st, event, attempt, result, cfg)
                self._cond.notify_all()

    def _finish(self, key: VersionKey, st: _VersionState, event: dict[str, Any], attempt: int,
                result: _Delivery, cfg: RetrainingConfig) -> None:
        extra = {"model": key[0], "model_version": key[1], "id": event.get("id"), "attempt": attempt,
                 "detail": result.detail}
        if st.pending is not event:
            return
        if result.outcome in ("ok", "logged"):
            st.last_request = st.pending_time
            st.pending = st.pending_time = None
            self._results["sent" if result.outcome == "ok" else "logged"] += 1
            log.info("retraining request sent" if result.outcome == "ok" else "retraining request logged",
                     extra={**extra, "event": json.dumps(event)} if result.outcome == "logged" else extra)
            self._save()
        elif result.outcome == "retry" and attempt < cfg.max_attempts:
            delay = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
            if result.retry_after is not None:
                delay = min(self._backoff_max, max(delay, result.retry_after))
            log.warning("retraining request failed, will retry", extra={**extra, "retry_in": round(delay, 3)})
            self._schedule(key, delay)
        else:
            st.pending = st.pending_time = None
            st.cooldown_from = None  # the next notification may try again
            self._results["failed"] += 1
            log.error("retraining request failed, giving up", extra={**extra, "max_attempts": cfg.max_attempts})
            self._save()

    def _post(self, endpoint: str, event: dict[str, Any], timeout: float) -> _Delivery:
        body = json.dumps(event, sort_keys=True).encode()
        try:
            resp = self._session.post(endpoint, data=body, timeout=timeout,
                                      headers={"Content-Type": CLOUDEVENTS_CONTENT_TYPE})
        except (requests.ConnectionError, requests.Timeout) as e:
            return _Delivery("retry", f"{type(e).__name__}: {e}")
        except requests.RequestException as e:
            return _Delivery("fail", f"{type(e).__name__}: {e}")
        with contextlib.closing(resp):
            code = resp.status_code
            if 200 <= code < 300:
                return _Delivery("ok", f"HTTP {code}", status=code)
            detail = f"HTTP {code}: {resp.text[:200]}"
            if code >= 500 or code in (408, 429):
                return _Delivery("retry", detail, _retry_after(resp.headers.get("Retry-After")), code)
            return _Delivery("fail", detail, status=code)

    # -- reading ---------------------------------------------------------------------------------
    def retraining_triggered(self, model: str, version: str, since: float | None = None) -> bool:
        """Whether a retraining request for the version was accepted after ``since`` (ever if None).

        Deduplicated notifications do not count; a request counts from the moment it was
        accepted, whatever its delivery outcome.
        """
        with self._cond:
            st = self._versions.get((model, version))
            t = st.last_triggered if st is not None else None
        return t is not None and (since is None or t > since)

    def last_request(self, model: str, version: str) -> float | None:
        with self._cond:
            st = self._versions.get((model, version))
            return st.last_request if st is not None else None

    def results(self) -> dict[str, int]:
        """Counts per result (the values of mlmon_retraining_requests_total)."""
        with self._cond:
            return {r: self._results[r] for r in RESULTS}

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is waiting for delivery; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._inflight or any(st.pending is not None for st in self._versions.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stats(self) -> RetrainingStats:
        """The service's counters (the ``mlmon_retraining_*`` metrics), as one consistent copy."""
        with self._cond:
            return RetrainingStats(
                results=tuple((r, self._results[r]) for r in RESULTS),
                last_request=tuple(sorted((m, v, st.last_request) for (m, v), st in self._versions.items()
                                          if st.last_request is not None)),
                alerts_received=tuple((s, self._received[s]) for s in ("firing", "resolved")),
                pending=sum(1 for st in self._versions.values() if st.pending is not None),
                invalid_payloads=self._invalid_payloads,
            )

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Stop the delivery thread. Undelivered requests stay persisted for the next start."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._worker.join(timeout if timeout is not None else self._config.timeout + 5.0)
        if self._own_session:
            self._session.close()

    # -- persistence -----------------------------------------------------------------------------
    def _load(self) -> None:
        path = self._state_path
        if path is None:
            log.info("no state directory: retraining cooldowns are kept in memory only")
            return
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {doc.get('format') if isinstance(doc, dict) else doc!r}")
            for e in doc["versions"]:
                st = _VersionState(
                    cooldown_from=_opt_float(e.get("cooldown_from")),
                    last_triggered=_opt_float(e.get("last_triggered")),
                    last_request=_opt_float(e.get("last_request")),
                    pending=e.get("pending") if isinstance(e.get("pending"), dict) else None,
                    pending_time=_opt_float(e.get("pending_time")),
                )
                self._versions[(str(e["model"]), str(e["model_version"]))] = st
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error("retraining state unreadable, starting without cooldowns",
                      extra={"path": str(path), "err": str(e)})
            self._versions.clear()

    def _save(self) -> None:
        """Under the lock: persist every version's state atomically (temp + fsync + rename)."""
        path = self._state_path
        if path is None:
            return
        now = self._clock()
        keep = max(self._config.cooldown, STATE_RETENTION)
        for key in [k for k, st in self._versions.items() if st.pending is None and st.latest() < now - keep]:
            del self._versions[key]
        doc = {
            "format": STATE_FORMAT,
            "versions": [
                {"model": m, "model_version": v, "cooldown_from": st.cooldown_from,
                 "last_triggered": st.last_triggered, "last_request": st.last_request,
                 "pending": st.pending, "pending_time": st.pending_time}
                for (m, v), st in sorted(self._versions.items())
            ],
        }
        try:
            atomic_write(path, json.dumps(doc, sort_keys=True, indent=1).encode())
        except OSError as e:
            log.error("cannot persist retraining state; cooldowns will not survive a restart",
                      extra={"path": str(path), "err": str(e)})


def _opt_float(x: object) -> float | None:
    if isinstance(x, int | float) and not isinstance(x, bool):
        return float(x)
    return None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
