"""Listing again: what a missed watch event left behind is planned again, what is current
is left alone."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.listing import list_into, resync_every
from tests.support.runtimes import running

NAP = {"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 0}}


async def test_a_run_the_watch_never_delivered_is_found_by_the_next_listing() -> None:
    async with running() as rt:
        await rt.apply(
            "Workflow", "wf", {"state": "Active", "trigger": {"webhook": {}}, "steps": [NAP]}
        )
        await rt.settle()
        missed = rt.kube.put(
            {
                "apiVersion": "blockflow.dev/v1alpha1",
                "kind": "WorkflowRun",
                "metadata": {"name": "wf-missed", "namespace": "ns"},
                "spec": {"workflowRef": {"name": "wf"}, "input": {}},
            }
        )
        await rt.settle()
        assert "status" not in await rt.get("WorkflowRun", "wf-missed")  # nobody knows of it
        await list_into(rt.api, ["ns"], rt.lifecycle, rt.workflows)
        await rt.settle()
        done = await rt.get("WorkflowRun", missed["metadata"]["name"])
        assert done["status"]["state"] == "completed"


async def test_listing_what_is_current_writes_nothing() -> None:
    async with running() as rt:
        await rt.apply("App", "a", {"handler": {"python": "scripted"}})
        await rt.apply("Block", "b", {"app": "a", "type": "scripted", "config": {}})
        await rt.settle()
        writes = rt.kube.writes()
        await list_into(rt.api, ["ns"], rt.lifecycle, rt.workflows)
        await rt.settle()
        assert rt.kube.writes() == writes


async def test_a_failed_resync_pass_does_not_end_the_loop() -> None:
    async with running() as rt:
        rt.kube.fail("GET", "/apps", times=1)  # the first pass fails at once
        listed_runs = asyncio.Event()
        request = rt.kube.request

        async def spy(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            answer = await request(method, path, **kwargs)
            if method == "GET" and path.endswith("/workflowruns"):
                listed_runs.set()  # a pass got to its end
            return answer

        rt.kube.request = spy  # type: ignore[method-assign]
        task = asyncio.create_task(resync_every(0.01, rt.api, ["ns"], rt.lifecycle, rt.workflows))
        try:
            await asyncio.wait_for(listed_runs.wait(), 5)
        finally:
            task.cancel()
        assert rt.kube.writes("GET", "/apps") >= 2  # failed once, then listed again
