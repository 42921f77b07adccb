"""The `scripted` handler: replies whatever the Block's config says (tests, experiments).

Block type `scripted`, config:

- `sync` / `drain`: the reply to return (protocol JSON, e.g. `{newStatus: ready,
  nextScheduleDelay: 5}`); defaults `ready` / `drained`.
- `signals`: extra signals to publish on each sync; `secret`: a value published as the
  sensitive signal `secret`.
- `requestSyncAfter`: seconds; after the first sync the handler calls
  `lifecycle.sync()` once, showing a handler-requested sync.
- `fixedName`: declared fixed (cannot change after creation).

Every sync is counted in the signal `syncCount`, so tests can see exactly when (and
whether) the handler ran.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from controller import __version__
from controller.handlers.protocol import (
    DrainReply,
    DrainRequest,
    SignalSpec,
    SyncReply,
    SyncRequest,
)
from controller.handlers.sdk import BlockType, Handler, HandlerContext

_background: set[asyncio.Task[None]] = set()


class Scripted(BlockType):
    description = "Replies what its config says; counts its calls in signals."
    signals: ClassVar[list[SignalSpec]] = [
        SignalSpec(name="syncCount"),
        SignalSpec(name="secret", sensitive=True),
    ]
    fixed: ClassVar[list[str]] = ["fixedName"]

    async def sync(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        config = request.entity.config
        count = int(request.entity.signals.get("syncCount") or 0) + 1
        reply: dict[str, Any] = dict(config.get("sync") or {"newStatus": "ready"})
        updates = {**(config.get("signals") or {}), **(reply.pop("signalUpdates", None) or {})}
        updates["syncCount"] = count
        if "secret" in config:
            updates["secret"] = config["secret"]
        reply["signalUpdates"] = updates
        delay = config.get("requestSyncAfter")
        if delay is not None and count == 1:
            task = asyncio.create_task(_sync_later(ctx, float(delay)))
            _background.add(task)
            task.add_done_callback(_background.discard)
        return SyncReply.model_validate(reply)

    async def drain(self, request: DrainRequest, ctx: HandlerContext) -> DrainReply:
        reply = dict(request.entity.config.get("drain") or {"newStatus": "drained"})
        return DrainReply.model_validate(reply)


async def _sync_later(ctx: HandlerContext, delay: float) -> None:
    await asyncio.sleep(delay)
    await ctx.request_sync()


handler = Handler(version=__version__, block_types={"scripted": Scripted()})
