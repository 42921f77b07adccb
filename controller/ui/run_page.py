"""One run: its steps (state, attempts, times, errors, waits) and the Approve / Reject forms
of a waiting approval step (pure functions)."""

from __future__ import annotations

from datetime import datetime

from controller.ui.frame import _main, chip, ns_path, run_path, tabs, tone, when
from controller.ui.html import Safe, el, join
from controller.ui.views import (
    RunView,
    StepView,
    duration_text,
)

# -- a run -------------------------------------------------------------------------------------


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


def _step_item(
    namespace: str,
    run: RunView,
    step: StepView,
    now: datetime,
    csrf: str | None,
    may_decide: bool,
) -> Safe:
    meta: list[str] = []
    if step.attempts:
        meta.append(f"{step.attempts} attempt{'s' if step.attempts != 1 else ''}")
    if step.duration is not None:
        meta.append(duration_text(step.duration))
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
    actions = None
    if step.awaiting_approval:
        actions = el(
            "div",
            decision_forms(
                namespace,
                run.name,
                step.name,
                csrf,
                run_path(namespace, run.name),
                allowed=may_decide,
            ),
            class_="step-actions",
        )
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
        el("div", step.error, class_="step-error") if step.error else None,
        decision,
        actions,
        class_=tone(step.state),
        id=f"step-{step.name}",
        data_state=step.state,
    )


def run_view(
    namespace: str,
    run: RunView,
    now: datetime,
    *,
    csrf: str | None,
    may_decide: bool,
    approvals: int | None,
) -> Safe:
    items = [_step_item(namespace, run, s, now, csrf, may_decide) for s in run.steps]
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
        el("dd", el("a", run.workflow, href=ns_path(namespace, "workflows"))),
        el("dt", "Version"),
        el("dd", f"v{run.version}" if run.version is not None else "—"),
        el("dt", "Started"),
        el("dd", when(run.started_at, now)),
        el("dt", "Finished"),
        el("dd", when(run.finished_at, now)),
        el("dt", "Duration"),
        el("dd", duration_text(run.duration) or "—"),
        class_="facts",
    )
    error = (
        el(
            "div",
            f"Step {run.error_step}: "
            if run.error_step and not run.error.lower().startswith(f"step {run.error_step}")
            else "",
            run.error,
            class_="step-error",
            id="run-error",
        )
        if run.error
        else None
    )
    return join(
        [
            tabs(namespace, "workflows", approvals),
            _main(
                el(
                    "div",
                    el("h1", "Run ", run.name),
                    chip(run.state, id_="run-state"),
                    el("span", "cancel requested", class_="chip warn")
                    if run.cancel_requested and run.state not in ("cancelled",)
                    else None,
                    class_="step-head title",
                ),
                el("section", facts, error, class_="card"),
                el("h2", "Timeline"),
                el(
                    "section",
                    el("ol", *items, class_="timeline")
                    if items
                    else el("p", "No step has started yet.", class_="muted"),
                    class_="card",
                ),
            ),
        ]
    )
