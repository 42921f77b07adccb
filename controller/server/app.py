"""The controller's HTTP server plumbing: one aiohttp application.

What the server does, for every route, before and after the :class:`Backend`:

- a hard request-body size limit (``413`` without reading past it, whether the body has a
  ``Content-Length`` or is chunked);
- a token-bucket rate limit per token (per namespace for ``/events``) → ``429`` with
  ``Retry-After``;
- :class:`IncomingRequest` in, :class:`Reply` out as JSON; a backend exception is a ``500``
  and a log line that names the route *template* — tokens are secrets, so neither the URL
  path of a token route nor a request body is ever logged (the access log is off too);
- ``blockflow_http_requests_total{route, code}`` for every request, by route template;
- ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json`` (generated from :data:`ROUTES`,
  the one route table that also registers the handlers).

What a callback, a trigger, a hook or an event *does* is the backend's business.
"""

from __future__ import annotations

import json
import math
import ssl
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler

from controller import __version__, metrics
from controller.logs import get_logger
from controller.server.backend import Backend, IncomingRequest, Reply, problem
from controller.server.limits import RateLimiter

MiB = 1024 * 1024
#: Bytes read from a request body at a time.
_CHUNK = 64 * 1024
#: The ``route`` label of requests that matched no route.
UNMATCHED = "unmatched"
_LOGGER = "blockflow.server"

BackendCall = Callable[[Backend, Mapping[str, str], IncomingRequest], Awaitable[Reply]]
BuiltinHandler = Callable[["_Server", web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One route: how to serve it and how to describe it in the OpenAPI document.

    A route either calls the backend (``call``: the body is read under the size limit and
    the request is rate-limited by the path parameters named in ``rate_key``) or is served
    by the server itself (``builtin``).
    """

    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    tag: str
    #: (name, description) of each path parameter, in path order.
    parameters: tuple[tuple[str, str], ...] = ()
    #: Description of the request body, or None when the route takes none.
    request_body: str | None = None
    request_media_types: tuple[str, ...] = ("application/json",)
    #: (status, description) of the answers this route gives (limits and errors included).
    responses: tuple[tuple[int, str], ...] = ()
    #: Whether the route expects ``Authorization: Bearer …`` (checked by the backend).
    bearer: bool = False
    #: Path parameters that make the rate-limit key (with the route); None: not limited.
    rate_key: tuple[str, ...] | None = None
    call: BackendCall | None = None
    builtin: BuiltinHandler | None = None
    #: Media type of the successful answer.
    response_media_type: str = "application/json"

    @property
    def router_path(self) -> str:
        """The path aiohttp matches: a trailing ``{path}`` takes the rest, slashes included."""
        if self.path.endswith("/{path}"):
            return self.path[: -len("{path}")] + "{path:.*}"
        return self.path


# -- responses -------------------------------------------------------------------------------


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    out = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    return web.Response(status=status, body=payload, headers=out)


def _reply_response(reply: Reply) -> web.Response:
    """A backend's :class:`Reply` as an HTTP response (raises on a body JSON can't encode)."""
    headers = dict(reply.headers)
    if reply.body is None:
        return web.Response(status=reply.status, headers=headers)
    if isinstance(reply.body, bytes):
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "text/plain; charset=utf-8"
        return web.Response(status=reply.status, body=reply.body, headers=headers)
    payload = json.dumps(reply.body, separators=(",", ":"), ensure_ascii=False).encode()
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json; charset=utf-8"
    return web.Response(status=reply.status, body=payload, headers=headers)


def _problem(status: int, message: str, **extra: Any) -> web.Response:
    reply = problem(status, message, **extra)
    return _json(reply.status, reply.body, reply.headers)


def _template(request: web.Request) -> str:
    """The route template a request matched (``/callbacks/{token}``), never its path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


# -- the request pipeline --------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes; never reads more than ``limit + 1``."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(min(_CHUNK, limit - size + 1))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)


def _first_values(pairs: Any) -> dict[str, str]:
    """A multi-dict as a plain dict of first values (keys compared case-sensitively)."""
    out: dict[str, str] = {}
    for key, value in pairs.items():
        out.setdefault(str(key), value)
    return out


def _headers(request: web.Request) -> dict[str, str]:
    """Request headers as a plain dict: the first value of each, names as sent."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in request.headers.items():
        if key.lower() not in seen:
            seen.add(key.lower())
            out[str(key)] = value
    return out


def _stack(exc: BaseException) -> list[str]:
    """Where an exception was raised — file, line, function — without its message or any
    values (which could hold a token or a payload)."""
    return [
        f"{frame.filename}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
    ]


def _log_failure(route: str, method: str, exc: BaseException) -> None:
    # The route template, not the path: a token in a URL is a secret. No message, no body.
    get_logger(_LOGGER).error(
        "request failed",
        route=route,
        method=method,
        error=type(exc).__qualname__,
        frames=_stack(exc),
    )


class _Server:
    def __init__(
        self,
        backend: Backend,
        routes: tuple[Route, ...],
        *,
        max_body_bytes: int,
        rate_per_second: float,
        burst: int,
    ) -> None:
        self.backend = backend
        self.routes = routes
        self.max_body_bytes = max_body_bytes
        self.limiter = RateLimiter(rate_per_second, burst)
        self._openapi: dict[str, Any] | None = None

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = openapi_document(
                self.routes,
                max_body_bytes=self.max_body_bytes,
                rate_per_second=self.limiter.rate_per_second,
                burst=self.limiter.burst,
            )
        return self._openapi

    def handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        builtin = route.builtin
        if builtin is not None:

            async def serve_builtin(request: web.Request) -> web.StreamResponse:
                return await builtin(self, request)

            return serve_builtin

        async def serve_backend(request: web.Request) -> web.StreamResponse:
            return await self._serve_backend(route, request)

        return serve_backend

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse a declared oversized body before the client
        sends it (this answer bypasses the middleware, so it is counted here)."""
        declared = request.content_length
        if declared is not None and declared > self.max_body_bytes:
            response = self._too_large()
            metrics.HTTP_REQUESTS.labels(route=_template(request), code="413").inc()
            return response
        await _default_expect_handler(request)
        return None

    def _too_large(self) -> web.Response:
        response = _problem(
            413, f"request body is larger than the limit of {self.max_body_bytes} bytes"
        )
        response.force_close()  # the rest of the body is not read; don't reuse the stream
        return response

    async def _serve_backend(self, route: Route, request: web.Request) -> web.StreamResponse:
        assert route.call is not None
        params = dict(request.match_info)
        if route.rate_key is not None:
            key = "\n".join([route.path, *(params.get(name, "") for name in route.rate_key)])
            wait = self.limiter.allow(key)
            if wait is not None:
                retry_after = max(1, math.ceil(wait))
                response = _problem(
                    429,
                    f"rate limit exceeded: at most {self.limiter.rate_per_second:g} requests "
                    f"per second (bursts of {self.limiter.burst}) per {self._limit_unit(route)}",
                    retryAfterSeconds=retry_after,
                )
                response.headers["Retry-After"] = str(retry_after)
                response.force_close()
                return response
        try:
            body = await _read_body(request, self.max_body_bytes)
        except _BodyTooLarge:
            return self._too_large()
        incoming = IncomingRequest(
            method=request.method,
            path=request.path,
            headers=_headers(request),
            query=_first_values(request.query),
            body=body,
            content_type=request.content_type if "Content-Type" in request.headers else "",
            remote=request.remote,
        )
        try:
            reply = await route.call(self.backend, params, incoming)
            return _reply_response(reply)
        except Exception as exc:
            _log_failure(route.path, request.method, exc)
            return _problem(500, "internal error")

    @staticmethod
    def _limit_unit(route: Route) -> str:
        names = route.rate_key or ()
        return " and ".join(names) if names else "route"


@web.middleware
async def _observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count every request by route template and code; JSON for router errors; a last
    line of defence that turns anything unexpected into a 500 that leaks nothing."""
    template = _template(request)
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            metrics.HTTP_REQUESTS.labels(route=template, code=str(exc.status)).inc()
            raise
        message = {
            404: "not found",
            405: f"method {request.method} is not allowed here",
        }.get(exc.status, exc.reason.lower())
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        response = _json(exc.status, {"error": message}, allow)
    except Exception as exc:
        _log_failure(template, request.method, exc)
        response = _problem(500, "internal error")
    metrics.HTTP_REQUESTS.labels(route=template, code=str(response.status)).inc()
    return response


# -- built-in routes -------------------------------------------------------------------------


async def _healthz(server: _Server, request: web.Request) -> web.StreamResponse:
    return _json(200, {"status": "ok"})


async def _readyz(server: _Server, request: web.Request) -> web.StreamResponse:
    try:
        ready, why = server.backend.readiness()
    except Exception as exc:
        _log_failure("/readyz", request.method, exc)
        ready, why = False, "the readiness check failed"
    if ready:
        return _json(200, {"status": "ready"})
    return _json(503, {"status": "not ready", "reason": why or "not ready"})


async def _metrics(server: _Server, request: web.Request) -> web.StreamResponse:
    payload, content_type = metrics.render()
    return web.Response(status=200, body=payload, headers={"Content-Type": content_type})


async def _openapi(server: _Server, request: web.Request) -> web.StreamResponse:
    return _json(200, server.openapi())


# -- the route table -------------------------------------------------------------------------

_LIMITS: tuple[tuple[int, str], ...] = (
    (413, "The request body is larger than the limit; nothing changed."),
    (429, "Too many requests for this token; retry after `Retry-After` seconds."),
    (500, "An unexpected error; nothing is said about it beyond that."),
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
                "The trigger block ignored the request (`{ignored: true}`), or a webhook's "
                "static response said 200.",
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
            (404, "No step waits on this token."),
            (410, "The hook is closed (its run is finished); nothing changed."),
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


# -- OpenAPI ---------------------------------------------------------------------------------

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "What is wrong."}},
    "required": ["error"],
    "additionalProperties": True,
}


def _response_doc(route: Route, status: int, description: str, limits: str) -> dict[str, Any]:
    if status == 413:
        description = f"{description} {limits}"
    doc: dict[str, Any] = {"description": description}
    if status >= 400:
        doc["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    elif route.response_media_type == "application/json":
        doc["content"] = {"application/json": {"schema": {}}}
    else:
        doc["content"] = {route.response_media_type: {"schema": {"type": "string"}}}
    if status == 429:
        doc["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return doc


def openapi_document(
    routes: tuple[Route, ...] = ROUTES,
    *,
    max_body_bytes: int = MiB,
    rate_per_second: float = 20,
    burst: int = 40,
) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing ``routes`` (and the limits they are served with)."""
    limit = f"The limit is {max_body_bytes} bytes."
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "description": route.description,
            "tags": [route.tag],
        }
        if route.parameters:
            operation["parameters"] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": description,
                    "schema": {"type": "string"},
                }
                for name, description in route.parameters
            ]
        if route.request_body is not None:
            operation["requestBody"] = {
                "description": f"{route.request_body} At most {max_body_bytes} bytes.",
                "required": False,
                "content": {media: {"schema": {}} for media in route.request_media_types},
            }
        operation["responses"] = {
            str(status): _response_doc(route, status, description, limit)
            for status, description in route.responses
        }
        if route.bearer:
            operation["security"] = [{"bearer": []}]
        if route.rate_key is not None:
            operation["x-rate-limit"] = {
                "requestsPerSecond": rate_per_second,
                "burst": burst,
                "per": ["route", *route.rate_key],
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Blockflow controller",
            "version": __version__,
            "description": (
                "The HTTP surface of the Blockflow controller: callbacks, triggers, hooks, "
                "CloudEvents ingest, entity syncs, and operations endpoints. Request bodies "
                f"are limited to {max_body_bytes} bytes; token routes are rate-limited to "
                f"{rate_per_second:g} requests per second (bursts of {burst}) per token."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA},
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before retrying (at least 1).",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


# -- the application -------------------------------------------------------------------------


def build_app(
    backend: Backend,
    *,
    max_body_bytes: int = MiB,
    rate_per_second: float = 20,
    burst: int = 40,
    extra: Callable[[web.Application], None] | None = None,
) -> web.Application:
    """The controller's aiohttp application: every route of :data:`ROUTES` over ``backend``,
    plus what ``extra`` adds (the web page: :func:`controller.ui.ui_routes`)."""
    if max_body_bytes < 0:
        raise ValueError(f"max_body_bytes must not be negative, not {max_body_bytes!r}")
    server = _Server(
        backend,
        ROUTES,
        max_body_bytes=max_body_bytes,
        rate_per_second=rate_per_second,
        burst=burst,
    )
    app = web.Application(middlewares=[_observe], client_max_size=max(max_body_bytes, 1))
    for route in ROUTES:
        expect = server.expect if route.call is not None else None
        app.router.add_route(
            route.method, route.router_path, server.handler(route), expect_handler=expect
        )
    if extra is not None:
        extra(app)
    return app


async def serve(
    app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    """Start serving ``app`` on ``host:port`` (0: any free port), over TLS with ``ssl_context``;
    the caller cleans up the returned runner (``await runner.cleanup()``). No access log: URLs
    carry secret tokens."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a runner's first site listens on (what port 0 turned into)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the runner is not listening on a TCP port")
