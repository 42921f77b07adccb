"""`emit`: publish an event (`type`, `source`, `data`) that other workflows trigger on; its id
is the step's execution id, so a re-issued emit starts nothing twice."""

from __future__ import annotations

from controller.handlers.protocol import OutcomeReply
from controller.workflows.steps.base import BuiltinReply, StepCall, StepTools, bad


async def run(call: StepCall, tools: StepTools) -> BuiltinReply:
    event_type = call.with_.get("type")
    if not isinstance(event_type, str) or not event_type:
        return bad(call, "type", "set the event type, e.g. Customer.onboarded")
    source = str(
        call.with_.get("source")
        or f"blockflow.dev/namespaces/{call.namespace}/workflowruns/{call.run_name}"
    )
    # The execution id is the event id: a re-issued emit is deduplicated downstream.
    started = await tools.publish(
        call.namespace, event_type, source, call.execution_id, call.with_.get("data")
    )
    return OutcomeReply(
        id="emitted", data={"type": event_type, "id": call.execution_id, "runs": started}
    )
