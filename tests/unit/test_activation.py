"""Activation is refused with messages naming the field; phases follow the state machine."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.workflow import WorkflowPhase as P
from controller.api.workflow import WorkflowSpec
from controller.api.workflow import WorkflowState as S
from controller.handlers.protocol import BlockTypeSpec
from controller.workflows.activation import activation_errors, phase_for, state_change_error

APPS = {
    "storage": {
        "scan-object": BlockTypeSpec(kind="step"),
        "object-created": BlockTypeSpec(kind="trigger"),
        "bucket": BlockTypeSpec(kind="lifecycle"),
    }
}


def offered(app: str) -> dict[str, BlockTypeSpec] | None:
    return APPS.get(app)


def errors(**spec: Any) -> list[str]:
    return activation_errors(WorkflowSpec.model_validate(spec), offered)


GOOD = {
    "trigger": {"event": "Deal.won"},
    "steps": [
        {
            "name": "scan",
            "uses": {"app": "storage", "type": "scan-object"},
            "with": {"k": "${{ event.key }}"},
        },
        {"name": "notify", "uses": {"type": "http"}},
    ],
}


def test_a_complete_workflow_can_be_activated() -> None:
    assert errors(**GOOD) == []
    assert (
        errors(
            trigger={"schedule": {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}},
            steps=GOOD["steps"],
        )
        == []
    )
    assert (
        errors(trigger={"block": {"app": "storage", "type": "object-created"}}, steps=GOOD["steps"])
        == []
    )


def test_steps_are_required_and_a_trigger_is_not() -> None:
    assert errors() == ["spec.steps: at least one step is required to activate"]
    # Without a trigger (or with `manual: {}`) runs are started by hand or by other workflows.
    assert errors(steps=GOOD["steps"]) == []
    assert errors(trigger={"manual": {}}, steps=GOOD["steps"]) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"steps": [{"name": "x", "uses": {"type": "mail"}}]},
            "spec.steps[0].uses.type: 'mail' is not a built-in step (http, sleep, hook, approval, "
            "emit, kubernetes.job, workflow, waitForEvent); "
            "set uses.app to use an App's step block",
        ),
        (
            {"steps": [{"name": "x", "uses": {"app": "crm", "type": "mail"}}]},
            "spec.steps[0].uses.app: App 'crm' not found in this namespace",
        ),
        (
            {"steps": [{"name": "x", "uses": {"app": "storage", "type": "bucket"}}]},
            "spec.steps[0].uses.type: App 'storage' offers no step block 'bucket' "
            "(step blocks offered: scan-object)",
        ),
        (
            {"steps": [{"name": "x", "uses": {"type": "http"}, "with": {"u": "${{ 1 + }}"}}]},
            "spec.steps[0].with.u: ${{ 1 + }} does not compile: ",
        ),
        (
            {
                "steps": [
                    {"name": "x", "uses": {"type": "http"}},
                    {"name": "x", "uses": {"type": "emit"}},
                ]
            },
            "spec.steps[1].name: 'x' is already used by spec.steps[0]",
        ),
        (
            {"errorHandling": "Fallback"},
            "spec.fallback: required when errorHandling is Fallback; add fallback steps",
        ),
        (
            {"trigger": {"schedule": {"cron": "every day"}}},
            "spec.trigger.schedule.cron: 'every day' has 2 fields, expected 5; use five fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'",
        ),
        (
            {"trigger": {"schedule": {"cron": "0 25 * * *"}}},
            "spec.trigger.schedule.cron: field 2 (hour): 25 is out of range 0-23; use five fields",
        ),
        (
            {"trigger": {"schedule": {"cron": "@daily", "timezone": "Mars/Olympus"}}},
            "spec.trigger.schedule.timezone: unknown time zone 'Mars/Olympus'; use an IANA name",
        ),
        (
            {"trigger": {"block": {"app": "storage", "type": "scan-object"}}},
            "spec.trigger.block.type: App 'storage' offers no trigger block 'scan-object' "
            "(trigger blocks offered: object-created)",
        ),
    ],
)
def test_each_problem_names_the_field_and_the_fix(change: dict[str, Any], message: str) -> None:
    found = errors(**{**GOOD, **change})
    assert any(e.startswith(message) for e in found), found


def test_archived_is_final() -> None:
    assert state_change_error(P.ARCHIVED, S.ACTIVE) == (
        "spec.state: an Archived workflow cannot become Active (Archived is final); "
        "create a new Workflow instead"
    )
    assert state_change_error(P.ARCHIVED, S.ARCHIVED) is None
    assert state_change_error(P.PAUSED, S.ACTIVE) is None
    assert phase_for(S.ACTIVE, P.ARCHIVED, activated=True, active_runs=0) is P.ARCHIVED


@pytest.mark.parametrize(
    ("wanted", "current", "activated", "runs", "phase"),
    [
        (S.DRAFT, None, False, 0, P.DRAFT),
        (S.ACTIVE, None, False, 0, P.DRAFT),  # activation under way
        (S.ACTIVE, P.DRAFT, True, 0, P.ACTIVATED),
        (S.ACTIVE, P.ACTIVATED, True, 2, P.TRIGGERED),
        (S.ACTIVE, P.TRIGGERED, True, 0, P.ACTIVATED),
        (S.PAUSED, P.TRIGGERED, True, 1, P.PAUSED),
        (S.ACTIVE, P.PAUSED, False, 0, P.PAUSED),  # re-activation under way
        (S.DRAFT, P.ACTIVATED, True, 0, P.DRAFT),
        (S.ARCHIVED, P.PAUSED, False, 0, P.ARCHIVED),
    ],
)
def test_phases_follow_the_state_machine(
    wanted: S, current: P | None, activated: bool, runs: int, phase: P
) -> None:
    assert phase_for(wanted, current, activated=activated, active_runs=runs) is phase
