"""Alertmanager's webhook payload (version 4): the alerts this receiver uses, or a ``PayloadError``
that says what is wrong and where."""

from __future__ import annotations

import json
from dataclasses import dataclass


class PayloadError(ValueError):
    """A webhook payload we cannot use; the message says what is wrong and where."""


@dataclass(frozen=True)
class WebhookAlert:
    status: str
    labels: dict[str, str]
    starts_at: str | None = None
    fingerprint: str | None = None


def parse_webhook(body: bytes) -> list[WebhookAlert]:
    """The alerts of an Alertmanager webhook payload (version 4); PayloadError if malformed.

    Only what this receiver uses is checked; unknown fields (newer Alertmanagers add
    ``notification_reason``, ``routeLabels``, ...) are ignored.
    """
    try:
        doc = json.loads(body)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError(f"body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise PayloadError("payload must be a JSON object (the Alertmanager webhook message)")
    if doc.get("version") != "4":
        raise PayloadError(f'version: want "4" (Alertmanager webhook payload version), got {doc.get("version")!r}')
    raw_alerts = doc.get("alerts")
    if not isinstance(raw_alerts, list):
        raise PayloadError("alerts: must be a list")
    alerts: list[WebhookAlert] = []
    for i, a in enumerate(raw_alerts):
        where = f"alerts[{i}]"
        if not isinstance(a, dict):
            raise PayloadError(f"{where}: must be an object")
        status = a.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError(f"{where}.status: must be firing or resolved, got {status!r}")
        labels = a.get("labels")
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise PayloadError(f"{where}.labels: must be an object of string values")
        starts_at, fingerprint = a.get("startsAt"), a.get("fingerprint")
        alerts.append(WebhookAlert(
            status=status,
            labels=dict(labels),
            starts_at=starts_at if isinstance(starts_at, str) else None,
            fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        ))
    return alerts
