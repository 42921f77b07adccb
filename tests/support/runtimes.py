"""The controller's runtimes, assembled as the operator assembles them, on a fake API.

`Runtimes` builds the lifecycle runtime and the workflow engine over one `FakeKube`,
serves their keyed controllers while a test runs, and plays the watch: `apply` creates an
object and hands it to the runtimes as the watch would, `settle` waits until no key is
queued or being worked on. Retries back off in milliseconds, so a test that injects a
failure still finishes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from controller.kube.api import KubeApi
from controller.kube.objects import Body, Key
from controller.runtime.controller import Backoff
from controller.runtime.events import EventPoster
from controller.runtime.lifecycle import LifecycleRuntime
from controller.runtime.transitions import Transitions
from controller.workflows.activator import TokenKeys
from controller.workflows.runtime import WorkflowRuntime
from tests.support.fake_kube import FakeKube

FAST = Backoff(base=0.005, conflict=0.001, cap=0.02)
GV = "blockflow.dev/v1alpha1"
TOKENS = TokenKeys(b"k" * 32, "http://127.0.0.1:8080")


class Runtimes:
    def __init__(self, kube: FakeKube, http: aiohttp.ClientSession) -> None:
        self.kube = kube
        self.api = KubeApi(kube)
        self.events = EventPoster(self.api)
        transitions = Transitions()
        self.lifecycle = LifecycleRuntime(self.api, events=self.events, transitions=transitions)
        self.workflows = WorkflowRuntime(
            self.api,
            cache=self.lifecycle.store,
            resolver=self.lifecycle.resolver,
            events=self.events,
            transitions=transitions,
            tokens=TOKENS,
            http=http,
            kube=kube,
            request_sync=self.lifecycle.request,
            app_endpoint=self.lifecycle.writer.app_http,
        )
        self.controllers = [
            self.lifecycle.controller,
            self.workflows.runs.controller,
            self.workflows.scheduler.controller,
        ]
        for controller in self.controllers:
            controller.backoff = FAST

    # -- the watch, played by hand -----------------------------------------------------------

    async def apply(self, kind: str, name: str, spec: dict[str, Any], ns: str = "ns") -> Body:
        body = {"apiVersion": GV, "kind": kind, "metadata": {"name": name}, "spec": spec}
        created = await self.kube.request("POST", _collection(kind, ns), body=body)
        self.observe(created)
        return created

    def observe(self, body: Body, event_type: str | None = "ADDED") -> None:
        if body["kind"] == "WorkflowRun":
            self.workflows.observe_run(body, event_type)
            return
        self.lifecycle.observe(body, event_type)
        if body["kind"] == "Workflow":
            self.workflows.observe_workflow(body, event_type)

    async def delete(self, kind: str, name: str, ns: str = "ns") -> None:
        await self.api.delete(kind, ns, name)
        body = await self.api.get(kind, ns, name)
        if body is not None:
            self.observe(body, "MODIFIED")

    async def get(self, kind: str, name: str, ns: str = "ns") -> Body:
        body = await self.api.get(kind, ns, name)
        assert body is not None, f"{kind} {ns}/{name} is gone"
        return body

    async def settle(self, within: float = 5.0) -> None:
        """Until no controller has work queued, in progress or failed-and-retrying (a retry
        backs off for milliseconds here); delayed wake-ups that are not retries do not count."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            for controller in self.controllers:
                await asyncio.wait_for(controller.wait_idle(), deadline - loop.time())
            pending = self.workflows.background()
            if pending:
                await asyncio.wait(pending, timeout=deadline - loop.time())
            await asyncio.sleep(0)
            busy = [c for c in self.controllers if c.failing() or not c.queue.idle()]
            if not busy and not self.workflows.background():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the runtimes never settled")

    def key(self, kind: str, name: str, ns: str = "ns") -> Key:
        return Key(kind, ns, name)


def _collection(kind: str, ns: str) -> str:
    plural = {
        "App": "apps",
        "Block": "blocks",
        "Workflow": "workflows",
        "WorkflowRun": "workflowruns",
    }
    return f"/apis/{GV}/namespaces/{ns}/{plural[kind]}"


@contextlib.asynccontextmanager
async def running(kube: FakeKube | None = None) -> AsyncIterator[Runtimes]:
    """The runtimes, serving until the block ends."""
    async with aiohttp.ClientSession() as http:
        runtimes = Runtimes(kube or FakeKube(), http)
        tasks = [
            asyncio.create_task(runtimes.lifecycle.run()),
            asyncio.create_task(runtimes.events.run()),
        ]
        runtimes.workflows.start()
        try:
            yield runtimes
        finally:
            await runtimes.workflows.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
