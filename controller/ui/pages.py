"""The page's HTML: each view model of :mod:`controller.ui.views` rendered (pure functions).

Every page is the same frame — a top bar (where you are, who you are, sign out), a
``#view`` that holds the tabs and the content, and a footer telling whether live updates
are on. The script re-fetches ``#view`` alone (``X-Blockflow-Fragment: 1``) whenever the
namespace changes; without it, links and plain form POSTs do everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from controller import __version__
from controller.ui.assets import CSS, JS
from controller.ui.html import Safe, el, join, raw
from controller.ui.views import (
    ApprovalView,
    AppsView,
    EntityView,
    PromptView,
    RunRow,
    RunView,
    StepView,
    WorkflowView,
    ago_text,
    duration_text,
)

UI = "/ui"

_TONES = {
    # lifecycle
    "ready": "ok",
    "in_progress": "info",
    "failed": "bad",
    "draining": "warn",
    "draining_failed": "bad",
    "drained": "idle",
    # workflow phases
    "Activated": "ok",
    "Triggered": "info",
    "Paused": "warn",
    "Draft": "idle",
    "Archived": "idle",
    # runs and steps
    "completed": "ok",
    "running": "info",
    "queued": "info",
    "waiting": "warn",
    "paused": "warn",
    "terminated": "bad",
    "cancelled": "idle",
    "skipped": "idle",
    "pending": "idle",
    # outcomes
    "approved": "ok",
    "rejected": "bad",
}

_LABELS = {"in_progress": "in progress", "draining_failed": "draining failed"}


def tone(status: str | None) -> str:
    return _TONES.get(status or "", "idle")


def chip(status: str | None, *, id_: str | None = None, empty: str = "unknown") -> Safe:
    text = _LABELS.get(status or "", status or empty)
    return el("span", text, class_=f"chip {tone(status)}", id=id_, data_status=status or "")


def ns_path(namespace: str, *rest: str) -> str:
    tail = "/".join(quote(part, safe="") for part in rest)
    return f"{UI}/namespaces/{quote(namespace, safe='')}/{tail}"


def run_path(namespace: str, run: str) -> str:
    return ns_path(namespace, "runs", run)


def app_path(namespace: str, app: str) -> str:
    """The App's own page (what handlers get as ``installationUrl``)."""
    return ns_path(namespace, "apps", app)


def when(moment: datetime | None, now: datetime) -> Safe:
    if moment is None:
        return el("span", "—", class_="muted")
    stamp = moment.isoformat().replace("+00:00", "Z")
    return el("time", ago_text(moment, now), datetime=stamp, title=stamp)


# -- the frame -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """What every page shows around its content."""

    title: str
    #: The signed-in person (None on the login and error pages of nobody).
    user: str | None = None
    csrf: str | None = None
    #: (label, href or None for the current place)
    crumbs: tuple[tuple[str, str | None], ...] = ()
    #: The Server-Sent Events URL of this view; None: a static page.
    live: str | None = None


def document(frame: Frame, view: Safe) -> str:
    crumbs = []
    for label, href in frame.crumbs:
        crumbs.append(el("span", "/", class_="sep"))
        crumbs.append(el("a", label, href=href) if href else el("span", label))
    who: Safe = raw("")
    if frame.user is not None:
        who = el(
            "div",
            el("span", "Signed in as ", el("b", frame.user, id="whoami")),
            el(
                "form",
                el("input", type="hidden", name="csrf", value=frame.csrf),
                el("button", "Sign out", type="submit"),
                method="post",
                action=f"{UI}/logout",
                class_="inline",
            ),
            class_="who",
        )
    live = (
        el("span", "connecting…", id="live", class_="live off")
        if frame.live
        else el("span", "static page", id="live", class_="live")
    )
    body = join(
        [
            el(
                "header",
                el("a", el("span", "◆", class_="mark"), "Blockflow", href=f"{UI}/", class_="brand"),
                el("nav", *crumbs, class_="crumbs", aria_label="breadcrumbs"),
                who,
                class_="top",
            ),
            el("div", id="flash", class_="flash", hidden=True, role="status"),
            el("div", view, id="view", data_live=frame.live),
            el("footer", live, el("span", "·"), el("span", f"Blockflow {__version__}")),
            el("script", raw(JS)),
        ]
    )
    head = join(
        [
            raw('<meta charset="utf-8">'),
            el("meta", name="viewport", content="width=device-width, initial-scale=1"),
            el("meta", name="referrer", content="same-origin"),
            el("title", f"{frame.title} · Blockflow"),
            el("style", raw(CSS)),
        ]
    )
    return f'<!doctype html>\n<html lang="en"><head>{head}</head><body>{body}</body></html>\n'


def _main(*children: object) -> Safe:
    return el("main", *children)


# -- namespace tabs ------------------------------------------------------------------------------


def tabs(namespace: str, current: str, approvals: int | None) -> Safe:
    items = [
        ("apps", "Apps & Blocks", ns_path(namespace, "apps")),
        ("workflows", "Workflows", ns_path(namespace, "workflows")),
        ("approvals", "Approvals", ns_path(namespace, "approvals")),
    ]
    links = []
    for key, label, href in items:
        badge: object = None
        if key == "approvals" and approvals:
            badge = el("span", approvals, class_="badge", id="approvals-count")
        links.append(
            el(
                "a",
                label,
                badge,
                href=href,
                aria_current="page" if key == current else None,
                id=f"tab-{key}",
            )
        )
    return el("nav", *links, class_="tabs")


# -- namespaces ----------------------------------------------------------------------------------

_KIND_WORDS = (
    ("App", "app", "apps"),
    ("Block", "block", "blocks"),
    ("Workflow", "workflow", "workflows"),
    ("WorkflowRun", "run", "runs"),
)


def namespaces_view(entries: Sequence[tuple[str, dict[str, int]]]) -> Safe:
    """The namespaces a person may see, with what is in them (of the kinds they may list)."""
    if not entries:
        body = el(
            "div",
            el("p", "There is no namespace here whose Blockflow objects you may see."),
            el(
                "p",
                "Access follows your Kubernetes RBAC: ask for a RoleBinding that lets you ",
                el("code", "list"),
                " apps, blocks, workflows or workflowruns (group ",
                el("code", "blockflow.dev"),
                ") in a namespace.",
                class_="muted small",
            ),
            class_="card empty",
        )
    else:
        cards = []
        for namespace, counts in entries:
            parts = []
            for kind, one, many in _KIND_WORDS:
                if kind in counts:
                    n = counts[kind]
                    parts.append(f"{n} {one if n == 1 else many}")
            cards.append(
                el(
                    "div",
                    el("h3", el("a", namespace, href=ns_path(namespace, "apps"))),
                    el("div", " · ".join(parts) or "empty", class_="counts"),
                    class_="card",
                    data_namespace=namespace,
                )
            )
        body = el("div", *cards, class_="grid", id="namespaces")
    return _main(
        el("h1", "Namespaces"),
        el("p", "Where Blockflow runs Apps, Blocks and Workflows that you may see.", class_="lead"),
        body,
    )


# -- Apps and Blocks -------------------------------------------------------------------------


def _signals(entity: EntityView) -> Safe:
    if not entity.signals and not entity.hidden_signals:
        return raw("")
    items = [
        el(
            "span",
            el("b", signal.name),
            " ",
            signal.value,
            class_="signal",
            title=signal.title,
            data_signal=signal.name,
        )
        for signal in entity.signals
    ]
    if entity.hidden_signals:
        n = entity.hidden_signals
        items.append(
            el(
                "span",
                f"+ {n} sensitive signal{'s' if n != 1 else ''} (not shown)",
                class_="muted small",
            )
        )
    return el("div", *items, class_="signals")


def _prompt(prompt: PromptView) -> Safe:
    if prompt.url is None:
        return el("span", prompt.text, class_="prompt-note", data_prompt=prompt.key)
    if prompt.method == "POST":
        return el(
            "form",
            el("button", prompt.text, type="submit", class_="button prompt"),
            method="post",
            action=prompt.url,
            target="_blank",
            rel="noopener noreferrer",
            class_="inline",
            data_prompt=prompt.key,
        )
    return el(
        "a",
        prompt.text,
        href=prompt.url,
        target="_blank",
        rel="noopener noreferrer",
        class_="button prompt",
        data_prompt=prompt.key,
    )


def _prompts(entity: EntityView) -> Safe:
    if not entity.prompts:
        return raw("")
    return el("div", *(_prompt(p) for p in entity.prompts), class_="prompts")


def _block_rows(blocks: Sequence[EntityView], with_app: bool) -> Safe:
    rows = []
    for block in blocks:
        rows.append(
            el(
                "tr",
                el("td", el("b", block.name)),
                el("td", block.app or "—") if with_app else None,
                el("td", el("code", block.type or "?")),
                el("td", chip(block.status)),
                el(
                    "td",
                    block.description or "",
                    _signals(block),
                    _prompts(block),
                ),
                id=f"block-{block.name}",
                data_status=block.status or "",
            )
        )
    head = el(
        "tr",
        el("th", "Block"),
        el("th", "App") if with_app else None,
        el("th", "Type"),
        el("th", "Status"),
        el("th", "Description"),
    )
    return el("table", el("thead", head), el("tbody", *rows))


def apps_view(
    namespace: str, view: AppsView, approvals: int | None, *, single: bool = False
) -> Safe:
    """The Apps of a namespace with their Blocks (``single``: one App's own page)."""
    sections: list[Safe] = []
    if view.apps is None and not view.blocks_visible:
        sections.append(
            el("div", "You may not list Apps or Blocks in this namespace.", class_="card empty")
        )
    if view.apps is not None:
        if not view.apps:
            sections.append(el("div", "No Apps in this namespace.", class_="card empty"))
        for app in view.apps:
            entity = app.app
            blocks: object
            if not view.blocks_visible:
                blocks = el("p", "You may not list Blocks here.", class_="muted small")
            elif app.blocks:
                blocks = _block_rows(app.blocks, with_app=False)
            else:
                blocks = el("p", "No Blocks.", class_="muted small")
            sections.append(
                el(
                    "section",
                    el(
                        "header",
                        el("h3", el("a", entity.name, href=app_path(namespace, entity.name))),
                        chip(entity.status),
                        el("span", entity.description or "", class_="desc"),
                    ),
                    _signals(entity),
                    _prompts(entity),
                    blocks,
                    class_="card",
                    id=f"app-{entity.name}",
                    data_status=entity.status or "",
                )
            )
    if view.other_blocks:
        title = "Blocks whose App is missing" if view.apps is not None else "Blocks"
        sections.append(el("h2", title))
        sections.append(el("div", _block_rows(view.other_blocks, with_app=True), class_="card"))
    elif view.apps is None and view.blocks_visible:
        sections.append(el("div", "No Blocks in this namespace.", class_="card empty"))
    title = f"App {view.apps[0].app.name}" if single and view.apps else "Apps & Blocks"
    return join(
        [
            tabs(namespace, "apps", approvals),
            _main(
                el("h1", title),
                el(
                    "p",
                    "Lifecycle status, non-sensitive signals and prompts waiting for you.",
                    class_="lead",
                ),
                *sections,
            ),
        ]
    )


# -- Workflows ---------------------------------------------------------------------------------


def _rate_bar(rate: float | None) -> Safe:
    if rate is None:
        return el("span", "—", class_="muted")
    width = 64
    filled = round(rate * width)
    # An SVG bar (attributes, not inline styles: the CSP allows no style attributes).
    bar = Safe(
        f'<svg class="bar" width="{width}" height="8" viewBox="0 0 {width} 8" aria-hidden="true">'
        f'<rect width="{width}" height="8" rx="4" fill="#ffd7d5"/>'
        f'<rect width="{filled}" height="8" rx="4" fill="#1a7f37"/></svg>'
    )
    return join([bar, el("span", f"{rate:.0%}", class_="rate")])


def workflows_view(
    namespace: str,
    workflows: Sequence[WorkflowView] | None,
    runs: Sequence[RunRow] | None,
    approvals: int | None,
    now: datetime,
) -> Safe:
    sections: list[object] = []
    if workflows is not None:
        rows = [
            el(
                "tr",
                el("td", el("b", wf.name), el("div", wf.description or "", class_="muted small")),
                el("td", chip(wf.phase or wf.state, empty="—")),
                el("td", f"v{wf.version}" if wf.version is not None else "—", class_="num"),
                el("td", wf.runs, class_="num"),
                el("td", "—" if wf.active is None else wf.active, class_="num"),
                el("td", wf.succeeded, class_="num"),
                el("td", wf.failed, class_="num"),
                el("td", _rate_bar(wf.success_rate)),
                el("td", when(wf.last_run_at, now)),
                id=f"workflow-{wf.name}",
            )
            for wf in workflows
        ]
        head = el(
            "tr",
            el("th", "Workflow"),
            el("th", "Phase"),
            el("th", "Version", class_="num"),
            el("th", "Runs", class_="num"),
            el("th", "Active", class_="num"),
            el("th", "Succeeded", class_="num"),
            el("th", "Failed", class_="num"),
            el("th", "Success rate"),
            el("th", "Last run"),
        )
        sections.append(
            el("div", el("table", el("thead", head), el("tbody", *rows)), class_="card")
            if rows
            else el("div", "No Workflows in this namespace.", class_="card empty")
        )
    if runs is not None:
        sections.append(el("h2", "Recent runs"))
        sections.append(_runs_table(namespace, runs, now))
    return join(
        [
            tabs(namespace, "workflows", approvals),
            _main(
                el("h1", "Workflows"),
                el(
                    "p",
                    "Phase, version and counters of each workflow, and recent runs.",
                    class_="lead",
                ),
                *sections,
            ),
        ]
    )


def _runs_table(namespace: str, runs: Sequence[RunRow], now: datetime) -> Safe:
    if not runs:
        return el("div", "No runs yet.", class_="card empty")
    rows = [
        el(
            "tr",
            el("td", el("a", run.name, href=run_path(namespace, run.name))),
            el("td", run.workflow),
            el(
                "td",
                chip(run.state),
                el("span", f" on {', '.join(run.waiting)}", class_="muted small")
                if run.waiting
                else None,
            ),
            el("td", when(run.started_at, now)),
            el("td", duration_text(run.duration) or "—", class_="num"),
            id=f"run-{run.name}",
        )
        for run in runs
    ]
    head = el(
        "tr",
        el("th", "Run"),
        el("th", "Workflow"),
        el("th", "State"),
        el("th", "Started"),
        el("th", "Duration", class_="num"),
    )
    return el("div", el("table", el("thead", head), el("tbody", *rows)), class_="card")


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


# -- approvals ---------------------------------------------------------------------------------


def approvals_view(
    namespace: str,
    approvals: Sequence[ApprovalView],
    may_decide: dict[str, bool],
    csrf: str | None,
    now: datetime,
) -> Safe:
    back = ns_path(namespace, "approvals")
    if not approvals:
        body: Safe = el("div", "Nothing is waiting for an approval.", class_="card empty")
    else:
        rows = [
            el(
                "tr",
                el("td", el("a", a.run, href=run_path(namespace, a.run))),
                el("td", a.workflow),
                el("td", el("code", a.step)),
                el("td", when(a.since, now)),
                el(
                    "td",
                    decision_forms(
                        namespace, a.run, a.step, csrf, back, allowed=may_decide.get(a.run, False)
                    ),
                ),
                id=f"approval-{a.run}-{a.step}",
            )
            for a in approvals
        ]
        head = el(
            "tr",
            el("th", "Run"),
            el("th", "Workflow"),
            el("th", "Step"),
            el("th", "Waiting since"),
            el("th", "Decision"),
        )
        table = el("table", el("thead", head), el("tbody", *rows), class_="middle")
        body = el("div", table, class_="card")
    return join(
        [
            tabs(namespace, "approvals", len(approvals)),
            _main(
                el("h1", "Pending approvals"),
                el(
                    "p",
                    "Runs waiting for a person. Your decision is recorded in the run, "
                    "with your Kubernetes username and the time.",
                    class_="lead",
                ),
                body,
            ),
        ]
    )


# -- sign-in and errors ------------------------------------------------------------------------


def login_view(nonce: str, next_url: str, message: str | None) -> Safe:
    return el(
        "main",
        el(
            "section",
            el("h1", "Sign in"),
            el(
                "p",
                "This page shows what your Kubernetes identity may see. Paste a bearer token "
                "the cluster accepts (yours, or a ServiceAccount's):",
                class_="muted",
            ),
            el("div", message, class_="flash bad", id="login-error") if message else None,
            el(
                "form",
                el("input", type="hidden", name="nonce", value=nonce),
                el("input", type="hidden", name="next", value=next_url),
                el("label", "Token", for_="token"),
                el(
                    "input",
                    type="password",
                    name="token",
                    id="token",
                    autocomplete="off",
                    required=True,
                    spellcheck="false",
                ),
                el("button", "Sign in", type="submit", class_="primary"),
                method="post",
                action=f"{UI}/login",
            ),
            el(
                "p",
                "For example ",
                el("code", "kubectl create token NAME -n NAMESPACE"),
                " (Kubernetes ≥ 1.24). The token is checked with a TokenReview and kept only "
                "in an HttpOnly cookie of this site.",
                class_="muted small",
            ),
            class_="card",
        ),
        class_="login",
    )


def error_view(status: int, title: str, message: str) -> Safe:
    return el(
        "main",
        el(
            "section",
            el("h1", title),
            el("p", message, class_="muted"),
            el("p", el("a", "Back to the namespaces", href=f"{UI}/")),
            class_="card",
            data_status=str(status),
        ),
        class_="error-box",
    )
