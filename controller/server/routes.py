"""The route table: every URL the controller serves, its handler and its documentation.

Backend routes call the workflow engine's :class:`~controller.server.backend.Backend`;
built-in routes are served by the pipeline itself. ``/openapi.json`` is generated from
this table.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.server.backend import Backend, IncomingRequest, Reply
from controller.server.pipeline import _healthz, _metrics, _openapi, _readyz
from controller.server.route import Route

# -- the route table -------------------------------------------------------------------------

_LIMITS: tuple[tuple[int, str], ...] = (
    (413, "The request body is larger than the limit; nothing changed."),
    (429, "Too many requests for this token; retry after `Retry-After` seconds."),
    (500, "An unexpected error; nothing is said about it beyond that."),
    (
        503,
        "The Kubernetes API server cannot be reached, or the controller is starting; nothing "
        "changed, retry after `Retry-After` seconds.",
    ),
)


async def _call_callback(b: Backend, p: Mapping[str, str], r: IncomingRequest) -> Reply:
    return await b.callback(p["token"], r)


async def _call_trigger(b: Backend, p: Mapping[str, str], r: IncomingRequest) -> Reply:
    return await b.trigger(p["token"], r)


async def _call_hook(b: Backend, p: Mapping[str, str], r: IncomingRequest) -> Reply:
    return await b.hook(p["token"], r)


async def _call_events(b: Backend, p: Mapping[str, str], r: IncomingRequest) -> Reply:
    return await b.events(p.get("namespace"), r)


async def _call_entity_sync(b: Backend, p: Mapping[str, str], r: IncomingRequest) -> Reply:
    return await b.entity_sync(p["namespace"], p["kind"], p["name"], r)


async def _call_app_http(b: Backend, p: Mapping[str, str], r: IncomingRequest) -> Reply:
    return await b.app_http(p["namespace"], p["app"], p["path"], r)


def _app_http_route(method: str) -> Route:
    return Route(
        method=method,
        path="/apps/{namespace}/{app}/http/{path}",
        operation_id=f"appHttp{method.capitalize()}",
        summary="The App's HTTP endpoint",
        description=(
            "Passes the request (method, path after `/http`, query, headers except cookies, "
            "body) to the App handler's `http` operation and answers with its `response`. "
            "The handler authenticates its callers (e.g. an OAuth `state`). Its reply's "
            "prompts, timers, state and sync request are written before the answer."
        ),
        tag="apps",
        parameters=(
            ("namespace", "The App's namespace."),
            ("app", "The App's name."),
            ("path", "Any path; the handler sees it as `/<path>`."),
        ),
        request_body="Any payload (JSON is parsed, forms become objects, anything else text).",
        request_media_types=("application/json", "*/*"),
        responses=(
            (200, "The handler's response (any status it chose, 2xx to 5xx)."),
            (400, "A JSON body that is not valid JSON; the handler was not called."),
            (404, "No such App."),
            (502, "The App's handler failed or gave an invalid reply."),
            *_LIMITS,
        ),
        rate_key=("namespace", "app"),
        call=_call_app_http,
        response_media_type="*/*",
    )


def _trigger_route(method: str, operation_id: str) -> Route:
    return Route(
        method=method,
        path="/triggers/{token}",
        operation_id=operation_id,
        summary="Trigger a workflow (webhook) or answer a trigger block",
        description=(
            "A webhook trigger starts a run of the workflow with the request as `event`; a "
            "trigger block's callback is passed to the block's `trigger` operation, which "
            "starts a run or ignores it. The token is a bearer secret by itself. Answers 202 "
            "by default."
        ),
        tag="workflows",
        parameters=(("token", "The secret token of the workflow's `triggerCallbackUrl`."),),
        request_body="The webhook payload (any media type; JSON is parsed for `event`).",
        request_media_types=("application/json", "*/*"),
        responses=(
            (
                200,
                "The trigger block ignored the request (`{ignored: true}`), a webhook's "
                "delivery id was seen before and its run started then (`{duplicate: true, "
                "delivery}`), or a webhook's static response said 200.",
            ),
            (
                202,
                "Accepted: the run exists (`{run}`), or the workflow is not active and the "
                "request was counted as ignored (`{ignored: true, reason}`).",
            ),
            (400, "A JSON body that is not valid JSON; nothing changed."),
            (401, "A signed webhook's signature header is missing or does not match."),
            (404, "No workflow has this trigger token (or its version was deactivated)."),
            (502, "The trigger block's handler failed; nothing changed, the sender may retry."),
            *_LIMITS,
        ),
        rate_key=("token",),
        call=_call_trigger,
    )


_EVENTS_RESPONSES: tuple[tuple[int, str], ...] = (
    (202, "Accepted: `{runs: n}` runs exist now (0 for a duplicate, or no active workflow)."),
    (400, "Not a valid CloudEvent (the message names what is wrong); nothing changed."),
    (401, "Missing bearer token, or not the `token` of Secret `blockflow-events` there."),
    (415, "Not a CloudEvents content type."),
    *_LIMITS,
)

ROUTES: tuple[Route, ...] = (
    Route(
        method="POST",
        path="/callbacks/{token}",
        operation_id="finishCallback",
        summary="Finish a deferred step",
        description=(
            "A handler that deferred a step posts its result here; the step's `finish` "
            "operation turns it into an outcome. The token is a bearer secret by itself."
        ),
        tag="workflows",
        parameters=(("token", "The secret token of the step's callback URL."),),
        request_body="The callback payload, passed to the step's `finish` operation.",
        request_media_types=("application/json", "*/*"),
        responses=(
            (200, "The handler's `finish` ended the step (`{run, step, state}`)."),
            (202, "The handler's `finish` answered no-op: the step keeps waiting."),
            (404, "No step has this token."),
            (409, "The run changed while the callback was handled; retry."),
            (410, "The step (or its run) is already finished; nothing changed."),
            (502, "The step's handler failed; nothing changed, the sender may retry."),
            *_LIMITS,
        ),
        rate_key=("token",),
        call=_call_callback,
    ),
    _trigger_route("POST", "triggerPost"),
    _trigger_route("PUT", "triggerPut"),
    Route(
        method="POST",
        path="/hooks/{token}",
        operation_id="resumeHook",
        summary="Resume hook steps",
        description=(
            "Resumes the `hook` steps waiting on this token with the payload (validated "
            "against the step's JSON Schema, if any). Hook tokens may be computed from CEL and "
            "so guessable: the request also needs `Authorization: Bearer <hookKey>`."
        ),
        tag="workflows",
        parameters=(("token", "The hook token of the waiting step(s)."),),
        request_body="The hook payload (JSON), checked against the step's schema if it has one.",
        responses=(
            (200, "Delivered: `{runs: {<run>: <step state>}}`."),
            (400, "The payload is malformed or fails the step's schema; nothing changed."),
            (401, "Missing or wrong `Authorization: Bearer <hookKey>`."),
            (404, "No step has this token."),
            (410, "The step has finished (the hook was taken, or its run ended); nothing changed."),
            *_LIMITS,
        ),
        bearer=True,
        rate_key=("token",),
        call=_call_hook,
    ),
    Route(
        method="POST",
        path="/events",
        operation_id="ingestEvent",
        summary="Ingest a CloudEvent",
        description=(
            "A CloudEvent (structured or binary content mode) that may start runs of the "
            "workflows triggered by its type; deduplicated by (source, id). Bearer token from "
            "a Secret."
        ),
        tag="events",
        request_body="A CloudEvent 1.0, structured (`application/cloudevents+json`) or binary.",
        request_media_types=("application/cloudevents+json", "application/json", "*/*"),
        responses=_EVENTS_RESPONSES,
        bearer=True,
        rate_key=(),
        call=_call_events,
    ),
    Route(
        method="POST",
        path="/events/{namespace}",
        operation_id="ingestNamespacedEvent",
        summary="Ingest a CloudEvent for one namespace",
        description=(
            "As `POST /events`, for the workflows of one namespace (with that namespace's "
            "bearer token)."
        ),
        tag="events",
        parameters=(("namespace", "The namespace whose workflows may be triggered."),),
        request_body="A CloudEvent 1.0, structured (`application/cloudevents+json`) or binary.",
        request_media_types=("application/cloudevents+json", "application/json", "*/*"),
        responses=_EVENTS_RESPONSES,
        bearer=True,
        rate_key=("namespace",),
        call=_call_events,
    ),
    Route(
        method="POST",
        path="/entities/{namespace}/{kind}/{name}/sync",
        operation_id="requestEntitySync",
        summary="Ask for a sync of an App or a Block",
        description="An HTTP handler asks the controller to sync one of its entities now.",
        tag="lifecycle",
        parameters=(
            ("namespace", "The entity's namespace."),
            ("kind", "The entity's kind (App or Block)."),
            ("name", "The entity's name."),
        ),
        request_body="Optional details of why a sync is wanted (JSON).",
        responses=(
            (202, "Accepted: a sync is scheduled."),
            (401, "`X-Blockflow-Signature` is not the HMAC of the body with the App's key."),
            (403, "The entity's App has no HTTP handler secret to verify the signature with."),
            (404, "No such entity (kind apps or blocks)."),
            *_LIMITS,
        ),
        bearer=True,
        rate_key=("namespace", "kind", "name"),
        call=_call_entity_sync,
    ),
    Route(
        method="GET",
        path="/healthz",
        operation_id="healthz",
        summary="Liveness",
        description="200 while the server's event loop serves requests.",
        tag="operations",
        responses=((200, "The server is alive."),),
        builtin=_healthz,
    ),
    Route(
        method="GET",
        path="/readyz",
        operation_id="readyz",
        summary="Readiness",
        description="200 once the controller's watches have listed everything once.",
        tag="operations",
        responses=(
            (200, "Ready."),
            (503, "Not ready yet; `reason` says why."),
        ),
        builtin=_readyz,
    ),
    Route(
        method="GET",
        path="/metrics",
        operation_id="metrics",
        summary="Prometheus metrics",
        description="The controller's metrics in the Prometheus text exposition format.",
        tag="operations",
        responses=((200, "The metrics."),),
        builtin=_metrics,
        response_media_type="text/plain",
    ),
    Route(
        method="GET",
        path="/openapi.json",
        operation_id="openapi",
        summary="This API's OpenAPI document",
        description="An OpenAPI 3.1 description of every route, generated from the route table.",
        tag="operations",
        responses=((200, "The OpenAPI document."),),
        builtin=_openapi,
    ),
    *(_app_http_route(method) for method in ("GET", "POST", "PUT", "PATCH", "DELETE")),
)
