"""One route of the controller's HTTP server: how it is served and how it is described.

The route table (:mod:`controller.server.routes`) is a tuple of these; it registers the
handlers and generates the OpenAPI document, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from controller.server.backend import Backend, IncomingRequest, Reply

if TYPE_CHECKING:
    from controller.server.pipeline import Server

MiB = 1024 * 1024

BackendCall = Callable[[Backend, Mapping[str, str], IncomingRequest], Awaitable[Reply]]
BuiltinHandler = Callable[["Server", web.Request], Awaitable[web.StreamResponse]]


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
