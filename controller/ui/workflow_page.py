"""A workflow's own page: status (a refused activation as an alert with its reason), trigger,
steps, version, conditions, its recent runs, its YAML; Trigger (with an input), Activate,
Pause and Archive for who may (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.ui.actions_html import action_button, no_permission
from controller.ui.frame import _main, chip, runs_path, scroll, tabs, when, workflow_path
from controller.ui.html import Safe, el, join
from controller.ui.pages import workflow_status
from controller.ui.run_index import RunSummary
from controller.ui.runs_page import runs_table
from controller.ui.workflow_views import StepSpecView, WorkflowPageView


@dataclass(frozen=True)
class WorkflowControls:
    csrf: str | None
    may_trigger: bool
    may_patch: bool
    #: What was typed in the trigger form, and why it was refused (shown again).
    input_text: str = "{}"
    trigger_error: str | None = None


def _steps_table(steps: Sequence[StepSpecView], id_: str) -> Safe:
    rows = [
        el(
            "tr",
            el("td", el("b", s.name)),
            el("td", el("code", s.uses)),
            el(
                "td",
                *(el("div", n, class_="small muted") for n in s.notes),
                el("details", el("summary", "with"), el("pre", s.inputs), class_="data inputs")
                if s.inputs
                else None,
                class_="wide",
            ),
            id=f"spec-step-{s.name}",
        )
        for s in steps
    ]
    head = el("tr", el("th", "Step"), el("th", "Uses"), el("th", "Inputs and conditions"))
    return scroll(el("table", el("thead", head), el("tbody", *rows), id=id_, class_="stack"))


_STATE_ACTIONS = (
    ("Active", "activate", "Activate", "primary"),
    ("Paused", "pause", "Pause", "secondary"),
    ("Archived", "archive", "Archive", "danger"),
)


def _actions(namespace: str, view: WorkflowPageView, c: WorkflowControls) -> Safe:
    name = view.workflow.name
    back = workflow_path(namespace, name)
    states: list[object] = []
    if view.wanted == "Archived":
        states.append(el("p", "Archived is final: this workflow starts no runs.", class_="muted"))
    elif not c.may_patch:
        states.append(no_permission("change this workflow's state (needs patch on workflows)"))
    else:
        for state, verb, label, class_ in _STATE_ACTIONS:
            if state == view.wanted or verb == "archive":
                continue
            states.append(
                action_button(
                    f"{back}/{verb}", label, c.csrf, back, class_=class_, id_=f"workflow-{verb}"
                )
            )
    if not c.may_trigger:
        trigger: object = no_permission("start runs here (needs create on workflowruns)")
    else:
        trigger = el(
            "form",
            el("input", type="hidden", name="csrf", value=c.csrf),
            el("label", "Input (JSON: the event the run's steps see)", for_="trigger-input"),
            el(
                "textarea",
                c.input_text,
                name="input",
                id="trigger-input",
                rows="4",
                spellcheck="false",
                class_="mono",
            ),
            el("div", c.trigger_error, class_="flash bad", id="trigger-error")
            if c.trigger_error
            else None,
            el("button", "Trigger a run", type="submit", class_="primary"),
            method="post",
            action=f"{back}/trigger",
            id="trigger-form",
        )
    archive = None
    if c.may_patch and view.wanted != "Archived":
        archive = el(
            "details",
            el("summary", "Archive…"),
            el(
                "p",
                "An archived workflow starts no more runs, for good (a new Workflow is needed).",
                class_="muted small",
            ),
            action_button(
                f"{back}/archive",
                "Archive",
                c.csrf,
                back,
                class_="danger",
                confirm="I understand: this is final",
                id_="workflow-archive",
            ),
            class_="data archive",
        )
    inactive = None
    if c.may_trigger and view.activated_version is None:
        inactive = el(
            "p",
            "No version is activated: a run would be refused until it is.",
            class_="muted small",
        )
    return el(
        "section",
        el("h3", "Actions"),
        el("div", *states, class_="actions state-actions"),
        trigger,
        inactive,
        archive,
        class_="card",
        id="workflow-actions",
    )


def _facts(view: WorkflowPageView, now: datetime) -> Safe:
    wf = view.workflow
    version = f"v{wf.version}" if wf.version is not None else "—"
    if view.activated_version is not None and view.activated_version != wf.version:
        version += f" (v{view.activated_version} active)"
    activation: object = "not activated"
    if view.activated_version is not None:
        activation = join([f"v{view.activated_version} ", when(view.activated_at, now)])
    if view.activation_attempts:
        activation = join([activation, f" · {view.activation_attempts} attempts so far"])
    counts = f"{wf.runs} started · {wf.succeeded} succeeded · {wf.failed} failed"
    if wf.ignored:
        counts += f" · {wf.ignored} ignored"
    if wf.active is not None:
        counts += f" · {wf.active} active"
    return el(
        "dl",
        el("dt", "Trigger"),
        el("dd", view.trigger, id="workflow-trigger"),
        el("dt", "State asked"),
        el("dd", el("code", view.wanted), id="workflow-wanted"),
        el("dt", "Phase"),
        el("dd", chip(wf.phase, empty="—"), id="workflow-phase"),
        el("dt", "Version"),
        el("dd", version, id="workflow-version"),
        el("dt", "Activation"),
        el("dd", activation),
        el("dt", "Runs"),
        el("dd", counts),
        el("dt", "Last run"),
        el("dd", when(wf.last_run_at, now)),
        *(join([el("dt", label), el("dd", text)]) for label, text in view.settings),
        class_="facts",
    )


def _conditions(view: WorkflowPageView) -> Safe | None:
    if not view.conditions:
        return None
    rows = [
        el(
            "tr",
            el("td", c.type),
            el("td", c.status, data_label="Status"),
            el("td", c.reason or "", data_label="Reason"),
            el("td", c.message or "", class_="wide"),
            data_condition=c.type,
        )
        for c in view.conditions
    ]
    head = el(
        "tr", el("th", "Condition"), el("th", "Status"), el("th", "Reason"), el("th", "Message")
    )
    table = scroll(el("table", el("thead", head), el("tbody", *rows), class_="stack"))
    return join([el("h2", "Conditions"), el("section", table, class_="card")])


def workflow_view(
    namespace: str,
    view: WorkflowPageView,
    runs: Sequence[RunSummary] | None,
    approvals: int | None,
    now: datetime,
    controls: WorkflowControls,
) -> Safe:
    wf = view.workflow
    refused = (
        el(
            "div",
            el("b", "Activation failed. "),
            view.refused,
            el(
                "div",
                "The workflow keeps its last activated version (if any) until this is fixed.",
                class_="small",
            ),
            class_="alert bad",
            id="activation-refused",
            role="alert",
        )
        if view.refused
        else None
    )
    sections: list[object] = [
        el(
            "div",
            el("h1", "Workflow ", wf.name),
            workflow_status(wf, reason=False),
            class_="step-head title",
        ),
        refused,
        el("p", view.description, class_="lead") if view.description else None,
        el(
            "div",
            el("section", _facts(view, now), class_="card"),
            _actions(namespace, view, controls),
            class_="two",
        ),
        el("h2", "Steps"),
        el("section", _steps_table(view.steps, "workflow-steps"), class_="card"),
    ]
    if view.fallback:
        sections += [
            el("h2", "Fallback"),
            el("section", _steps_table(view.fallback, "workflow-fallback"), class_="card"),
        ]
    if view.finally_:
        sections += [
            el("h2", "Finally"),
            el("section", _steps_table(view.finally_, "workflow-finally"), class_="card"),
        ]
    if view.input_schema:
        sections.append(
            el(
                "details",
                el("summary", "Input schema"),
                el("pre", view.input_schema),
                class_="card data",
            )
        )
    sections.append(_conditions(view))
    if runs is not None:
        sections.append(
            el(
                "div",
                el("h2", "Recent runs"),
                el("a", "All runs of this workflow →", href=runs_path(namespace, workflow=wf.name)),
                class_="section-head",
            )
        )
        sections.append(runs_table(namespace, runs, now))
    sections.append(
        el(
            "details",
            el("summary", "YAML"),
            el("pre", view.yaml, id="workflow-yaml"),
            class_="card data",
        )
    )
    return join([tabs(namespace, "workflows", approvals), _main(*sections)])
