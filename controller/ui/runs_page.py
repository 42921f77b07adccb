"""The run list: filters (state, workflow, time, name), a page of runs, and its paging links
(pure functions). A plain GET form: it works the same without JavaScript."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from controller.ui.frame import _main, chip, ns_path, run_path, scroll, tabs, when, workflow_path
from controller.ui.html import Safe, el, join
from controller.ui.run_index import (
    PAGE_SIZES,
    SINCE,
    STATES,
    RunPage,
    RunSummary,
    position_text,
)
from controller.ui.views import duration_text

_SINCE_LABELS = {"": "any time", "1h": "last hour", "24h": "last 24 h", "7d": "last 7 days"}
_SINCE_LABELS["30d"] = "last 30 days"


@dataclass(frozen=True)
class RunQuery:
    """The list's query parameters, as given (validated)."""

    state: str = ""
    workflow: str = ""
    since: str = ""
    q: str = ""
    limit: int = 50

    def params(self, **more: str) -> dict[str, str]:
        out = {
            "state": self.state,
            "workflow": self.workflow,
            "since": self.since,
            "q": self.q,
            "limit": "" if self.limit == 50 else str(self.limit),
            **more,
        }
        return {k: v for k, v in out.items() if v}


def _origin(namespace: str, run: RunSummary) -> Safe | None:
    if run.parent:
        return el("span", "from ", el("a", run.parent, href=run_path(namespace, run.parent)))
    if run.origin:
        return el(
            "span",
            f"{run.event} from ",
            el("a", run.origin, href=run_path(namespace, run.origin)),
        )
    if run.event:
        return el("span", run.event)
    return None


def _state_cell(run: RunSummary) -> Safe:
    extra: object = None
    if run.waiting:
        extra = el("span", f" on {', '.join(run.waiting)}", class_="muted small")
    elif run.error and run.state in ("failed", "terminated"):
        extra = el("div", run.error, class_="run-reason small")
    elif run.cancel and run.state not in ("cancelled", "completed", "failed", "terminated"):
        extra = el("span", " cancel requested", class_="muted small")
    return join([chip(run.state), extra])


def runs_table(namespace: str, runs: Sequence[RunSummary], now: datetime) -> Safe:
    if not runs:
        return el("div", "No runs match.", class_="card empty", id="no-runs")
    rows = []
    for run in runs:
        started = run.started_at
        duration = (
            duration_text(((run.finished_at or now) - started).total_seconds()) if started else ""
        )
        rows.append(
            el(
                "tr",
                el("td", el("a", run.name, href=run_path(namespace, run.name), class_="run-name")),
                el(
                    "td",
                    el("a", run.workflow, href=workflow_path(namespace, run.workflow)),
                    data_label="Workflow",
                ),
                el("td", _state_cell(run), class_="wide" if run.error else None),
                el("td", when(started or run.created_at, now), data_label="Started"),
                el("td", duration or "—", class_="num", data_label="Duration"),
                el("td", _origin(namespace, run), class_="small", data_label="Started by")
                if run.event or run.parent
                else el("td", class_="small"),
                id=f"run-{run.name}",
                data_state=run.state,
            )
        )
    head = el(
        "tr",
        el("th", "Run"),
        el("th", "Workflow"),
        el("th", "State"),
        el("th", "Started"),
        el("th", "Duration", class_="num"),
        el("th", "Started by"),
    )
    table = el("table", el("thead", head), el("tbody", *rows), class_="runs stack")
    return el("div", scroll(table), class_="card")


def _select(name: str, label: str, options: Sequence[tuple[str, str]], chosen: str) -> Safe:
    return el(
        "label",
        el("span", label),
        el(
            "select",
            *(el("option", text, value=value, selected=value == chosen) for value, text in options),
            name=name,
            id=f"filter-{name}",
        ),
    )


def filter_form(namespace: str, query: RunQuery, workflows: Sequence[str]) -> Safe:
    states = [("", "any state"), ("active", "active"), *((s, s) for s in STATES)]
    names = [("", "any workflow"), *((w, w) for w in workflows)]
    if query.workflow and query.workflow not in workflows:
        names.append((query.workflow, query.workflow))
    since = [(k, _SINCE_LABELS[k]) for k in ("", *SINCE)]
    sizes = [(str(n), f"{n} a page") for n in PAGE_SIZES]
    return el(
        "form",
        el(
            "label",
            el("span", "Name"),
            el(
                "input",
                type="search",
                name="q",
                value=query.q,
                placeholder="part of a run's name",
                id="filter-q",
            ),
            class_="grow",
        ),
        _select("state", "State", states, query.state),
        _select("workflow", "Workflow", names, query.workflow),
        _select("since", "Created", since, query.since),
        _select("limit", "Page", sizes, str(query.limit)),
        el("button", "Filter", type="submit", class_="primary"),
        el("a", "Clear", href=ns_path(namespace, "runs"), class_="clear"),
        method="get",
        action=ns_path(namespace, "runs"),
        class_="filters card",
        id="run-filters",
    )


def _link(namespace: str, query: RunQuery, label: str, id_: str, **cursor: str) -> Safe:
    href = ns_path(namespace, "runs")
    params = query.params(**cursor)
    if params:
        href += "?" + urlencode(params)
    return el("a", label, href=href, class_="button secondary", rel=None, data_page=id_)


def pager(namespace: str, query: RunQuery, page: RunPage, first: bool, *, top: bool = True) -> Safe:
    shown = len(page.runs)
    links = []
    if not first:
        links.append(_link(namespace, query, "⇤ Newest", id_="page-newest"))
    if page.newer is not None:
        links.append(
            _link(namespace, query, "← Newer", id_="page-newer", after=position_text(page.newer))
        )
    if page.older is not None:
        links.append(
            _link(namespace, query, "Older →", id_="page-older", before=position_text(page.older))
        )
    total = f"{page.total:,} run{'s' if page.total != 1 else ''} match"
    return el(
        "nav",
        el(
            "span",
            f"{shown} shown · {total}",
            class_="muted small",
            id="run-count" if top else None,
        ),
        el("span", *links, class_="pages"),
        class_="pager",
        aria_label="pages",
    )


def runs_view(
    namespace: str,
    query: RunQuery,
    page: RunPage,
    workflows: Sequence[str],
    approvals: int | None,
    now: datetime,
    *,
    first: bool,
) -> Safe:
    return join(
        [
            tabs(namespace, "runs", approvals),
            _main(
                el("h1", "Runs"),
                el(
                    "p",
                    "Every run of the namespace, newest first. Filter by state, workflow and "
                    "time, or search by name.",
                    class_="lead",
                ),
                filter_form(namespace, query, workflows),
                pager(namespace, query, page, first),
                runs_table(namespace, page.runs, now),
                pager(namespace, query, page, first, top=False) if len(page.runs) > 10 else None,
            ),
        ]
    )
