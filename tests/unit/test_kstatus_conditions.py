"""What kstatus (Flux's `wait: true`) computes from the conditions Blockflow writes, for every
lifecycle status, every workflow state and phase, and every run state: settled objects are
Current, real failures Failed, and only work in progress is InProgress.

Decisions come from the pure code the controller runs (the lifecycle engine, the workflow
activator, the run conditions); tests/support/kstatus.py says what kstatus makes of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.api.common import Condition, ConditionStatus, LifecycleStatus
from controller.api.common import LifecycleState as S
from controller.api.workflow import WorkflowPhase, WorkflowState
from controller.api.workflowrun import RunError, RunState, WorkflowRunStatus
from controller.handlers.protocol import (
    BlockTypeSpec,
    DrainReply,
    DrainRequest,
    EntityInput,
    SyncReply,
    SyncRequest,
)
from controller.handlers.transport import HandlerError
from controller.lifecycle import conditions, engine
from controller.lifecycle.engine import Action, Decision, Observed
from controller.runtime.calls import CallLimits
from controller.runtime.handlers import AppHandle
from controller.workflows.activation import phase_for
from controller.workflows.activator import (
    TokenKeys,
    WorkflowActivator,
    drain_request,
    drained_reason,
    wanted_state,
)
from controller.workflows.run_context import run_conditions
from controller.workflows.run_context import unobserved as _unobserved
from controller.workflows.run_index import FINAL_STATES
from tests.support.kstatus import CURRENT, FAILED, IN_PROGRESS, TERMINATING, compute

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def rng() -> random.Random:
    return random.Random(7)


def live(
    kind: str, decision: Decision, *, generation: int = 1, deleting: bool = False
) -> dict[str, Any]:
    """The object as the API server would serve it after the decision's status write."""
    meta: dict[str, Any] = {"name": "x", "namespace": "ns", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-21T12:00:00Z"
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "status": decision.status_patch,
    }


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def observed(state: S | None, **kw: Any) -> Observed:
    lifecycle = LifecycleStatus(status=state, description="before") if state else None
    kw.setdefault("generation", 1)
    return Observed(lifecycle=lifecycle, observed_generation=1 if state else None, **kw)


# -- the rule ------------------------------------------------------------------------------

RULE = {
    # state, deleting: Ready, Reconciling, Stalled, kstatus (without deletionTimestamp)
    (S.READY, False): ("True", "False", "False", CURRENT),
    (S.IN_PROGRESS, False): ("False", "True", "False", IN_PROGRESS),
    (S.FAILED, False): ("False", "False", "True", FAILED),
    (S.DRAINING, False): ("False", "True", "False", IN_PROGRESS),
    (S.DRAINED, False): ("True", "False", "False", CURRENT),
    (S.DRAINING_FAILED, False): ("False", "False", "True", FAILED),
    (S.DRAINING, True): ("False", "True", "False", IN_PROGRESS),
    (S.DRAINED, True): ("False", "False", "False", IN_PROGRESS),
    (S.DRAINING_FAILED, True): ("False", "False", "True", FAILED),
}


@pytest.mark.parametrize(("key", "want"), RULE.items(), ids=[f"{s}-{d}" for s, d in RULE])
def test_the_conditions_of_every_lifecycle_status(
    key: tuple[S, bool], want: tuple[str, str, str, str]
) -> None:
    state, deleting = key
    written = conditions.conditions_for(
        state, message="m", generation=3, now=NOW, previous=[], deleting=deleting
    )
    assert [c.type for c in written] == ["Ready", "Reconciling", "Stalled"]
    assert tuple(c.status.value for c in written) == want[:3]
    assert all(c.observed_generation == 3 for c in written)
    obj: dict[str, Any] = {
        "kind": "Block",
        "metadata": {"generation": 3},
        "status": {
            "observedGeneration": 3,
            "conditions": [c.model_dump(by_alias=True, mode="json") for c in written],
        },
    }
    assert compute(obj).status == want[3]
    if deleting:
        obj["metadata"]["deletionTimestamp"] = "2026-11-21T12:00:00Z"
        assert compute(obj).status == TERMINATING


def test_every_lifecycle_status_has_a_rule() -> None:
    assert {state for state, _ in RULE} == set(S)


# -- Apps and Blocks: every outcome the engine records ---------------------------------------

BLOCK_CASES: list[tuple[str, Any, str, str]] = [
    # what happened, how to decide it, kstatus, Ready reason
    (
        "sync ready",
        lambda o: engine.after_sync(o, SyncReply(new_status="ready"), NOW, rng()),
        CURRENT,
        "Ready",
    ),
    (
        "sync in progress",
        lambda o: engine.after_sync(o, SyncReply(new_status="in_progress"), NOW, rng()),
        IN_PROGRESS,
        "InProgress",
    ),
    (
        "sync failed",
        lambda o: engine.after_sync(o, SyncReply(new_status="failed"), NOW, rng()),
        FAILED,
        "Failed",
    ),
    (
        "handler unreachable",
        lambda o: engine.after_sync(
            o, HandlerError("no route", reason="HandlerUnavailable"), NOW, rng()
        ),
        FAILED,
        "HandlerUnavailable",
    ),
    (
        "waiting for a signal",
        lambda o: engine.blocked(
            o, NOW, state=S.IN_PROGRESS, reason="DependencyNotReady", message="Waiting for x"
        ),
        IN_PROGRESS,
        "DependencyNotReady",
    ),
    (
        "fixed field changed",
        lambda o: engine.blocked(
            o, NOW, state=S.FAILED, reason="FixedFieldChanged", message="fixed", warn=True
        ),
        FAILED,
        "FixedFieldChanged",
    ),
    (
        "draining",
        lambda o: engine.after_drain(o, DrainReply(new_status="draining"), NOW, rng()),
        IN_PROGRESS,
        "Draining",
    ),
    (
        "waiting for dependents to go",
        lambda o: engine.blocked(
            o, NOW, state=S.DRAINING, reason="DependentsExist", message="Waiting for b"
        ),
        IN_PROGRESS,
        "DependentsExist",
    ),
    (
        "drained on request",
        lambda o: engine.after_drain(o, DrainReply(new_status="drained"), NOW, rng()),
        CURRENT,
        "Drained",
    ),
    (
        "drain failed",
        lambda o: engine.after_drain(o, DrainReply(new_status="draining_failed"), NOW, rng()),
        FAILED,
        "DrainingFailed",
    ),
    (
        "drain unreachable",
        lambda o: engine.after_drain(
            o, HandlerError("timeout", reason="HandlerTimeout"), NOW, rng()
        ),
        FAILED,
        "HandlerTimeout",
    ),
]


@pytest.mark.parametrize("kind", ["App", "Block"])
@pytest.mark.parametrize(
    ("what", "decide", "status", "reason"), BLOCK_CASES, ids=[c[0] for c in BLOCK_CASES]
)
def test_apps_and_blocks(kind: str, what: str, decide: Any, status: str, reason: str) -> None:
    decision: Decision = decide(observed(S.READY, requested_drain_at="d1"))
    obj = live(kind, decision)
    assert obj["status"]["observedGeneration"] == 1
    assert compute(obj).status == status, what
    assert ready_condition(obj)["reason"] == reason


def test_the_cases_reach_every_lifecycle_status() -> None:
    reached = {
        decide(observed(S.READY, requested_drain_at="d1")).new_state
        for _, decide, _, _ in BLOCK_CASES
    }
    assert reached == set(S)


def test_a_drained_entity_is_current_and_ready_names_why_it_does_not_serve() -> None:
    obs = observed(S.READY, requested_drain_at="d1")
    decision = engine.after_drain(
        obs, DrainReply(new_status="drained", custom_status_description="Bucket kept"), NOW, rng()
    )
    ready = ready_condition(live("Block", decision))
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "True",
        "Drained",
        "Bucket kept",
    )
    assert ready["reason"] in conditions.SETTLED_OFFLINE_REASONS
    # Settled: nothing more to do, nothing more to write.
    after = Observed(
        generation=1,
        observed_generation=1,
        lifecycle=LifecycleStatus(status=S.DRAINED, last_handled_drain_at="d1"),
        requested_drain_at="d1",
        conditions=[Condition.model_validate(c) for c in decision.status_patch["conditions"]],
    )
    assert engine.plan(after, NOW).action is Action.NONE


def test_drained_while_deleting_is_not_ready_and_terminating() -> None:
    decision = engine.after_drain(
        observed(S.READY, deleting=True), DrainReply(new_status="drained"), NOW, rng()
    )
    obj = live("Block", decision, deleting=True)
    assert ready_condition(obj)["status"] == "False"
    assert compute(obj).status == TERMINATING


def test_a_spec_change_is_in_progress_until_observed() -> None:
    decision = engine.after_sync(observed(S.READY), SyncReply(new_status="ready"), NOW, rng())
    assert compute(live("Block", decision, generation=2)).status == IN_PROGRESS


# -- conditions written under an older rule --------------------------------------------------


def old_drained_conditions() -> list[Condition]:
    return [
        Condition(type=kind, status=ConditionStatus.FALSE, reason="Drained", observed_generation=1)
        for kind in conditions.TYPES
    ]


def test_conditions_written_by_an_older_controller_are_rewritten_without_a_handler_call() -> None:
    obs = Observed(
        generation=1,
        observed_generation=1,
        lifecycle=LifecycleStatus(
            status=S.DRAINED, description="Drained", last_handled_drain_at="d1"
        ),
        requested_drain_at="d1",
        conditions=old_drained_conditions(),
    )
    old = {
        "kind": "Block",
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "conditions": [c.model_dump(by_alias=True, mode="json") for c in obs.conditions],
        },
    }
    assert compute(old).status == IN_PROGRESS  # what Flux saw before
    assert engine.plan(obs, NOW) == engine.Plan(Action.REFRESH, "ConditionsOutdated")
    decision = engine.refreshed(obs, NOW)
    assert set(decision.status_patch) == {"conditions"}
    obj = live("Block", decision)
    obj["status"]["observedGeneration"] = 1
    assert compute(obj).status == CURRENT
    again = dataclasses.replace(
        obs,
        conditions=[Condition.model_validate(c) for c in decision.status_patch["conditions"]],
    )
    assert engine.plan(again, NOW).action is Action.NONE


def test_a_paused_workflow_written_by_an_older_controller_gets_its_reason() -> None:
    obs = Observed(
        generation=2,
        observed_generation=2,
        lifecycle=LifecycleStatus(
            status=S.DRAINED,
            description="Paused: trigger not active",
            last_handled_drain_at="Paused@2",
        ),
        requested_drain_at="Paused@2",
        drained_reason="Paused",
        conditions=old_drained_conditions(),
    )
    assert engine.plan(obs, NOW).action is Action.REFRESH
    ready = engine.refreshed(obs, NOW).status_patch["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "Paused")
    assert ready["message"] == "Paused: trigger not active"
    assert ready["observedGeneration"] == 2


def test_no_conditions_at_all_is_nothing_to_rewrite() -> None:
    assert not conditions.outdated(S.DRAINED, [])


@pytest.mark.parametrize("state", [S.READY, S.IN_PROGRESS, S.FAILED])
def test_current_conditions_are_not_rewritten(state: S) -> None:
    written = conditions.conditions_for(state, message="m", generation=1, now=NOW, previous=[])
    obs = observed(state, conditions=written)
    assert not conditions.outdated(state, written)
    assert engine.plan(obs, NOW).action is not Action.REFRESH


# -- Workflows: every wanted state through the real activator --------------------------------


class UnreachableApps:
    """An App whose handler cannot be reached (a trigger block cannot be deactivated)."""

    async def block_types(self, namespace: str, app: str) -> dict[str, BlockTypeSpec] | None:
        return None

    async def app_handle(self, namespace: str, app: str) -> AppHandle:
        raise HandlerError(f"App {app}: connection refused", reason="HandlerUnavailable")

    calls = CallLimits()


WEBHOOK_SPEC: dict[str, Any] = {
    "trigger": {"webhook": {}},
    "steps": [{"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 1}}],
}
BLOCK_TRIGGER_SPEC: dict[str, Any] = {
    "trigger": {"block": {"app": "crm", "type": "deal-won", "config": {}}},
    "steps": [{"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 1}}],
}


def workflow_body(
    state: str,
    spec: dict[str, Any],
    *,
    generation: int = 1,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf", "namespace": "ns", "uid": "u-1", "generation": generation},
        "spec": {"state": state, **spec},
        "status": status or {},
    }


async def reconcile_workflow(body: dict[str, Any]) -> dict[str, Any]:
    """One reconcile of a Workflow as the lifecycle runtime does it, with the real activator
    (no Kubernetes): plan, call, decide; the object after its status write."""
    status = body["status"]
    raw = status.get("lifecycle")
    obs = Observed(
        generation=body["metadata"]["generation"],
        lifecycle=LifecycleStatus.model_validate(raw) if raw else None,
        observed_generation=status.get("observedGeneration"),
        conditions=[Condition.model_validate(c) for c in status.get("conditions") or []],
        requested_drain_at=drain_request(body),
        drained_reason=drained_reason(body),
    )
    activated: list[int] = []

    async def on_activated(_: dict[str, Any], version: int) -> None:
        activated.append(version)

    activator = WorkflowActivator(
        body,
        tokens=TokenKeys(b"k" * 32, "http://127.0.0.1:8080"),
        apps=UnreachableApps(),
        now=lambda: NOW,
        on_activated=on_activated,
    )
    plan = engine.plan(obs, NOW)
    entity = EntityInput(kind="Workflow", name="wf", namespace="ns", uid="u-1", generation=1)
    if plan.action is Action.SYNC:
        reply = await activator.call(SyncRequest(entity=entity))
        decision = engine.after_sync(obs, reply, NOW, rng())
    else:
        assert plan.action is Action.DRAIN, plan
        reply = await activator.call(DrainRequest(entity=entity))
        decision = engine.after_drain(obs, reply, NOW, rng())
    new_status = {**status, **decision.status_patch, **reply.status_fields}
    current = WorkflowPhase(status["phase"]) if status.get("phase") else None
    new_status["phase"] = phase_for(
        wanted_state(body),
        current,
        activated=(new_status.get("activation") or {}).get("version") is not None,
        active_runs=0,
    ).value
    return {**body, "status": new_status}


ACTIVE = {
    "phase": "Activated",
    "activation": {"version": 1, "spec": {"state": "Active", **BLOCK_TRIGGER_SPEC}},
}

WORKFLOW_CASES: list[tuple[str, dict[str, Any], str, str, str]] = [
    # what, the Workflow, phase after, kstatus, Ready reason
    ("active", workflow_body("Active", WEBHOOK_SPEC), "Activated", CURRENT, "Ready"),
    ("draft", workflow_body("Draft", WEBHOOK_SPEC), "Draft", CURRENT, "Draft"),
    ("paused", workflow_body("Paused", WEBHOOK_SPEC), "Paused", CURRENT, "Paused"),
    ("archived", workflow_body("Archived", WEBHOOK_SPEC), "Archived", CURRENT, "Archived"),
    (
        "activation refused",
        workflow_body("Active", {"trigger": {"webhook": {}}}),
        "Draft",
        FAILED,
        "Failed",
    ),
    (
        "leaving Archived refused",
        workflow_body(
            "Active",
            WEBHOOK_SPEC,
            generation=3,
            status={"phase": "Archived", "observedGeneration": 2},
        ),
        "Archived",
        FAILED,
        "Failed",
    ),
    (
        "deactivation failed",
        workflow_body("Paused", BLOCK_TRIGGER_SPEC, generation=2, status=dict(ACTIVE)),
        "Paused",
        FAILED,
        "DrainingFailed",
    ),
]


@pytest.mark.parametrize(
    ("what", "body", "phase", "status", "reason"),
    WORKFLOW_CASES,
    ids=[c[0] for c in WORKFLOW_CASES],
)
def test_workflows(what: str, body: dict[str, Any], phase: str, status: str, reason: str) -> None:
    obj = asyncio.run(reconcile_workflow(body))
    assert obj["status"]["phase"] == phase
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert compute(obj).status == status, what
    assert ready_condition(obj)["reason"] == reason


def test_the_workflow_cases_cover_every_wanted_state() -> None:
    assert {WorkflowState(c[1]["spec"]["state"]) for c in WORKFLOW_CASES} == set(WorkflowState)


@pytest.mark.parametrize("state", ["Draft", "Paused", "Archived"])
def test_a_deactivated_workflow_says_why_and_stays_settled(state: str) -> None:
    obj = asyncio.run(reconcile_workflow(workflow_body(state, WEBHOOK_SPEC)))
    ready = ready_condition(obj)
    assert (ready["status"], ready["reason"]) == ("True", state)
    assert ready["message"] == f"{state}: trigger not active"
    # A second look finds nothing to do: no write, no loop.
    status = obj["status"]
    obs = Observed(
        generation=1,
        lifecycle=LifecycleStatus.model_validate(status["lifecycle"]),
        observed_generation=status["observedGeneration"],
        conditions=[Condition.model_validate(c) for c in status["conditions"]],
        requested_drain_at=drain_request(obj),
        drained_reason=drained_reason(obj),
    )
    assert engine.plan(obs, NOW).action is Action.NONE


def test_pausing_an_active_workflow_goes_from_current_through_in_progress_to_current() -> None:
    active = asyncio.run(reconcile_workflow(workflow_body("Active", WEBHOOK_SPEC)))
    assert compute(active).status == CURRENT
    paused = {
        **active,
        "metadata": {**active["metadata"], "generation": 2},
        "spec": {**active["spec"], "state": "Paused"},
    }
    assert compute(paused).status == IN_PROGRESS  # not yet observed
    done = asyncio.run(reconcile_workflow(paused))
    assert done["status"]["phase"] == "Paused"
    assert compute(done).status == CURRENT
    assert ready_condition(done)["reason"] == "Paused"


# -- WorkflowRuns --------------------------------------------------------------------------

RUN_RULE = {
    RunState.QUEUED: (IN_PROGRESS, "Reconciling"),
    RunState.RUNNING: (IN_PROGRESS, "Reconciling"),
    RunState.WAITING: (IN_PROGRESS, "Reconciling"),
    # Not ended: `kubectl wait --for=condition=Ready` and Flux keep waiting for the end.
    RunState.PAUSED: (IN_PROGRESS, "Reconciling"),
    RunState.COMPLETED: (CURRENT, "Ready"),
    RunState.CANCELLED: (CURRENT, "Ready"),
    RunState.FAILED: (FAILED, "Stalled"),
    RunState.TERMINATED: (FAILED, "Stalled"),
}


@pytest.mark.parametrize(("state", "want"), RUN_RULE.items(), ids=[s.value for s in RUN_RULE])
def test_runs(state: RunState, want: tuple[str, str]) -> None:
    error = RunError(message="step call: boom", step="call") if state in FINAL_STATES else None
    status = WorkflowRunStatus(state=state, error=error, observed_generation=2)
    body: dict[str, Any] = {"kind": "WorkflowRun", "metadata": {"name": "r", "generation": 2}}
    written = run_conditions(status, body, NOW, [])
    true = [c.type for c in written if c.status == "True"]
    assert true == [want[1]]
    assert all(c.reason == state.value.capitalize() for c in written)
    assert all(c.observed_generation == 2 for c in written)
    obj: dict[str, Any] = {
        **body,
        "status": status.model_copy(update={"conditions": written}).model_dump(
            by_alias=True, mode="json"
        ),
    }
    assert obj["status"]["observedGeneration"] == 2
    assert compute(obj).status == want[0]


def test_every_run_state_has_a_rule() -> None:
    assert set(RUN_RULE) == set(RunState)


def test_a_spec_change_after_the_end_is_acknowledged() -> None:
    def run(observed: int | None, generation: int) -> dict[str, Any]:
        status = {"state": "completed"} | (
            {"observedGeneration": observed} if observed is not None else {}
        )
        return {"metadata": {"generation": generation}, "status": status}

    assert _unobserved(run(1, 2))  # e.g. `blockflow run stop` on a finished run
    assert not _unobserved(run(2, 2))
    assert not _unobserved(run(None, 2))  # written before observedGeneration was recorded
    stale = {"kind": "WorkflowRun", **run(1, 2)}
    assert compute(stale).status == IN_PROGRESS


# -- the kstatus rules themselves -----------------------------------------------------------


def cond(kind: str, status: str, message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "message": message}


@pytest.mark.parametrize(
    ("obj", "status"),
    [
        ({"metadata": {"generation": 1}}, CURRENT),  # no status: assumed current
        ({"metadata": {"generation": 2}, "status": {"observedGeneration": 1}}, IN_PROGRESS),
        (
            {"metadata": {"generation": 2}, "status": {"conditions": [cond("Ready", "True")]}},
            CURRENT,
        ),  # no observedGeneration: not checked
        (
            {
                "metadata": {"deletionTimestamp": "t"},
                "status": {"conditions": [cond("Ready", "True")]},
            },
            TERMINATING,
        ),
        (
            {"status": {"conditions": [cond("Stalled", "True"), cond("Reconciling", "True")]}},
            FAILED,
        ),  # the first of the two in list order
        (
            {"status": {"conditions": [cond("Reconciling", "True"), cond("Stalled", "True")]}},
            IN_PROGRESS,
        ),
        ({"status": {"conditions": [cond("Ready", "False")]}}, IN_PROGRESS),
        ({"status": {"conditions": [cond("Ready", "Unknown")]}}, IN_PROGRESS),
        ({"status": {"conditions": [cond("Ready", "True"), cond("Stalled", "False")]}}, CURRENT),
        ({"status": {"conditions": [cond("Other", "False")]}}, CURRENT),
    ],
)
def test_kstatus_rules(obj: dict[str, Any], status: str) -> None:
    assert compute({"kind": "X", **obj}).status == status
