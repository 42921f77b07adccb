"""The lists: namespaces, Apps and Blocks, Workflows and their runs, pending approvals —
each view model of :mod:`controller.ui.views` rendered (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.ui.actions_html import action_button
from controller.ui.frame import (
    _main,
    app_path,
    chip,
    ns_path,
    run_path,
    scroll,
    tabs,
    when,
    workflow_path,
)
from controller.ui.html import Safe, el, join, raw
from controller.ui.run_index import PendingApproval, RunSummary
from controller.ui.run_page import decision_forms
from controller.ui.runs_page import runs_table
from controller.ui.views import AppsView, EntityView, PromptView, WorkflowView

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


@dataclass(frozen=True)
class Controls:
    """What the person may do on the Apps page: ``may["apps/NAME"]`` (or ``blocks/``)."""

    csrf: str | None
    back: str
    may: dict[str, bool]

    def sync(self, namespace: str, plural: str, name: str) -> Safe | None:
        """Sync, and Drain behind a confirmation (it deprovisions)."""
        if not self.may.get(f"{plural}/{name}"):
            return None
        sync = action_button(
            ns_path(namespace, plural, name, "sync"),
            "Sync",
            self.csrf,
            self.back,
            class_="secondary small-button",
            id_=f"sync-{plural}-{name}",
        )
        drain = el(
            "details",
            el("summary", "Drain…"),
            action_button(
                ns_path(namespace, plural, name, "drain"),
                "Drain",
                self.csrf,
                self.back,
                class_="danger small-button",
                confirm="deprovision it",
                id_=f"drain-{plural}-{name}",
            ),
            class_="data drain",
        )
        return el("span", sync, drain, class_="entity-actions")


def _block_rows(
    namespace: str, blocks: Sequence[EntityView], with_app: bool, controls: Controls | None
) -> Safe:
    rows = []
    for block in blocks:
        rows.append(
            el(
                "tr",
                el("td", el("b", block.name)),
                el("td", block.app or "—") if with_app else None,
                el("td", el("code", block.type or "?"), data_label="Type"),
                el("td", chip(block.status), data_label="Status"),
                el(
                    "td",
                    block.description or "",
                    _signals(block),
                    _prompts(block),
                    class_="wide",
                ),
                el("td", controls.sync(namespace, "blocks", block.name) if controls else None),
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
        el("th", ""),
    )
    return scroll(el("table", el("thead", head), el("tbody", *rows), class_="stack"))


def apps_view(
    namespace: str,
    view: AppsView,
    approvals: int | None,
    *,
    single: bool = False,
    controls: Controls | None = None,
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
                blocks = _block_rows(namespace, app.blocks, False, controls)
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
                        controls.sync(namespace, "apps", entity.name) if controls else None,
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
        sections.append(
            el("div", _block_rows(namespace, view.other_blocks, True, controls), class_="card")
        )
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


def workflow_status(wf: WorkflowView, *, reason: bool = True) -> Safe:
    """The phase, and a refused activation in red with its reason (not a grey Draft)."""
    if wf.lifecycle == "failed":
        return el(
            "span",
            el("span", "activation failed", class_="chip bad", data_status="failed"),
            el("div", wf.description or "", class_="refusal small") if reason else None,
        )
    return chip(wf.phase or wf.state, empty="—")


def workflows_view(
    namespace: str,
    workflows: Sequence[WorkflowView] | None,
    runs: Sequence[RunSummary] | None,
    approvals: int | None,
    now: datetime,
) -> Safe:
    sections: list[object] = []
    if workflows is not None:
        rows = [
            el(
                "tr",
                el(
                    "td",
                    el("a", el("b", wf.name), href=workflow_path(namespace, wf.name)),
                    el("div", wf.description or "", class_="muted small")
                    if wf.lifecycle != "failed"
                    else None,
                ),
                el("td", workflow_status(wf), class_="wide"),
                el(
                    "td",
                    f"v{wf.version}" if wf.version is not None else "—",
                    class_="num",
                    data_label="Version",
                ),
                el("td", wf.runs, class_="num", data_label="Runs"),
                el(
                    "td",
                    "—" if wf.active is None else wf.active,
                    class_="num",
                    data_label="Active",
                ),
                el("td", wf.succeeded, class_="num", data_label="Succeeded"),
                el("td", wf.failed, class_="num", data_label="Failed"),
                el("td", _rate_bar(wf.success_rate), data_label="Success rate"),
                el("td", when(wf.last_run_at, now), data_label="Last run"),
                id=f"workflow-{wf.name}",
                data_lifecycle=wf.lifecycle or "",
            )
            for wf in workflows
        ]
        head = el(
            "tr",
            el("th", "Workflow"),
            el("th", "Status"),
            el("th", "Version", class_="num"),
            el("th", "Runs", class_="num"),
            el("th", "Active", class_="num"),
            el("th", "Succeeded", class_="num"),
            el("th", "Failed", class_="num"),
            el("th", "Success rate"),
            el("th", "Last run"),
        )
        sections.append(
            el(
                "div",
                scroll(el("table", el("thead", head), el("tbody", *rows), class_="stack")),
                class_="card",
            )
            if rows
            else el("div", "No Workflows in this namespace.", class_="card empty")
        )
    if runs is not None:
        sections.append(
            el(
                "div",
                el("h2", "Recent runs"),
                el("a", "All runs, filters and search →", href=ns_path(namespace, "runs")),
                class_="section-head",
            )
        )
        sections.append(runs_table(namespace, runs, now))
    return join(
        [
            tabs(namespace, "workflows", approvals),
            _main(
                el("h1", "Workflows"),
                el(
                    "p",
                    "Status, version and counters of each workflow, and recent runs.",
                    class_="lead",
                ),
                *sections,
            ),
        ]
    )


# -- approvals ---------------------------------------------------------------------------------


def approvals_view(
    namespace: str,
    waiting: Sequence[tuple[RunSummary, PendingApproval]],
    may_decide: dict[str, bool],
    csrf: str | None,
    now: datetime,
) -> Safe:
    back = ns_path(namespace, "approvals")
    if not waiting:
        body: Safe = el("div", "Nothing is waiting for an approval.", class_="card empty")
    else:
        rows = [
            el(
                "tr",
                el(
                    "td",
                    el("a", run.name, href=run_path(namespace, run.name)),
                    el("div", el("a", run.workflow, href=workflow_path(namespace, run.workflow))),
                ),
                el("td", el("code", a.step), el("div", when(a.since, now), class_="small")),
                el(
                    "td",
                    el("div", a.message, class_="approval-message") if a.message else None,
                    class_="wide",
                ),
                el(
                    "td",
                    decision_forms(
                        namespace,
                        run.name,
                        a.step,
                        csrf,
                        back,
                        allowed=may_decide.get(run.name, False),
                    ),
                ),
                id=f"approval-{run.name}-{a.step}",
            )
            for run, a in waiting
        ]
        head = el(
            "tr",
            el("th", "Run / workflow"),
            el("th", "Step / since"),
            el("th", "Asks"),
            el("th", "Decision"),
        )
        table = el("table", el("thead", head), el("tbody", *rows), class_="middle stack")
        body = el("div", table, class_="card")
    return join(
        [
            tabs(namespace, "approvals", len(waiting)),
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
