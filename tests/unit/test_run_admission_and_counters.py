"""Run admission under concurrency limits, and a Workflow's counters, table by table."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.workflow import Concurrency, RunConcurrencyPolicy, WorkflowState
from controller.api.workflowrun import RunState
from controller.kube.objects import Key
from controller.workflows import admission, counters
from controller.workflows.admission import Verdict
from controller.workflows.counters import Count


def workflow(*, activated: int | None = 1, phase: str | None = "Active") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase} if phase else {}
    if activated is not None:
        status["activation"] = {"version": activated, "spec": {"steps": []}}
    return {"metadata": {"name": "wf", "namespace": "ns"}, "status": status}


def runs(n: int) -> list[Key]:
    return [Key("WorkflowRun", "ns", f"wf-{i}") for i in range(n)]


Q, S, R = RunConcurrencyPolicy.QUEUE, RunConcurrencyPolicy.SKIP, RunConcurrencyPolicy.REPLACE


@pytest.mark.parametrize(
    ("limit", "active", "verdict", "cancelled"),
    [
        (None, 50, Verdict.RUN, 0),  # no limit
        ((2, Q), 1, Verdict.RUN, 0),
        ((2, Q), 2, Verdict.QUEUE, 0),
        ((2, S), 2, Verdict.SKIP, 0),
        ((2, R), 2, Verdict.RUN, 1),  # the oldest goes, two stay active
        ((1, R), 3, Verdict.RUN, 3),  # more than max already: all but the new one go
        ((3, R), 2, Verdict.RUN, 0),
    ],
)
def test_concurrency(
    limit: tuple[int, RunConcurrencyPolicy] | None, active: int, verdict: Verdict, cancelled: int
) -> None:
    concurrency = Concurrency(max=limit[0], policy=limit[1]) if limit else None
    others = runs(active)
    got = admission.admit(workflow(), "wf", "ns", None, concurrency, others)
    assert got.verdict is verdict
    assert got.cancel == others[:cancelled]


def test_a_skipped_run_says_why() -> None:
    got = admission.admit(workflow(), "wf", "ns", None, Concurrency(max=1, policy=S), runs(1))
    assert got.message == "skipped: 1 runs of wf are active (concurrency.max 1, policy Skip)"


@pytest.mark.parametrize(
    ("body", "version", "refusal"),
    [
        (None, None, "spec.workflowRef.name: Workflow wf not found in namespace ns"),
        (workflow(activated=None, phase="Draft"), None, "is not active (phase Draft)"),
        (workflow(activated=None, phase=None), None, "is not active (phase Draft)"),
        (workflow(activated=2), 1, "spec.workflowVersion: version 1 of Workflow wf is no longer"),
        (workflow(activated=2), 2, None),
        (workflow(activated=2), None, None),
    ],
)
def test_refusal(body: dict[str, Any] | None, version: int | None, refusal: str | None) -> None:
    got = admission.admit(body, "wf", "ns", version, Concurrency(max=1, policy=Q), runs(5))
    if refusal is None:
        assert got.verdict is Verdict.QUEUE  # refusal comes before the limit
        return
    assert got.verdict is Verdict.REFUSE
    assert refusal in got.message


def test_a_refusal_tells_how_to_activate() -> None:
    got = admission.admit(workflow(activated=None), "wf", "ns", None, None, [])
    assert "`blockflow workflow activate wf -n ns`" in got.message


def test_an_archived_workflow_is_not_told_to_activate() -> None:
    got = admission.admit(workflow(activated=None, phase="Archived"), "wf", "ns", None, None, [])
    assert got.message == "Workflow wf is archived and starts no runs; create a new Workflow"


# -- counters --------------------------------------------------------------------------------

STARTED = counters.run_count("uid-1", "started", RunState.RUNNING)
DONE_OK = counters.run_count("uid-1", "finished", RunState.COMPLETED)
FAILED = counters.run_count("uid-2", "finished", RunState.FAILED)
STARTED_2 = counters.run_count("uid-2", "started", RunState.RUNNING)
NOW = "2026-12-03T12:00:00+00:00"


ZEROS = dict.fromkeys(counters.COUNTERS, 0)


@pytest.mark.parametrize(
    ("status", "batch", "patch", "delta"),
    [
        ({}, [], ZEROS, 0),  # counters are 0, not absent, before the first run
        (ZEROS, [], {}, 0),
        (
            {},
            [STARTED],
            {**ZEROS, "counted": [STARTED.digest], "runCount": 1, "lastRunAt": NOW},
            1,
        ),
        (
            {**ZEROS, "runCount": 4, "counted": [STARTED_2.digest]},
            [STARTED, STARTED_2],  # uid-2's start was counted before a crash
            {"counted": [STARTED_2.digest, STARTED.digest], "runCount": 5, "lastRunAt": NOW},
            1,
        ),
        (
            {**ZEROS, "successCount": 2, "failureCount": 1},
            [DONE_OK, FAILED],
            {"counted": [DONE_OK.digest, FAILED.digest], "successCount": 3, "failureCount": 2},
            -2,
        ),
        (
            {**ZEROS, "ignoredCount": 7},
            [counters.IGNORED, counters.IGNORED],
            {"ignoredCount": 9},
            0,
        ),
    ],
)
def test_counts_patch(
    status: dict[str, Any], batch: list[Count], patch: dict[str, Any], delta: int
) -> None:
    got = counters.counts_patch(status, batch, NOW)
    assert got.patch == patch
    assert got.active_delta == delta


def test_the_counted_window_is_bounded() -> None:
    status = {"counted": [f"d{i}" for i in range(counters.COUNTED_WINDOW)]}
    got = counters.counts_patch(status, [STARTED], NOW)
    assert len(got.patch["counted"]) == counters.COUNTED_WINDOW
    assert got.patch["counted"][-1] == STARTED.digest


def test_a_count_digest_is_stable_per_run_and_what() -> None:
    assert counters.run_count("u", "started", None) == counters.run_count("u", "started", None)
    assert counters.run_count("u", "started", None) != counters.run_count("u", "finished", None)


@pytest.mark.parametrize(
    ("before", "after", "alarm"),
    [
        ({"successCount": 9, "failureCount": 0}, {"successCount": 9, "failureCount": 1}, None),
        # 10 ended, 2 failed (20 %): crossed now.
        ({"successCount": 8, "failureCount": 1}, {"successCount": 8, "failureCount": 2}, (10, 0.2)),
        # Already over the threshold: no second alarm.
        ({"successCount": 8, "failureCount": 2}, {"successCount": 8, "failureCount": 3}, None),
        # Exactly 10 %: not over.
        ({"successCount": 9, "failureCount": 0}, {"successCount": 9, "failureCount": 1}, None),
        # Back under, then over again: a new alarm.
        (
            {"successCount": 90, "failureCount": 10},
            {"successCount": 90, "failureCount": 11},
            (101, 11 / 101),
        ),
    ],
)
def test_failure_rate_alarm(
    before: dict[str, Any], after: dict[str, Any], alarm: tuple[int, float] | None
) -> None:
    assert counters.failure_rate_crossed(before, after) == alarm


@pytest.mark.parametrize(
    ("wanted", "status", "active", "phase"),
    [
        (WorkflowState.DRAFT, {}, 0, "Draft"),
        (WorkflowState.ACTIVE, {"activation": {"version": 1}}, 0, "Activated"),
        (WorkflowState.ACTIVE, {"activation": {"version": 1}}, 2, "Triggered"),
        # Runs counted as started in this batch but not yet in the index count too.
        (WorkflowState.ACTIVE, {"activation": {"version": 1}}, -1, "Activated"),
        # Activation of a new version under way: the phase stays.
        (WorkflowState.ACTIVE, {"phase": "Triggered"}, 0, "Triggered"),
        (WorkflowState.PAUSED, {"phase": "Activated", "activation": {"version": 1}}, 3, "Paused"),
        (WorkflowState.ACTIVE, {"phase": "Archived"}, 0, "Archived"),
    ],
)
def test_phase(wanted: WorkflowState, status: dict[str, Any], active: int, phase: str) -> None:
    assert counters.phase(wanted, status, active).value == phase
