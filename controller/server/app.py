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
- ``/healthz``, ``/readyz``, ``/metrics`` and ``/openapi.json`` (generated from the route
  table, :mod:`controller.server.routes`, that also registers the handlers).

What a callback, a trigger, a hook or an event *does* is the backend's business.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from aiohttp import web

from controller.server.backend import Backend
from controller.server.pipeline import Server, _observe
from controller.server.route import MiB
from controller.server.routes import ROUTES

__all__ = ["ROUTES", "bound_port", "build_app", "serve"]


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
    server = Server(
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
