"""Built-in steps (`uses: {type: …}` without an app), one file per type, registered below.

Adding a built-in step is one new file with an ``async def run(call, tools)`` and one line
in :data:`STEPS` (and the type's name in `workflows/activation.py`'s BUILTIN_STEPS, which
admission checks without importing the steps; a unit test keeps the two equal).
"""

from __future__ import annotations

import aiohttp

from controller.kube.rest import Requester
from controller.workflows.steps import (
    approval,
    emit,
    hook,
    http,
    kubernetes_job,
    sleep,
    wait_for_event,
    workflow,
)
from controller.workflows.steps.approval import approval_token
from controller.workflows.steps.base import (
    BuiltinReply,
    ChildRefused,
    ChildRun,
    HookDelivery,
    HookRejected,
    Publish,
    StartChild,
    StepCall,
    StepFunction,
    StepTools,
    Wait,
)
from controller.workflows.steps.hook import deliver_hook
from controller.workflows.steps.kubernetes_job import job_name

#: Every built-in step type, and the function that runs it.
STEPS: dict[str, StepFunction] = {
    "http": http.run,
    "sleep": sleep.run,
    "hook": hook.run,
    "approval": approval.run,
    "emit": emit.run,
    "kubernetes.job": kubernetes_job.run,
    "workflow": workflow.run,
    "waitForEvent": wait_for_event.run,
}


class Builtins:
    """Runs a built-in step with the tools it may use."""

    def __init__(
        self,
        kube: Requester,
        client: aiohttp.ClientSession,
        publish: Publish,
        start_child: StartChild,
    ) -> None:
        self.tools = StepTools(kube, client, publish, start_child)

    async def execute(self, call: StepCall) -> BuiltinReply:
        return await STEPS[call.step.uses.type](call, self.tools)


__all__ = [
    "STEPS",
    "BuiltinReply",
    "Builtins",
    "ChildRefused",
    "ChildRun",
    "HookDelivery",
    "HookRejected",
    "StepCall",
    "Wait",
    "approval_token",
    "deliver_hook",
    "job_name",
]
