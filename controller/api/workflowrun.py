"""WorkflowRun: one durable execution of a Workflow."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from controller.api.common import (
    AnyJSON,
    ApiModel,
    Condition,
    FreeFormObject,
    ObjectMeta,
    ObjectName,
)


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TERMINATED = "terminated"


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class WorkflowReference(ApiModel):
    """The Workflow (same namespace) a run executes."""

    name: ObjectName = Field(description="Name of the Workflow.")


class WorkflowRunSpec(ApiModel):
    """What to run."""

    workflow_ref: WorkflowReference = Field(description="The Workflow to run.")
    input: FreeFormObject | None = Field(
        default=None,
        description="The triggering event (a JSON object), seen by CEL as `event`.",
    )
    cancel: bool = Field(
        default=False, description="Set to true to cancel the run after its current step call."
    )
    paused: bool = Field(
        default=False,
        description=(
            "Set to true to pause the run: no new step starts and due timers (sleeps, retry "
            "backoffs, timeouts) wait; calls in flight finish and are recorded. Set back to "
            "false to resume where it was (`blockflow run pause|resume`)."
        ),
    )
    retry: int = Field(
        default=0,
        ge=0,
        description=(
            "Retries asked for: raise it by one to retry a failed, terminated or cancelled "
            "run from the steps that did not complete (`blockflow run retry`). Completed "
            "steps keep their outcomes; the others get new attempts under new idempotency keys."
        ),
    )
    workflow_version: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Workflow version to run (set by triggers); default: the version activated when "
            "the run is admitted."
        ),
    )


class EventWait(ApiModel):
    """An event a run waits for: its type, and the values fields of it must have."""

    type: str = Field(min_length=1, description="The event type, e.g. Payment.succeeded.")
    match: dict[str, AnyJSON] = Field(
        default_factory=dict,
        description="Dotted paths in the event (e.g. data.orderId) and the values they must have.",
    )


class StepOutcome(ApiModel):
    """The outcome a step reported."""

    id: str = Field(description="Outcome id, e.g. success or approved.")
    data: AnyJSON = Field(
        default=None, description="Outcome data, seen by CEL as steps.<name>.data."
    )


class StepError(ApiModel):
    """Why a step attempt failed."""

    message: str = Field(description="What went wrong.")
    retryable: bool = Field(default=False, description="Whether the step may be retried.")


class StepRecord(ApiModel):
    """What happened to one step of the run."""

    name: str = Field(description="Step name.")
    state: StepState = Field(
        description="pending, running, waiting, completed, failed, skipped or cancelled."
    )
    attempts: int = Field(default=0, ge=0, description="Attempts made so far.")
    unique_execution_id: str | None = Field(
        default=None, description="Idempotency key, stable across retries of this step execution."
    )
    outcome: StepOutcome | None = Field(default=None, description="The step's outcome.")
    error: StepError | None = Field(default=None, description="The last error.")
    started_at: datetime | None = Field(default=None, description="When the first attempt started.")
    attempt_started_at: datetime | None = Field(
        default=None,
        description="When the current attempt started: the step's timeoutSeconds counts from here.",
    )
    finished_at: datetime | None = Field(default=None, description="When the step finished.")
    wake_at: datetime | None = Field(
        default=None, description="When a waiting step (sleep, retry backoff, timeout) wakes up."
    )
    callback_token_hash: str | None = Field(
        default=None, description="sha256 of the finish callback token (the token is never stored)."
    )
    hook_token_hash: str | None = Field(
        default=None, description="sha256 of the hook token a hook or approval step waits for."
    )
    received: list[AnyJSON] = Field(
        default_factory=list, description="Hook payloads received so far (hook steps with until)."
    )
    reason: str | None = Field(
        default=None,
        description="Why a step was skipped or cancelled (its condition was false, a fallback…).",
    )
    child: str | None = Field(
        default=None, description="The run a `workflow` step started (same namespace)."
    )
    awaits: EventWait | None = Field(
        default=None, description="The event a `waitForEvent` step waits for."
    )
    items: list[AnyJSON] | None = Field(
        default=None, description="A fan-out step's items (its forEach, evaluated)."
    )
    progress: str | None = Field(
        default=None,
        description=(
            "A fan-out step's progress, one character per item: `.` to do, `c` completed, "
            "`f` failed (iterations in progress have records of their own, <step>[<index>])."
        ),
    )
    results: dict[str, AnyJSON] | None = Field(
        default=None,
        description=(
            "A fan-out step's results so far, by item index (the outcome's data, a list in "
            "the items' order, once every item completed)."
        ),
    )


class RunError(ApiModel):
    """Why the run failed."""

    message: str = Field(description="What went wrong.")
    step: str | None = Field(default=None, description="The step that failed, if any.")


class RunRetry(ApiModel):
    """One retry of the run."""

    at: datetime = Field(description="When the run was retried.")
    by: str | None = Field(
        default=None,
        description="Who asked, as the client said (annotation blockflow.dev/retried-by).",
    )
    previous_state: RunState = Field(description="The state the run was retried from.")
    steps: list[str] = Field(
        default_factory=list,
        description=(
            "The steps reached that had not completed: they run again (new attempts), "
            "and the steps after them as usual."
        ),
    )


class WorkflowRunStatus(ApiModel):
    """Observed state of a run."""

    state: RunState | None = Field(
        default=None,
        description="queued, running, waiting, paused, completed, failed, cancelled or terminated.",
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation acted upon."
    )
    conditions: list[Condition] = Field(default_factory=list, description="kstatus conditions.")
    workflow_version: int | None = Field(
        default=None, description="Version of the Workflow this run started with."
    )
    workflow_spec: FreeFormObject | None = Field(
        default=None, description="Snapshot of the Workflow's spec at that version."
    )
    started_at: datetime | None = Field(default=None, description="When the run started.")
    finished_at: datetime | None = Field(default=None, description="When the run finished.")
    steps: list[StepRecord] = Field(
        default_factory=list, description="One record per step reached."
    )
    output: AnyJSON = Field(default=None, description="The run's output.")
    error: RunError | None = Field(default=None, description="Why the run failed.")
    accounted: list[str] = Field(
        default_factory=list,
        description="Which of started/finished the Workflow's counters already include.",
    )
    finishing: RunState | None = Field(
        default=None,
        description=(
            "The state the run ends in once its finally steps have run (set while they run)."
        ),
    )
    paused_at: datetime | None = Field(default=None, description="When the run was paused.")
    paused_seconds: float = Field(
        default=0,
        ge=0,
        description="Time spent paused before (it does not count against timeoutSeconds).",
    )
    retries: list[RunRetry] = Field(
        default_factory=list, description="The retries of this run, oldest first."
    )
    cancel_on: list[EventWait] = Field(
        default_factory=list,
        description="The workflow's cancelOn, rendered for this run: events that cancel it.",
    )
    concurrency_key: str | None = Field(
        default=None,
        description="The run's concurrency.key value: the limit counts runs with the same one.",
    )


class WorkflowRun(ApiModel):
    """One execution of a Workflow."""

    api_version: Literal["blockflow.dev/v1alpha1"] = "blockflow.dev/v1alpha1"
    kind: Literal["WorkflowRun"] = "WorkflowRun"
    metadata: ObjectMeta
    spec: WorkflowRunSpec
    status: WorkflowRunStatus = Field(default_factory=WorkflowRunStatus)
