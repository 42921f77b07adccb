"""In-process handlers, found by name under the ``blockflow.handlers`` entry point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from controller.handlers.protocol import HandlerInfo, HandlerRequest, SideEffects
from controller.handlers.sdk import (
    EntityKey,
    Handler,
    HandlerContext,
    SyncRequester,
    UnknownBlockTypeError,
    _no_sync,
)
from controller.handlers.transport import HandlerError, validate_reply

ENTRY_POINT_GROUP = "blockflow.handlers"


@cache
def available_handlers() -> dict[str, str]:
    """name → 'module:attribute' of every registered Python handler."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


@cache
def load_handler(name: str) -> Handler:
    """The registered handler object; a clear error when the name is unknown."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(available_handlers())) or "none"
        raise HandlerError(
            f"no Python handler named {name!r} is installed (installed: {known}); "
            f"fix spec.handler.python or install the package that provides it",
            reason="UnknownHandler",
        )
    handler = matches[0].load()
    if not isinstance(handler, Handler):
        raise HandlerError(
            f"entry point {name!r} ({matches[0].value}) is not a controller.handlers.sdk.Handler",
            reason="UnknownHandler",
        )
    return handler


class PythonTransport:
    """Calls a :class:`Handler` object directly; replies are validated like HTTP ones."""

    def __init__(self, handler: Handler, request_sync_of: SyncRequester = _no_sync) -> None:
        self.handler = handler
        self.request_sync_of = request_sync_of
        #: The handler this transport calls, for its concurrency limit.
        self.target = f"python {type(handler).__module__}.{type(handler).__qualname__}"

    async def info(self) -> HandlerInfo:
        return self.handler.info()

    async def call(self, request: HandlerRequest) -> Any:
        entity = request.entity
        ctx = HandlerContext(
            entity=EntityKey(entity.kind, entity.namespace, entity.name),
            request_sync_of=self.request_sync_of,
            state=dict(request.state),
        )
        try:
            reply = await self.handler.handle(request, ctx)
        except UnknownBlockTypeError as exc:
            raise HandlerError(str(exc), reason="UnknownBlockType") from None
        except HandlerError:
            raise
        except Exception as exc:
            # The exception text is the handler's; it must not echo secrets it was given.
            raise HandlerError(
                f"handler raised {type(exc).__name__}: {exc}", reason="HandlerException"
            ) from exc
        validated = validate_reply(request.operation, reply)
        if not ctx.effects.used():
            return validated
        if not isinstance(validated, SideEffects):
            raise HandlerError(
                f"lifecycle.sync, prompts, timers and kv can only be used in sync, drain, http "
                f"and timer, not in {request.operation}",
                reason="InvalidReply",
            )
        return ctx.effects.merged_into(validated)

    async def close(self) -> None:
        return None
