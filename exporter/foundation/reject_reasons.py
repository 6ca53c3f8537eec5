"""The one registry of reasons a record is rejected for: the ``reason`` label values of
``mlmon_exporter_invalid_records_total``, and which of them each kind of source can produce.

Parsers, sources and the pipeline take their reason constants from here, so a new reason is
added in one place; ``reasons_for`` tells the exposition which ``{source, reason}`` series to
export at 0 from the start, so dashboards and ``increase()`` work before the first bad record.
"""

from __future__ import annotations

from typing import Protocol

# --- parsing (exporter.ingest.records), in the order the parsers check them ------------------------
LINE_TOO_LONG = "line_too_long"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_ID = "missing_id"
MISSING_MODEL = "missing_model"
MISSING_PREDICTION = "missing_prediction"
MISSING_LABEL = "missing_label"
INVALID_CLASS = "invalid_class"
INVALID_CONFIDENCE = "invalid_confidence"
INVALID_PROBABILITIES = "invalid_probabilities"
INVALID_TIMESTAMP = "invalid_timestamp"

PARSE_REASONS: tuple[str, ...] = (
    LINE_TOO_LONG, INVALID_JSON, NOT_AN_OBJECT, MISSING_ID, MISSING_MODEL, MISSING_PREDICTION,
    MISSING_LABEL, INVALID_CLASS, INVALID_CONFIDENCE, INVALID_PROBABILITIES, INVALID_TIMESTAMP,
)
"""Every reason the parsers (and the file source, for ``line_too_long``) can report, in the
order they are checked."""
INVALID_REASONS = PARSE_REASONS  # the name records.py exported in 0.1.0

# --- applying records (exporter.core.pipeline) ------------------------------------------------------
UNKNOWN_MODEL = "unknown_model"  # the record names a model that is not configured
UNKNOWN_CLASS = "unknown_class"  # a class outside the model's classes (or beyond max_classes)
DUPLICATE = "duplicate"  # an id already applied: a repeated prediction or a second label
TOO_MANY_VERSIONS = "too_many_versions"  # a new version beyond the model's max_versions

# --- KServe CloudEvents (exporter.sources.kserve) ----------------------------------------------
BODY_TOO_LARGE = "body_too_large"
QUEUE_FULL = "queue_full"
UNSUPPORTED_EVENT_TYPE = "unsupported_event_type"
UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
INVALID_EVENT = "invalid_event"
INVALID_REQUEST = "invalid_request"
INVALID_RESPONSE = "invalid_response"

KSERVE_REASONS: tuple[str, ...] = (
    BODY_TOO_LARGE, QUEUE_FULL, INVALID_EVENT, MISSING_ID, UNSUPPORTED_EVENT_TYPE,
    UNSUPPORTED_CONTENT_TYPE, INVALID_JSON, MISSING_MODEL, INVALID_REQUEST, INVALID_RESPONSE,
    INVALID_PROBABILITIES, INVALID_CONFIDENCE, INVALID_TIMESTAMP,
)
"""Every reason the KServe receiver can refuse an event for."""


class _Source(Protocol):
    """What ``reasons_for`` reads of a ``SourceConfig``."""

    @property
    def type(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def model(self) -> str | None: ...


def reasons_for(source: _Source) -> tuple[str, ...]:
    """The reasons a configured source can count records under, sorted.

    By kind: a predictions source can miss or mangle a prediction, confidence or probabilities
    and exceed ``max_versions``; a labels source can miss its label. A source with a fixed
    ``model`` never sees a missing or unknown model in its predictions (the config checks the
    name). By type: files and HTTP pages are read as JSON text (line length, JSON, object
    checks); KServe events are checked by the receiver (``KSERVE_REASONS``).
    """
    fixed_model = source.model is not None
    reasons = {MISSING_ID, INVALID_CLASS, INVALID_TIMESTAMP, UNKNOWN_CLASS, DUPLICATE}
    if source.kind == "predictions":
        reasons |= {MISSING_PREDICTION, INVALID_CONFIDENCE, INVALID_PROBABILITIES, TOO_MANY_VERSIONS}
        if not fixed_model:
            reasons |= {MISSING_MODEL, UNKNOWN_MODEL}
    else:
        reasons.add(MISSING_LABEL)
        if not fixed_model:
            reasons.add(UNKNOWN_MODEL)
    if source.type == "kserve":
        reasons |= set(KSERVE_REASONS)
        if fixed_model:
            reasons.discard(MISSING_MODEL)
    else:
        reasons |= {LINE_TOO_LONG, INVALID_JSON, NOT_AN_OBJECT}
    return tuple(sorted(reasons))
