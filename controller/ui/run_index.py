"""Every run the controller watches, as a small summary: what the run lists page through.

The controller's watches see every WorkflowRun; :class:`RunIndex` keeps a few fields of each
(name, workflow, state, times, the steps it waits on, its error, where it came from), ordered
newest first, so that a list of 10,000 runs is filtered and paged in memory in milliseconds
instead of reading every run (each carrying its workflow's snapshot) from the API server on
every page load and live refresh. A run's own page still reads the run itself.

Paging is by key, not offset (``before``/``after`` a run's (creationTimestamp, name)): a page
stays the same page while new runs arrive.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from controller.times import parse_time
from controller.ui.approval_text import approval_message, is_approval, snapshot_steps

#: What a run's error becomes in a list (the run's page has all of it).
ERROR_MAX = 300
ACTIVE = frozenset({"queued", "running", "waiting", "paused"})
FINAL = frozenset({"completed", "failed", "cancelled", "terminated"})
STATES = (
    "queued",
    "running",
    "waiting",
    "paused",
    "completed",
    "failed",
    "cancelled",
    "terminated",
)
#: `since` filter values and how far back they reach.
SINCE = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
PAGE_SIZES = (25, 50, 100, 200)
PARENT = "blockflow.dev/parent-run"
PARENT_STEP = "blockflow.dev/parent-step"
#: Who started a run from the web page (its Trigger form).
TRIGGERED_BY = "blockflow.dev/triggered-by"
_RUN_SOURCE = re.compile(r"^blockflow\.dev/namespaces/([^/]+)/workflowruns/([^/]+)$")

#: (creationTimestamp as RFC 3339 text, name): sorts like the runs' creation.
Position = tuple[str, str]


@dataclass(frozen=True, slots=True)
class PendingApproval:
    step: str
    since: datetime | None
    #: The step's ``with.message``, rendered (None: the step has none).
    message: str | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    name: str
    workflow: str
    state: str
    created: str
    started_at: datetime | None
    finished_at: datetime | None
    #: Steps waiting (for a person, an event, a timer, a callback).
    waiting: tuple[str, ...]
    approvals: tuple[PendingApproval, ...]
    error: str | None
    #: The run whose `workflow` step started this one (and that step).
    parent: str | None
    parent_step: str | None
    #: The run that emitted the event that started this one (emit, WorkflowRun.completed).
    origin: str | None
    #: The type of the event that started it (None: not started by an event).
    event: str | None
    cancel: bool

    @property
    def position(self) -> Position:
        return (self.created, self.name)

    @property
    def created_at(self) -> datetime | None:
        return parse_time(self.created)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def origin_of(namespace: str, input_: object) -> tuple[str | None, str | None]:
    """(the run that emitted the event, the event's type) of a run's ``spec.input``."""
    event = _dict(input_)
    if not event.get("specversion") or not isinstance(event.get("type"), str):
        return None, None
    match = _RUN_SOURCE.match(str(event.get("source") or ""))
    run = match.group(2) if match and match.group(1) == namespace else None
    return run, event["type"]


def summarize(body: dict[str, Any]) -> RunSummary:
    meta = _dict(body.get("metadata"))
    spec, status = _dict(body.get("spec")), _dict(body.get("status"))
    snapshot = {str(s.get("name")): s for s in snapshot_steps(status)}
    state = str(status.get("state") or "queued")
    waiting, approvals = [], []
    for record in status.get("steps") or []:
        if not isinstance(record, dict) or record.get("state") != "waiting":
            continue
        name = str(record.get("name"))
        waiting.append(name)
        step = snapshot.get(name)
        if state == "waiting" and is_approval(step):
            approvals.append(
                PendingApproval(
                    name, parse_time(record.get("startedAt")), approval_message(body, step)
                )
            )
    error = _dict(status.get("error")).get("message")
    annotations = _dict(meta.get("annotations"))
    origin, event = origin_of(str(meta.get("namespace") or ""), spec.get("input"))
    return RunSummary(
        name=str(meta.get("name") or ""),
        workflow=str(_dict(spec.get("workflowRef")).get("name") or ""),
        state=state,
        created=str(meta.get("creationTimestamp") or ""),
        started_at=parse_time(status.get("startedAt")),
        finished_at=parse_time(status.get("finishedAt")),
        waiting=tuple(waiting),
        approvals=tuple(approvals),
        error=_cut(str(error), ERROR_MAX) if error else None,
        parent=str(annotations[PARENT]) if annotations.get(PARENT) else None,
        parent_step=str(annotations[PARENT_STEP]) if annotations.get(PARENT_STEP) else None,
        origin=origin,
        event=event,
        cancel=bool(spec.get("cancel")),
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class RunFilter:
    """What a run list shows: all of these must hold (None / empty: any)."""

    state: str | None = None  # one of STATES, or "active"
    workflow: str | None = None
    since: datetime | None = None  # created at or after
    search: str = ""  # in the name, case-insensitive

    def since_text(self) -> str | None:
        """``since`` as creationTimestamps are written (whole seconds, RFC 3339 UTC)."""
        if self.since is None:
            return None
        return self.since.replace(microsecond=0).isoformat().replace("+00:00", "Z")

    def predicate(self) -> Callable[[RunSummary], bool]:
        search = self.search.lower()
        since = self.since_text()

        def holds(run: RunSummary) -> bool:
            if since is not None and run.created < since:
                return False
            if self.state == "active":
                if run.state not in ACTIVE:
                    return False
            elif self.state and run.state != self.state:
                return False
            if self.workflow and run.workflow != self.workflow:
                return False
            return not search or search in run.name.lower()

        return holds


@dataclass(frozen=True)
class RunPage:
    runs: tuple[RunSummary, ...]
    #: How many runs match the filter (all pages).
    total: int
    #: Cursors of the pages before (newer) and after (older) this one; None: none.
    newer: Position | None
    older: Position | None


class _Namespace:
    def __init__(self) -> None:
        self.runs: dict[str, RunSummary] = {}
        self.order: list[Position] = []  # ascending: oldest first
        self.pending: set[str] = set()  # runs waiting for an approval
        #: run → the runs it started (by a `workflow` step, or by an event it emitted)
        self.children: dict[str, set[str]] = {}

    def link(self, run: RunSummary, add: bool) -> None:
        for parent in {run.parent, run.origin} - {None}:
            assert parent is not None
            if add:
                self.children.setdefault(parent, set()).add(run.name)
            else:
                started = self.children.get(parent)
                if started is not None:
                    started.discard(run.name)
                    if not started:
                        del self.children[parent]

    def newest_first(self, below: Position | None = None) -> Iterator[RunSummary]:
        end = len(self.order) if below is None else bisect.bisect_left(self.order, below)
        for i in range(end - 1, -1, -1):
            yield self.runs[self.order[i][1]]


class RunIndex:
    """Summaries of the runs of every watched namespace, fed by the watches."""

    def __init__(self) -> None:
        self._namespaces: dict[str, _Namespace] = {}

    def observe(self, body: dict[str, Any], event_type: str | None) -> None:
        meta = _dict(body.get("metadata"))
        namespace, name = meta.get("namespace"), meta.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return
        space = self._namespaces.setdefault(namespace, _Namespace())
        previous = space.runs.pop(name, None)
        if previous is not None:
            index = bisect.bisect_left(space.order, previous.position)
            if index < len(space.order) and space.order[index] == previous.position:
                del space.order[index]
            space.link(previous, add=False)
        space.pending.discard(name)
        if event_type == "DELETED":
            if not space.runs:
                del self._namespaces[namespace]
            return
        summary = summarize(body)
        space.runs[name] = summary
        bisect.insort(space.order, summary.position)
        space.link(summary, add=True)
        if summary.approvals:
            space.pending.add(name)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> RunSummary | None:
        space = self._namespaces.get(namespace)
        return None if space is None else space.runs.get(name)

    def count(self, namespace: str) -> int:
        space = self._namespaces.get(namespace)
        return 0 if space is None else len(space.runs)

    def pending(self, namespace: str) -> list[RunSummary]:
        """Runs waiting for an approval (any order)."""
        space = self._namespaces.get(namespace)
        return [] if space is None else [space.runs[n] for n in space.pending]

    def active_by_workflow(self, namespace: str) -> dict[str, int]:
        space = self._namespaces.get(namespace)
        out: dict[str, int] = {}
        for run in space.runs.values() if space else ():
            if run.state in ACTIVE:
                out[run.workflow] = out.get(run.workflow, 0) + 1
        return out

    def workflows(self, namespace: str) -> list[str]:
        space = self._namespaces.get(namespace)
        return sorted({r.workflow for r in space.runs.values()} if space else ())

    def related(self, namespace: str, run: RunSummary) -> list[RunSummary]:
        """Runs this one started: by its `workflow` steps or by events it emitted
        (newest first)."""
        space = self._namespaces.get(namespace)
        if space is None:
            return []
        started = [space.runs[n] for n in space.children.get(run.name, ())]
        return sorted(started, key=lambda r: r.position, reverse=True)

    def page(
        self,
        namespace: str,
        wanted: RunFilter,
        *,
        limit: int = 50,
        before: Position | None = None,
        after: Position | None = None,
    ) -> RunPage:
        """One page of the runs matching ``wanted``, newest first: the first, the one
        older than ``before``, or the one newer than ``after``."""
        space = self._namespaces.get(namespace)
        if space is None:
            return RunPage((), 0, None, None)
        holds = wanted.predicate()
        since = wanted.since_text()
        matching = _until(space.newest_first(), since)
        total = sum(1 for r in matching if holds(r))
        if after is not None:
            # Newer than `after`: walk up from it, keep the `limit` closest.
            start = bisect.bisect_right(space.order, after)
            found = []
            for position in space.order[start:]:
                run = space.runs[position[1]]
                if holds(run):
                    found.append(run)
                    if len(found) > limit:
                        break
            more_newer = len(found) > limit
            runs = tuple(reversed(found[:limit]))
            return RunPage(
                runs,
                total,
                runs[0].position if runs and more_newer else None,
                runs[-1].position if runs else after,
            )
        selected = []
        for run in _until(space.newest_first(before), since):
            if holds(run):
                selected.append(run)
                if len(selected) > limit:
                    break
        runs = tuple(selected[:limit])
        newer = None
        if runs and before is not None and _any_newer(space, runs[0].position, holds):
            newer = runs[0].position
        return RunPage(runs, total, newer, runs[-1].position if len(selected) > limit else None)


def _any_newer(space: _Namespace, position: Position, holds: Callable[[RunSummary], bool]) -> bool:
    start = bisect.bisect_right(space.order, position)
    return any(holds(space.runs[p[1]]) for p in space.order[start:])


def _until(runs: Iterable[RunSummary], since: str | None) -> Iterator[RunSummary]:
    """Runs (newest first) created at or after ``since``."""
    for run in runs:
        if since is not None and run.created < since:
            return
        yield run


def position_text(position: Position) -> str:
    return f"{position[0]}~{position[1]}"


def parse_position(text: str | None) -> Position | None:
    if not text or "~" not in text:
        return None
    created, _, name = text.partition("~")
    return (created, name) if name and len(text) < 400 else None
