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
from controller.workflows import fan_out
from controller.workflows.deadlines import (
    backoff,
    run_deadline,
    step_deadline,
    time_left,
    timed_out,
)
from controller.workflows.graph import (
    FALLBACK_PREFIX,
    FINALLY_PREFIX,
    Node,
    fallback_nodes,
    finally_nodes,
    find_node,
    main_nodes,
)

#: Step outcome data over this size fails the step (the run's status must stay small).
MAX_OUTCOME_BYTES = 64 * 1024
#: Iterations of a forEach step in progress at once, unless it says otherwise.
DEFAULT_MAX_CONCURRENCY = 10
FINAL_STEP_STATES = (
    StepState.COMPLETED,
    StepState.FAILED,
    StepState.SKIPPED,
    StepState.CANCELLED,
)
_FINAL_RUN_STATES = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED, RunState.TERMINATED)

StepReply = OutcomeReply | ExitReply | DeferReply | ErrorReply

__all__ = [
    "FALLBACK_PREFIX",
    "FINALLY_PREFIX",
    "FINAL_STEP_STATES",
    "backoff",
    "run_deadline",
    "time_left",
    "timed_out",
]


class Kind(StrEnum):
    CALL = "call"  # call the steps (attempt, uniqueExecutionId in their records)
    WAIT = "wait"  # until `at`, or for a callback, a hook or a call in flight when `at` is None
    FINISH = "finish"  # the run's steps are over: `state`, `error`
    NONE = "none"


@dataclass(frozen=True)
class Action:
    kind: Kind
    steps: tuple[str, ...] = ()
    at: datetime | None = None
    state: RunState | None = None
    error: RunError | None = None

    @property
    def step(self) -> str | None:
        """The first step to call (or the one waited for)."""
        return self.steps[0] if self.steps else None


def execution_id(run_uid: str, step: str, retry: int = 0) -> str:
    """Stable across attempts and restarts of one step execution; unique per run, step and
    retry of the run (a retried run calls its steps again under new keys)."""
    seed = f"{run_uid}/{step}" if not retry else f"{run_uid}/{step}/retry-{retry}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def _falling_back(status: WorkflowRunStatus) -> bool:
    """A main step failed under errorHandling Fallback: the fallback steps are the ones run."""
    return (
        status.error is not None
        and status.finishing is None
        and status.state not in _FINAL_RUN_STATES
    )


def _record(status: WorkflowRunStatus, name: str) -> StepRecord | None:
    return next((r for r in status.steps if r.name == name), None)


def current_nodes(spec: WorkflowSpec, status: WorkflowRunStatus) -> list[Node]:
    """The steps of the run's current part: main, fallback or finally."""
    if status.finishing is not None:
        return finally_nodes(spec)
    return fallback_nodes(spec) if _falling_back(status) else main_nodes(spec)


def next_action(
    spec: WorkflowSpec,
    status: WorkflowRunStatus,
    now: datetime,
    busy: frozenset[str] = frozenset(),
) -> Action:
    """What the run needs now, read from its status. ``busy``: steps whose call is in
    flight in this process (not to be called again)."""
    if status.state in _FINAL_RUN_STATES:
        return Action(Kind.NONE)
    if status.state is RunState.PAUSED:
        return Action(Kind.WAIT)  # nothing starts, no timer fires, until it is resumed
    deadline = run_deadline(spec, status, now)
    if deadline is not None and now >= deadline:
        return Action(
            Kind.FINISH,
            state=RunState.FAILED,
            error=RunError(message=f"run timed out after {spec.timeout_seconds}s"),
        )
    records = {r.name: r for r in status.steps}
    calls: list[str] = []
    wakes: list[datetime] = [deadline] if deadline is not None else []
    unfinished = waiting = 0
    for node in current_nodes(spec, status):
        record = records.get(node.name)
        if record is not None and record.state in FINAL_STEP_STATES:
            continue
        unfinished += 1
        if fan_out.is_expanded(record):
            assert record is not None and record.progress is not None
            limit = node.step.max_concurrency or DEFAULT_MAX_CONCURRENCY
            start, active = fan_out.due_items(record, limit, records)
            for i, mark in enumerate(record.progress):
                item = records.get(fan_out.item_name(node.name, i))
                if mark == fan_out.TODO and item is not None:
                    waiting += _due(node.step, item, busy, now, calls, wakes)
            calls += [fan_out.item_name(node.name, i) for i in start]
            waiting += active
            continue
        if record is None or record.state is StepState.PENDING:
            if all(_ended(records.get(n)) for n in node.needs):
                calls.append(node.name)
            continue
        waiting += _due(node.step, record, busy, now, calls, wakes)
    if calls:
        return Action(Kind.CALL, steps=tuple(calls))
    if unfinished:
        if not waiting:  # only steps that wait for each other: a cycle admission missed
            return Action(
                Kind.FINISH,
                state=RunState.FAILED,
                error=RunError(message="the remaining steps wait for each other in a cycle"),
            )
        return Action(Kind.WAIT, at=min(wakes, default=None))
    if status.finishing is not None:
        return Action(Kind.FINISH, state=status.finishing, error=status.error)
    # Every step ended (after a fallback: the fallback steps completed).
    return Action(Kind.FINISH, state=RunState.COMPLETED)


def _due(
    step: Step,
    record: StepRecord,
    busy: frozenset[str],
    now: datetime,
    calls: list[str],
    wakes: list[datetime],
) -> int:
    """A step (or iteration) under way: called again when its call was lost or its wait is
    over (added to `calls`), else its wake-up noted. Returns 1 when it waits (for a call
    in flight, a callback, a time), 0 when it is called now."""
    if record.name in busy:
        return 1
    if record.state is StepState.RUNNING:
        calls.append(record.name)  # a call whose answer was lost (a restart): re-issued
        return 0
    # WAITING: a retry backoff / sleep (wakeAt), or a deferred step (callback, timeout).
    own = step_deadline(step, record)
    wake = min((t for t in (record.wake_at, own) if t is not None), default=None)
    if wake is not None and now >= wake:
        # Retry or sleep due, or the step's timeout passed: the runtime checks
        # timed_out() first and records the timeout instead of calling.
        calls.append(record.name)
        return 0
    if wake is not None:
        wakes.append(wake)
    return 1


def _ended(record: StepRecord | None) -> bool:
    return record is not None and record.state in FINAL_STEP_STATES


def skip(status: WorkflowRunStatus, name: str, now: datetime, reason: str) -> WorkflowRunStatus:
    """A step whose condition is false: recorded as skipped, saying why."""
    record = StepRecord(name=name, state=StepState.SKIPPED, finished_at=now, reason=reason)
    steps = [r for r in status.steps if r.name != name]
    return status.model_copy(update={"steps": [*steps, record]})


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
            unique_execution_id=execution_id(run_uid, name, len(status.retries)),
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
    node = find_node(spec, name)
    own = node.step.retry_policy if node else None
    return own or spec.retry_policy or RetryPolicy(max_attempts=1)


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
        if fan_out.parse_item(name) is not None:  # an iteration: into its step's results
            collected, refused = fan_out.collect(_replace(status, done), name, now)
            return _fail_step(spec, status, record, refused, now) if refused else collected
        return _replace(status, done)
    if isinstance(reply, ExitReply):
        done = record.model_copy(
            update={"state": StepState.COMPLETED, "finished_at": now, "wake_at": None}
        )
        return finish(_replace(status, done), RunState.COMPLETED, now, spec=spec)
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
    node = find_node(spec, name)
    seconds = node.step.timeout_seconds if node is not None else None
    timeout = ErrorReply(message=f"step {name} timed out after {seconds}s", retryable=True)
    return record_reply(spec, status, name, timeout, now, rng or random.Random())


def _cancel_unfinished(
    status: WorkflowRunStatus, now: datetime, reason: str, *, finally_too: bool
) -> WorkflowRunStatus:
    steps = [
        r
        if r.state in FINAL_STEP_STATES or (r.name.startswith(FINALLY_PREFIX) and not finally_too)
        else r.model_copy(
            update={
                "state": StepState.CANCELLED,
                "finished_at": now,
                "wake_at": None,
                "reason": reason,
            }
        )
        for r in status.steps
    ]
    return status.model_copy(update={"steps": steps})


def cancel(status: WorkflowRunStatus, now: datetime) -> WorkflowRunStatus:
    """`spec.cancel: true`: unfinished steps are cancelled (finally steps do not run), the
    run ends `cancelled`."""
    cancelled = _cancel_unfinished(status, now, "the run was cancelled", finally_too=True)
    return _finish(cancelled, RunState.CANCELLED, now)


def finish(
    status: WorkflowRunStatus,
    state: RunState,
    now: datetime,
    error: RunError | None = None,
    *,
    spec: WorkflowSpec | None = None,
) -> WorkflowRunStatus:
    """The run's steps are over — completed, failed (a step, a run timeout) or ended early
    (an exit). Unfinished steps are cancelled. When the workflow has finally steps that
    have not run yet, the run goes on with them (`finishing` holds the state it ends in);
    otherwise it ends now."""
    reason = (error or status.error) if state is not RunState.COMPLETED else None
    if status.finishing is None:
        why = "the run failed" if state is not RunState.COMPLETED else "the run ended"
        status = _cancel_unfinished(status, now, why, finally_too=False)
        if spec is not None and spec.finally_ and state in (RunState.COMPLETED, RunState.FAILED):
            return _settle(
                status.model_copy(
                    update={
                        "finishing": state,
                        "error": reason,
                        "state": RunState.RUNNING
                        if status.state is not RunState.PAUSED
                        else RunState.PAUSED,
                    }
                )
            )
    else:
        status = _cancel_unfinished(status, now, "the run ended", finally_too=True)
    return _finish(status, state, now, reason)


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
    if fan_out.parse_item(record.name) is not None:  # an iteration fails its step
        status, parent, why = fan_out.fail_item(status, record.name, message, now)
        return _fail_step(spec, status, parent, why, now)
    run_error = RunError(message=message, step=record.name)
    if record.name.startswith(FINALLY_PREFIX):
        # The other finally steps still run; the run ends failed.
        return status.model_copy(
            update={"finishing": RunState.FAILED, "error": status.error or run_error}
        )
    in_fallback = record.name.startswith(FALLBACK_PREFIX)
    if in_fallback or spec.error_handling is ErrorHandling.STOP:
        return finish(status, RunState.FAILED, now, status.error or run_error, spec=spec)
    if spec.error_handling is ErrorHandling.CONTINUE:
        return status
    if not spec.fallback:
        return finish(status, RunState.FAILED, now, run_error, spec=spec)
    # Fallback: the main steps still running are cancelled, those not reached skipped;
    # the fallback steps run next.
    why = f"step {record.name} failed: the fallback steps run instead"
    status = _cancel_unfinished(status, now, why, finally_too=False)
    skipped = [
        StepRecord(name=s.name, state=StepState.SKIPPED, finished_at=now, reason=why)
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
            "finishing": None,
        }
    )


def _last_outcome_data(status: WorkflowRunStatus) -> Any:
    """The run's output: the data of the last outcome of a main or fallback step."""
    for record in reversed(status.steps):
        if record.outcome is not None and not record.name.startswith(FINALLY_PREFIX):
            return record.outcome.data
    return None


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()
