"""``type: kserve``: receive KServe's payload-logger CloudEvents and turn them into predictions.

KServe's logger (``spec.predictor.logger``) POSTs one CloudEvent per inference request and one
per response, in binary mode: the body is the raw request/response and the attributes are
``ce-*`` headers (``ce-id`` shared by the pair, ``ce-type``
``org.kubeflow.serving.inference.request|response``, ``ce-source`` the pod,
``ce-inferenceservicename``, ``ce-namespace``, ``ce-component``, ``ce-endpoint``, ``ce-time``,
``ce-metadata``, ``ce-annotations``). Header names are case-insensitive (KServe writes Go's
``Ce-Id``) and values are percent-decoded, as the CloudEvents HTTP binding requires (Go's SDK
sends them raw, Python's core SDK encodes them). The ``Content-Type`` is the inference request's
own (``application/json``, missing, or a ``curl -d`` default ``application/x-www-form-urlencoded``)
and is not trusted: the body is read as JSON whatever it says. Structured mode (``Content-Type:
application/cloudevents+json``, attributes and ``data`` / ``data_base64`` in one JSON object) is
accepted too. A body using the Open Inference Protocol's binary tensor extension (a JSON header
followed by raw tensor bytes; ``oip_binary``) is decoded into ordinary tensors.

**Receiving.** ``handle(headers, body)`` is the POST handler (the app registers it at
``/api/v1/kserve``; ``start_listener(listen)`` serves it on ``listen_address`` too, without auth). It
validates the event, builds canonical prediction records (DESIGN §3) and puts them on a bounded
queue of ``queue_size`` events; the pipeline drains the queue on each poll. Answers: ``200``
accepted (KServe's logger treats anything else as an error), ``400`` with ``<reason>: <detail>``
for a malformed event, ``413`` for a body over ``max_body_bytes``, ``503`` when the queue is full.
Every refusal is counted by reason in ``rejected_since_last_poll``, which the next poll hands to
the pipeline (``mlmon_exporter_invalid_records_total{reason}``). Note that KServe's logger does
not retry, so an event refused with 503 is lost: size ``queue_size`` for the events arriving in
one ``poll_interval``.

**Responses** give the predictions. v1 ``{"predictions": [...]}``, one item per instance:

* a class id or label (``1``, ``"cat"``; a one-element list such as ``[1]`` is unwrapped);
* a probability row ``[0.1, 0.9]`` over the model's ``classes`` by position (class ``i`` is
  ``str(i)`` when the model has no ``classes``): the argmax (first on ties) is the prediction,
  its probability the confidence; a row whose length differs from the classes is refused;
* a probability object ``{"cat": 0.8, "dog": 0.2}``: the same, keyed by class;
* an object with ``prediction`` (or ``label``, ``class``, ``predicted_class``) and optionally
  ``confidence`` (or ``score``, ``probability``) and ``probabilities`` (object or row).

Open Inference Protocol v2 ``{"outputs": [{"name", "shape", "datatype", "data"}]}``: the first
dimension of ``shape`` is the batch; ``data`` may be flat (row-major) or nested. The first
output with one value per instance gives the predictions (class ids or ``BYTES`` labels); the
first numeric output with several values per instance is a probability row per instance. With
both, the prediction is the label output and the confidence the probability of that class; with
only probabilities, the argmax as above.

**Ids, model, version, time.** A batch of one gives one record with id ``ce-id``; a batch of n
gives ``<ce-id>#0`` ... ``<ce-id>#<n-1>``. The model is the source's ``model`` if set, else
``ce-inferenceservicename``. The version comes from ``version_from``: a key of ``ce-metadata``
(the request headers listed in the InferenceService's ``logger.metadataHeaders``, a JSON object
of header -> list of values), a key of ``ce-annotations`` (the annotations listed in
``logger.metadataAnnotations``, a JSON object), or a header of the POST itself; a fixed
``model_version`` in the config overrides all. When that is missing from an event, or nothing is
configured, it is the predictor revision in ``ce-source`` (``00001`` in
``sentiment-predictor-00001-deployment-6c9f...``) where there is one, else ``unknown``. Real
KServe sends ``ce-source: http://localhost:9081/`` (the agent is injected before the pod has a
name), so without ``version_from`` every version is ``unknown``: a warning says so, once a
minute, and ``counters["version_unknown"]`` counts the events. (``version_header: X`` is the
older spelling of a POST header, then a ``ce-metadata`` key.) The timestamp is ``ce-time`` (the occurrence
time since KServe 0.18, the send time before), else ``ce-recordedtime``, else the arrival time.

**Requests** give the features, mapped to the model's ``drift.features``:

* v1 ``instances`` rows that are objects: their keys are feature names;
* v1 rows that are lists: column ``i`` is the ``i``-th name of ``drift.features``; a scalar row
  is the first feature; columnar v1 ``{"inputs": {"name": [values...]}}`` is keyed by name;
* v2 ``inputs`` tensors: a tensor named like a configured feature gives that feature (one value
  per instance); the columns of all other tensors, in input order, map by position to the
  ``drift.features`` not given by name (in their configured order).

Only JSON scalars are kept. Without a model lookup (see the constructor) object keys and v2
tensor names are kept as they are and positional columns are dropped.

**Pairing request and response** (same ``ce-id``, either order). A response is queued as soon as
it arrives and never waits for its request. A request that arrives first waits (at most
``request_ttl`` seconds, at most ``max_pending_requests`` of them, oldest dropped first) and its
features go onto the response's records when that arrives. A request arriving after its response
still attaches its features while the response is queued, i.e. until the next poll (at most one
``poll_interval``); after that it is dropped (counted in ``counters["late_requests"]``), and the
prediction stays recorded without features. A request whose row count differs from its
response's is not attached (``counters["feature_row_mismatch"]``). A request is validated (400
when it is not v1/v2) but never counted as a record: it only adds features.

**Forwarding** (``forward_to``): every event this handler reads is re-sent unchanged to each URL
by ``Forwarder``, in the background, whether this exporter could use it or not (a 400 here may
be a fine event for the other receiver); except events refused with 413 (too large to read) or
503 (a sender that retries would have them forwarded twice).

**Delivery.** ``poll`` drains the queue into ``Poll.objects``; until ``commit`` the drained
records stay in flight and a repeated ``poll`` returns them again, so a failed cycle does not
lose them. Queued events live in memory only: a crash loses what was received since the last
poll (the logger does not resend either way).
"""

from exporter.sources.kserve.cloudevents import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    Rejected,
    parse_cloudevent,
    revision_from_source,
)
from exporter.sources.kserve.payloads import Prediction, Tensor, parse_request, parse_response, parse_tensor
from exporter.sources.kserve.source import KSERVE_PATH, KServeSource

__all__ = [
    "KSERVE_PATH", "REQUEST_TYPE", "RESPONSE_TYPE", "STRUCTURED_CONTENT_TYPE", "CloudEvent", "KServeSource",
    "Prediction", "Rejected", "Tensor", "parse_cloudevent", "parse_request", "parse_response", "parse_tensor",
    "revision_from_source",
]
