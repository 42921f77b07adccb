"""What an operator does to a run — pause, resume, retry — as pure status changes.

Each is asked for in the run's spec (`spec.paused`, `spec.retry`), so it is an ordinary
`kubectl patch`, a GitOps change or a click on the web page, checked by the API server's
RBAC like any edit; the controller acts on it in the run's next reconcile:

- :func:`pause` — no new step starts and no timer fires; calls in flight still finish
  and are recorded. Time spent paused does not count against the run's timeout.
- :func:`resume` — the run goes on where it was; timers that fell due meanwhile fire now.
- :func:`retry` — a failed, terminated or cancelled run starts again from the steps that
  did not complete: completed steps keep their outcomes, the others are called again
  under new idempotency keys (a new attempt 1), and `status.retries` records when, by
  whom and from which state.
"""

from __future__ import annotations

from datetime import datetime

from controller.api.workflowrun import (
    RunRetry,
    RunState,
    StepState,
    WorkflowRunStatus,
)
from controller.workflows.fan_out import FAILED, TODO, parse_item
from controller.workflows.graph import FALLBACK_PREFIX, FINALLY_PREFIX

#: States a run can be retried from.
RETRYABLE = (RunState.FAILED, RunState.TERMINATED, RunState.CANCELLED)
_ENDED = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED, RunState.TERMINATED)


def pause(status: WorkflowRunStatus, now: datetime) -> WorkflowRunStatus:
    if status.state in _ENDED or status.state is RunState.PAUSED:
        return status
    return status.model_copy(update={"state": RunState.PAUSED, "paused_at": now})


def resume(status: WorkflowRunStatus, now: datetime) -> WorkflowRunStatus:
    if status.state is not RunState.PAUSED:
        return status
    paused = (now - status.paused_at).total_seconds() if status.paused_at else 0.0
    waiting = any(r.state is StepState.WAITING for r in status.steps)
    return status.model_copy(
        update={
            "state": RunState.WAITING if waiting else RunState.RUNNING,
            "paused_at": None,
            "paused_seconds": status.paused_seconds + max(0.0, paused),
        }
    )


def wants_retry(requested: int, status: WorkflowRunStatus) -> bool:
    """A retry asked for in spec.retry and not acted on yet, of a run that can be retried."""
    return requested > len(status.retries) and status.state in RETRYABLE


def retry(status: WorkflowRunStatus, now: datetime, by: str | None) -> WorkflowRunStatus:
    """The run started again from its steps that did not complete."""
    assert status.state in RETRYABLE, status.state
    main = [
        r
        for r in status.steps
        if not r.name.startswith((FALLBACK_PREFIX, FINALLY_PREFIX)) and not parse_item(r.name)
    ]
    again = [r.name for r in main if r.state is not StepState.COMPLETED]
    kept = [r for r in main if r.state is StepState.COMPLETED]
    # A fan-out keeps the iterations that completed; the others run again.
    kept += [
        r.model_copy(
            update={
                "state": StepState.RUNNING,
                "progress": r.progress.replace(FAILED, TODO),
                "error": None,
                "finished_at": None,
                "reason": None,
            }
        )
        for r in main
        if r.state is not StepState.COMPLETED and r.progress is not None
    ]
    record = RunRetry(at=now, by=by, previous_state=status.state, steps=again)
    return status.model_copy(
        update={
            "state": RunState.RUNNING,
            "steps": kept,
            "error": None,
            "finishing": None,
            "finished_at": None,
            "output": None,
            "paused_at": None,
            # A retried run's timeout counts from the retry.
            "started_at": now,
            "paused_seconds": 0.0,
            "retries": [*status.retries, record],
            # Its end is counted again on the Workflow (a new "finished" mark per retry).
            "accounted": [a for a in status.accounted if a == "started"],
        }
    )


def finished_mark(status: WorkflowRunStatus) -> str:
    """What the Workflow's counters record for this end of the run (one per retry)."""
    return "finished" if not status.retries else f"finished-{len(status.retries)}"
