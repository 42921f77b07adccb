"""Handler calls as the runtimes make them: limited per handler and in all, timed.

A call to a handler (an App's sync or drain, a step block, a hook's finish) or a built-in
step's outside call (an HTTP request) can take as long as the far side wants. It must not
hold one of the reconcile workers meanwhile, or fifty slow calls would stall every App,
Block and run. So a call first gives its worker slot back
(:func:`controller.runtime.queue.off_worker`), then waits for a slot of its target (one
handler: an HTTP endpoint's host, a Python handler, an http step's host) and a slot of
all calls, makes the call, and takes a worker slot again to go on. A slow handler can then
fill its own slots (``per_target``), and only the work that calls it waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from controller import metrics
from controller.handlers.protocol import HandlerRequest
from controller.handlers.transport import Transport
from controller.runtime.queue import off_worker

T = TypeVar("T")

#: Calls in flight at once, over all handlers (BLOCKFLOW_CALLS).
TOTAL_CALLS = 256
#: Calls in flight at once to one handler (BLOCKFLOW_CALLS_PER_HANDLER).
CALLS_PER_HANDLER = 32


@dataclass(slots=True)
class _Target:
    slots: asyncio.Semaphore
    users: int = field(default=0)


class CallLimits:
    """The slots handler calls take: ``per_target`` for one handler, ``total`` for all."""

    def __init__(self, total: int = TOTAL_CALLS, per_target: int = CALLS_PER_HANDLER) -> None:
        if total < 1 or per_target < 1:
            raise ValueError("call limits must be at least 1")
        self.total = total
        self.per_target = per_target
        self._all = asyncio.Semaphore(total)
        self._targets: dict[str, _Target] = {}

    def waiting(self, target: str) -> int:
        """Calls to ``target`` in flight or waiting for a slot."""
        entry = self._targets.get(target)
        return entry.users if entry else 0

    @asynccontextmanager
    async def slot(self, target: str | None) -> AsyncIterator[None]:
        """Off the worker, within the target's and the overall limit. ``None``: a call that
        only makes other calls (a Workflow's activation asks its Apps) or none outside, so
        it takes no slot of its own (its inner calls do)."""
        async with off_worker():
            if target is None:
                yield
                return
            entry = self._targets.get(target)
            if entry is None:
                entry = self._targets[target] = _Target(asyncio.Semaphore(self.per_target))
            entry.users += 1
            try:
                async with entry.slots, self._all:
                    metrics.HANDLER_CALLS_IN_FLIGHT.inc()
                    try:
                        yield
                    finally:
                        metrics.HANDLER_CALLS_IN_FLIGHT.dec()
            finally:
                entry.users -= 1
                if entry.users == 0:
                    del self._targets[target]

    async def call(self, transport: Transport, request: HandlerRequest) -> Any:
        """One handler call within the limits, its latency recorded by operation and
        transport."""
        async with self.slot(target_of(transport)):
            return await timed_call(transport, request)


async def before(deadline: float | None, call: Awaitable[T]) -> T | None:
    """``call``'s result, or None when ``deadline`` (seconds from now; None: no deadline)
    falls due first: the call is cancelled, and whatever it would have answered is not
    taken. A TimeoutError of the call's own is raised as usual."""
    if deadline is None:
        return await call
    limit = asyncio.timeout(max(0.0, deadline))
    try:
        async with limit:
            return await call
    except TimeoutError:
        if limit.expired():
            return None
        raise


def target_of(transport: Transport) -> str | None:
    """The handler a transport calls, for its limit (None: it calls no handler itself)."""
    target = getattr(transport, "target", None)
    return str(target) if target else None


async def timed_call(transport: Transport, request: HandlerRequest) -> Any:
    """A handler call, its latency recorded by operation and transport."""
    started = time.monotonic()
    try:
        return await transport.call(request)
    finally:
        transport_kind = (target_of(transport) or "workflow").split(" ", 1)[0]
        metrics.HANDLER_CALL_SECONDS.labels(request.operation, transport_kind).observe(
            time.monotonic() - started
        )
