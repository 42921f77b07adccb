"""`workflow`: start a run of another Workflow (`with.name`, `with.input`) and wait for it.

The child run is named from this step's execution and attempt, so a re-issued call (a
restart) finds the run it started instead of starting another. The step then waits
holding nothing — no task, no timer — and the child's end resumes it: completed, the
step's outcome is `completed` with the child's output as its data; failed, terminated or
cancelled, the step fails saying why. Stopping the parent stops the child.
"""

from __future__ import annotations

import hashlib

from controller.handlers.protocol import ErrorReply
from controller.workflows.naming import run_name
from controller.workflows.steps.base import (
    BuiltinReply,
    ChildRefused,
    ChildRun,
    StepCall,
    StepTools,
    Wait,
    bad,
)


def child_name(call: StepCall, workflow: str) -> str:
    """The child's name: sorts by when the attempt started, unique per execution and attempt."""
    seed = f"{call.execution_id}/{call.record.attempts}"
    suffix = hashlib.sha256(seed.encode()).hexdigest()[:5]
    began = call.record.attempt_started_at or call.record.started_at or call.now
    return run_name(workflow, began, suffix)


async def run(call: StepCall, tools: StepTools) -> BuiltinReply:
    workflow = call.with_.get("name")
    if not isinstance(workflow, str) or not workflow:
        return bad(call, "name", "name the Workflow to run (same namespace)")
    given = call.with_.get("input")
    if given is not None and not isinstance(given, dict):
        return bad(call, "input", "give the child run's input as an object")
    child = ChildRun(
        namespace=call.namespace,
        workflow=workflow,
        name=child_name(call, workflow),
        input=given,
        parent_name=call.run_name,
        parent_uid=call.run_uid,
        parent_step=call.step.name,
    )
    try:
        await tools.start_child(child)
    except ChildRefused as exc:
        return ErrorReply(message=f"step {call.step.name}: {exc}", retryable=False)
    return Wait(at=None, child=child.name)
