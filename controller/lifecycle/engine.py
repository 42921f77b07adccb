"""The lifecycle engine: a pure core that decides, given what is observed, what happens next.

No Kubernetes, no I/O, no wall clock: inputs are plain values (the entity as
observed, the handler's reply or error, ``now``, a random source for jitter);
outputs are decisions (a status patch, when to run next, whether the finalizer
stays, which events to record).  The runtime executes decisions; unit tests
drive every transition of the six statuses through here.

Two steps per reconcile:

1. :func:`plan` — should the handler be called (`sync` or `drain`), should we
   wait until a time, release the finalizer, or do nothing?
2. :func:`after_sync` / :func:`after_drain` (or :func:`blocked`, when the call
   must not happen: a dependency is missing, a fixed field changed) — the
   :class:`Decision` that records the outcome.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from controller.api.common import Condition, LifecycleState, LifecycleStatus
from controller.handlers.protocol import DrainReply, SideEffects, SyncReply
from controller.handlers.transport import HandlerError
from controller.lifecycle.conditions import conditions_for, outdated

#: Failed syncs and drains retry after 5 s, 10 s, 20 s … capped at 5 minutes, ±20 % jitter.
BACKOFF_INITIAL = 5.0
BACKOFF_FACTOR = 2.0
BACKOFF_MAX = 300.0
BACKOFF_JITTER = 0.2
#: Scheduled resyncs are spread by up to 10 % (at most 30 s) so that many entities
#: created together do not resync in lockstep forever.
SCHEDULE_JITTER = 0.1
SCHEDULE_JITTER_MAX = 30.0
#: `draining` without nextScheduleDelay is re-run after this long.
DEFAULT_DRAIN_RECHECK = 10.0

_SYNC_STATES = (LifecycleState.READY, LifecycleState.IN_PROGRESS, LifecycleState.FAILED)
_DRAIN_STATES = (LifecycleState.DRAINING, LifecycleState.DRAINING_FAILED)


class Action(StrEnum):
    SYNC = "sync"
    DRAIN = "drain"
    WAIT = "wait"
    RELEASE = "release"  # remove the finalizer: the entity may go
    REFRESH = "refresh"  # rewrite outdated conditions only (no handler call)
    NONE = "none"


@dataclass(frozen=True)
class Observed:
    """An entity as the runtime sees it, reduced to what the decisions depend on."""

    generation: int
    lifecycle: LifecycleStatus | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = field(default_factory=list)
    signals: dict[str, Any] = field(default_factory=dict)
    deleting: bool = False
    orphan: bool = False
    requested_sync_at: str | None = None
    requested_drain_at: str | None = None
    handler_version: str | None = None
    sensitive_signal_names: frozenset[str] = frozenset()
    #: Fingerprint of the current inputs (resolved config etc.); None when not computed.
    inputs_hash: str | None = None
    #: A handler asked for a sync (``lifecycle.sync()``); kept in memory only.
    sync_requested_by_handler: bool = False
    #: The Ready reason once drained on request (a Workflow's Draft, Paused or Archived);
    #: None: Drained.
    drained_reason: str | None = None

    @property
    def state(self) -> LifecycleState | None:
        return self.lifecycle.status if self.lifecycle else None


@dataclass(frozen=True)
class Plan:
    action: Action
    reason: str = ""
    at: datetime | None = None  # for WAIT: when to plan again


@dataclass(frozen=True)
class EventRecord:
    """A Kubernetes Event for people (Normal or Warning)."""

    type: str
    reason: str
    message: str


@dataclass
class Decision:
    """What to write after one reconcile."""

    status_patch: dict[str, Any]
    requeue_at: datetime | None = None
    release_finalizer: bool = False
    events: list[EventRecord] = field(default_factory=list)
    sensitive_signal_updates: dict[str, Any] = field(default_factory=dict)
    state_update: dict[str, Any] | None = None
    new_state: LifecycleState | None = None
    #: The reply's prompts, prompt deletes, timers and sync request (see effects.py).
    effects: SideEffects | None = None


# -- planning ------------------------------------------------------------------------------


def plan(obs: Observed, now: datetime) -> Plan:
    """What to do for this entity now."""
    if obs.deleting:
        return _plan_deletion(obs, now)
    state = obs.state
    drain_requested = obs.requested_drain_at is not None and obs.requested_drain_at != (
        obs.lifecycle.last_handled_drain_at if obs.lifecycle else None
    )
    if drain_requested:
        return Plan(Action.DRAIN, "DrainRequested")
    if state in _DRAIN_STATES:
        return _drain_due(obs, now, "DrainRescheduled")
    trigger = _sync_trigger(obs)
    if trigger:
        return Plan(Action.SYNC, trigger)
    if state is not None and outdated(state, obs.conditions):
        return Plan(Action.REFRESH, "ConditionsOutdated")
    if state is LifecycleState.DRAINED:
        return Plan(Action.NONE, "Drained")
    return _due(obs, now, Action.SYNC, "Retry" if state is LifecycleState.FAILED else "Scheduled")


def _plan_deletion(obs: Observed, now: datetime) -> Plan:
    if obs.orphan:
        return Plan(Action.RELEASE, "Orphan")
    if obs.state is LifecycleState.DRAINED:
        return Plan(Action.RELEASE, "Drained")
    if obs.state in _DRAIN_STATES:
        return _drain_due(obs, now, "Deleting")
    return Plan(Action.DRAIN, "Deleting")


def _sync_trigger(obs: Observed) -> str | None:
    """Why a sync is needed now regardless of schedule, or None."""
    lifecycle = obs.lifecycle
    if lifecycle is None or lifecycle.status is None:
        return "FirstSeen"
    if obs.observed_generation != obs.generation:
        return "SpecChanged"
    if (
        obs.requested_sync_at is not None
        and obs.requested_sync_at != lifecycle.last_handled_sync_at
    ):
        return "SyncRequested"
    drained = lifecycle.status is LifecycleState.DRAINED
    if (
        not drained
        and obs.handler_version is not None
        and lifecycle.handler_version != obs.handler_version
    ):
        return "HandlerVersionChanged"
    if not drained and obs.inputs_hash is not None and lifecycle.inputs_hash != obs.inputs_hash:
        return "InputsChanged"
    if obs.sync_requested_by_handler:
        return "HandlerRequested"
    return None


def _drain_due(obs: Observed, now: datetime, reason: str) -> Plan:
    """A drain in progress runs again when due, or now when nothing is scheduled (it was
    waiting for something else, e.g. dependents to go, and was woken because that changed)."""
    next_time = obs.lifecycle.next_sync_time if obs.lifecycle else None
    if next_time is not None and next_time > now:
        return Plan(Action.WAIT, reason, at=next_time)
    return Plan(Action.DRAIN, reason)


def _due(obs: Observed, now: datetime, action: Action, reason: str) -> Plan:
    next_time = obs.lifecycle.next_sync_time if obs.lifecycle else None
    if next_time is None:
        return Plan(Action.NONE, "Idle")
    if next_time <= now:
        return Plan(action, reason)
    return Plan(Action.WAIT, reason, at=next_time)


# -- outcomes ------------------------------------------------------------------------------


def backoff_delay(attempts: int, rng: random.Random) -> float:
    """Capped exponential backoff with jitter for the n-th consecutive failure."""
    base = min(BACKOFF_MAX, BACKOFF_INITIAL * BACKOFF_FACTOR ** max(0, attempts - 1))
    return base * (1 + rng.uniform(-BACKOFF_JITTER, BACKOFF_JITTER))


def schedule_delay(delay: float, rng: random.Random) -> float:
    """A handler-requested delay plus a little jitter (never earlier than asked)."""
    return delay + rng.uniform(0, min(delay * SCHEDULE_JITTER, SCHEDULE_JITTER_MAX))


_DEFAULT_DESCRIPTIONS = {
    LifecycleState.READY: "Ready",
    LifecycleState.IN_PROGRESS: "In progress",
    LifecycleState.FAILED: "Failed",
    LifecycleState.DRAINING: "Draining",
    LifecycleState.DRAINED: "Drained",
    LifecycleState.DRAINING_FAILED: "Draining failed",
}


def after_sync(
    obs: Observed,
    outcome: SyncReply | HandlerError,
    now: datetime,
    rng: random.Random,
    *,
    fixed_config: dict[str, Any] | None = None,
) -> Decision:
    """Record the outcome of a `sync` call."""
    if isinstance(outcome, HandlerError):
        return _failure(obs, now, rng, LifecycleState.FAILED, outcome, drain=False)
    state, failed, attempts, description = _reply_basics(obs, outcome)
    if outcome.next_schedule_delay is not None:
        next_time: datetime | None = now + timedelta(
            seconds=schedule_delay(outcome.next_schedule_delay, rng)
        )
    elif failed:
        next_time = now + timedelta(seconds=backoff_delay(attempts, rng))
    else:
        next_time = None
    lifecycle = _reply_lifecycle(obs, state, description, next_time, attempts, now, drain=False)
    public, sensitive = _split_signals(obs, outcome.signal_updates or {})
    patch = _status_patch(obs, lifecycle, now, extra={"signals": public} if public else {})
    if fixed_config is not None:
        patch["fixedConfig"] = fixed_config
    return Decision(
        status_patch=patch,
        requeue_at=next_time,
        events=_transition_events(obs.state, state, description),
        sensitive_signal_updates=sensitive,
        state_update=outcome.state,
        new_state=state,
        effects=outcome,
    )


def after_drain(
    obs: Observed, outcome: DrainReply | HandlerError, now: datetime, rng: random.Random
) -> Decision:
    """Record the outcome of a `drain` call; `drained` while deleting releases the finalizer."""
    if isinstance(outcome, HandlerError):
        return _failure(obs, now, rng, LifecycleState.DRAINING_FAILED, outcome, drain=True)
    state, failed, attempts, description = _reply_basics(obs, outcome)
    next_time: datetime | None = None
    if state is LifecycleState.DRAINING:
        delay = outcome.next_schedule_delay
        next_time = now + timedelta(
            seconds=schedule_delay(delay, rng) if delay is not None else DEFAULT_DRAIN_RECHECK
        )
    elif failed:
        next_time = now + timedelta(seconds=backoff_delay(attempts, rng))
    lifecycle = _reply_lifecycle(obs, state, description, next_time, attempts, now, drain=True)
    return Decision(
        status_patch=_status_patch(obs, lifecycle, now),
        requeue_at=next_time,
        release_finalizer=obs.deleting and state is LifecycleState.DRAINED,
        events=_transition_events(obs.state, state, description),
        state_update=outcome.state,
        new_state=state,
        effects=outcome,
    )


def _reply_basics(
    obs: Observed, reply: SyncReply | DrainReply
) -> tuple[LifecycleState, bool, int, str]:
    """(state, failed, consecutive failed attempts, description) of a handler reply."""
    state = LifecycleState(reply.new_status)
    failed = state in (LifecycleState.FAILED, LifecycleState.DRAINING_FAILED)
    before = obs.lifecycle.attempts if obs.lifecycle else None
    attempts = (before or 0) + 1 if failed else 0
    return state, failed, attempts, reply.custom_status_description or _DEFAULT_DESCRIPTIONS[state]


def _reply_lifecycle(
    obs: Observed,
    state: LifecycleState,
    description: str,
    next_time: datetime | None,
    attempts: int,
    now: datetime,
    *,
    drain: bool,
) -> LifecycleStatus:
    """status.lifecycle after a handler reply; a sync records the inputs and the sync
    request it handled, a drain the drain request."""
    before = obs.lifecycle or LifecycleStatus()
    failed = state in (LifecycleState.FAILED, LifecycleState.DRAINING_FAILED)
    return LifecycleStatus(
        status=state,
        description=description,
        last_sync_time=now,
        next_sync_time=next_time,
        attempts=attempts,
        last_error=description if failed else None,
        handler_version=obs.handler_version or before.handler_version,
        inputs_hash=before.inputs_hash if drain else obs.inputs_hash or before.inputs_hash,
        last_handled_sync_at=(
            before.last_handled_sync_at
            if drain
            else obs.requested_sync_at or before.last_handled_sync_at
        ),
        last_handled_drain_at=(
            obs.requested_drain_at or before.last_handled_drain_at
            if drain
            else before.last_handled_drain_at
        ),
    )


def blocked(
    obs: Observed,
    now: datetime,
    *,
    state: LifecycleState,
    reason: str,
    message: str,
    warn: bool = False,
) -> Decision:
    """No handler call: the entity waits (a dependency) or is stuck (a fixed field, a cycle).

    Nothing is scheduled: the runtime re-plans when what blocks it changes.
    """
    before = obs.lifecycle or LifecycleStatus()
    lifecycle = before.model_copy(
        update={
            "status": state,
            "description": message,
            "next_sync_time": None,
            "last_error": message if state is LifecycleState.FAILED else None,
            # Recorded so that only a change of what blocks it (a dependency's value, the
            # spec) plans a sync again: re-deciding the same wait would loop.
            "inputs_hash": obs.inputs_hash or before.inputs_hash,
            "last_handled_sync_at": obs.requested_sync_at or before.last_handled_sync_at,
        }
    )
    changed = before.status != state or before.description != message
    events = [EventRecord("Warning" if warn else "Normal", reason, message)] if changed else []
    return Decision(
        status_patch=_status_patch(obs, lifecycle, now, reason=reason),
        events=events,
        new_state=state,
    )


def _failure(
    obs: Observed,
    now: datetime,
    rng: random.Random,
    state: LifecycleState,
    error: HandlerError,
    *,
    drain: bool,
) -> Decision:
    before = obs.lifecycle or LifecycleStatus()
    attempts = (before.attempts or 0) + 1
    delay = error.retry_after if error.retry_after is not None else backoff_delay(attempts, rng)
    next_time = now + timedelta(seconds=delay)
    message = f"{'Drain' if drain else 'Sync'} failed: {error.message}"
    lifecycle = before.model_copy(
        update={
            "status": state,
            "description": message,
            "last_sync_time": now,
            "next_sync_time": next_time,
            "attempts": attempts,
            "last_error": error.message,
            "inputs_hash": (obs.inputs_hash or before.inputs_hash)
            if not drain
            else before.inputs_hash,
            "handler_version": obs.handler_version or before.handler_version,
            "last_handled_sync_at": (
                obs.requested_sync_at or before.last_handled_sync_at
                if not drain
                else before.last_handled_sync_at
            ),
            "last_handled_drain_at": (
                obs.requested_drain_at or before.last_handled_drain_at
                if drain
                else before.last_handled_drain_at
            ),
        }
    )
    return Decision(
        status_patch=_status_patch(obs, lifecycle, now, reason=error.reason),
        requeue_at=next_time,
        events=[EventRecord("Warning", error.reason, message)],
        new_state=state,
    )


def refreshed(obs: Observed, now: datetime) -> Decision:
    """Only the conditions, rewritten for the lifecycle status as it is (they were written
    under another rule, e.g. by an older controller); nothing else changes."""
    assert obs.lifecycle is not None and obs.lifecycle.status is not None
    conditions = _conditions(obs, obs.lifecycle, now, None)
    return Decision(status_patch={"conditions": conditions}, new_state=obs.lifecycle.status)


def _status_patch(
    obs: Observed,
    lifecycle: LifecycleStatus,
    now: datetime,
    *,
    reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "observedGeneration": obs.generation,
        # Full replacement of these two (merge-patch replaces lists; nulls clear old fields).
        "lifecycle": lifecycle.model_dump(by_alias=True, mode="json"),
        "conditions": _conditions(obs, lifecycle, now, reason),
        **(extra or {}),
    }


def _conditions(
    obs: Observed, lifecycle: LifecycleStatus, now: datetime, reason: str | None
) -> list[dict[str, Any]]:
    state = lifecycle.status
    assert state is not None
    if reason is None and state is LifecycleState.DRAINED and not obs.deleting:
        reason = obs.drained_reason
    conditions = conditions_for(
        state,
        message=lifecycle.description or "",
        generation=obs.generation,
        now=now,
        previous=obs.conditions,
        reason=reason,
        deleting=obs.deleting,
    )
    return [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in conditions]


def _split_signals(obs: Observed, updates: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sensitive signals go to the entity's Secret, the rest to status (null removes)."""
    public = {k: v for k, v in updates.items() if k not in obs.sensitive_signal_names}
    sensitive = {k: v for k, v in updates.items() if k in obs.sensitive_signal_names}
    return public, sensitive


def _transition_events(
    before: LifecycleState | None, after: LifecycleState, description: str
) -> list[EventRecord]:
    """Events only on transitions (and every failure): steady syncs write nothing extra."""
    if after in (LifecycleState.FAILED, LifecycleState.DRAINING_FAILED):
        reason = "SyncFailed" if after is LifecycleState.FAILED else "DrainFailed"
        # The same words every attempt, so the Events aggregate (count) instead of piling up.
        return [EventRecord("Warning", reason, description)]
    if before == after:
        return []
    reason = {
        LifecycleState.READY: "Ready",
        LifecycleState.IN_PROGRESS: "Progressing",
        LifecycleState.DRAINING: "Draining",
        LifecycleState.DRAINED: "Drained",
    }[after]
    return [EventRecord("Normal", reason, description)]
