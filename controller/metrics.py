"""The controller's Prometheus metrics, on a registry of its own (served at ``GET /metrics``).

A private :data:`REGISTRY` (not prometheus-client's global default) keeps what ``/metrics``
shows to Blockflow's own series and lets tests import this module without clashing with
anything else that registers metrics in the same process.

Label values must stay low-cardinality: route *templates* (never a URL with a token in it),
operation names, step types, run states — never names of resources or request payloads.
"""

from __future__ import annotations

import platform

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from controller import __version__

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
# What every Go controller exposes by default: process_* (CPU, memory, open files, start
# time) and the runtime's (python_info, python_gc_*), next to Blockflow's own.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

BUILD_INFO = Gauge(
    "blockflow_build_info",
    "Always 1; the labels say which Blockflow and Python this controller runs.",
    ["version", "python_version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(__version__, platform.python_version()).set(1)

# Work queues and leader election, under the names controller-runtime's client-go metrics
# use, so existing dashboards and alerts work (label `name`: runs, lifecycle, schedules, …).
WORKQUEUE_DEPTH = Gauge(
    "workqueue_depth", "Keys waiting in the work queue.", ["name"], registry=REGISTRY
)
WORKQUEUE_ADDS = Counter(
    "workqueue_adds", "Keys added to the work queue.", ["name"], registry=REGISTRY
)
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries",
    "Keys put back after a failed reconcile (with backoff).",
    ["name"],
    registry=REGISTRY,
)
WORKQUEUE_QUEUE_SECONDS = Histogram(
    "workqueue_queue_duration_seconds",
    "How long a key waited in the queue before a worker took it.",
    ["name"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_WORK_SECONDS = Histogram(
    "workqueue_work_duration_seconds",
    "How long processing one key took.",
    ["name"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_UNFINISHED_SECONDS = Gauge(
    "workqueue_unfinished_work_seconds",
    "Seconds of work under way that has not finished (large values: stuck reconciles).",
    ["name"],
    registry=REGISTRY,
)
WORKQUEUE_LONGEST_SECONDS = Gauge(
    "workqueue_longest_running_processor_seconds",
    "How long the longest-running reconcile of the queue has been running.",
    ["name"],
    registry=REGISTRY,
)
ACTIVE_WORKERS = Gauge(
    "controller_runtime_active_workers",
    "Reconciles being processed now, by controller.",
    ["controller"],
    registry=REGISTRY,
)
MAX_WORKERS = Gauge(
    "controller_runtime_max_concurrent_reconciles",
    "Worker slots of each controller.",
    ["controller"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "leader_election_master_status",
    "1 while this replica holds the leader lease, 0 while it stands by.",
    ["name"],
    registry=REGISTRY,
)

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

DRAINS_ABANDONED = Counter(
    "blockflow_drains_abandoned",
    "Entities released without their drain, by kind: their namespace was being deleted and "
    "something the drain needs (a Secret, the App) was already gone.",
    ["kind"],
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
