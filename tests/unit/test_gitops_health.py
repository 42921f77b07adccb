"""The Argo CD health checks in docs/gitops/ (Lua), run under a real Lua 5.1 interpreter the
way Argo CD runs them (gopher-lua is Lua 5.1): the resource as the global `obj`, JSON turned
into Lua tables (arrays 1-based, nulls absent), a `{status=..., message=...}` table back.

The objects in gitops_samples.json were captured (`kubectl get -o json`) from the real
controller: each sample's name says what it shows.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from lupa import lua51

from controller.lifecycle.conditions import SETTLED_OFFLINE_REASONS
from tests.support import kstatus

REPO = Path(__file__).resolve().parents[2]
GITOPS = REPO / "docs" / "gitops"
SAMPLES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).with_name("gitops_samples.json")).read_text(encoding="utf-8")
)
KINDS = {"app": "App", "block": "Block", "workflow": "Workflow", "workflowrun": "WorkflowRun"}
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def _to_lua(lua: Any, value: Any) -> Any:
    """JSON → Lua as Argo CD does: objects and arrays become tables (arrays 1-based) and
    nulls are absent."""
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items() if v is not None})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value if v is not None])
    return value


@cache
def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("gitops_render", GITOPS / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _script(kind: str) -> str:
    path: Path = _render_module().script_path(kind)
    return path.read_text(encoding="utf-8")


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the kind's health script returns for `obj`."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    # Argo CD's sandbox: no file or OS access.
    lua.execute("os = nil; io = nil; require = nil; dofile = nil; loadfile = nil")
    lua.globals().obj = _to_lua(lua, obj)
    result = lua.execute(_script(obj["kind"]))
    assert lua51.lua_type(result) == "table", f"the script returned {result!r}"
    status, message = result["status"], result["message"]
    assert status in ARGO_STATUSES, status
    assert isinstance(message, str), f"message {message!r}"
    return status, message


def sample(name: str, **status_changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(SAMPLES[name])
    obj.setdefault("status", {}).update(status_changes)
    return obj


# -- every kind, every health status ----------------------------------------------------------

CASES: list[tuple[str, str, str]] = [
    # App
    ("app/new", "Progressing", "waiting for the controller to observe the App"),
    ("app/scripted", "Healthy", "Ready"),
    ("app/broken", "Degraded", "Sync failed: cannot reach handler at http://127.0.0.1:1"),
    ("app/stale", "Progressing", "waiting for the controller to observe generation 2"),
    ("app/draining", "Progressing", "Waiting for dependents to go: Block drained"),
    ("app/drained", "Suspended", "drained on request"),
    # Block
    ("block/new", "Progressing", "waiting for the controller to observe the Block"),
    ("block/ready", "Healthy", "Ready"),
    ("block/progressing", "Progressing", "Still creating…"),
    ("block/failed", "Degraded", "quota exceeded for bucket x"),
    ("block/stale", "Progressing", "waiting for the controller to observe generation 2"),
    ("block/draining", "Progressing", "Deleting 3 backups"),
    ("block/drainfail", "Degraded", "cannot delete: bucket not empty"),
    ("block/drained", "Suspended", "drained on request"),
    # Workflow
    ("workflow/new", "Progressing", "waiting for the controller to observe the Workflow"),
    ("workflow/active", "Healthy", "Active: version 1 activated"),
    ("workflow/triggered", "Healthy", "Active: version 1 activated (runs active)"),
    ("workflow/draft", "Suspended", "Draft: trigger not active"),
    ("workflow/paused", "Suspended", "Paused: trigger not active"),
    ("workflow/archived", "Suspended", "archived"),
    ("workflow/refused", "Degraded", "not activated: spec.steps[0].uses.app: App 'crm' not found"),
    ("workflow/stale", "Progressing", "waiting for the controller to observe generation 2"),
    # WorkflowRun
    ("workflowrun/new", "Progressing", "waiting for the controller to start the run"),
    ("workflowrun/queued", "Progressing", "run queued"),
    ("workflowrun/running", "Progressing", "step call is running"),
    ("workflowrun/waiting", "Progressing", "step approve is waiting for a hook"),
    ("workflowrun/completed", "Healthy", "run completed"),
    ("workflowrun/cancelled", "Healthy", "run cancelled"),
    ("workflowrun/failed", "Degraded", "step call: POST http://127.0.0.1:"),
    ("workflowrun/terminated", "Degraded", "skipped: 1 runs of skip are active"),
]


@pytest.mark.parametrize(("name", "status", "message"), CASES, ids=[c[0] for c in CASES])
def test_health_of_captured_objects(name: str, status: str, message: str) -> None:
    got_status, got_message = health(SAMPLES[name])
    assert got_status == status, got_message
    assert message in got_message


def test_every_sample_is_covered_and_every_kind_reaches_every_status() -> None:
    assert {c[0] for c in CASES} == set(SAMPLES)
    for kind in KINDS:
        reached = {status for name, status, _ in CASES if name.startswith(f"{kind}/")}
        # Missing is Argo CD's own verdict (the resource does not exist); a script never sees
        # it. The controller never writes a paused run yet: test_a_paused_run_is_suspended.
        wanted = {"Healthy", "Progressing", "Degraded", "Suspended"}
        if kind == "workflowrun":
            wanted.discard("Suspended")
        assert reached == wanted, kind


def test_health_agrees_with_the_kstatus_conditions() -> None:
    """Ready=True is Healthy (or Suspended, when its reason says the object is offline on
    purpose), Stalled=True Degraded, Reconciling=True Progressing, whenever the conditions
    are current (their observedGeneration is the object's generation)."""
    for name, obj in SAMPLES.items():
        conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        generation = obj["metadata"].get("generation")
        if not conditions or conditions["Ready"].get("observedGeneration") != generation:
            continue
        status, _ = health(obj)
        ready = conditions["Ready"]
        expected = (
            ("Suspended" if ready["reason"] in SETTLED_OFFLINE_REASONS else "Healthy")
            if ready["status"] == "True"
            else "Degraded"
            if conditions["Stalled"]["status"] == "True"
            else "Progressing"
            if conditions["Reconciling"]["status"] == "True"
            else None
        )
        assert expected is not None, f"{name}: Ready=False, neither Reconciling nor Stalled"
        assert status == expected, name


#: What kstatus (Flux's `wait: true`) says of an object, by what Argo CD says of it.
KSTATUS_OF_HEALTH = {
    "Healthy": kstatus.CURRENT,
    "Suspended": kstatus.CURRENT,
    "Degraded": kstatus.FAILED,
    "Progressing": kstatus.IN_PROGRESS,
}


def test_flux_and_argo_cd_agree_on_every_sample() -> None:
    """kstatus (Flux) and the Argo CD scripts agree on every captured object that has
    conditions: settled is Current (Healthy or Suspended), broken Failed, the rest
    InProgress, and being deleted Terminating. (kstatus counts an object the controller has
    not written yet as Current; the scripts say Progressing: see docs/gitops/README.md.)"""
    for name, obj in SAMPLES.items():
        if not (obj.get("status") or {}).get("conditions"):
            continue
        status, message = health(obj)
        expected = KSTATUS_OF_HEALTH[status]
        if obj["metadata"].get("deletionTimestamp"):
            expected = kstatus.TERMINATING  # whatever the drain is doing
        assert kstatus.compute(obj).status == expected, (name, status, message)


# -- decisions on shapes the captures do not show -------------------------------------------


def test_drained_while_deleting_is_progressing() -> None:
    obj = sample("block/draining")
    obj["status"]["lifecycle"] = {**obj["status"]["lifecycle"], "status": "drained"}
    assert health(obj) == ("Progressing", "drained; being deleted")


def test_without_lifecycle_the_conditions_decide() -> None:
    healthy = sample("block/ready")
    del healthy["status"]["lifecycle"]
    assert health(healthy) == ("Healthy", "Ready")
    stalled = sample("app/broken")
    del stalled["status"]["lifecycle"]
    status, message = health(stalled)
    assert status == "Degraded" and "cannot reach handler" in message
    nothing = sample("app/new", observedGeneration=1)
    assert health(nothing) == ("Progressing", "waiting for the first sync")
    drained = sample("block/drained")
    del drained["status"]["lifecycle"]
    assert health(drained) == ("Suspended", "Drained")


def test_a_draft_workflow_asked_to_be_active_is_activating() -> None:
    obj = sample("workflow/draft")
    obj["spec"]["state"] = "Active"
    obj["status"]["lifecycle"] = {**obj["status"]["lifecycle"], "status": "in_progress"}
    assert health(obj)[0] == "Progressing"
    del obj["status"]["lifecycle"]
    assert health(obj) == ("Progressing", "activating")


def test_an_archived_workflow_asked_to_come_back_is_degraded() -> None:
    obj = sample("workflow/archived")
    obj["status"]["lifecycle"] = {
        **obj["status"]["lifecycle"],
        "status": "failed",
        "description": "spec.state: an Archived workflow cannot become Active (Archived is "
        "final); create a new Workflow instead",
    }
    status, message = health(obj)
    assert status == "Degraded" and "Archived is final" in message


def test_a_step_waiting_to_retry_says_until_when_and_why() -> None:
    obj = sample("workflowrun/running", state="waiting")
    step = obj["status"]["steps"][0]
    step.update(
        state="waiting",
        wakeAt="2026-11-21T09:30:00Z",
        error={"message": "POST http://x/ answered 503", "retryable": True},
    )
    assert health(obj) == (
        "Progressing",
        "step call is waiting until 2026-11-21T09:30:00Z to retry "
        "(attempt 1 failed: POST http://x/ answered 503)",
    )


def test_a_run_whose_spec_changed_is_progressing_until_observed() -> None:
    obj = sample("workflowrun/waiting")
    obj["metadata"]["generation"] = 2  # e.g. spec.cancel set
    assert health(obj) == ("Progressing", "waiting for the controller to observe generation 2")
    del obj["status"]["observedGeneration"]  # written before runs recorded it
    assert health(obj)[0] == "Progressing"
    assert health(obj)[1] == "step approve is waiting for a hook"


def test_a_paused_run_is_suspended() -> None:
    assert health(sample("workflowrun/waiting", state="paused")) == ("Suspended", "run paused")


# -- the ConfigMap snippet -------------------------------------------------------------------


def test_argocd_cm_is_up_to_date_with_the_scripts() -> None:
    import yaml

    text = (GITOPS / "argocd-cm.yaml").read_text(encoding="utf-8")
    assert text == _render_module().render(), "run: python docs/gitops/render.py"
    data = yaml.safe_load(text)["data"]
    assert set(data) == {
        f"resource.customizations.health.blockflow.dev_{k}" for k in KINDS.values()
    }
    for kind in KINDS.values():
        assert data[f"resource.customizations.health.blockflow.dev_{kind}"] == _script(kind)
