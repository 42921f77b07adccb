"""The WorkflowRun executor, transition by transition (pure: no cluster, no clock)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.api.workflow import WorkflowSpec
from controller.api.workflowrun import RunState, StepState, WorkflowRunStatus
from controller.handlers.protocol import DeferReply, ErrorReply, ExitReply, OutcomeReply
from controller.workflows import executor as ex
from controller.workflows.executor import Kind

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
UID = "run-uid-1"


def spec(**kw: Any) -> WorkflowSpec:
    steps = kw.pop("steps", ["a", "b", "c"])
    fallback = kw.pop("fallback", [])
    return WorkflowSpec.model_validate(
        {
            "steps": [
                s if isinstance(s, dict) else {"name": s, "uses": {"type": "http"}} for s in steps
            ],
            "fallback": [{"name": s, "uses": {"type": "emit"}} for s in fallback],
            **kw,
        }
    )


def call(
    workflow: WorkflowSpec, status: WorkflowRunStatus, reply: Any, at: datetime = NOW
) -> WorkflowRunStatus:
    """One turn of the runtime: ask what to do, mark it running, record the reply."""
    action = ex.next_action(workflow, status, at)
    assert action.kind is Kind.CALL, action
    assert action.step is not None
    status = ex.begin_attempt(status, action.step, UID, at)
    return ex.record_reply(workflow, status, action.step, reply, at, random.Random(1))


def record(status: WorkflowRunStatus, name: str) -> Any:
    return next(r for r in status.steps if r.name == name)


def ok(data: Any = None) -> OutcomeReply:
    return OutcomeReply(id="success", data=data)


def test_steps_run_in_order_and_the_run_completes_with_the_last_output() -> None:
    workflow, status = spec(), WorkflowRunStatus()
    for i, name in enumerate(["a", "b", "c"]):
        assert ex.next_action(workflow, status, NOW).step == name
        status = call(workflow, status, ok({"n": i}))
    finished = ex.next_action(workflow, status, NOW)
    assert finished.kind is Kind.FINISH and finished.state is RunState.COMPLETED
    status = ex.finish(status, RunState.COMPLETED, NOW)
    assert status.state is RunState.COMPLETED and status.output == {"n": 2}
    assert [r.state for r in status.steps] == [StepState.COMPLETED] * 3


def test_a_call_interrupted_by_a_crash_is_reissued_with_the_same_key_and_attempt() -> None:
    workflow = spec()
    status = ex.begin_attempt(WorkflowRunStatus(), "a", UID, NOW)  # written, then the crash
    first = record(status, "a")
    again = ex.next_action(workflow, status, NOW + timedelta(minutes=5))
    assert again.kind is Kind.CALL and again.step == "a"
    status = ex.begin_attempt(status, "a", UID, NOW + timedelta(minutes=5))
    assert record(status, "a").attempts == first.attempts == 1
    assert record(status, "a").unique_execution_id == first.unique_execution_id
    assert first.unique_execution_id == ex.execution_id(UID, "a") != ex.execution_id(UID, "b")


def test_retryable_errors_back_off_then_stop_fails_the_run_naming_the_step() -> None:
    workflow = spec(retryPolicy={"maxAttempts": 3, "backoff": {"initialSeconds": 10}})
    status = call(workflow, WorkflowRunStatus(), ErrorReply(message="busy", retryable=True))
    waiting = record(status, "a")
    assert waiting.state is StepState.WAITING and waiting.error.message == "busy"
    assert timedelta(seconds=8) <= waiting.wake_at - NOW <= timedelta(seconds=12)
    early = ex.next_action(workflow, status, NOW + timedelta(seconds=1))
    assert early.kind is Kind.WAIT and early.at == waiting.wake_at
    later = NOW + timedelta(minutes=1)
    status = call(workflow, status, ErrorReply(message="busy", retryable=True), later)
    status = call(
        workflow,
        status,
        ErrorReply(message="still busy", retryable=True),
        later + timedelta(minutes=5),
    )
    assert record(status, "a").attempts == 3 and record(status, "a").state is StepState.FAILED
    assert status.state is RunState.FAILED
    assert status.error is not None and (status.error.step, status.error.message) == (
        "a",
        "still busy",
    )


def test_a_non_retryable_error_with_continue_goes_on_to_the_next_step() -> None:
    workflow = spec(errorHandling="Continue")
    status = call(workflow, WorkflowRunStatus(), ErrorReply(message="nope", retryable=False))
    assert record(status, "a").state is StepState.FAILED and status.state is RunState.RUNNING
    assert ex.next_action(workflow, status, NOW).step == "b"


def test_fallback_skips_the_rest_runs_the_fallback_steps_and_completes() -> None:
    workflow = spec(errorHandling="Fallback", fallback=["alert"])
    status = call(workflow, WorkflowRunStatus(), ErrorReply(message="boom"))
    assert [(r.name, r.state) for r in status.steps] == [
        ("a", StepState.FAILED),
        ("b", StepState.SKIPPED),
        ("c", StepState.SKIPPED),
    ]
    assert ex.next_action(workflow, status, NOW).step == "fallback.alert"
    status = call(workflow, status, ok())
    assert ex.next_action(workflow, status, NOW).state is RunState.COMPLETED


def test_a_failing_fallback_step_fails_the_run_with_the_original_error() -> None:
    workflow = spec(errorHandling="Fallback", fallback=["alert"])
    status = call(workflow, WorkflowRunStatus(), ErrorReply(message="boom"))
    status = call(workflow, status, ErrorReply(message="alert failed"))
    assert status.state is RunState.FAILED
    assert status.error is not None and (status.error.step, status.error.message) == ("a", "boom")


def test_deferred_steps_wait_for_a_callback_or_their_timeout() -> None:
    workflow = spec(steps=[{"name": "a", "uses": {"type": "hook"}, "timeoutSeconds": 60}, "b"])
    status = call(workflow, WorkflowRunStatus(), DeferReply())
    waiting = ex.next_action(workflow, status, NOW + timedelta(seconds=5))
    assert waiting.kind is Kind.WAIT and waiting.at == NOW + timedelta(seconds=60)
    # The callback's finish reply resumes the run.
    resumed = ex.record_reply(workflow, status, "a", ok({"ok": True}), NOW, random.Random(1))
    assert ex.next_action(workflow, resumed, NOW).step == "b"
    # Or the timeout passes first.
    late = NOW + timedelta(seconds=61)
    assert ex.timed_out(workflow, status, "a", late)
    failed = ex.record_timeout(workflow, status, "a", late)
    assert failed.state is RunState.FAILED
    assert failed.error is not None and failed.error.message == "step a timed out after 60s"


def test_a_deferred_step_without_timeout_waits_with_no_wake_up_time() -> None:
    status = call(spec(), WorkflowRunStatus(), DeferReply())
    action = ex.next_action(spec(), status, NOW + timedelta(days=30))
    assert action.kind is Kind.WAIT and action.at is None


def test_exit_completes_the_run_early() -> None:
    status = call(spec(), WorkflowRunStatus(), ExitReply())
    assert status.state is RunState.COMPLETED and [r.name for r in status.steps] == ["a"]
    assert ex.next_action(spec(), status, NOW).kind is Kind.NONE


def test_outcome_data_over_the_limit_fails_the_step_clearly() -> None:
    status = call(spec(), WorkflowRunStatus(), ok("x" * (ex.MAX_OUTCOME_BYTES + 10)))
    assert status.state is RunState.FAILED
    assert status.error is not None and "over the limit of 65536" in status.error.message


def test_the_run_timeout_finishes_a_waiting_run() -> None:
    workflow = spec(timeoutSeconds=300)
    status = call(workflow, WorkflowRunStatus(), DeferReply())
    action = ex.next_action(workflow, status, NOW + timedelta(seconds=301))
    assert action.kind is Kind.FINISH and action.state is RunState.FAILED
    assert action.error is not None
    ended = ex.finish(status, RunState.FAILED, NOW, action.error)
    assert ended.error is not None and ended.error.message == "run timed out after 300s"
    assert record(ended, "a").state is StepState.CANCELLED


def test_cancel_ends_the_run_and_its_unfinished_steps() -> None:
    status = call(spec(), WorkflowRunStatus(), ok())
    status = ex.begin_attempt(status, "b", UID, NOW)
    cancelled = ex.cancel(status, NOW)
    assert cancelled.state is RunState.CANCELLED
    assert [r.state for r in cancelled.steps] == [StepState.COMPLETED, StepState.CANCELLED]


def test_the_run_is_waiting_while_a_step_waits_and_running_again_when_it_resumes() -> None:
    workflow = spec(
        steps=["a", "b"], retry_policy={"max_attempts": 2, "backoff": {"initial_seconds": 1}}
    )
    status = call(workflow, WorkflowRunStatus(), DeferReply())
    assert (status.state, record(status, "a").state) == (RunState.WAITING, StepState.WAITING)
    status = ex.record_reply(workflow, status, "a", ok(), NOW, random.Random(1))
    assert status.state is RunState.RUNNING  # b is next
    status = call(workflow, status, ErrorReply(message="busy", retryable=True))
    assert status.state is RunState.WAITING  # a retry backoff is a wait too
    later = NOW + timedelta(seconds=5)
    status = ex.begin_attempt(status, "b", UID, later)
    assert status.state is RunState.RUNNING
    status = ex.wait_until(status, "b", later + timedelta(seconds=1))
    assert status.state is RunState.WAITING


def test_a_200_step_run_keeps_its_status_under_256_kib() -> None:
    """etcd objects are limited to ~1.5 MiB; a long run must stay far below it."""
    workflow = spec(
        steps=[
            {
                "name": f"step_{i}",
                "uses": {"type": "http"},
                "with": {
                    "method": "POST",
                    "url": "https://api.example.com/items",
                    "body": {"i": i},
                },
            }
            for i in range(200)
        ]
    )
    status = WorkflowRunStatus(workflow_spec=workflow.model_dump(by_alias=True, mode="json"))
    for i in range(200):
        status = call(
            workflow, status, ok({"status": 201, "body": {"id": f"item-{i}", "ok": True}})
        )
    status = ex.finish(status, RunState.COMPLETED, NOW)
    size = len(status.model_dump_json(by_alias=True, exclude_none=True))
    assert status.state is RunState.COMPLETED and len(status.steps) == 200
    assert size < 256 * 1024, size


def test_a_run_waiting_for_a_callback_wakes_at_its_run_timeout_and_fails() -> None:
    workflow = spec(steps=["a"], timeout_seconds=60)
    status = call(workflow, WorkflowRunStatus(), DeferReply())
    action = ex.next_action(workflow, status, NOW + timedelta(seconds=1))
    assert (action.kind, action.at) == (Kind.WAIT, NOW + timedelta(seconds=60))
    late = ex.next_action(workflow, status, NOW + timedelta(seconds=61))
    assert (late.kind, late.state) == (Kind.FINISH, RunState.FAILED)
    assert late.error is not None and late.error.message == "run timed out after 60s"


def test_a_timed_out_attempt_is_retried_per_the_policy_and_each_attempt_has_its_own_clock() -> None:
    workflow = spec(
        steps=[{"name": "a", "uses": {"type": "http"}, "timeoutSeconds": 2,
                "retryPolicy": {"maxAttempts": 2, "backoff": {"initialSeconds": 1}}}]
    )  # fmt: skip
    first = ex.begin_attempt(WorkflowRunStatus(), "a", "uid", NOW)
    assert ex.time_left(workflow, first, "a", NOW) == 2.0
    # The call is still in flight at its deadline: the attempt times out and is retried.
    late = NOW + timedelta(seconds=2)
    assert ex.timed_out(workflow, first, "a", late)
    retrying = ex.record_timeout(workflow, first, "a", late, random.Random(1))
    a = record(retrying, "a")
    assert (a.state, a.error.message, a.error.retryable) == (
        StepState.WAITING, "step a timed out after 2s", True
    )  # fmt: skip
    # Between attempts no timeout runs; the second attempt has two seconds of its own.
    assert not ex.timed_out(workflow, retrying, "a", late + timedelta(seconds=30))
    again_at = a.wake_at
    second = ex.begin_attempt(retrying, "a", "uid", again_at)
    assert record(second, "a").attempts == 2
    assert ex.time_left(workflow, second, "a", again_at) == 2.0
    failed = ex.record_timeout(workflow, second, "a", again_at + timedelta(seconds=2))
    assert failed.state is RunState.FAILED
    assert failed.error is not None and failed.error.message == "step a timed out after 2s"


def test_the_run_timeout_bounds_a_call_in_flight_too() -> None:
    workflow = spec(timeoutSeconds=3, steps=[{"name": "a", "uses": {"type": "http"}}])
    status = ex.begin_attempt(WorkflowRunStatus(), "a", "uid", NOW)
    assert ex.time_left(workflow, status, "a", NOW + timedelta(seconds=1)) == 2.0
    ended = ex.next_action(workflow, status, NOW + timedelta(seconds=3))
    assert ended.kind is Kind.FINISH and ended.state is RunState.FAILED
    assert ex.time_left(spec(), status, "a", NOW) is None  # no timeout set: no deadline
