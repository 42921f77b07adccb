"""Side effects a handler reply asks for, beside its lifecycle status (pure).

Any `sync`, `drain`, `http` or `timer` reply may add or replace prompts (by key), delete
prompts, set timers (by key), replace the KV state and ask for a sync. Prompts and timers
live in the entity's status, so they survive restarts; this module computes the new lists.
A timer that falls due is removed when its `timer` call succeeds, and retried with backoff
when it fails, a few times, then dropped with a Warning.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from controller.api.common import Prompt, TimerStatus
from controller.handlers.protocol import SideEffects
from controller.times import parse_time

#: A `timer` call that keeps failing is tried this many times in all, then dropped.
TIMER_ATTEMPTS = 5
TIMER_BACKOFF_INITIAL = 5.0
TIMER_BACKOFF_MAX = 300.0


def prompts_of(status: dict[str, Any]) -> list[Prompt]:
    return [Prompt.model_validate(p) for p in status.get("prompts") or []]


def timers_of(status: dict[str, Any]) -> list[TimerStatus]:
    return [TimerStatus.model_validate(t) for t in status.get("timers") or []]


def effects_patch(status: dict[str, Any], reply: SideEffects, now: datetime) -> dict[str, Any]:
    """The status fields (``prompts``, ``timers``) to write for a reply's side effects; empty
    when the reply asks for none. Lists are written whole (merge patch replaces lists)."""
    patch: dict[str, Any] = {}
    if reply.prompts or reply.prompt_deletes:
        prompts = {p.key: p for p in prompts_of(status)}
        for prompt in reply.prompts or []:
            prompts[prompt.key] = prompt
        for key in reply.prompt_deletes or []:
            prompts.pop(key, None)
        patch["prompts"] = [_dump(p) for p in prompts.values()]
    if reply.timers:
        timers = {t.key: t for t in timers_of(status)}
        for wanted in reply.timers:
            timers[wanted.key] = TimerStatus(
                key=wanted.key,
                due_time=now + timedelta(seconds=wanted.delay_seconds),
                payload=wanted.payload,
                prompt_key=wanted.prompt_key,
            )
        patch["timers"] = [_dump(t) for t in timers.values()]
    return patch


def sync_request_patch(status: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A sync request written down: ``lifecycle.nextSyncTime`` now, so that a controller that
    stops before the sync runs still finds the entity due when it starts again (the request
    itself is held in memory). Merge patch: only that field of ``lifecycle`` changes."""
    lifecycle = status.get("lifecycle")
    if not isinstance(lifecycle, dict) or not lifecycle.get("status"):
        return {}  # never synced yet: the first sync is due anyway
    due = parse_time(lifecycle.get("nextSyncTime"))
    if due is not None and due <= now:
        return {}
    return {"lifecycle": {"nextSyncTime": now.isoformat()}}


def due_timers(status: dict[str, Any], now: datetime) -> list[TimerStatus]:
    """Timers due now, earliest first."""
    return sorted((t for t in timers_of(status) if t.due_time <= now), key=lambda t: t.due_time)


def next_due(status: dict[str, Any]) -> datetime | None:
    """When the earliest timer falls due, or None."""
    times = [t.due_time for t in timers_of(status)]
    return min(times) if times else None


def prompt_for(status: dict[str, Any], timer: TimerStatus) -> Prompt | None:
    """The open prompt a timer belongs to (None when it is gone or the timer has none)."""
    if timer.prompt_key is None:
        return None
    return next((p for p in prompts_of(status) if p.key == timer.prompt_key), None)


def timer_done(status: dict[str, Any], fired: TimerStatus) -> list[dict[str, Any]]:
    """The timers after ``fired`` ran: removed, unless the handler set it again meanwhile
    (same key, another due time)."""
    return [
        _dump(t)
        for t in timers_of(status)
        if not (t.key == fired.key and t.due_time == fired.due_time)
    ]


def timer_failed(
    status: dict[str, Any], fired: TimerStatus, now: datetime, rng: random.Random
) -> tuple[list[dict[str, Any]], bool]:
    """The timers after a failed `timer` call, and whether it was dropped for good."""
    attempts = fired.attempts + 1
    if attempts >= TIMER_ATTEMPTS:
        return timer_done(status, fired), True
    delay = min(TIMER_BACKOFF_MAX, TIMER_BACKOFF_INITIAL * 2 ** (attempts - 1))
    retry = fired.model_copy(
        update={
            "attempts": attempts,
            "due_time": now + timedelta(seconds=delay * (1 + rng.uniform(0, 0.2))),
        }
    )
    timers = [
        _dump(retry) if (t.key == fired.key and t.due_time == fired.due_time) else _dump(t)
        for t in timers_of(status)
    ]
    return timers, False


def _dump(model: Prompt | TimerStatus) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)
