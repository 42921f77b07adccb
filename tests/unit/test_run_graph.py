"""Branches, joins, conditions, finally steps, pause, resume and retry: the pure executor and
run control, transition by transition (no cluster, no clock)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.api.workflow import Step, WorkflowSpec
from controller.api.workflowrun import RunError, RunState, StepState, WorkflowRunStatus
from controller.handlers.protocol import ErrorReply, ExitReply, OutcomeReply
from controller.workflows import executor as ex
from controller.workflows import run_control
from controller.workflows.activation import activation_errors
from controller.workflows.executor import Kind
from controller.workflows.graph import graph_errors

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
UID = "run-uid-1"
RNG = random.Random(1)


def step(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "uses": {"type": "http"}, **kw}


def spec(steps: list[dict[str, Any]], **kw: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"steps": steps, **kw})


def running() -> WorkflowRunStatus:
    return WorkflowRunStatus(state=RunState.RUNNING, started_at=NOW)


def due(workflow: WorkflowSpec, status: WorkflowRunStatus, busy: set[str] | None = None) -> Any:
    return ex.next_action(workflow, status, NOW, frozenset(busy or ()))


def begin(status: WorkflowRunStatus, *names: str) -> WorkflowRunStatus:
    for name in names:
        status = ex.begin_attempt(status, name, UID, NOW)
    return status


def reply(
    workflow: WorkflowSpec, status: WorkflowRunStatus, name: str, answer: Any
) -> WorkflowRunStatus:
    return ex.record_reply(workflow, status, name, answer, NOW, RNG)


def ok(outcome: str = "success", data: Any = None) -> OutcomeReply:
    return OutcomeReply(id=outcome, data=data)


def state_of(status: WorkflowRunStatus, name: str) -> StepState:
    return next(r.state for r in status.steps if r.name == name)


# -- the graph ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "first", "then"),
    [
        # No needs anywhere: one after the other, as always.
        ([step("a"), step("b"), step("c")], ("a",), ("b",)),
        # b and c need a: side by side after it.
        ([step("a"), step("b", needs=["a"]), step("c", needs=["a"])], ("a",), ("b", "c")),
        # needs: [] starts at once, beside the first step.
        ([step("a"), step("b", needs=[])], ("a", "b"), ()),
        # A join waits for both branches.
        (
            [step("a", needs=[]), step("b", needs=[]), step("join", needs=["a", "b"])],
            ("a", "b"),
            ("join",),
        ),
    ],
)
def test_what_runs_first_and_what_runs_after_it(
    steps: list[dict[str, Any]], first: tuple[str, ...], then: tuple[str, ...]
) -> None:
    workflow = spec(steps)
    action = due(workflow, running())
    assert action.kind is Kind.CALL and action.steps == first
    status = begin(running(), *first)
    for name in first:
        status = reply(workflow, status, name, ok())
    after = due(workflow, status)
    if then:
        assert after.steps == then
    else:
        assert after.kind is Kind.FINISH


def test_a_step_waits_for_all_it_needs_and_a_busy_step_is_not_called_twice() -> None:
    workflow = spec([step("a", needs=[]), step("b", needs=[]), step("join", needs=["a", "b"])])
    status = begin(running(), "a", "b")
    assert due(workflow, status, {"a", "b"}).kind is Kind.WAIT  # both in flight
    status = reply(workflow, status, "a", ok())
    waiting = due(workflow, status, {"b"})
    assert waiting.kind is Kind.WAIT and waiting.at is None
    # b's call was lost in a restart (not busy, still running): it is called again.
    assert due(workflow, status).steps == ("b",)
    status = reply(workflow, status, "b", ok())
    assert due(workflow, status).steps == ("join",)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([step("a", needs=["nope"])], "spec.steps[0].needs: no step named nope in spec.steps"),
        ([step("a", needs=["a"])], "spec.steps[0].needs: step a needs itself"),
        (
            [step("a", needs=["c"]), step("b", needs=["a"]), step("c", needs=["b"])],
            "spec.steps: the steps wait for each other in a cycle: a -> c -> b -> a",
        ),
    ],
)
def test_graphs_that_cannot_run_are_refused_naming_the_field(
    steps: list[dict[str, Any]], message: str
) -> None:
    parsed = [Step.model_validate(s) for s in steps]
    errors = graph_errors(parsed, "steps")
    assert errors and errors[0].startswith(message), errors
    assert any(e.startswith(message) for e in activation_errors(spec(steps), lambda _: {}))


def test_activation_refuses_an_if_that_does_not_compile_and_a_bad_input_schema() -> None:
    workflow = spec(
        [step("a", **{"if": "${{ steps.x.id == }}"})],
        inputSchema={"type": "nonsense"},
    )
    errors = activation_errors(workflow, lambda _: {})
    assert any(
        e.startswith("spec.steps[0].if: ${{ steps.x.id == }} does not compile") for e in errors
    )
    assert any(e.startswith("spec.inputSchema.type: not a valid JSON Schema") for e in errors)


def test_a_workflow_without_a_trigger_can_be_activated() -> None:
    assert activation_errors(spec([step("a")]), lambda _: {}) == []


# -- conditions ----------------------------------------------------------------------------------


def test_a_skipped_step_counts_as_ended_for_the_steps_that_need_it() -> None:
    workflow = spec(
        [
            step("lookup"),
            step("create", needs=["lookup"]),
            step("update", needs=["lookup"]),
            step("notify", needs=["create", "update"]),
        ]
    )
    status = reply(workflow, begin(running(), "lookup"), "lookup", ok("found"))
    assert due(workflow, status).steps == ("create", "update")
    status = ex.skip(status, "create", NOW, "its condition is false")
    status = reply(workflow, begin(status, "update"), "update", ok())
    assert due(workflow, status).steps == ("notify",)
    assert state_of(status, "create") is StepState.SKIPPED


# -- failures, fallback, finally -----------------------------------------------------------------


def test_a_failed_branch_under_stop_cancels_the_other_and_the_finally_steps_run() -> None:
    workflow = spec(
        [step("a", needs=[]), step("b", needs=[])],
        **{"finally": [step("cleanup")]},
    )
    status = begin(running(), "a", "b")
    status = reply(workflow, status, "a", ErrorReply(message="boom"))
    assert status.state is RunState.RUNNING and status.finishing is RunState.FAILED
    assert state_of(status, "b") is StepState.CANCELLED
    assert status.error == RunError(message="boom", step="a")
    assert due(workflow, status).steps == ("finally.cleanup",)
    status = reply(workflow, begin(status, "finally.cleanup"), "finally.cleanup", ok())
    end = due(workflow, status)
    assert (end.kind, end.state) == (Kind.FINISH, RunState.FAILED)
    ended = ex.finish(status, RunState.FAILED, NOW, end.error, spec=workflow)
    assert ended.state is RunState.FAILED and ended.error is not None
    assert ended.error.message == "boom"


def test_finally_steps_run_after_a_completed_run_and_one_that_fails_fails_the_run() -> None:
    workflow = spec([step("a")], **{"finally": [step("f1"), step("f2", needs=[])]})
    status = reply(workflow, begin(running(), "a"), "a", ok(data={"n": 1}))
    end = due(workflow, status)
    status = ex.finish(status, end.state, NOW, spec=workflow)
    assert status.finishing is RunState.COMPLETED and status.state is RunState.RUNNING
    assert due(workflow, status).steps == ("finally.f1", "finally.f2")
    status = begin(status, "finally.f1", "finally.f2")
    status = reply(workflow, status, "finally.f1", ErrorReply(message="no"))
    assert status.finishing is RunState.FAILED
    status = reply(workflow, status, "finally.f2", ok(data={"ignored": True}))
    end = due(workflow, status)
    ended = ex.finish(status, end.state, NOW, end.error, spec=workflow)
    assert ended.state is RunState.FAILED and ended.finishing is None


def test_a_run_timeout_goes_to_the_finally_steps_which_the_timeout_does_not_bind() -> None:
    workflow = spec([step("slow")], timeoutSeconds=10, **{"finally": [step("alert")]})
    status = begin(running(), "slow")
    late = ex.next_action(workflow, status, NOW + timedelta(seconds=11), frozenset({"slow"}))
    assert late.kind is Kind.FINISH and late.error is not None
    status = ex.finish(status, late.state or RunState.FAILED, NOW, late.error, spec=workflow)
    assert state_of(status, "slow") is StepState.CANCELLED
    much_later = ex.next_action(workflow, status, NOW + timedelta(hours=1))
    assert much_later.steps == ("finally.alert",)


def test_an_exit_cancels_the_branches_still_running() -> None:
    workflow = spec([step("a", needs=[]), step("b", needs=[])])
    status = reply(workflow, begin(running(), "a", "b"), "a", ExitReply())
    assert status.state is RunState.COMPLETED
    assert state_of(status, "b") is StepState.CANCELLED


def test_a_cancelled_run_does_not_run_its_finally_steps() -> None:
    workflow = spec([step("a")], **{"finally": [step("f")]})
    status = ex.cancel(begin(running(), "a"), NOW)
    assert status.state is RunState.CANCELLED
    assert [r.name for r in status.steps] == ["a"]
    assert ex.next_action(workflow, status, NOW).kind is Kind.NONE


# -- pause and resume --------------------------------------------------------------------------


def test_a_paused_run_starts_nothing_lets_timers_pass_and_its_pause_does_not_count() -> None:
    workflow = spec([step("a"), step("b")], timeoutSeconds=60)
    status = reply(workflow, begin(running(), "a"), "a", ok())
    paused = run_control.pause(status, NOW)
    assert paused.state is RunState.PAUSED
    later = NOW + timedelta(seconds=100)  # past the run's timeout, paused all along
    assert ex.next_action(workflow, paused, later).kind is Kind.WAIT
    resumed = run_control.resume(paused, later)
    assert resumed.state is RunState.RUNNING and resumed.paused_seconds == 100
    assert ex.next_action(workflow, resumed, later).steps == ("b",)
    assert ex.next_action(workflow, resumed, later + timedelta(seconds=61)).kind is Kind.FINISH


def test_a_call_answering_while_paused_is_recorded_and_the_run_stays_paused() -> None:
    workflow = spec([step("a"), step("b")])
    paused = run_control.pause(begin(running(), "a"), NOW)
    status = reply(workflow, paused, "a", ok())
    assert status.state is RunState.PAUSED and state_of(status, "a") is StepState.COMPLETED


# -- retry ---------------------------------------------------------------------------------------


def test_a_retried_run_keeps_completed_steps_and_calls_the_others_under_new_keys() -> None:
    workflow = spec([step("a"), step("b"), step("c")], **{"finally": [step("f")]})
    status = reply(workflow, begin(running(), "a"), "a", ok(data=1))
    status = begin(status, "b")
    first_key = next(r.unique_execution_id for r in status.steps if r.name == "b")
    status = reply(workflow, status, "b", ErrorReply(message="down"))
    status = reply(workflow, begin(status, "finally.f"), "finally.f", ok())
    status = ex.finish(status, RunState.FAILED, NOW, spec=workflow)
    status = status.model_copy(update={"accounted": ["started", "finished"]})
    assert status.state is RunState.FAILED
    assert run_control.wants_retry(1, status) and not run_control.wants_retry(0, status)
    later = NOW + timedelta(minutes=5)
    retried = run_control.retry(status, later, "jane@example.com")
    assert retried.state is RunState.RUNNING and retried.error is None
    assert [r.name for r in retried.steps] == ["a"]
    assert retried.retries[0].by == "jane@example.com"
    assert retried.retries[0].steps == ["b"]
    assert retried.retries[0].previous_state is RunState.FAILED
    assert run_control.finished_mark(retried) == "finished-1"
    assert retried.accounted == ["started"]
    assert not run_control.wants_retry(1, retried)
    assert ex.next_action(workflow, retried, later).steps == ("b",)
    again = ex.begin_attempt(retried, "b", UID, later)
    record = next(r for r in again.steps if r.name == "b")
    assert record.attempts == 1 and record.unique_execution_id != first_key


def test_a_completed_or_running_run_cannot_be_retried() -> None:
    assert not run_control.wants_retry(1, WorkflowRunStatus(state=RunState.COMPLETED))
    assert not run_control.wants_retry(1, running())
