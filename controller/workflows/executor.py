"""The WorkflowRun step executor: a pure state machine over the run's status.

Like the lifecycle engine, it is two steps with no I/O and no wall clock:

1. :func:`next_action` — from the run's status alone, what to do now: call a step
   (with its attempt number and idempotency key), wait until a time (or for a
   callback), finish the run, or nothing.
2. :func:`begin_attempt` before a call and :func:`record_reply` after it — the new status.

Crash safety follows from the order the runtime uses: the status saying "step X,
attempt N, running" is written *before* the handler is called, and the
``uniqueExecutionId`` is derived from the run's uid and the step, so a controller
killed at any point re-issues the same call with the same idempotency key.
Nothing waits in memory: a deferred step, a sleep or a retry backoff is a state and
a `wakeAt` in the status.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from controller.api.workflow import ErrorHandling, RetryPolicy, Step, WorkflowSpec
from controller.api.workflowrun import (
    RunError,
    RunState,
    StepError,
    StepOutcome,
    StepRecord,
    StepState,
    WorkflowRunStatus,
)
from controller.handlers.protocol import DeferReply, ErrorReply, ExitReply, OutcomeReply

#: Step outcome data over this size fails the step (the run's status must stay small).
MAX_OUTCOME_BYTES = 64 * 1024
FALLBACK_PREFIX = "fallback."
_FINAL_STEP_STATES = (StepState.COMPLETED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED)
_FINAL_RUN_STATES = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED, RunState.TERMINATED)

StepReply = OutcomeReply | ExitReply | DeferReply | ErrorReply


class Kind(StrEnum):
    CALL = "call"  # call the step (attempt, uniqueExecutionId in the record)
    WAIT = "wait"  # until `at`, or for a callback when `at` is None
    FINISH = "finish"  # the run is over: `state`, `error`
    NONE = "none"


@dataclass(frozen=True)
class Action:
    kind: Kind
    step: str | None = None
    at: datetime | None = None
    state: RunState | None = None
    error: RunError | None = None


def execution_id(run_uid: str, step: str) -> str:
    """Stable across retries and restarts of one step execution; unique per run and step."""
    return hashlib.sha256(f"{run_uid}/{step}".encode()).hexdigest()[:32]


def _steps_in_order(spec: WorkflowSpec, status: WorkflowRunStatus) -> list[tuple[str, Step]]:
    """The main steps, followed by the fallback steps once the run has fallen back."""
    fallen_back = _falling_back(status) or any(
        r.name.startswith(FALLBACK_PREFIX) for r in status.steps
    )
    ordered = _steps_in_order_all(spec)
    return ordered if fallen_back else ordered[: len(spec.steps)]


def _falling_back(status: WorkflowRunStatus) -> bool:
    return status.error is not None and status.state in (RunState.RUNNING, RunState.WAITING)


def _record(status: WorkflowRunStatus, name: str) -> StepRecord | None:
    return next((r for r in status.steps if r.name == name), None)


def next_action(spec: WorkflowSpec, status: WorkflowRunStatus, now: datetime) -> Action:
    """What the run needs now, read from its status."""
    if status.state in _FINAL_RUN_STATES:
        return Action(Kind.NONE)
    started = status.started_at or now
    if spec.timeout_seconds and now >= started + timedelta(seconds=spec.timeout_seconds):
        return Action(
            Kind.FINISH,
            state=RunState.FAILED,
            error=RunError(message=f"run timed out after {spec.timeout_seconds}s"),
        )
    for name, step in _steps_in_order(spec, status):
        record = _record(status, name)
        if record is not None and record.state in _FINAL_STEP_STATES:
            continue
        if record is None or record.state in (StepState.PENDING, StepState.RUNNING):
            return Action(Kind.CALL, step=name)
        # WAITING: a retry backoff / sleep (wakeAt), or a deferred step (callback, timeout).
        deadline = _step_deadline(step, record)
        run_deadline = (
            started + timedelta(seconds=spec.timeout_seconds) if spec.timeout_seconds else None
        )
        wake = min(
            (t for t in (record.wake_at, deadline, run_deadline) if t is not None), default=None
        )
        if wake is not None and now >= wake:
            # Retry or sleep due, or the step's timeout passed: the runtime checks
            # timed_out() first and records the timeout instead of calling.
            return Action(Kind.CALL, step=name)
        return Action(Kind.WAIT, step=name, at=wake)
    # Every step ended (after a fallback: the fallback steps completed).
    return Action(Kind.FINISH, state=RunState.COMPLETED)


def _step_deadline(step: Step, record: StepRecord) -> datetime | None:
    """When the current attempt times out (None: no timeout, or no attempt under way — a
    step waiting for its retry is between attempts)."""
    between = record.state is StepState.WAITING and record.error is not None
    began = record.attempt_started_at or record.started_at
    if step.timeout_seconds and began is not None and not between:
        return began + timedelta(seconds=step.timeout_seconds)
    return None


def time_left(
    spec: WorkflowSpec, status: WorkflowRunStatus, name: str, now: datetime
) -> float | None:
    """Seconds until a call of this step must be abandoned: its attempt's timeout or the
    run's, whichever comes first (None: neither is set)."""
    record = _record(status, name)
    step = dict(_steps_in_order_all(spec)).get(name)
    started = status.started_at or now
    run = started + timedelta(seconds=spec.timeout_seconds) if spec.timeout_seconds else None
    own = _step_deadline(step, record) if step is not None and record is not None else None
    due = min((t for t in (own, run) if t is not None), default=None)
    return None if due is None else (due - now).total_seconds()


def timed_out(spec: WorkflowSpec, status: WorkflowRunStatus, name: str, now: datetime) -> bool:
    """Has the step passed its own timeout (checked before calling it again)?"""
    record = _record(status, name)
    step = dict(_steps_in_order(spec, status)).get(name)
    if record is None or step is None:
        return False
    deadline = _step_deadline(step, record)
    return deadline is not None and now >= deadline


def begin_attempt(
    status: WorkflowRunStatus,
    name: str,
    run_uid: str,
    now: datetime,
    **extra: Any,
) -> WorkflowRunStatus:
    """The status to write *before* calling the step: running, attempt counted, key fixed.

    A step found `running` (the controller died mid-call) keeps its attempt number: the
    same call is re-issued with the same idempotency key rather than counted twice.
    """
    steps = list(status.steps)
    record = _record(status, name)
    if record is None:
        record = StepRecord(
            name=name,
            state=StepState.PENDING,
            attempts=0,
            unique_execution_id=execution_id(run_uid, name),
            started_at=now,
        )
        steps.append(record)
    # A step found waiting without an error (a sleep, a job being polled) is resumed, not
    # retried: same attempt.
    resumed = record.state is StepState.RUNNING or (
        record.state is StepState.WAITING and record.error is None and record.attempts > 0
    )
    attempts = record.attempts if resumed else record.attempts + 1
    began = record.attempt_started_at if resumed and record.attempt_started_at else now
    updated = record.model_copy(
        update={
            "state": StepState.RUNNING,
            "attempts": attempts,
            "attempt_started_at": began,
            "wake_at": None,
            **extra,
        }
    )
    steps = [updated if r.name == name else r for r in steps]
    return status.model_copy(
        update={
            "state": RunState.RUNNING,
            "started_at": status.started_at or now,
            "steps": steps,
        }
    )


def _retry_policy(spec: WorkflowSpec, name: str) -> RetryPolicy:
    step = dict(_steps_in_order_all(spec)).get(name)
    return (step.retry_policy if step else None) or spec.retry_policy or RetryPolicy(max_attempts=1)


def _steps_in_order_all(spec: WorkflowSpec) -> list[tuple[str, Step]]:
    return [(s.name, s) for s in spec.steps] + [
        (FALLBACK_PREFIX + s.name, s) for s in spec.fallback
    ]


def backoff(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Delay before attempt `attempt + 1`: initial · factor^(attempt-1), capped, ±20 % jitter."""
    b = policy.backoff
    base = min(b.max_seconds, b.initial_seconds * b.factor ** max(0, attempt - 1))
    return max(0.0, base * (1 + rng.uniform(-0.2, 0.2)))


def record_reply(
    spec: WorkflowSpec,
    status: WorkflowRunStatus,
    name: str,
    reply: StepReply,
    now: datetime,
    rng: random.Random,
) -> WorkflowRunStatus:
    """The status after a step's reply (or an ErrorReply standing for a failed call)."""
    return _settle(_record_reply(spec, status, name, reply, now, rng))


def _settle(status: WorkflowRunStatus) -> WorkflowRunStatus:
    """An unfinished run is `waiting` while a step waits (a defer, a sleep, a hook, a retry
    backoff) and `running` otherwise."""
    if status.state not in (RunState.RUNNING, RunState.WAITING):
        return status
    waiting = any(r.state is StepState.WAITING for r in status.steps)
    return status.model_copy(update={"state": RunState.WAITING if waiting else RunState.RUNNING})


def _record_reply(
    spec: WorkflowSpec,
    status: WorkflowRunStatus,
    name: str,
    reply: StepReply,
    now: datetime,
    rng: random.Random,
) -> WorkflowRunStatus:
    record = _record(status, name)
    assert record is not None, f"no record for step {name}"
    if isinstance(reply, OutcomeReply):
        size = len(_json_bytes(reply.data))
        if size > MAX_OUTCOME_BYTES:
            message = (
                f"outcome data of step {name} is {size} bytes, over the limit of "
                f"{MAX_OUTCOME_BYTES}; return less data (e.g. a reference to it)"
            )
            return _fail_step(spec, status, record, message, now)
        done = record.model_copy(
            update={
                "state": StepState.COMPLETED,
                "outcome": StepOutcome(id=reply.id, data=reply.data),
                "error": None,
                "finished_at": now,
                "wake_at": None,
            }
        )
        return _replace(status, done)
    if isinstance(reply, ExitReply):
        done = record.model_copy(
            update={"state": StepState.COMPLETED, "finished_at": now, "wake_at": None}
        )
        return _finish(_replace(status, done), RunState.COMPLETED, now)
    if isinstance(reply, DeferReply):
        waiting = record.model_copy(update={"state": StepState.WAITING, "wake_at": None})
        return _replace(status, waiting)
    policy = _retry_policy(spec, name)
    error = StepError(message=reply.message, retryable=reply.retryable)
    if reply.retryable and record.attempts < policy.max_attempts:
        wake = now + timedelta(seconds=backoff(policy, record.attempts, rng))
        retrying = record.model_copy(
            update={"state": StepState.WAITING, "error": error, "wake_at": wake}
        )
        return _replace(status, retrying)
    return _fail_step(spec, status, record, reply.message, now)


def wait_until(
    status: WorkflowRunStatus, name: str, at: datetime | None, **extra: Any
) -> WorkflowRunStatus:
    """A built-in step waits without being retried: until `at` (a sleep, a job polled), or
    for a hook (`at` None; `extra` carries the hook token's hash)."""
    record = _record(status, name)
    assert record is not None, f"no record for step {name}"
    return _settle(
        _replace(
            status, record.model_copy(update={"state": StepState.WAITING, "wake_at": at, **extra})
        )
    )


def record_timeout(
    spec: WorkflowSpec,
    status: WorkflowRunStatus,
    name: str,
    now: datetime,
    rng: random.Random | None = None,
) -> WorkflowRunStatus:
    """A step's attempt passed its timeoutSeconds: the attempt fails as timed out, and is
    retried per the retry policy (then error handling decides what follows)."""
    step = dict(_steps_in_order_all(spec))[name]
    timeout = ErrorReply(
        message=f"step {name} timed out after {step.timeout_seconds}s", retryable=True
    )
    return record_reply(spec, status, name, timeout, now, rng or random.Random())


def cancel(status: WorkflowRunStatus, now: datetime) -> WorkflowRunStatus:
    """`spec.cancel: true`: unfinished steps are cancelled, the run ends `cancelled`."""
    steps = [
        r
        if r.state in _FINAL_STEP_STATES
        else r.model_copy(
            update={"state": StepState.CANCELLED, "finished_at": now, "wake_at": None}
        )
        for r in status.steps
    ]
    return _finish(status.model_copy(update={"steps": steps}), RunState.CANCELLED, now)


def finish(
    status: WorkflowRunStatus, state: RunState, now: datetime, error: RunError | None = None
) -> WorkflowRunStatus:
    """End the run (completed, failed on a run timeout, …); unfinished steps are cancelled."""
    ended = cancel(status, now) if state is not RunState.COMPLETED else status
    reason = (error or status.error) if state is not RunState.COMPLETED else None
    return _finish(ended, state, now, reason)


def _fail_step(
    spec: WorkflowSpec, status: WorkflowRunStatus, record: StepRecord, message: str, now: datetime
) -> WorkflowRunStatus:
    failed = record.model_copy(
        update={
            "state": StepState.FAILED,
            "error": StepError(message=message, retryable=False),
            "finished_at": now,
            "wake_at": None,
        }
    )
    status = _replace(status, failed)
    run_error = RunError(message=message, step=record.name)
    in_fallback = record.name.startswith(FALLBACK_PREFIX)
    if in_fallback or spec.error_handling is ErrorHandling.STOP:
        return _finish(status, RunState.FAILED, now, status.error or run_error)
    if spec.error_handling is ErrorHandling.CONTINUE:
        return status
    if not spec.fallback:
        return _finish(status, RunState.FAILED, now, run_error)
    # Fallback: remaining main steps are skipped; the fallback steps run next.
    skipped = [
        StepRecord(name=s.name, state=StepState.SKIPPED, finished_at=now)
        for s in spec.steps
        if _record(status, s.name) is None
    ]
    return status.model_copy(update={"steps": [*status.steps, *skipped], "error": run_error})


def _replace(status: WorkflowRunStatus, record: StepRecord) -> WorkflowRunStatus:
    return status.model_copy(
        update={"steps": [record if r.name == record.name else r for r in status.steps]}
    )


def _finish(
    status: WorkflowRunStatus, state: RunState, now: datetime, error: RunError | None = None
) -> WorkflowRunStatus:
    output = _last_outcome_data(status) if state is RunState.COMPLETED else status.output
    return status.model_copy(
        update={
            "state": state,
            "finished_at": now,
            "error": error if state is not RunState.COMPLETED else None,
            "output": output,
        }
    )


def _last_outcome_data(status: WorkflowRunStatus) -> Any:
    for record in reversed(status.steps):
        if record.outcome is not None:
            return record.outcome.data
    return None


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()
