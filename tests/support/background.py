"""Something with a ``run()`` coroutine (a work queue, a keyed controller) served in a task
for the length of a ``with`` block, then cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Protocol


class Runnable(Protocol):
    def run(self) -> Coroutine[Any, Any, None]: ...


@contextlib.asynccontextmanager
async def running(served: Runnable) -> AsyncIterator[None]:
    task = asyncio.create_task(served.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
