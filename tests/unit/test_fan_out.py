"""Fan-out (forEach): iterations scheduled under maxConcurrency, results in order, one
failed iteration failing the step, retries keeping completed iterations — and a run of
1,000 items staying far below etcd's object size limit. Pure: no cluster, no clock."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

from controller.api.workflow import WorkflowSpec
from controller.api.workflowrun import RunState, StepRecord, StepState, WorkflowRunStatus
from controller.handlers.protocol import ErrorReply, OutcomeReply
from controller.workflows import executor as ex
from controller.workflows import fan_out, run_control
from controller.workflows.executor import Kind

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
UID = "run-uid"
RNG = random.Random(3)


def spec(max_concurrency: int = 10, **extra: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "steps": [
                {
                    "name": "mail",
                    "forEach": "${{ event.users }}",
                    "maxConcurrency": max_concurrency,
                    "uses": {"type": "http"},
                },
                {"name": "after", "uses": {"type": "emit"}},
            ],
            **extra,
        }
    )


def expanded(items: list[Any]) -> WorkflowRunStatus:
    status = WorkflowRunStatus(state=RunState.RUNNING, started_at=NOW)
    started = StepRecord(name="mail", state=StepState.RUNNING, started_at=NOW)
    return fan_out.expand(status, "mail", items, NOW, started)


def turn(workflow: WorkflowSpec, status: WorkflowRunStatus, answer: Any) -> WorkflowRunStatus:
    """Begin every due iteration, then answer each of them with `answer(index)`."""
    action = ex.next_action(workflow, status, NOW)
    assert action.kind is Kind.CALL, action
    for name in action.steps:
        status = ex.begin_attempt(status, name, UID, NOW)
    for name in action.steps:
        index = fan_out.parse_item(name)
        assert index is not None
        status = ex.record_reply(workflow, status, name, answer(index[1]), NOW, RNG)
    return status


def record(status: WorkflowRunStatus, name: str) -> StepRecord:
    return next(r for r in status.steps if r.name == name)


def test_iterations_run_under_the_limit_and_the_results_keep_the_items_order() -> None:
    workflow, status = spec(max_concurrency=4), expanded(list(range(10)))
    first = ex.next_action(workflow, status, NOW)
    assert first.steps == ("mail[0]", "mail[1]", "mail[2]", "mail[3]")
    status = ex.begin_attempt(status, "mail[0]", UID, NOW)
    status = ex.begin_attempt(status, "mail[1]", UID, NOW)
    # Two in flight: two more may start, never a fifth.
    assert ex.next_action(workflow, status, NOW, frozenset({"mail[0]", "mail[1]"})).steps == (
        "mail[2]",
        "mail[3]",
    )
    keys = {record(status, n).unique_execution_id for n in ("mail[0]", "mail[1]")}
    assert len(keys) == 2  # one idempotency key per iteration
    status = ex.record_reply(workflow, status, "mail[1]", OutcomeReply(id="ok", data=1), NOW, RNG)
    assert all(r.name != "mail[1]" for r in status.steps)  # done: its record goes
    assert record(status, "mail").progress == ".c........"
    while record(status, "mail").state is StepState.RUNNING:
        status = turn(workflow, status, lambda i: OutcomeReply(id="ok", data={"n": i * i}))
        assert sum(fan_out.parse_item(r.name) is not None for r in status.steps) <= 4
    done = record(status, "mail")
    assert done.state is StepState.COMPLETED and done.outcome is not None
    assert done.outcome.data == [{"n": 0}, 1, *({"n": i * i} for i in range(2, 10))]
    assert ex.next_action(workflow, status, NOW).steps == ("after",)


def test_a_retryable_iteration_waits_and_a_failed_one_fails_the_step() -> None:
    workflow = spec(retryPolicy={"maxAttempts": 2})
    status = expanded(["a", "b", "c"])
    status = turn(
        workflow,
        status,
        lambda i: ErrorReply(message="down", retryable=True) if i == 1 else OutcomeReply(id="ok"),
    )
    assert record(status, "mail[1]").state is StepState.WAITING
    assert record(status, "mail").state is StepState.RUNNING
    status = ex.begin_attempt(status, "mail[1]", UID, NOW)
    status = ex.record_reply(workflow, status, "mail[1]", ErrorReply(message="bounced"), NOW, RNG)
    failed = record(status, "mail")
    assert failed.state is StepState.FAILED and failed.progress == "cfc"
    assert status.state is RunState.FAILED and status.error is not None
    assert status.error.message == "iteration 1 of step mail failed: bounced"
    assert record(status, "mail[1]").error is not None  # kept, to show why


def test_a_retried_run_keeps_the_iterations_that_completed() -> None:
    workflow = spec()
    status = turn(
        workflow,
        expanded(["a", "b", "c"]),
        lambda i: ErrorReply(message="no") if i == 2 else OutcomeReply(id="ok", data=i),
    )
    status = status.model_copy(update={"accounted": ["started", "finished"]})
    assert status.state is RunState.FAILED
    retried = run_control.retry(status, NOW, None)
    mail = record(retried, "mail")
    assert (mail.state, mail.progress, mail.results) == (StepState.RUNNING, "cc.", {"0": 0, "1": 1})
    assert ex.next_action(workflow, retried, NOW).steps == ("mail[2]",)
    again = turn(workflow, retried, lambda i: OutcomeReply(id="ok", data=i))
    assert record(again, "mail").outcome is not None
    assert record(again, "mail").outcome.data == [0, 1, 2]  # type: ignore[union-attr]


def test_a_fan_out_of_1000_items_keeps_the_run_far_below_etcds_limit() -> None:
    workflow = spec(max_concurrency=50)
    items = [{"id": f"user-{i:04d}", "email": f"user{i}@example.com"} for i in range(1000)]
    status, peak = expanded(items), 0
    while record(status, "mail").state is StepState.RUNNING:
        status = turn(
            workflow, status, lambda i: OutcomeReply(id="ok", data={"id": i, "sent": True})
        )
        peak = max(peak, len(json.dumps(status.model_dump(mode="json", by_alias=True))))
    print(f"peak status size: {peak} bytes")
    assert peak < 256 * 1024, peak  # etcd's limit is 1.5 MiB, Kubernetes' request 3 MiB
    assert len(record(status, "mail").outcome.data) == 1000  # type: ignore[union-attr]


def test_items_that_are_not_a_list_or_too_many_are_refused_with_the_limit() -> None:
    assert fan_out.items_error("mail", {"a": 1}) == "step mail: forEach must be a list, got dict"
    too_many = fan_out.items_error("mail", list(range(2001)))
    assert too_many is not None and "2001 items, over the limit of 2000" in too_many
    assert fan_out.items_error("mail", []) is None
    empty = fan_out.expand(
        WorkflowRunStatus(), "mail", [], NOW, StepRecord(name="mail", state=StepState.RUNNING)
    )
    assert record(empty, "mail").state is StepState.COMPLETED
