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

from controller.api.common import Prompt, PromptRedirect
from controller.handlers.protocol import (
    ActivateRequest,
    AppHttpRequest,
    BlockTypeSpec,
    DeactivateRequest,
    DrainReply,
    DrainRequest,
    ErrorReply,
    ExecuteRequest,
    FinishRequest,
    HandlerInfo,
    HandlerRequest,
    HttpReply,
    HttpResponse,
    NoOpReply,
    SideEffects,
    SignalSpec,
    SyncReply,
    SyncRequest,
    TimerReply,
    TimerRequest,
    TimerSet,
    TriggerRequest,
)

__all__ = [
    "AppHttpRequest",
    "BlockType",
    "DrainReply",
    "DrainRequest",
    "EntityKey",
    "Handler",
    "HandlerContext",
    "HttpReply",
    "HttpResponse",
    "SignalSpec",
    "SyncReply",
    "SyncRequest",
    "TimerReply",
    "TimerRequest",
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
class ReplyEffects:
    """What the helpers of one call asked for; added to the call's reply."""

    prompts: list[Prompt] = field(default_factory=list)
    prompt_deletes: list[str] = field(default_factory=list)
    timers: list[TimerSet] = field(default_factory=list)
    state: dict[str, Any] | None = None
    request_sync: bool = False

    def used(self) -> bool:
        return bool(
            self.prompts
            or self.prompt_deletes
            or self.timers
            or self.state is not None
            or self.request_sync
        )

    def merged_into(self, reply: SideEffects) -> SideEffects:
        """The reply with these effects added (what the reply itself says comes first; its
        own ``state`` wins over KV helper writes)."""
        return reply.model_copy(
            update={
                "prompts": [*(reply.prompts or []), *self.prompts] or None,
                "prompt_deletes": [*(reply.prompt_deletes or []), *self.prompt_deletes] or None,
                "timers": [*(reply.timers or []), *self.timers] or None,
                "state": reply.state if reply.state is not None else self.state,
                "request_sync": reply.request_sync or self.request_sync,
            }
        )


class PromptHelper:
    """``lifecycle.prompt``: prompts a person sees (on the web page, in ``status.prompts``)."""

    def __init__(self, effects: ReplyEffects) -> None:
        self._effects = effects

    def create(self, key: str, description: str, *, url: str, method: str = "GET") -> None:
        """Show a prompt that sends the person to ``url`` (e.g. an OAuth consent page); it
        stays until deleted. Creating one with the key of an open prompt replaces it."""
        redirect = PromptRedirect(url=url, method=method)
        self._effects.prompts.append(Prompt(key=key, description=description, redirect=redirect))

    def delete(self, key: str) -> None:
        self._effects.prompt_deletes.append(key)


class LifecycleHelper:
    """``lifecycle``: prompts, and asking for a sync."""

    def __init__(self, effects: ReplyEffects) -> None:
        self._effects = effects
        self.prompt = PromptHelper(effects)

    def sync(self) -> None:
        """Sync this entity again once this call's reply is written (e.g. after an OAuth
        callback stored the token)."""
        self._effects.request_sync = True


class TimerHelper:
    """``timers``: the handler's `timer` operation is called when one falls due."""

    def __init__(self, effects: ReplyEffects) -> None:
        self._effects = effects

    def set(
        self,
        key: str,
        delay_seconds: float,
        payload: dict[str, Any] | None = None,
        *,
        prompt_key: str | None = None,
    ) -> None:
        """Set (or replace, by key) a timer; ``prompt_key`` ties it to a prompt, whose
        current value the `timer` call then receives."""
        self._effects.timers.append(
            TimerSet(key=key, delay_seconds=delay_seconds, payload=payload, prompt_key=prompt_key)
        )


class KvHelper:
    """``kv``: the handler's key-value state, kept in an owned Secret, handed back on every
    call (``request.state``)."""

    def __init__(self, initial: dict[str, Any], effects: ReplyEffects) -> None:
        self._data = dict(initial)
        self._effects = effects

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._effects.state = dict(self._data)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)
        self._effects.state = dict(self._data)


@dataclass
class HandlerContext:
    """What the controller offers a handler during one call.

    ``lifecycle.sync()``, ``lifecycle.prompt.create/delete``, ``timers.set`` and
    ``kv.get/set`` end up in the call's reply (for `sync`, `drain`, `http` and `timer`)."""

    entity: EntityKey
    request_sync_of: SyncRequester = field(default=_no_sync)
    state: dict[str, Any] = field(default_factory=dict)
    effects: ReplyEffects = field(default_factory=ReplyEffects)

    def __post_init__(self) -> None:
        self.lifecycle = LifecycleHelper(self.effects)
        self.timers = TimerHelper(self.effects)
        self.kv = KvHelper(self.state, self.effects)

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

    async def timer(self, request: TimerRequest, ctx: HandlerContext) -> TimerReply:
        """A timer this block's sync set fell due. Default: nothing."""
        return TimerReply()


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

    async def http_app(self, request: AppHttpRequest, ctx: HandlerContext) -> HttpReply:
        """A request to the App's HTTP endpoint (``input.app.http.url``). Default: 404."""
        return HttpReply(response=HttpResponse(status=404, body="this App has no HTTP endpoint"))

    async def timer_app(self, request: TimerRequest, ctx: HandlerContext) -> TimerReply:
        """A timer the App's sync set fell due. Default: nothing."""
        return TimerReply()

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
            if isinstance(request, AppHttpRequest):
                return await self.http_app(request, ctx)
            if isinstance(request, TimerRequest):
                return await self.timer_app(request, ctx)
        block_type = self.block_type(request)
        operation: Callable[[Any, HandlerContext], Awaitable[Any]] = getattr(
            block_type, request.operation
        )
        return await operation(request, ctx)
