"""The public SDK for writing in-process (Python) handlers.

A handler is a :class:`Handler` with a version and a set of :class:`BlockType`
objects; it is registered under the ``blockflow.handlers`` entry point group and
named by an App's ``spec.handler.python``::

    # pyproject.toml of your package
    [project.entry-points."blockflow.handlers"]
    storage = "my_package.handler:handler"

    # my_package/handler.py
    from controller.handlers.sdk import BlockType, Handler, HandlerContext, SignalSpec
    from controller.handlers.protocol import SyncReply, SyncRequest

    class Bucket(BlockType):
        signals = [SignalSpec(name="bucketId"), SignalSpec(name="accessKey", sensitive=True)]
        fixed = ["name"]

        async def sync(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
            ...
            return SyncReply(new_status="ready", signal_updates={"bucketId": "b-1"})

    handler = Handler(version="1.0.0", block_types={"bucket": Bucket()})

The same protocol models serve the HTTP transport, so a handler can move between
transports without changing what it receives or returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from controller.handlers.protocol import (
    ActivateRequest,
    BlockTypeSpec,
    DeactivateRequest,
    DrainReply,
    DrainRequest,
    ErrorReply,
    ExecuteRequest,
    FinishRequest,
    HandlerInfo,
    HandlerRequest,
    NoOpReply,
    SignalSpec,
    SyncReply,
    SyncRequest,
    TriggerRequest,
)

__all__ = [
    "BlockType",
    "DrainReply",
    "DrainRequest",
    "EntityKey",
    "Handler",
    "HandlerContext",
    "SignalSpec",
    "SyncReply",
    "SyncRequest",
]


@dataclass(frozen=True)
class EntityKey:
    """Identifies an App, Block or Workflow."""

    kind: str
    namespace: str
    name: str


#: Asks the controller to sync an entity soon (``lifecycle.sync()``).
SyncRequester = Callable[[EntityKey], Awaitable[None]]


async def _no_sync(_: EntityKey) -> None:
    return None


@dataclass
class HandlerContext:
    """What the controller offers a handler during one call."""

    entity: EntityKey
    request_sync_of: SyncRequester = field(default=_no_sync)

    async def request_sync(self, entity: EntityKey | None = None) -> None:
        """``lifecycle.sync()``: run `sync` again for this entity (or another) soon.

        Safe to call during a call (the sync runs after the current one) and later,
        e.g. from a background task that learned the external thing changed.
        """
        await self.request_sync_of(entity or self.entity)


class BlockType:
    """One block type a handler offers.  Override the operations it supports."""

    kind: ClassVar[Literal["lifecycle", "step", "trigger"]] = "lifecycle"
    description: ClassVar[str | None] = None
    config_schema: ClassVar[dict[str, Any] | None] = None
    signals: ClassVar[list[SignalSpec]] = []
    fixed: ClassVar[list[str]] = []

    def spec(self) -> BlockTypeSpec:
        return BlockTypeSpec(
            kind=self.kind,
            description=self.description,
            config_schema=self.config_schema,
            signals=list(self.signals),
            fixed=list(self.fixed),
        )

    async def sync(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        return SyncReply(new_status="ready")

    async def drain(self, request: DrainRequest, ctx: HandlerContext) -> DrainReply:
        return DrainReply(new_status="drained")

    async def execute(self, request: ExecuteRequest, ctx: HandlerContext) -> Any:
        return ErrorReply(message=f"block type {type(self).__name__} cannot execute steps")

    async def finish(self, request: FinishRequest, ctx: HandlerContext) -> Any:
        return NoOpReply()

    async def activate(self, request: ActivateRequest, ctx: HandlerContext) -> Any:
        return ErrorReply(message=f"block type {type(self).__name__} is not a trigger")

    async def deactivate(self, request: DeactivateRequest, ctx: HandlerContext) -> Any:
        return ErrorReply(message=f"block type {type(self).__name__} is not a trigger")

    async def trigger(self, request: TriggerRequest, ctx: HandlerContext) -> Any:
        return NoOpReply()


class UnknownBlockTypeError(LookupError):
    """The request names a block type the handler does not offer."""


class Handler:
    """An in-process handler: App-level sync/drain plus its block types."""

    app_config_schema: ClassVar[dict[str, Any] | None] = None
    app_signals: ClassVar[list[SignalSpec]] = []

    def __init__(self, *, version: str, block_types: dict[str, BlockType] | None = None) -> None:
        self.version = version
        self.block_types: dict[str, BlockType] = dict(block_types or {})

    def info(self) -> HandlerInfo:
        return HandlerInfo(
            version=self.version,
            app_config_schema=self.app_config_schema,
            app_signals=list(self.app_signals),
            block_types={name: bt.spec() for name, bt in self.block_types.items()},
        )

    async def sync_app(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        """The App's own sync (e.g. check credentials). Default: ready."""
        return SyncReply(new_status="ready")

    async def drain_app(self, request: DrainRequest, ctx: HandlerContext) -> DrainReply:
        return DrainReply(new_status="drained")

    def block_type(self, request: HandlerRequest) -> BlockType:
        """The block type a Block/step/trigger request is about."""
        name = request.entity.type
        if name is None or name not in self.block_types:
            offered = ", ".join(sorted(self.block_types)) or "none"
            raise UnknownBlockTypeError(
                f"block type {name!r} is not offered by this handler (offered: {offered})"
            )
        return self.block_types[name]

    async def handle(self, request: HandlerRequest, ctx: HandlerContext) -> Any:
        """Dispatch one request to the App hooks or the block type's operation."""
        if request.entity.kind == "App":
            if isinstance(request, SyncRequest):
                return await self.sync_app(request, ctx)
            if isinstance(request, DrainRequest):
                return await self.drain_app(request, ctx)
        block_type = self.block_type(request)
        operation: Callable[[Any, HandlerContext], Awaitable[Any]] = getattr(
            block_type, request.operation
        )
        return await operation(request, ctx)
