"""One run: where it came from, its steps (state, attempts, times, inputs, outputs, errors,
waits), the runs it started, its Kubernetes Events; Approve / Reject of a waiting approval
step next to what it asks, and Stop (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.ui.actions_html import action_button
from controller.ui.frame import (
    _main,
    chip,
    ns_path,
    run_path,
    scroll,
    tabs,
    tone,
    when,
    workflow_path,
)
from controller.ui.html import Safe, el, join
from controller.ui.run_index import RunSummary
from controller.ui.run_views import EventView, RunView, StepView
from controller.ui.views import duration_text


@dataclass(frozen=True)
class RunControls:
    """What the person may do here, and the session's CSRF token."""

    csrf: str | None
    may_decide: bool
    may_stop: bool
    may_delete: bool = False


def decision_forms(
    namespace: str, run: str, step: str, csrf: str | None, back: str, *, allowed: bool
) -> Safe:
    """Approve / Reject (plain forms; the script posts them without leaving the page)."""
    if not allowed:
        return el(
            "span",
            "You may not decide this approval (needs update on workflowruns).",
            class_="muted small no-permission",
        )
    forms = []
    for decision, label in (("approve", "Approve"), ("reject", "Reject")):
        forms.append(
            el(
                "form",
                el("input", type="hidden", name="csrf", value=csrf),
                el("input", type="hidden", name="step", value=step),
                el("input", type="hidden", name="next", value=back),
                el("button", label, type="submit", class_=decision),
                method="post",
                action=f"{run_path(namespace, run)}/{decision}",
                class_="inline",
                data_async=True,
            )
        )
    return el("div", *forms, class_="actions")


def _data(label: str, text: str | None, class_: str) -> Safe | None:
    if text is None:
        return None
    return el("details", el("summary", label), el("pre", text), class_=f"data {class_}")


def _step_item(namespace: str, run: RunView, step: StepView, now: datetime, c: RunControls) -> Safe:
    meta: list[str] = []
    if step.attempts:
        meta.append(f"{step.attempts} attempt{'s' if step.attempts != 1 else ''}")
    if step.duration is not None:
        meta.append(duration_text(step.duration))
    if step.needs:
        meta.append(step.needs)
    if step.progress:
        meta.append(step.progress)
    started = when(step.started_at, now) if step.started_at else None
    wake = (
        el("span", " · wakes ", when(step.wake_at, now))
        if step.wake_at and step.state in ("waiting", "running")
        else None
    )
    decision = None
    if step.decided_by or step.decided_at:
        decision = el(
            "div",
            "Decided by ",
            el("b", step.decided_by or "someone", class_="decided-by"),
            " ",
            when(step.decided_at, now),
            el("span", f" — “{step.comment}”", class_="muted") if step.comment else None,
            class_="decision",
        )
    message = el("blockquote", step.message, class_="approval-message") if step.message else None
    actions = None
    if step.awaiting_approval:
        back = run_path(namespace, run.name)
        forms = decision_forms(namespace, run.name, step.name, c.csrf, back, allowed=c.may_decide)
        actions = el("div", message, forms, class_="step-actions approval")
        message = None
    return el(
        "li",
        el(
            "div",
            el("b", step.name),
            el("span", step.uses, class_="uses"),
            chip(step.state),
            chip(step.outcome) if step.outcome else None,
            class_="step-head",
        ),
        el(
            "div",
            " · ".join(meta),
            el("span", " · started ", started) if started else None,
            wake,
            class_="step-meta",
        ),
        el("div", step.reason, class_="muted small") if step.reason else None,
        el("div", "Started run ", el("a", step.child, href=run_path(namespace, step.child)))
        if step.child
        else None,
        el("div", step.error, class_="step-error") if step.error else None,
        message,
        decision,
        actions,
        _data("Inputs (with)", step.inputs, "inputs"),
        _data("Outputs", step.outputs, "outputs"),
        class_=tone(step.state),
        id=f"step-{step.name}",
        data_state=step.state,
    )


def _delete_button(namespace: str, run: RunView, controls: RunControls) -> Safe | None:
    """Delete, once the run ended (as `blockflow run delete`; a running run is stopped first,
    so nothing it started is left behind unnoticed)."""
    if not run.final:
        return None
    return action_button(
        f"{run_path(namespace, run.name)}/delete",
        "Delete run",
        controls.csrf,
        ns_path(namespace, "runs"),
        class_="danger",
        confirm="delete it and its history",
        asynchronous=False,
        id_="delete-run",
    )


def _run_actions(namespace: str, run: RunView, controls: RunControls) -> Safe | None:
    """Stop, Pause / Resume while the run goes on; Retry once it failed or was stopped."""
    here = run_path(namespace, run.name)

    def button(verb: str, label: str, danger: bool = False) -> Safe:
        return action_button(
            f"{here}/{verb}",
            label,
            controls.csrf,
            here,
            class_="danger" if danger else "secondary",
            id_=f"{verb}-run",
        )

    buttons: list[Safe] = []
    if not run.final and not run.cancel_requested:
        if run.pause_requested or run.state == "paused":
            buttons.append(button("resume", "Resume"))
        else:
            buttons.append(button("pause", "Pause"))
        buttons.append(button("stop", "Stop run", danger=True))
    if run.state in ("failed", "terminated", "cancelled"):
        buttons.append(button("retry", "Retry"))
    return join(buttons) if buttons else None


def _started_by(namespace: str, run: RunView) -> Safe:
    if run.parent:
        step = f" (step {run.parent_step})" if run.parent_step else ""
        return el(
            "span",
            "run ",
            el("a", run.parent, href=run_path(namespace, run.parent), id="parent-run"),
            step,
        )
    if run.origin:
        return el(
            "span",
            "event ",
            el("code", run.event),
            " emitted by run ",
            el("a", run.origin, href=run_path(namespace, run.origin), id="origin-run"),
        )
    if run.event:
        return el("span", "event ", el("code", run.event), " from ", el("code", run.event_source))
    if run.triggered_by:
        return el("span", el("b", run.triggered_by), " on this page", id="triggered-by")
    if run.trigger in _TRIGGERS:
        return el("span", _TRIGGERS[run.trigger], id="trigger")
    return el("span", "not recorded (made by hand, e.g. kubectl apply)", class_="muted")


_TRIGGERS = {
    "webhook": "its workflow's webhook",
    "schedule": "its workflow's schedule",
    "block": "its workflow's trigger block (the App's handler)",
    "manual": "by hand (blockflow workflow trigger, or the page)",
}


def _related(namespace: str, related: Sequence[RunSummary] | None, now: datetime) -> Safe | None:
    if not related:
        return None
    items = [
        el(
            "li",
            el("a", r.name, href=run_path(namespace, r.name)),
            " ",
            chip(r.state),
            " ",
            el("a", r.workflow, href=workflow_path(namespace, r.workflow), class_="small"),
            el(
                "span",
                f" · {r.event}" if r.event and not r.parent else " · workflow step",
                class_="muted small",
            ),
            " ",
            when(r.created_at, now),
            data_run=r.name,
        )
        for r in related
    ]
    return join(
        [
            el("h2", "Runs it started"),
            el("section", el("ul", *items, class_="related"), class_="card", id="related-runs"),
        ]
    )


def _events(events: Sequence[EventView] | str, now: datetime) -> Safe:
    if isinstance(events, str):
        body: Safe = el("p", events, class_="muted small")
    elif not events:
        body = el("p", "No Events (they expire after an hour by default).", class_="muted small")
    else:
        rows = [
            el(
                "tr",
                el(
                    "td",
                    el("span", e.type, class_=f"chip {'bad' if e.type == 'Warning' else 'idle'}"),
                ),
                el("td", e.reason),
                el("td", e.message),
                el("td", f"{e.count} times" if e.count > 1 else "", class_="num"),
                el("td", when(e.last, now)),
            )
            for e in events
        ]
        head = el(
            "tr",
            el("th", "Type"),
            el("th", "Reason"),
            el("th", "Message"),
            el("th", ""),
            el("th", "Last"),
        )
        body = scroll(el("table", el("thead", head), el("tbody", *rows)))
    return join([el("h2", "Events"), el("section", body, class_="card", id="run-events")])


def _error(run: RunView) -> Safe | None:
    if not run.error:
        return None
    prefix = ""
    if run.error_step and not run.error.lower().startswith(f"step {run.error_step}"):
        prefix = f"Step {run.error_step}: "
    return el("div", prefix, run.error, class_="step-error", id="run-error")


def run_view(
    namespace: str,
    run: RunView,
    now: datetime,
    *,
    controls: RunControls,
    approvals: int | None,
    related: Sequence[RunSummary] | None,
    events: Sequence[EventView] | str,
) -> Safe:
    items = [_step_item(namespace, run, s, now, controls) for s in run.steps]
    items += [
        el(
            "li",
            el("div", el("b", name), chip("pending"), class_="step-head"),
            class_="idle",
            id=f"step-{name}",
            data_state="pending",
        )
        for name in run.not_reached
    ]
    facts = el(
        "dl",
        el("dt", "Workflow"),
        el(
            "dd",
            el("a", run.workflow, href=workflow_path(namespace, run.workflow), id="run-workflow"),
        ),
        el("dt", "Version"),
        el("dd", f"v{run.version}" if run.version is not None else "—"),
        el("dt", "Started by"),
        el("dd", _started_by(namespace, run)),
        el("dt", "Created"),
        el("dd", when(run.created_at, now)),
        el("dt", "Started"),
        el(
            "dd",
            when(run.started_at, now)
            if run.started_at
            else el("span", "not started", class_="muted"),
        ),
        el("dt", "Finished"),
        el("dd", when(run.finished_at, now)),
        el("dt", "Duration"),
        el("dd", duration_text(run.duration) or "—"),
        class_="facts",
    )
    stop = join(
        [
            _run_actions(namespace, run, controls) if controls.may_stop else None,
            _delete_button(namespace, run, controls) if controls.may_delete else None,
        ]
    )
    if items:
        timeline: Safe = el("ol", *items, class_="timeline")
    elif run.error:
        timeline = el(
            "p", "No step ran: the run ended before its first step (above).", class_="muted"
        )
    else:
        timeline = el("p", "No step has started yet.", class_="muted")
    return join(
        [
            tabs(namespace, "runs", approvals),
            _main(
                el(
                    "div",
                    el("h1", "Run ", el("span", run.name, class_="break")),
                    chip(run.state, id_="run-state"),
                    el("span", "cancel requested", class_="chip warn", id="cancel-requested")
                    if run.cancel_requested and run.state != "cancelled"
                    else None,
                    el("span", stop, class_="title-actions") if stop else None,
                    class_="step-head title",
                ),
                el("section", facts, _error(run), class_="card"),
                el("h2", "Steps"),
                el("section", timeline, class_="card"),
                el(
                    "section",
                    _data("Input (the event)", run.input, "run-input"),
                    _data("Output", run.output, "run-output"),
                    class_="card",
                )
                if run.input or run.output
                else None,
                _related(namespace, related, now),
                _events(events, now),
            ),
        ]
    )
