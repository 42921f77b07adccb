"""The data of the events Blockflow itself publishes, as models: the one place that says what
a workflow triggered by them sees as ``event.data`` (the reference docs are generated from
here, and the publishers build their data with these models)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from controller.api.common import ApiModel, LifecycleState
from controller.api.workflowrun import RunError, RunState


class WorkflowRunEnded(ApiModel):
    """`WorkflowRun.completed` and `WorkflowRun.failed`: a run ended."""

    workflow: str = Field(description="The Workflow the run belongs to.")
    run: str = Field(description="The WorkflowRun's name.")
    state: RunState = Field(description="completed or failed.")
    output: Any = Field(default=None, description="The run's output (its last step's data).")
    error: RunError | None = Field(default=None, description="Why it failed (failed only).")


class WorkflowActivated(ApiModel):
    """`Workflow.activated`: a version of a workflow was activated."""

    workflow: str = Field(description="The Workflow's name.")
    version: int = Field(description="The version activated (metadata.generation).")


class WorkflowHighFailureRate(ApiModel):
    """`Workflow.highFailureRate`: over 10 % of at least 10 finished runs failed."""

    workflow: str = Field(description="The Workflow's name.")
    runs: int = Field(description="Runs finished so far.")
    failure_rate: float = Field(description="The share of them that failed (0 to 1).")


class EntityChanged(ApiModel):
    """`App.ready`, `App.failed`, `Block.ready`, `Block.failed`: a lifecycle status reached."""

    name: str = Field(description="The App's or Block's name.")
    namespace: str = Field(description="Its namespace.")
    status: LifecycleState = Field(description="ready or failed.")
    description: str | None = Field(default=None, description="Its status description.")


#: Event type → the model of its data.
OWN_EVENTS: dict[str, type[ApiModel]] = {
    "WorkflowRun.completed": WorkflowRunEnded,
    "WorkflowRun.failed": WorkflowRunEnded,
    "Workflow.activated": WorkflowActivated,
    "Workflow.highFailureRate": WorkflowHighFailureRate,
    "App.ready": EntityChanged,
    "App.failed": EntityChanged,
    "Block.ready": EntityChanged,
    "Block.failed": EntityChanged,
}


def event_data(model: ApiModel) -> dict[str, Any]:
    """An event's data as JSON (camelCase names)."""
    return model.model_dump(mode="json", by_alias=True)
