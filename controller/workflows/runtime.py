"""The workflow engine, assembled: its rooms, wired to each other and to the runtime below.

- :mod:`~controller.workflows.triggers` indexes each Workflow's trigger and starts runs
  (events, webhooks, trigger blocks, the CLI, schedules);
- :mod:`~controller.workflows.scheduler` wakes scheduled workflows at their slots;
- :mod:`~controller.workflows.runs` drives each run through the pure executor, and
  :mod:`~controller.workflows.run_resume` resumes waiting runs from callbacks and hooks;
- :mod:`~controller.workflows.workflow_status` is the one writer of a Workflow's
  counters, phase and schedule time;
- :mod:`~controller.workflows.http_backend` is the HTTP surface.

Workflows themselves are reconciled by the lifecycle runtime, which knows them only
through the handler source registered for their kind (the activator); what the
lifecycle runtime writes comes back here as published transitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from controller.handlers.protocol import HttpReply, HttpRequestData
from controller.kube.api import KubeApi
from controller.kube.decoding import undecodable
from controller.kube.objects import Body, Key
from controller.kube.rest import Requester
from controller.logs import get_logger
from controller.runtime.events import EventPoster
from controller.runtime.handlers import HandlerResolver
from controller.runtime.store import Cache
from controller.runtime.transitions import Transition, Transitions
from controller.workflows.activator import TokenKeys, WorkflowHandlers
from controller.workflows.http_backend import HttpBackend
from controller.workflows.run_index import Indexes
from controller.workflows.run_resume import RunResumer
from controller.workflows.runs import RunRuntime
from controller.workflows.scheduler import Scheduler
from controller.workflows.steps import Builtins
from controller.workflows.triggers import Triggers
from controller.workflows.workflow_status import WorkflowStatusWriter

log = get_logger("blockflow.workflows")


class WorkflowRuntime:
    def __init__(
        self,
        api: KubeApi,
        *,
        cache: Cache,
        resolver: HandlerResolver,
        events: EventPoster,
        transitions: Transitions,
        tokens: TokenKeys,
        http: aiohttp.ClientSession,
        kube: Requester,
        request_sync: Callable[[Key], None],
        app_endpoint: Callable[[str, str, HttpRequestData], Awaitable[HttpReply]],
        events_namespace: str = "default",
        workers: int = 16,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        on_run_write: Callable[[Body], None] | None = None,
        api_reachable: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.api = api
        self.api_reachable = api_reachable
        self.now = now
        self.index = Indexes()
        self.status = WorkflowStatusWriter(api, cache, self.index, events, now)
        self.triggers = Triggers(
            api,
            cache,
            self.index,
            self.status,
            tokens,
            on_run_created=lambda body: self.runs.observe(body, "ADDED"),
            now=now,
        )
        self.status.publish = self.triggers.publish
        self.runs = RunRuntime(
            api,
            apps=resolver,
            workflows=cache,
            status=self.status,
            index=self.index,
            tokens=tokens,
            builtins=Builtins(kube, http, self.triggers.publish, self.triggers.start_child),
            publish=self.triggers.publish,
            events=events,
            workers=workers,
            now=now,
            rng=rng,
            on_write=on_run_write,
        )
        self.resumer = RunResumer(self.runs)
        self.triggers.deliver = self.resumer.deliver_event
        self.scheduler = Scheduler(api, self.index, self.status, self.triggers, now)
        #: The Workflow kind's handler source, registered with the handler resolver.
        self.handlers = WorkflowHandlers(tokens, resolver, now, self.triggers.activated)
        resolver.register("Workflow", self.handlers)
        self.backend = HttpBackend(
            api,
            cache,
            self.index,
            self.triggers,
            self.resumer,
            resolver,
            tokens,
            request_sync=request_sync,
            app_endpoint=app_endpoint,
            readiness=self.readiness,
            listed=lambda: self._ready,
            now=now,
            events_namespace=events_namespace,
        )
        transitions.subscribe(self._transition)
        self._ready = False
        self.not_ready_because = "listing workflows and runs"
        # A standby whose Pod the Service does not select (leader label) is Ready: healthy and
        # able to take over.
        self.standby_ready = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()

    # -- intake ------------------------------------------------------------------------------

    def observe_workflow(self, body: Body, event_type: str | None) -> None:
        if undecodable(body):
            event_type = "DELETED"  # quarantined: no trigger or schedule from a part of it
        self.triggers.observe(body, event_type)
        self.scheduler.observe(body, event_type)

    def observe_run(self, body: Body, event_type: str | None) -> None:
        self.runs.observe(body, event_type)

    def _transition(self, transition: Transition) -> None:
        """A status the lifecycle runtime wrote: a Workflow's new activation re-indexes its
        trigger (and may change its phase); an App's or Block's becomes an event."""
        if transition.key.kind != "Workflow":
            self.triggers.lifecycle_changed(transition)
            return
        self.observe_workflow(transition.after, "MODIFIED")
        task = asyncio.create_task(self.status.refresh_phase(transition.key))
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("updating a workflow's phase failed", error=str(task.exception()))

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve runs and schedules (after the initial listing fed the indexes)."""
        self._tasks = [
            asyncio.create_task(self.runs.controller.run(), name="workflow-runs"),
            asyncio.create_task(self.scheduler.controller.run(), name="workflow-schedules"),
        ]
        self._ready = True

    async def stop(self) -> None:
        for task in [*self._tasks, *self.background()]:
            task.cancel()
        for task in [*self._tasks, *self.background()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def background(self) -> list[asyncio.Task[Any]]:
        """Work started in the background and not finished yet (phase updates, events)."""
        return [*self._background, *self.triggers.publishing, *self.runs.caller.tasks()]

    async def readiness(self) -> tuple[bool, str]:
        if not (self._ready or self.standby_ready):
            return False, self.not_ready_because
        if self.api_reachable is not None and not await self.api_reachable():
            return False, "the Kubernetes API server cannot be reached"
        return True, ""

    def processed(self) -> int:
        return self.runs.processed


__all__ = ["WorkflowRuntime"]
