"""`approval`: wait for a person's decision — a POST to /hooks/<token> with
`{"decision": "approve" | "reject", "by"?, "comment"?}` (the workflow's hookKey as bearer), or
Approve / Reject on the web page — and answer `approved` or `rejected` with who and when.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller.handlers.protocol import OutcomeReply
from controller.server.tokens import token_hash
from controller.workflows.steps.base import (
    BuiltinReply,
    HookDelivery,
    HookRejected,
    StepCall,
    StepTools,
    Wait,
)


async def run(call: StepCall, tools: StepTools) -> BuiltinReply:
    token = call.with_.get("token") or approval_token(call.namespace, call.run_name, call.step.name)
    return Wait(at=None, hook_token_hash=token_hash(str(token)))


def approval_token(namespace: str, run: str, step: str) -> str:
    """The default hook token of an approval step (resumed with the workflow's hookKey)."""
    return f"approval:{namespace}:{run}:{step}"


def approval_decision(payload: Any, now: datetime, who: str | None) -> HookDelivery:
    if not isinstance(payload, dict) or payload.get("decision") not in ("approve", "reject"):
        raise HookRejected('an approval needs {"decision": "approve" | "reject", "by"?: name}')
    by = who or payload.get("by")
    data = {
        "decision": payload["decision"],
        "by": str(by) if by is not None else None,
        "comment": payload.get("comment"),
        "at": now.isoformat(),
    }
    outcome = "approved" if payload["decision"] == "approve" else "rejected"
    return HookDelivery(received=[], reply=OutcomeReply(id=outcome, data=data))
