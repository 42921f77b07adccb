"""The one writer of a Workflow's run counters, phase and last schedule time.

The lifecycle runtime writes a Workflow's lifecycle and activation; everything else in
its status is written here, by one writer per Workflow at a time: counts of starting
and ending runs are batched into one resourceVersion-checked patch (re-read and redone
on a conflict), the phase is recomputed from the run index in the same patch, and a
crossed failure-rate threshold is announced once (an event other workflows can trigger
on, and a Warning Event).

Callers wait for their count to be written: a run's final write records that it was
counted only after the count is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from controller.api.events import WorkflowHighFailureRate, event_data
from controller.kube.api import KubeApi
from controller.kube.objects import Body, Key, status_of
from controller.kube.rest import KubeApiError
from controller.runtime.events import EventPoster
from controller.runtime.store import Cache
from controller.workflows import counters
from controller.workflows.activator import wanted_state
from controller.workflows.counters import Count
from controller.workflows.run_index import ACTIVE_STATES, Indexes

Publish = Callable[[str, str, str, str, Any], Awaitable[int]]
#: Attempts at one patch before the batch fails (each after a conflict and a re-read).
MAX_CONFLICTS = 20


class WorkflowStatusWriter:
    def __init__(
        self,
        api: KubeApi,
        cache: Cache,
        index: Indexes,
        events: EventPoster,
        now: Callable[[], datetime],
    ) -> None:
        self.api = api
        self.cache = cache
        self.index = index
        self.events = events
        self.now = now
        #: Set by the trigger side (events other workflows may trigger on).
        self.publish: Publish | None = None
        self._pending: dict[Key, list[tuple[Count | None, asyncio.Future[None]]]] = {}
        self._flushing: set[Key] = set()
        self._background: set[asyncio.Task[None]] = set()
        #: The body of our last write per Workflow, newer than the cache until its echo.
        self._written: dict[Key, Body] = {}

    # -- what callers ask for ------------------------------------------------------------

    async def count(self, workflow: Key, count: Count) -> None:
        """Add one count (see :mod:`controller.workflows.counters`) and wait for it."""
        await self._submit(workflow, count)

    async def refresh_phase(self, workflow: Key) -> None:
        """Recompute the phase (after a run's final write, or an activation change)."""
        await self._submit(workflow, None)

    async def record_schedule(self, workflow: Key, at: datetime) -> None:
        """The schedule's last slot handled (the schedule is the only writer of it)."""
        body = self.latest(workflow)
        if body is None:
            return
        updated = await self.api.patch_status(
            "Workflow", workflow.namespace, workflow.name, {"lastScheduleTime": at.isoformat()}
        )
        self._remember(workflow, updated)

    def phase(self, workflow: Body, extra_active: int = 0) -> str:
        meta = workflow["metadata"]
        active = self.index.count(meta["namespace"], meta["name"], *ACTIVE_STATES)
        return counters.phase(
            wanted_state(workflow), status_of(workflow), active + extra_active
        ).value

    # -- the writer ----------------------------------------------------------------------

    def latest(self, key: Key) -> Body | None:
        cached = self.cache.get(key)
        written = self._written.get(key)
        if cached is None or written is None:
            if cached is None:
                self._written.pop(key, None)
            return cached
        if _version(written) > _version(cached):
            return written
        del self._written[key]
        return cached

    def _remember(self, key: Key, body: Body) -> None:
        self._written[key] = body

    async def _submit(self, key: Key, count: Count | None) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append((count, done))
        if key not in self._flushing:
            self._flushing.add(key)
            task = asyncio.create_task(self._flush(key))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        await done

    async def _flush(self, key: Key) -> None:
        try:
            while self._pending.get(key):
                batch = self._pending.pop(key)
                try:
                    await self._apply(key, [c for c, _ in batch if c is not None])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._flushing.discard(key)

    async def _apply(self, key: Key, batch: list[Count]) -> None:
        for _ in range(MAX_CONFLICTS):
            workflow = self.latest(key)
            if workflow is None:
                return
            current = status_of(workflow)
            counted = counters.counts_patch(current, batch, self.now().isoformat())
            patch = dict(counted.patch)
            # Runs counted here are not yet written as running / ended in the index: the
            # phase is computed from the index as it is now, and this batch.
            patch["phase"] = self.phase(workflow, extra_active=counted.active_delta)
            if list(patch) == ["phase"] and patch["phase"] == current.get("phase"):
                return
            try:
                updated = await self.api.patch_status_checked(workflow, patch)
            except KubeApiError as exc:
                if exc.code != 409:
                    raise
                fresh = await self.api.get("Workflow", key.namespace, key.name)
                if fresh is None:
                    return
                self._remember(key, fresh)
                continue
            self._remember(key, updated)
            if counted.ended:
                await self._alarm(current, updated)
            return

    async def _alarm(self, before: dict[str, Any], after: Body) -> None:
        crossed = counters.failure_rate_crossed(before, status_of(after))
        if crossed is None:
            return
        done, rate = crossed
        meta = after["metadata"]
        if self.publish is not None:
            await self.publish(
                meta["namespace"],
                "Workflow.highFailureRate",
                f"blockflow.dev/namespaces/{meta['namespace']}/workflows/{meta['name']}",
                f"{meta['uid']}/highFailureRate/{done}",
                event_data(
                    WorkflowHighFailureRate(
                        workflow=meta["name"], runs=done, failure_rate=round(rate, 3)
                    )
                ),
            )
        self.events.post(
            after,
            "Warning",
            "HighFailureRate",
            f"{round(rate * 100)} % of the last {done} runs failed",
        )


def _version(body: Body) -> int:
    try:
        return int(body["metadata"].get("resourceVersion", "0"))
    except ValueError:
        return 0
