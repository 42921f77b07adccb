"""When things fall due in a run: its deadline, a step attempt's, retry backoffs (pure).

A run's deadline is `timeoutSeconds` after its start, time spent paused not counted, and
none once it is finishing (its finally steps have their own timeouts only). A step's
attempt times out `timeoutSeconds` after it started — a call in flight or a wait for its
callback or hook — but not between attempts (a retry backoff is not an attempt).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from controller.api.workflow import RetryPolicy, Step, WorkflowSpec
from controller.api.workflowrun import StepRecord, StepState, WorkflowRunStatus
from controller.workflows.graph import find_node


def _record(status: WorkflowRunStatus, name: str) -> StepRecord | None:
    return next((r for r in status.steps if r.name == name), None)


def run_deadline(spec: WorkflowSpec, status: WorkflowRunStatus, now: datetime) -> datetime | None:
    """When the run times out: timeoutSeconds after its start, time spent paused not
    counted; None without a timeout, and once the run is finishing (its finally steps are
    bound by their own timeouts only)."""
    if not spec.timeout_seconds or status.finishing is not None:
        return None
    started = status.started_at or now
    return started + timedelta(seconds=spec.timeout_seconds + status.paused_seconds)


def step_deadline(step: Step, record: StepRecord) -> datetime | None:
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
    node = find_node(spec, name)
    run = run_deadline(spec, status, now)
    own = step_deadline(node.step, record) if node is not None and record is not None else None
    due = min((t for t in (own, run) if t is not None), default=None)
    return None if due is None else (due - now).total_seconds()


def timed_out(spec: WorkflowSpec, status: WorkflowRunStatus, name: str, now: datetime) -> bool:
    """Has the step passed its own timeout (checked before calling it again)?"""
    record = _record(status, name)
    node = find_node(spec, name)
    if record is None or node is None:
        return False
    deadline = step_deadline(node.step, record)
    return deadline is not None and now >= deadline


def backoff(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Delay before attempt `attempt + 1`: initial · factor^(attempt-1), capped, ±20 % jitter."""
    b = policy.backoff
    base = min(b.max_seconds, b.initial_seconds * b.factor ** max(0, attempt - 1))
    return max(0.0, base * (1 + rng.uniform(-0.2, 0.2)))
