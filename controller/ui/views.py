"""What each page shows, from the objects as the API server returns them (pure functions).

Only what a person should see goes into a view: lifecycle status and description, the
*non-sensitive* signals of ``status.signals`` (sensitive ones live in Secrets and are only
counted), prompts, workflow counters, run timelines with outcome ids and error messages.
Never a Secret, a config, a run's input or an outcome's data (beyond who decided an
approval, and when).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from controller.kube.objects import Body
from controller.times import parse_time

#: Signal values longer than this are cut (the full value is in the tooltip, up to TITLE_MAX).
SIGNAL_MAX = 64
TITLE_MAX = 512
RECENT_RUNS = 25
ACTIVE_RUN_STATES = frozenset({"queued", "running", "waiting", "paused"})


# -- small parsers and formatters --------------------------------------------------------------


def duration_text(seconds: float | None) -> str:
    """``350 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 4 min``, ``3 d 2 h``."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if whole < 86400:
        hours, rest = divmod(whole, 3600)
        return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"
    days, rest = divmod(whole, 86400)
    return f"{days} d {rest // 3600} h" if rest >= 3600 else f"{days} d"


def ago_text(when: datetime | None, now: datetime) -> str:
    """``just now``, ``12 s ago``, ``5 min ago``, ``in 3 h`` (coarse, for people)."""
    if when is None:
        return ""
    delta = (now - when).total_seconds()
    span = abs(delta)
    if span < 2:
        return "just now"
    if span < 60:
        text = f"{int(span)} s"
    elif span < 3600:
        text = f"{int(span // 60)} min"
    elif span < 86400:
        text = f"{int(span // 3600)} h"
    else:
        text = f"{int(span // 86400)} d"
    return f"{text} ago" if delta > 0 else f"in {text}"


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_url(url: object) -> str | None:
    """An absolute http(s) URL, or None (never ``javascript:`` or ``data:``)."""
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def _name(body: Body) -> str:
    return str((body.get("metadata") or {}).get("name") or "")


def _status(body: Body) -> Body:
    status = body.get("status")
    return status if isinstance(status, dict) else {}


# -- Apps and Blocks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptView:
    key: str
    text: str
    #: Where the button leads (absolute http(s) only); None: shown without a button.
    url: str | None
    method: str


@dataclass(frozen=True)
class SignalView:
    name: str
    value: str
    title: str


@dataclass(frozen=True)
class EntityView:
    kind: str
    name: str
    status: str | None
    description: str | None
    signals: tuple[SignalView, ...]
    #: How many sensitive signals exist (their names and values never reach the page).
    hidden_signals: int
    prompts: tuple[PromptView, ...]
    app: str | None = None
    type: str | None = None


def prompt_view(prompt: object) -> PromptView | None:
    if not isinstance(prompt, dict) or not prompt.get("key"):
        return None
    redirect = prompt.get("redirect") if isinstance(prompt.get("redirect"), dict) else {}
    assert isinstance(redirect, dict)
    method = str(redirect.get("method") or "GET").upper()
    text = prompt.get("description") or prompt.get("message") or str(prompt["key"])
    return PromptView(
        key=str(prompt["key"]),
        text=str(text),
        url=safe_url(redirect.get("url")),
        method="POST" if method == "POST" else "GET",
    )


def entity_view(body: Body) -> EntityView:
    """An App or a Block: lifecycle, non-sensitive signals, prompts."""
    status = _status(body)
    lifecycle = status.get("lifecycle") if isinstance(status.get("lifecycle"), dict) else {}
    assert isinstance(lifecycle, dict)
    raw_signals = status.get("signals") if isinstance(status.get("signals"), dict) else {}
    assert isinstance(raw_signals, dict)
    signals = tuple(
        SignalView(
            name=str(name),
            value=_short(value, SIGNAL_MAX),
            title=_short(value, TITLE_MAX),
        )
        for name, value in sorted(raw_signals.items())
    )
    sensitive = (status.get("sensitiveSignals") or {}).get("names") or []
    prompts = tuple(
        p for p in (prompt_view(raw) for raw in status.get("prompts") or []) if p is not None
    )
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    block = body.get("kind") == "Block"
    return EntityView(
        kind=str(body.get("kind") or ""),
        name=_name(body),
        status=lifecycle.get("status"),
        description=lifecycle.get("description"),
        signals=signals,
        hidden_signals=len(sensitive) if isinstance(sensitive, list) else 0,
        prompts=prompts,
        app=str(spec.get("app")) if block and spec.get("app") else None,
        type=str(spec.get("type")) if block and spec.get("type") else None,
    )


@dataclass(frozen=True)
class AppView:
    app: EntityView
    blocks: tuple[EntityView, ...]


@dataclass(frozen=True)
class AppsView:
    #: None: the person may not list Apps (or Blocks) here.
    apps: tuple[AppView, ...] | None
    #: Blocks whose App is missing, or every Block when Apps are not visible.
    other_blocks: tuple[EntityView, ...]
    blocks_visible: bool


def apps_view(apps: Sequence[Body] | None, blocks: Sequence[Body] | None) -> AppsView:
    block_views = sorted((entity_view(b) for b in blocks or ()), key=lambda b: b.name)
    if apps is None:
        return AppsView(None, tuple(block_views), blocks is not None)
    app_views = []
    names = set()
    for app in sorted(apps, key=_name):
        entity = entity_view(app)
        names.add(entity.name)
        app_views.append(AppView(entity, tuple(b for b in block_views if b.app == entity.name)))
    others = tuple(b for b in block_views if b.app not in names)
    return AppsView(tuple(app_views), others, blocks is not None)


# -- Workflows and runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowView:
    name: str
    state: str | None
    phase: str | None
    version: int | None
    runs: int
    succeeded: int
    failed: int
    ignored: int
    #: succeeded / (succeeded + failed); None before any run finished.
    success_rate: float | None
    last_run_at: datetime | None
    #: Active runs, when runs are visible.
    active: int | None
    description: str | None


def _count(status: Body, field: str) -> int:
    value = status.get(field)
    return value if isinstance(value, int) and value >= 0 else 0


def success_rate(succeeded: int, failed: int) -> float | None:
    finished = succeeded + failed
    return succeeded / finished if finished else None


def workflow_views(workflows: Sequence[Body], runs: Sequence[Body] | None) -> list[WorkflowView]:
    active: dict[str, int] = {}
    for run in runs or ():
        if (_status(run).get("state") or "queued") in ACTIVE_RUN_STATES:
            owner = _workflow_of(run)
            active[owner] = active.get(owner, 0) + 1
    out = []
    for body in sorted(workflows, key=_name):
        status = _status(body)
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        succeeded, failed = _count(status, "successCount"), _count(status, "failureCount")
        version = status.get("version")
        lifecycle = status.get("lifecycle") if isinstance(status.get("lifecycle"), dict) else {}
        assert isinstance(lifecycle, dict)
        out.append(
            WorkflowView(
                name=_name(body),
                state=spec.get("state"),
                phase=status.get("phase"),
                version=version if isinstance(version, int) else None,
                runs=_count(status, "runCount"),
                succeeded=succeeded,
                failed=failed,
                ignored=_count(status, "ignoredCount"),
                success_rate=success_rate(succeeded, failed),
                last_run_at=parse_time(status.get("lastRunAt")),
                active=None if runs is None else active.get(_name(body), 0),
                description=lifecycle.get("description"),
            )
        )
    return out


def _workflow_of(run: Body) -> str:
    spec = run.get("spec") if isinstance(run.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    ref = spec.get("workflowRef") if isinstance(spec.get("workflowRef"), dict) else {}
    assert isinstance(ref, dict)
    return str(ref.get("name") or "")


@dataclass(frozen=True)
class RunRow:
    name: str
    workflow: str
    state: str
    started_at: datetime | None
    duration: float | None
    waiting: tuple[str, ...]


def _duration(start: datetime | None, end: datetime | None, now: datetime) -> float | None:
    if start is None:
        return None
    return ((end or now) - start).total_seconds()


def _created(body: Body) -> str:
    return str((body.get("metadata") or {}).get("creationTimestamp") or "")


def recent_runs(runs: Iterable[Body], now: datetime, limit: int = RECENT_RUNS) -> list[RunRow]:
    """The newest runs first (by creation; RFC 3339 UTC sorts as text), at most ``limit``."""
    newest = sorted(runs, key=lambda r: (_created(r), _name(r)), reverse=True)[:limit]
    rows = []
    for run in newest:
        status = _status(run)
        started = parse_time(status.get("startedAt"))
        finished = parse_time(status.get("finishedAt"))
        rows.append(
            RunRow(
                name=_name(run),
                workflow=_workflow_of(run),
                state=str(status.get("state") or "queued"),
                started_at=started,
                duration=_duration(started, finished, now),
                waiting=tuple(
                    str(r.get("name"))
                    for r in status.get("steps") or []
                    if isinstance(r, dict) and r.get("state") == "waiting"
                ),
            )
        )
    return rows


# -- a run's timeline --------------------------------------------------------------------------


@dataclass(frozen=True)
class StepView:
    name: str
    #: ``approval``, ``http`` … or ``<app>/<type>`` for an App's step block.
    uses: str
    state: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    outcome: str | None
    error: str | None
    wake_at: datetime | None
    #: A waiting approval step: the page offers Approve / Reject.
    awaiting_approval: bool = False
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None


@dataclass(frozen=True)
class RunView:
    name: str
    workflow: str
    state: str
    version: int | None
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    error: str | None
    error_step: str | None
    steps: tuple[StepView, ...]
    #: Steps of the workflow (snapshot) the run has not reached.
    not_reached: tuple[str, ...]
    cancel_requested: bool


def _snapshot_steps(status: Body) -> list[Body]:
    spec = status.get("workflowSpec") if isinstance(status.get("workflowSpec"), dict) else {}
    assert isinstance(spec, dict)
    steps = [*(spec.get("steps") or []), *(spec.get("fallback") or [])]
    return [s for s in steps if isinstance(s, dict)]


def _uses(step: Body | None) -> str:
    uses = (step or {}).get("uses") if isinstance((step or {}).get("uses"), dict) else {}
    assert isinstance(uses, dict)
    kind = str(uses.get("type") or "?")
    return f"{uses['app']}/{kind}" if uses.get("app") else kind


def is_approval(step: Body | None) -> bool:
    uses = (step or {}).get("uses") if isinstance((step or {}).get("uses"), dict) else {}
    assert isinstance(uses, dict)
    return uses.get("type") == "approval" and not uses.get("app")


def run_view(run: Body, now: datetime) -> RunView:
    status = _status(run)
    snapshot = {str(s.get("name")): s for s in _snapshot_steps(status)}
    state = str(status.get("state") or "queued")
    steps = []
    for record in status.get("steps") or []:
        if not isinstance(record, dict):
            continue
        name = str(record.get("name"))
        step = snapshot.get(name)
        started = parse_time(record.get("startedAt"))
        finished = parse_time(record.get("finishedAt"))
        outcome = record.get("outcome") if isinstance(record.get("outcome"), dict) else None
        error = record.get("error") if isinstance(record.get("error"), dict) else None
        approval = is_approval(step)
        data = (outcome or {}).get("data")
        decision: Body = data if approval and isinstance(data, dict) else {}
        steps.append(
            StepView(
                name=name,
                uses=_uses(step),
                state=str(record.get("state") or "pending"),
                attempts=int(record["attempts"]) if isinstance(record.get("attempts"), int) else 0,
                started_at=started,
                finished_at=finished,
                duration=_duration(started, finished, now),
                outcome=str(outcome["id"]) if outcome and outcome.get("id") else None,
                error=str(error["message"]) if error and error.get("message") else None,
                wake_at=parse_time(record.get("wakeAt")),
                awaiting_approval=approval
                and record.get("state") == "waiting"
                and state == "waiting",
                decided_by=str(decision["by"]) if decision.get("by") else None,
                decided_at=parse_time(decision.get("at")),
                comment=str(decision["comment"]) if decision.get("comment") else None,
            )
        )
    reached = {s.name for s in steps}
    run_error = status.get("error") if isinstance(status.get("error"), dict) else None
    started = parse_time(status.get("startedAt"))
    finished = parse_time(status.get("finishedAt"))
    version = status.get("workflowVersion")
    spec = run.get("spec") if isinstance(run.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    return RunView(
        name=_name(run),
        workflow=_workflow_of(run),
        state=state,
        version=version if isinstance(version, int) else None,
        started_at=started,
        finished_at=finished,
        duration=_duration(started, finished, now),
        error=str(run_error["message"]) if run_error and run_error.get("message") else None,
        error_step=str(run_error["step"]) if run_error and run_error.get("step") else None,
        steps=tuple(steps),
        not_reached=tuple(
            n
            for n in snapshot
            if n not in reached and state not in _FINAL and _main_step(n, status)
        ),
        cancel_requested=bool(spec.get("cancel")),
    )


_FINAL = frozenset({"completed", "failed", "cancelled", "terminated"})


def _main_step(name: str, status: Body) -> bool:
    """Fallback steps only run on failure: they are not 'to come' in a healthy run."""
    spec = status.get("workflowSpec") if isinstance(status.get("workflowSpec"), dict) else {}
    assert isinstance(spec, dict)
    return any(isinstance(s, dict) and s.get("name") == name for s in spec.get("steps") or [])


# -- pending approvals -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalView:
    run: str
    workflow: str
    step: str
    since: datetime | None


def pending_approvals(runs: Iterable[Body]) -> list[ApprovalView]:
    """Every approval step a waiting run waits on, oldest first."""
    out = []
    for run in runs:
        status = _status(run)
        if status.get("state") != "waiting":
            continue
        snapshot = {str(s.get("name")): s for s in _snapshot_steps(status)}
        for record in status.get("steps") or []:
            if not isinstance(record, dict) or record.get("state") != "waiting":
                continue
            if not is_approval(snapshot.get(str(record.get("name")))):
                continue
            out.append(
                ApprovalView(
                    run=_name(run),
                    workflow=_workflow_of(run),
                    step=str(record.get("name")),
                    since=parse_time(record.get("startedAt")),
                )
            )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(out, key=lambda a: (a.since or far, a.run, a.step))
