"""`hook`: wait for POSTs to /hooks/<token> (`with.token`), each checked against `with.schema`
and kept (the last 50), until `with.until` (CEL over `events`) holds — or the first one.

:func:`deliver_hook` decides, purely, what a payload does to a waiting hook or approval
step; the HTTP backend and the web page deliver through it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller.api.workflow import Step
from controller.api.workflowrun import StepRecord
from controller.handlers.protocol import OutcomeReply
from controller.server.tokens import token_hash
from controller.workflows.steps.approval import approval_decision
from controller.workflows.steps.base import (
    BuiltinReply,
    HookDelivery,
    HookRejected,
    StepCall,
    StepTools,
    Wait,
    bad,
)
from controller.workflows.templating import TemplateError, evaluate

#: Hook payloads kept per step (a hook waiting for several events).
MAX_RECEIVED = 50


async def run(call: StepCall, tools: StepTools) -> BuiltinReply:
    token = call.with_.get("token")
    if not isinstance(token, str) or not token:
        return bad(call, "token", 'set a token, e.g. ${{ "approval:" + event.data.id }}')
    return Wait(at=None, hook_token_hash=token_hash(token))


def deliver_hook(
    step: Step, record: StepRecord, payload: Any, now: datetime, who: str | None = None
) -> HookDelivery:
    """A payload for a waiting hook or approval step. Raises HookRejected (→ 400)."""
    if step.uses.type == "approval":
        return approval_decision(payload, now, who)
    schema = step.with_.get("schema")
    if isinstance(schema, dict):
        import jsonschema  # on first use: see controller/lifecycle/validation.py

        try:
            jsonschema.validate(payload, schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise HookRejected(
                f"payload does not match the schema of step {step.name} at {where}: "
                f"{exc.validator} {exc.validator_value!r} failed"
            ) from None
    received = [*record.received, payload][-MAX_RECEIVED:]
    until = step.with_.get("until")
    if isinstance(until, str) and until.strip():
        try:
            done = evaluate(
                until, {"events": received, "event": payload}, f"step {step.name}: with.until"
            )
        except TemplateError as exc:
            raise HookRejected(str(exc)) from None
        if done is not True:
            return HookDelivery(received=received, reply=None)
    return HookDelivery(
        received=received,
        reply=OutcomeReply(id="received", data={"payload": payload, "events": received}),
    )
