"""The controller's Prometheus metrics, on a registry of its own (served at ``GET /metrics``).

A private :data:`REGISTRY` (not prometheus-client's global default) keeps what ``/metrics``
shows to Blockflow's own series and lets tests import this module without clashing with
anything else that registers metrics in the same process.

Label values must stay low-cardinality: route *templates* (never a URL with a token in it),
operation names, step types, run states — never names of resources or request payloads.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

#: Latency buckets from a few milliseconds (an in-process step, a local handler) to ten
#: minutes (a slow handler call or a long step), roughly 2.5x apart.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)

# No `*_created` series: they double every counter and histogram family for a timestamp
# nobody graphs (controller-runtime's metrics have none).
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "blockflow_reconciles",
    "Reconciliations of Blockflow resources, by resource kind and result.",
    ["kind", "result"],
    registry=REGISTRY,
)

HANDLER_CALL_SECONDS = Histogram(
    "blockflow_handler_call_seconds",
    "Latency of calls to handlers, by protocol operation and transport.",
    ["operation", "transport"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

RUNS = Gauge(
    "blockflow_runs",
    "Workflow runs known to the controller, by state.",
    ["state"],
    registry=REGISTRY,
)

STEP_SECONDS = Histogram(
    "blockflow_step_seconds",
    "Latency of step calls, by step type.",
    ["type"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)

HTTP_REQUESTS = Counter(
    "blockflow_http_requests",
    "HTTP requests served by the controller, by route template and status code.",
    ["route", "code"],
    registry=REGISTRY,
)

RUNS_STARTED = Counter(
    "blockflow_runs_started",
    "Workflow runs started, by kind of trigger.",
    ["trigger"],
    registry=REGISTRY,
)

RUN_INPUT_REFUSED = Counter(
    "blockflow_run_input_refused",
    "Inputs that did not match their workflow's spec.inputSchema (no run was started), "
    "by kind of trigger.",
    ["trigger"],
    registry=REGISTRY,
)

#: The ``result`` values of :data:`EVENTS_RECEIVED`.
EVENT_RESULTS = ("started", "duplicate", "ignored", "rejected")

EVENTS_RECEIVED = Counter(
    "blockflow_events_received",
    "CloudEvents received on /events, by result (started, duplicate, ignored, rejected).",
    ["result"],
    registry=REGISTRY,
)

ADMISSION_REVIEWS = Counter(
    "blockflow_admission_reviews",
    "AdmissionReviews answered by the validating webhook, by kind and whether allowed.",
    ["kind", "allowed"],
    registry=REGISTRY,
)

HANDLER_CALLS_IN_FLIGHT = Gauge(
    "blockflow_handler_calls_in_flight",
    "Handler and built-in step calls being made now (each within its handler's limit).",
    registry=REGISTRY,
)

UNDECODABLE_OBJECTS = Counter(
    "blockflow_undecodable_objects",
    "Objects read from the API server nested too deep to handle, by kind (each is "
    "quarantined: no handler call, a failed status naming the reason, a Warning Event).",
    ["kind"],
    registry=REGISTRY,
)


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of :data:`REGISTRY`: (payload, content type)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
