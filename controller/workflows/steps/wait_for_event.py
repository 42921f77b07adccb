"""`waitForEvent`: wait for an event of a type whose fields have given values — the
`Payment.succeeded` whose `data.orderId` is this run's — or until a timeout.

`with.match` maps dotted paths in the event to values, rendered from the run's context when
the wait starts (`data.orderId: ${{ event.data.orderId }}`); the run is indexed by them, so
an arriving event finds its waiting runs without looking at the others. The event becomes
the outcome `received` (its data: the CloudEvent); `with.timeoutSeconds` passing first is
the outcome `timeout` — not a failure: a condition can branch on it
(`if: ${{ steps.paid.id == 'timeout' }}`). Only events that arrive while the step waits
count.
"""

from __future__ import annotations

import re
from datetime import timedelta

from controller.api.workflowrun import EventWait
from controller.handlers.protocol import OutcomeReply
from controller.workflows.steps.base import BuiltinReply, StepCall, StepTools, Wait, bad

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
MAX_MATCH_FIELDS = 8


async def run(call: StepCall, tools: StepTools) -> BuiltinReply:
    event_type = call.with_.get("type")
    if not isinstance(event_type, str) or not event_type:
        return bad(call, "type", "set the event type to wait for, e.g. Payment.succeeded")
    match = call.with_.get("match") or {}
    if not isinstance(match, dict) or len(match) > MAX_MATCH_FIELDS:
        return bad(call, "match", f"give up to {MAX_MATCH_FIELDS} fields: path: value")
    for path, value in match.items():
        if not _PATH.match(path):
            return bad(call, f"match.{path}", "use a dotted path in the event, e.g. data.orderId")
        if isinstance(value, (dict, list)) or value is None:
            return bad(call, f"match.{path}", "match a string, number or boolean")
    seconds = call.with_.get("timeoutSeconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0
    ):
        return bad(call, "timeoutSeconds", "give a number of seconds above 0")
    began = call.record.attempt_started_at or call.record.started_at or call.now
    deadline = began + timedelta(seconds=float(seconds)) if seconds is not None else None
    if deadline is not None and call.now >= deadline:
        return OutcomeReply(id="timeout", data=None)
    return Wait(at=deadline, awaits=EventWait(type=event_type, match=dict(match)))
