"""Listing every object into the runtimes: once at start, then again every resync period.

The watches keep the runtimes current, and each runtime plans from what it is handed. A
watch can still miss an event (a stream that ends at the wrong moment, an event compacted
away), and an index can hold an older copy than it should; nothing would then wake the
object again. So, as controller-runtime's SyncPeriod does, every object is listed again
every ``resync_seconds`` and handed over as a watch event would be: what is up to date is
recognised as such (the lifecycle store skips older copies, the run index skips the
controller's own writes), what was stranded is planned again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from controller.kube.api import KubeApi
from controller.logs import get_logger
from controller.runtime.lifecycle import LifecycleRuntime
from controller.workflows.runtime import WorkflowRuntime

log = get_logger("blockflow.listing")


async def list_into(
    api: KubeApi,
    namespaces: Sequence[str],
    lifecycle: LifecycleRuntime,
    workflows: WorkflowRuntime,
) -> int:
    """Hand every object to the runtimes (Apps first: a run resumed at start calls its
    steps' Apps at once); how many there were."""
    seen = 0
    scopes: list[str | None] = list(namespaces) or [None]  # None: the whole cluster
    for namespace in scopes:
        for kind in ("App", "Block", "Workflow"):
            for body in await api.list_all(kind, namespace):
                lifecycle.observe(body, None)
                if kind == "Workflow":
                    workflows.observe_workflow(body, None)
                seen += 1
        for body in await api.list_all("WorkflowRun", namespace):
            workflows.observe_run(body, None)
            seen += 1
    return seen


async def resync_every(
    seconds: float,
    api: KubeApi,
    namespaces: Sequence[str],
    lifecycle: LifecycleRuntime,
    workflows: WorkflowRuntime,
) -> None:
    """List everything again every ``seconds``, until cancelled; a failed pass is logged and
    the next one comes as planned."""
    while True:
        await asyncio.sleep(seconds)
        try:
            seen = await list_into(api, namespaces, lifecycle, workflows)
        except Exception as exc:  # the next pass will do
            log.warning("resync failed; trying again later", error=f"{type(exc).__name__}: {exc}")
        else:
            log.debug("resynced", objects=seen)
