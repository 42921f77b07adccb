"""How the controller talks to handlers: one interface, two transports (Python, HTTP).

A transport turns a request model into a *validated* reply model, or raises
:class:`HandlerError` with a message fit for ``status.lifecycle.lastError`` and a
Warning event (never containing secrets: no config values, no signatures).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

from controller.handlers.protocol import OPERATIONS, HandlerInfo, HandlerRequest

R = TypeVar("R")


class HandlerError(Exception):
    """A handler call produced no valid reply.

    ``reason`` is a CamelCase word for conditions and events (HandlerTimeout,
    HandlerHTTPError, InvalidReply, HandlerUnavailable, RateLimited,
    HandlerException, UnknownHandler); ``retry_after`` is the delay the handler
    asked for (HTTP 429 Retry-After), if any.
    """

    def __init__(self, message: str, *, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.retry_after = retry_after


class Transport(Protocol):
    """What the lifecycle and workflow runtimes need from a handler."""

    async def info(self) -> HandlerInfo:
        """The handler's version and declarations (block types, signals, fixed fields)."""
        ...

    async def call(self, request: HandlerRequest) -> Any:
        """Send one request; return the validated reply for its operation."""
        ...

    async def close(self) -> None: ...


def reply_adapter(operation: str) -> TypeAdapter[Any]:
    """The validator of an operation's reply (cached per operation)."""
    adapter = _ADAPTERS.get(operation)
    if adapter is None:
        adapter = TypeAdapter(OPERATIONS[operation][1])
        _ADAPTERS[operation] = adapter
    return adapter


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def validate_reply(operation: str, payload: Any) -> Any:
    """Validate a reply payload (already-parsed JSON, or a model) for ``operation``."""
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump(by_alias=True, mode="json", exclude_none=True)
    try:
        return reply_adapter(operation).validate_python(payload)
    except ValidationError as exc:
        raise HandlerError(
            f"invalid reply to {operation}: {_summarise(exc)}", reason="InvalidReply"
        ) from None


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        location = ".".join(str(p) for p in error["loc"]) or "(reply)"
        parts.append(f"{location}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
