"""The contract between the HTTP server (plumbing: limits, metrics, routing) and the engines
behind it (what a callback, a trigger, a hook or an event does).

The server never interprets a token or a payload; the backend never sees aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class IncomingRequest:
    """An HTTP request as the backend sees it (the body already size-checked)."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    content_type: str = ""
    remote: str | None = None

    def bearer(self) -> str | None:
        """The token of an `Authorization: Bearer <token>` header, if any."""
        value = next((v for k, v in self.headers.items() if k.lower() == "authorization"), "")
        scheme, _, token = value.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None


@dataclass
class Reply:
    """What to answer: a status, a body (JSON, or bytes sent as they are), headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def problem(status: int, message: str, **extra: Any) -> Reply:
    """A 4xx/5xx answer that names the problem: ``{"error": message, ...}``."""
    return Reply(status, {"error": message, **extra})


class Backend(Protocol):
    async def callback(self, token: str, request: IncomingRequest) -> Reply:
        """``POST /callbacks/<token>``: finish a deferred step (404 unknown, 410 finished)."""
        ...

    async def trigger(self, token: str, request: IncomingRequest) -> Reply:
        """``POST|PUT /triggers/<token>``: a webhook or a trigger block's callback."""
        ...

    async def hook(self, token: str, request: IncomingRequest) -> Reply:
        """``POST /hooks/<token>`` (bearer hookKey of the workflow): resume hook steps."""
        ...

    async def events(self, namespace: str | None, request: IncomingRequest) -> Reply:
        """``POST /events[/<namespace>]``: a CloudEvent (bearer token from a Secret)."""
        ...

    async def entity_sync(
        self, namespace: str, kind: str, name: str, request: IncomingRequest
    ) -> Reply:
        """``POST /entities/<ns>/<kind>/<name>/sync``: an HTTP handler asks for a sync."""
        ...

    async def app_http(
        self, namespace: str, app: str, path: str, request: IncomingRequest
    ) -> Reply:
        """``ANY /apps/<ns>/<app>/http/<path>``: the App handler's `http` operation."""
        ...

    async def readiness(self) -> tuple[bool, str]:
        """(ready, why not): ready once the watches have listed everything once, and while
        the API server can be reached."""
        ...
