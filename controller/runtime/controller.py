"""The keyed controller: the one loop that owns a work queue, per-key locks, retries and metrics.

A reconcile takes a key and returns an :class:`Outcome` — done, or look again after
some seconds — in the manner of controller-runtime's ``Result{RequeueAfter}``. Whatever
it raises is handled here, once, for every kind of work:

- a 404 from the API server ends the key (the object is gone);
- a 409 Conflict is retried soon (the object changed under the writer: re-read, re-plan);
- any other exception is retried with a per-key exponential backoff, capped, and logged;
  nothing is ever dropped silently, and a success resets the key's backoff.

Business code never touches the queue: it returns outcomes, and enqueues *other* keys it
affects through :meth:`KeyedController.add`. Writers outside a reconcile (an HTTP callback
that writes one run) take the same per-key lock with :meth:`KeyedController.locked`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from controller import metrics
from controller.kube.rest import KubeApiError
from controller.logs import get_logger
from controller.runtime.queue import WorkQueue

K = TypeVar("K", bound=Hashable)
log = get_logger("blockflow.controller")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a reconcile asks for next: nothing (``requeue_after`` None) or another look."""

    requeue_after: float | None = None

    @staticmethod
    def after(seconds: float) -> Outcome:
        return Outcome(max(0.0, seconds))

    def sooner(self, other: Outcome) -> Outcome:
        """The earlier of two requests (an outcome asks for the earliest of its wake-ups)."""
        if other.requeue_after is None:
            return self
        if self.requeue_after is None or other.requeue_after < self.requeue_after:
            return other
        return self


DONE = Outcome()
NOW = Outcome(0.0)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delays after failures: ``conflict`` seconds after a 409, else ``base`` doubling
    per consecutive failure of the key, never more than ``cap``."""

    base: float = 5.0
    conflict: float = 1.0
    cap: float = 60.0

    def delay(self, failures: int, *, conflict: bool) -> float:
        if conflict:
            return self.conflict
        return float(min(self.cap, self.base * 2 ** max(0, failures - 1)))


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KeyedController(Generic[K]):
    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], Awaitable[Outcome]],
        *,
        workers: int = 16,
        backoff: Backoff = Backoff(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._reconcile = reconcile
        self.backoff = backoff
        self.queue: WorkQueue[K] = WorkQueue(self._process, workers=workers, clock=clock, name=name)
        self._locks: dict[K, _KeyLock] = {}
        self._failures: dict[K, int] = {}
        #: Reconciles started (the memory trimmer watches it to know the controller is idle).
        self.processed = 0

    # -- producers ---------------------------------------------------------------------------

    def add(self, key: K) -> None:
        self.queue.add(key)

    def add_after(self, key: K, delay: float) -> None:
        self.queue.add_after(key, delay)

    def forget(self, key: K) -> None:
        """The key's object is gone: drop its pending delays and its backoff."""
        self.queue.forget(key)
        self._failures.pop(key, None)

    # -- locks -------------------------------------------------------------------------------

    @asynccontextmanager
    async def locked(self, key: K) -> AsyncIterator[None]:
        """Exclusive access to one key, shared with its reconciles. A lock lives while
        someone holds or awaits it, so the table holds only keys being worked on."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        await self.queue.run()

    async def wait_idle(self) -> None:
        await self.queue.wait_idle()

    def backoff_of(self, key: K) -> int:
        """Consecutive failures of a key (0 when its last reconcile succeeded)."""
        return self._failures.get(key, 0)

    def failing(self) -> int:
        """Keys whose last reconcile failed (each waiting for its retry)."""
        return len(self._failures)

    async def _process(self, key: K) -> None:
        self.processed += 1
        kind = str(getattr(key, "kind", self.name))
        try:
            async with self.locked(key):
                outcome = await self._reconcile(key)
        except asyncio.CancelledError:
            raise
        except KubeApiError as exc:
            if exc.code == 404:
                self._failures.pop(key, None)
                metrics.RECONCILES.labels(kind, "gone").inc()
                return
            metrics.RECONCILES.labels(kind, "api-error").inc()
            delay = self._failed(key, conflict=exc.code == 409)
            log.warning(
                "API error; retrying",
                entity=str(key),
                code=exc.code,
                error=exc.message,
                retry_in=delay,
            )
            return
        except Exception as exc:
            metrics.RECONCILES.labels(kind, "error").inc()
            delay = self._failed(key, conflict=False)
            log.warning(
                "reconcile failed; retrying",
                entity=str(key),
                error=f"{type(exc).__name__}: {exc}",
                retry_in=delay,
                exc_info=not isinstance(exc, OSError),
            )
            return
        self._failures.pop(key, None)
        metrics.RECONCILES.labels(kind, "ok").inc()
        if outcome.requeue_after is not None:
            self.queue.add_after(key, outcome.requeue_after)

    def _failed(self, key: K, *, conflict: bool) -> float:
        metrics.WORKQUEUE_RETRIES.labels(self.name).inc()
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self.backoff.delay(failures, conflict=conflict)
        self.queue.add_after(key, delay)
        return delay
