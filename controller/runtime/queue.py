"""A work queue of entity keys, in the manner of client-go's: dedupe, per-key exclusivity, delays.

- A key is processed by at most one worker at a time; a key added while it is
  being processed runs once more afterwards (nothing is lost, nothing runs twice
  in parallel).
- A key added several times before a worker picks it up runs once.
- Delayed keys wait in one heap served by one timer task: no task per entity,
  nothing wakes while nothing is due. The earliest requested time wins.
- At most ``workers`` keys are processed at once — but a key that waits on a handler
  gives its worker slot back for the wait (:func:`off_worker`), so a slow handler holds
  call slots (:mod:`controller.runtime.calls`), never the workers every other key needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from controller import metrics
from controller.logs import get_logger

K = TypeVar("K", bound=Hashable)
log = get_logger("blockflow.queue")


class _WorkerSlot:
    """The worker slot a key's processing holds; given back while it waits on a handler."""

    __slots__ = ("_slots", "held")

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots = slots
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self._slots.release()

    async def reacquire(self) -> None:
        if not self.held:
            await self._slots.acquire()
            self.held = True


_SLOT: contextvars.ContextVar[_WorkerSlot | None] = contextvars.ContextVar(
    "blockflow_worker_slot", default=None
)


def without_worker() -> contextvars.Context:
    """A context for a task started by a key's processing that must not share its worker
    slot (a call that outlives the reconcile): off_worker() in it does nothing, so it can
    neither give back nor take a slot its starter holds."""
    context = contextvars.copy_context()
    context.run(_SLOT.set, None)
    return context


@contextlib.asynccontextmanager
async def off_worker() -> AsyncIterator[None]:
    """Give the current key's worker slot back for the duration (a wait on a handler), and
    take one again after. Outside a queue's processing, nothing happens."""
    slot = _SLOT.get()
    if slot is None or not slot.held:
        yield
        return
    slot.release()
    try:
        yield
    finally:
        await slot.reacquire()


class WorkQueue(Generic[K]):
    def __init__(
        self,
        process: Callable[[K], Awaitable[None]],
        *,
        workers: int = 16,
        clock: Callable[[], float] = time.monotonic,
        name: str = "queue",
    ) -> None:
        self.name = name
        self._process = process
        self._workers = workers
        self._clock = clock
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = itertools.count()
        self._timer_wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._queued_at: dict[K, float] = {}
        self._started_at: dict[K, float] = {}
        self._depth = metrics.WORKQUEUE_DEPTH.labels(name)
        self._adds = metrics.WORKQUEUE_ADDS.labels(name)
        self._waited = metrics.WORKQUEUE_QUEUE_SECONDS.labels(name)
        self._worked = metrics.WORKQUEUE_WORK_SECONDS.labels(name)
        self._busy = metrics.ACTIVE_WORKERS.labels(name)
        metrics.MAX_WORKERS.labels(name).set(workers)
        metrics.WORKQUEUE_UNFINISHED_SECONDS.labels(name).set_function(self._unfinished)
        metrics.WORKQUEUE_LONGEST_SECONDS.labels(name).set_function(self._longest)

    def _unfinished(self) -> float:
        now = self._clock()
        return sum(now - t for t in self._started_at.values())

    def _longest(self) -> float:
        now = self._clock()
        return max((now - t for t in self._started_at.values()), default=0.0)

    # -- producers ---------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Process `key` as soon as a worker is free."""
        self._due.pop(key, None)  # an immediate run supersedes a pending delay
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queued_at[key] = self._clock()
        self._adds.inc()
        self._depth.set(len(self._queued))
        self._idle.clear()
        self._ready.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Process `key` after `delay` seconds (an earlier pending time wins)."""
        if delay <= 0:
            self.add(key)
            return
        when = self._clock() + delay
        current = self._due.get(key)
        if current is not None and current <= when:
            return
        self._due[key] = when
        heapq.heappush(self._delayed, (when, next(self._seq), key))
        self._timer_wakeup.set()

    def forget(self, key: K) -> None:
        """Drop pending delays of a key that no longer exists."""
        self._due.pop(key, None)

    # -- introspection -----------------------------------------------------------------------

    def pending_delays(self) -> int:
        return len(self._due)

    def idle(self) -> bool:
        """Nothing queued or being processed (delayed keys do not count)."""
        return not self._queued and not self._active

    async def wait_idle(self) -> None:
        """Until nothing is queued or being processed (delayed keys do not count)."""
        await self._idle.wait()

    # -- consumers ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the queue until cancelled: a task per key taken, at most ``workers`` holding
        a worker slot at once."""
        slots = asyncio.Semaphore(self._workers)
        timer = asyncio.create_task(self._timer(), name="queue-timer")
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                try:
                    key = await self._ready.get()
                except BaseException:
                    slots.release()
                    raise
                task = asyncio.create_task(self._one(key, _WorkerSlot(slots)))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in (timer, *running):
                task.cancel()
            for task in (timer, *running):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _one(self, key: K, slot: _WorkerSlot) -> None:
        _SLOT.set(slot)  # this task's own context: off_worker() finds it
        self._queued.discard(key)
        self._depth.set(len(self._queued))
        started = self._started_at[key] = self._clock()
        self._waited.observe(max(0.0, started - self._queued_at.pop(key, started)))
        self._active.add(key)
        self._busy.set(len(self._active))
        try:
            await self._process(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The processor handles its own errors; this is the last line of defence.
            log.exception("unhandled error while processing", key=str(key))
        finally:
            slot.release()
            self._active.discard(key)
            self._busy.set(len(self._active))
            self._worked.observe(max(0.0, self._clock() - self._started_at.pop(key, started)))
            self._ready.task_done()
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)
        if not self._queued and not self._active:
            self._idle.set()

    async def _timer(self) -> None:
        while True:
            self._timer_wakeup.clear()
            now = self._clock()
            while self._delayed and self._delayed[0][0] <= now:
                when, _, key = heapq.heappop(self._delayed)
                if self._due.get(key) == when:
                    del self._due[key]
                    self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout)
