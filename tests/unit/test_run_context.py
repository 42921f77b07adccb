"""What a run's `${{ CEL }}` expressions see, and what a step block is called with."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.workflowrun import (
    StepError,
    StepOutcome,
    StepRecord,
    StepState,
    WorkflowRunStatus,
)
from controller.workflows.activator import TokenKeys
from controller.workflows.executor import FALLBACK_PREFIX
from controller.workflows.run_context import call_metadata, cel_context

RUN = {
    "metadata": {"name": "wf-1", "namespace": "ns", "uid": "run-uid"},
    "spec": {"workflowRef": {"name": "wf"}, "input": {"body": {"orderId": 7}}},
}


def record(name: str, state: StepState, **extra: Any) -> StepRecord:
    return StepRecord(name=name, state=state, **extra)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([], {}),
        # A pending step is not visible yet.
        ([record("a", StepState.PENDING)], {}),
        (
            [record("a", StepState.COMPLETED, outcome=StepOutcome(id="created", data={"n": 1}))],
            {"a": {"id": "created", "data": {"n": 1}, "state": "completed", "error": None}},
        ),
        (
            [record("b", StepState.FAILED, error=StepError(message="boom"))],
            {"b": {"id": None, "data": None, "state": "failed", "error": "boom"}},
        ),
        # A fallback step is seen under its own name.
        (
            [record(f"{FALLBACK_PREFIX}notify", StepState.RUNNING)],
            {"notify": {"id": None, "data": None, "state": "running", "error": None}},
        ),
    ],
)
def test_steps_in_the_cel_context(steps: list[StepRecord], expected: dict[str, Any]) -> None:
    status = WorkflowRunStatus(steps=steps, workflow_version=3)
    context = cel_context(RUN, status)
    assert context["steps"] == expected
    assert context["event"] == {"body": {"orderId": 7}}
    assert context["workflow"] == {"name": "wf", "namespace": "ns", "version": 3}
    assert context["run"] == {
        "name": "wf-1",
        "namespace": "ns",
        "uid": "run-uid",
        "state": "queued",
        "error": None,
    }


def test_a_call_carries_its_attempt_key_and_callback() -> None:
    tokens = TokenKeys(b"k" * 32, "https://blockflow.example/")
    first = call_metadata(record("a", StepState.RUNNING, unique_execution_id="x1"), tokens)
    again = call_metadata(
        record("a", StepState.RUNNING, unique_execution_id="x1", attempts=2), tokens
    )
    assert first.attempt == 1 and again.attempt == 2
    assert first.unique_execution_id == again.unique_execution_id == "x1"
    # The same execution gets the same callback URL on every attempt (and after a crash).
    assert first.finish_callback_url == again.finish_callback_url
    assert str(first.finish_callback_url).startswith("https://blockflow.example/callbacks/")
