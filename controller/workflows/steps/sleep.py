"""`sleep`: wait `seconds` after the step started, or `until` a time (RFC 3339, with a zone)."""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.handlers.protocol import OutcomeReply
from controller.workflows.steps.base import BuiltinReply, StepCall, StepTools, Wait, bad


async def run(call: StepCall, tools: StepTools) -> BuiltinReply:
    started = call.record.started_at or call.now
    if "seconds" in call.with_:
        seconds = call.with_["seconds"]
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            return bad(call, "seconds", "must be a number of seconds ≥ 0")
        until = started + timedelta(seconds=float(seconds))
    elif "until" in call.with_:
        try:
            until = datetime.fromisoformat(str(call.with_["until"]))
        except ValueError:
            return bad(call, "until", "must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z")
        if until.tzinfo is None:
            return bad(call, "until", "needs a time zone offset, e.g. Z or +01:00")
    else:
        return bad(call, "seconds", "set seconds or until")
    if call.now >= until:
        return OutcomeReply(id="done", data={"sleptUntil": until.isoformat()})
    return Wait(at=until)
