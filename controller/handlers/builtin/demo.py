"""The `demo` handler: no external dependency, shows the lifecycle and signals flowing.

- `bucket` (config `name`, `provisionSeconds` default 3) pretends to provision for a
  while: `in_progress` + nextScheduleDelay + "Still creating…", then `ready` with the
  signal `bucketId` and the sensitive signal `accessKey`.
- `consumer` is `ready` at once and exposes its whole resolved config as the signal
  `seen`, so a signal arriving through a signalRef is visible in its status.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar

from controller import __version__
from controller.handlers.protocol import SignalSpec, SyncReply, SyncRequest
from controller.handlers.sdk import BlockType, Handler, HandlerContext


class Bucket(BlockType):
    description = "A pretend bucket that takes provisionSeconds to create."
    config_schema: ClassVar[dict[str, Any] | None] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "provisionSeconds": {"type": "number", "minimum": 0, "default": 3},
        },
    }
    signals: ClassVar[list[SignalSpec]] = [
        SignalSpec(name="bucketId", description="The bucket's id."),
        SignalSpec(name="accessKey", sensitive=True, description="Key to the bucket."),
    ]
    fixed: ClassVar[list[str]] = ["name"]

    async def sync(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        config = request.entity.config
        started = float(request.state.get("startedAt") or time.time())
        remaining = float(config.get("provisionSeconds", 3)) - (time.time() - started)
        if remaining > 0:
            return SyncReply(
                new_status="in_progress",
                custom_status_description="Still creating…",
                next_schedule_delay=remaining,
                state={"startedAt": started},
            )
        access_key = request.entity.signals.get("accessKey") or secrets.token_urlsafe(18)
        return SyncReply(
            new_status="ready",
            custom_status_description=f"Bucket {config.get('name')} is ready",
            signal_updates={
                "bucketId": f"bkt-{config.get('name')}-{request.entity.uid[:8]}",
                "accessKey": access_key,
            },
            state={"startedAt": started},
        )


class Consumer(BlockType):
    description = "Ready at once; exposes its resolved config as the signal `seen`."
    signals: ClassVar[list[SignalSpec]] = [
        SignalSpec(name="seen", description="The resolved config this block received.")
    ]

    async def sync(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        return SyncReply(
            new_status="ready",
            custom_status_description="Consuming",
            signal_updates={"seen": request.entity.config},
        )


handler = Handler(version=__version__, block_types={"bucket": Bucket(), "consumer": Consumer()})
