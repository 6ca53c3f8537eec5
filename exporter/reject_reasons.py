"""Why a record was refused before it reached the pipeline: values of the ``reason`` label of
``mlmon_exporter_invalid_records_total``.

The parsers (``records``) and the sources that refuse records themselves (the file source's
``line_too_long``) count under these names, so they live below both. The pipeline's own
reasons (``duplicate``, ``unknown_class``, ``unknown_model``, ``too_many_versions``) and the
KServe receiver's are still spelled where they are counted; issue 12 gathers them here.
"""

from __future__ import annotations

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

INVALID_REASONS: tuple[str, ...] = (
    LINE_TOO_LONG, INVALID_JSON, NOT_AN_OBJECT, MISSING_ID, MISSING_MODEL, MISSING_PREDICTION,
    MISSING_LABEL, INVALID_CLASS, INVALID_CONFIDENCE, INVALID_PROBABILITIES, INVALID_TIMESTAMP,
)
"""Every reason the parsers (and the file source, for ``line_too_long``) can report, in the
order they are checked."""
