"""What a run's steps see and what `kubectl` sees of a run, from plain values.

- :func:`step_entity`, :func:`call_metadata` — what a step block is called with;
- :func:`cel_context` — the variables of `${{ … }}` expressions: the triggering `event`,
  earlier `steps.<name>.{id,data,state,error}`, the `workflow` and the `run`;
- :func:`run_conditions` — kstatus conditions for a run's state;
- :func:`unobserved` — whether a run's spec changed since the controller last wrote it;
- :func:`find_step`, :func:`find_record` — a step of the snapshot, and its record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from controller.api.common import Condition, LifecycleState
from controller.api.events import WorkflowRunEnded, event_data
from controller.api.workflow import Step, WorkflowSpec
from controller.api.workflowrun import RunState, StepRecord, StepState, WorkflowRunStatus
from controller.handlers.protocol import CallMetadata, EntityInput, ErrorReply, OutcomeReply
from controller.kube.objects import Body, generation, spec_of, status_of, workflow_ref
from controller.lifecycle.conditions import conditions_for
from controller.workflows.activator import TokenKeys
from controller.workflows.executor import StepReply
from controller.workflows.graph import bare_name, find_node


def cel_context(body: Body, status: WorkflowRunStatus) -> dict[str, Any]:
    """What CEL sees: event, steps.<name>.{id,data,state,error}, workflow, run."""
    meta = body["metadata"]
    steps = {
        bare_name(r.name): {
            "id": r.outcome.id if r.outcome else None,
            "data": r.outcome.data if r.outcome else None,
            "state": r.state.value,
            "error": r.error.message if r.error else None,
        }
        for r in status.steps
        if r.state is not StepState.PENDING and not r.name.endswith("]")  # not iterations
    }
    return {
        "event": spec_of(body).get("input"),
        "steps": steps,
        "workflow": {
            "name": workflow_ref(body) or None,
            "namespace": meta["namespace"],
            "version": status.workflow_version,
        },
        "run": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            # What finally steps see: how the run ends.
            "state": (status.finishing or status.state or RunState.QUEUED).value,
            "error": status.error.message if status.error else None,
        },
    }


def step_entity(
    body: Body, status: WorkflowRunStatus, step: Step, with_: dict[str, Any], workflow_uid: str
) -> EntityInput:
    """The entity a step block is called with: the workflow, at the run's version."""
    return EntityInput(
        kind="Workflow",
        name=workflow_ref(body),
        namespace=body["metadata"]["namespace"],
        uid=workflow_uid,
        generation=status.workflow_version or 1,
        type=step.uses.type,
        config=with_,
    )


def call_metadata(record: StepRecord, tokens: TokenKeys) -> CallMetadata:
    """A step call's attempt, idempotency key and finish-callback URL."""
    execution = record.unique_execution_id or ""
    return CallMetadata(
        attempt=max(1, record.attempts),
        unique_execution_id=execution,
        finish_callback_url=tokens.url("callbacks", tokens.callback(execution)),
    )


_RUN_LIFECYCLE = {
    RunState.QUEUED: LifecycleState.IN_PROGRESS,
    RunState.RUNNING: LifecycleState.IN_PROGRESS,
    RunState.WAITING: LifecycleState.IN_PROGRESS,
    RunState.PAUSED: LifecycleState.IN_PROGRESS,
    RunState.COMPLETED: LifecycleState.READY,
    RunState.CANCELLED: LifecycleState.READY,
    RunState.FAILED: LifecycleState.FAILED,
    RunState.TERMINATED: LifecycleState.FAILED,
}


def run_conditions(
    status: WorkflowRunStatus, body: Body, now: datetime, previous: list[Condition]
) -> list[Condition]:
    """kstatus for runs: completed or cancelled is Ready (Current), failed or terminated
    Stalled (Failed), the rest — queued, running, waiting, and paused, which has not ended
    either — Reconciling (InProgress); so `kubectl wait --for=condition=Ready wfr/NAME` and
    Flux's `wait: true` wait for the end. The reason is the run's state, capitalized."""
    assert status.state is not None
    message = f"run {status.state.value}"
    if status.error is not None:
        message += f": {status.error.message}"
    return conditions_for(
        _RUN_LIFECYCLE[status.state],
        message=message[:1024],
        generation=generation(body),
        now=now,
        previous=previous,
        reason=status.state.value.capitalize(),
    )


def unobserved(body: Body) -> bool:
    """A spec change the controller has not acknowledged in status.observedGeneration
    (runs written before it was recorded have none: nothing to acknowledge)."""
    observed = status_of(body).get("observedGeneration")
    return observed is not None and observed != generation(body)


def find_step(spec: WorkflowSpec, name: str) -> Step:
    node = find_node(spec, name)
    if node is None:
        raise KeyError(f"no step {name}")
    return node.step


def find_record(status: WorkflowRunStatus, name: str) -> StepRecord:
    return next(r for r in status.steps if r.name == name)


def builtin_target(step_type: str | None, with_: dict[str, Any]) -> str | None:
    """What a built-in step calls, for its concurrency limit: an ``http`` step's host (a slow
    host delays only the steps that call it); None for steps that call nothing outside."""
    if step_type != "http":
        return None
    return f"http step {urlsplit(str(with_.get('url') or '')).netloc}"


def run_ended_data(workflow: str, run: str, status: WorkflowRunStatus) -> dict[str, Any]:
    """The data of the ``WorkflowRun.completed`` / ``.failed`` event of an ended run."""
    assert status.state is not None
    ended = WorkflowRunEnded(
        workflow=workflow, run=run, state=status.state, output=status.output, error=status.error
    )
    return event_data(ended)


def child_reply(step: str, child: str, ended: WorkflowRunStatus) -> StepReply:
    """What a `workflow` step's child run ending means for the step: its output as the
    outcome `completed`, or a failure saying how the child ended."""
    assert ended.state is not None
    if ended.state is RunState.COMPLETED:
        return OutcomeReply(id="completed", data={"run": child, "output": ended.output})
    why = f": {ended.error.message}" if ended.error else ""
    return ErrorReply(message=f"step {step}: run {child} {ended.state.value}{why}", retryable=False)
