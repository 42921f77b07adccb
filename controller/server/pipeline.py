"""The request pipeline every route goes through, and the server's own routes.

Before and after the :class:`Backend`: a hard request-body size limit (``413`` without
reading past it, whether the body has a ``Content-Length`` or is chunked); a token-bucket
rate limit per token (per namespace for ``/events``) → ``429`` with ``Retry-After``;
:class:`IncomingRequest` in, :class:`Reply` out as JSON; a backend exception is a ``503``
with ``Retry-After`` when the API server cannot be reached (nothing changed; send it again),
else a ``500``, and a log line that names the route *template* — tokens are secrets, so
neither the URL path of a token route nor a request body is ever logged;
``blockflow_http_requests_total`` by route template and code. Also ``/healthz``,
``/readyz``, ``/metrics``, ``/openapi.json``.
"""

from __future__ import annotations

import json
import math
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler

from controller import metrics
from controller.kube.rest import KubeApiError
from controller.logs import get_logger
from controller.server.backend import Backend, IncomingRequest, Reply, problem
from controller.server.limits import RateLimiter
from controller.server.openapi import openapi_document
from controller.server.route import Route

#: Bytes read from a request body at a time.
_CHUNK = 64 * 1024
#: The ``route`` label of requests that matched no route.
UNMATCHED = "unmatched"
_LOGGER = "blockflow.server"


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


#: Retry-After of a 503 while the API server cannot be reached.
UNAVAILABLE_RETRY_SECONDS = 5


def _unavailable(exc: BaseException) -> bool:
    """A failure to reach the API server (connection refused or reset, timeout, a 5xx from
    it), as opposed to a bug: the request can simply be sent again."""
    if isinstance(exc, KubeApiError):
        return exc.code >= 500 or exc.code == 429
    return isinstance(exc, (aiohttp.ClientError, OSError, TimeoutError))


def _log_failure(route: str, method: str, exc: BaseException) -> None:
    # The route template, not the path: a token in a URL is a secret. No message, no body.
    get_logger(_LOGGER).error(
        "request failed",
        route=route,
        method=method,
        error=type(exc).__qualname__,
        frames=_stack(exc),
    )


class Server:
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
            if _unavailable(exc):
                # Nothing happened and a retry will do: say so, as a 503 does.
                response = _problem(
                    503,
                    "the Kubernetes API server cannot be reached; nothing changed, retry later",
                    retryAfterSeconds=UNAVAILABLE_RETRY_SECONDS,
                )
                response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_SECONDS)
                return response
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


async def _healthz(server: Server, request: web.Request) -> web.StreamResponse:
    return _json(200, {"status": "ok"})


async def _readyz(server: Server, request: web.Request) -> web.StreamResponse:
    try:
        ready, why = await server.backend.readiness()
    except Exception as exc:
        _log_failure("/readyz", request.method, exc)
        ready, why = False, "the readiness check failed"
    if ready:
        return _json(200, {"status": "ready"})
    return _json(503, {"status": "not ready", "reason": why or "not ready"})


async def _metrics(server: Server, request: web.Request) -> web.StreamResponse:
    payload, content_type = metrics.render()
    return web.Response(status=200, body=payload, headers={"Content-Type": content_type})


async def _openapi(server: Server, request: web.Request) -> web.StreamResponse:
    return _json(200, server.openapi())
