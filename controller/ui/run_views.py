"""A run's page, from the run as the API server returns it (pure functions).

Each step shows its state, attempts, times and error, its inputs — the step's ``with`` from
the run's workflow snapshot (``status.workflowSpec``), as written: the rendered values are
not stored — and its outputs (``status.steps[].outcome``), with sensitive-looking values
hidden (:mod:`controller.ui.redact`). The run says where it came from: the event that
started it (and the run that emitted it), or the run whose ``workflow`` step started it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.kube.objects import Body
from controller.times import parse_time
from controller.ui.approval_text import approval_message, is_approval, snapshot_steps
from controller.ui.redact import as_json
from controller.ui.run_index import FINAL, PARENT, PARENT_STEP, TRIGGERED_BY, origin_of
from controller.workflows.naming import TRIGGER_LABEL


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _duration(start: datetime | None, end: datetime | None, now: datetime) -> float | None:
    if start is None:
        return None
    return ((end or now) - start).total_seconds()


def uses_text(step: Body | None) -> str:
    """``approval``, ``http`` … or ``<app>/<type>`` for an App's step block."""
    uses = _dict((step or {}).get("uses"))
    kind = str(uses.get("type") or "?")
    return f"{uses['app']}/{kind}" if uses.get("app") else kind


@dataclass(frozen=True)
class StepView:
    name: str
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
    #: The step's ``with`` (as written in the snapshot) and outcome data, as JSON text with
    #: sensitive values hidden; None when there is none.
    inputs: str | None = None
    outputs: str | None = None
    #: An approval's ``with.message``, rendered for this run.
    message: str | None = None
    #: Why it was skipped or cancelled; the run a `workflow` step started; fan-out progress.
    reason: str | None = None
    child: str | None = None
    progress: str | None = None
    #: "after a, b" for a step that declares needs (a branch or a join).
    needs: str | None = None


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
    #: spec.paused (asked for) and the retries recorded so far.
    pause_requested: bool = False
    retries: int = 0
    created_at: datetime | None = None
    #: What started it: an event's type, the run that emitted it, or a parent run and step.
    event: str | None = None
    event_source: str | None = None
    origin: str | None = None
    parent: str | None = None
    parent_step: str | None = None
    #: Who started it on the web page.
    triggered_by: str | None = None
    #: The label blockflow.dev/trigger: event, webhook, schedule, block, workflow or manual.
    trigger: str | None = None
    #: The run's input (the event) and output, as JSON text with sensitive values hidden.
    input: str | None = None
    output: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL


def _shown(value: Any) -> str | None:
    return None if value in (None, {}, []) else as_json(value)


def _step(run: Body, record: Body, step: Body | None, state: str, now: datetime) -> StepView:
    started = parse_time(record.get("startedAt"))
    finished = parse_time(record.get("finishedAt"))
    outcome = _dict(record.get("outcome")) or None
    error = _dict(record.get("error")) or None
    approval = is_approval(step)
    data = (outcome or {}).get("data")
    decision: Body = data if approval and isinstance(data, dict) else {}
    waiting = approval and record.get("state") == "waiting" and state == "waiting"
    return StepView(
        name=str(record.get("name")),
        uses=uses_text(step),
        state=str(record.get("state") or "pending"),
        attempts=int(record["attempts"]) if isinstance(record.get("attempts"), int) else 0,
        started_at=started,
        finished_at=finished,
        duration=_duration(started, finished, now),
        outcome=str(outcome["id"]) if outcome and outcome.get("id") else None,
        error=str(error["message"]) if error and error.get("message") else None,
        wake_at=parse_time(record.get("wakeAt")),
        awaiting_approval=waiting,
        decided_by=str(decision["by"]) if decision.get("by") else None,
        decided_at=parse_time(decision.get("at")),
        comment=str(decision["comment"]) if decision.get("comment") else None,
        inputs=_shown((step or {}).get("with")),
        outputs=None if approval else _shown(data),
        message=approval_message(run, step) if approval else None,
        reason=str(record["reason"]) if record.get("reason") else None,
        child=str(record["child"]) if record.get("child") else None,
        progress=_progress(record.get("progress")),
        needs=_needs(step, str(record.get("name") or "")),
    )


def _progress(progress: Any) -> str | None:
    """A fan-out's progress in words: 412 of 1000 items done, 1 failed."""
    if not isinstance(progress, str) or not progress:
        return None
    done, failed = progress.count("c"), progress.count("f")
    text = f"{done} of {len(progress)} item{'s' if len(progress) != 1 else ''} done"
    return text + (f", {failed} failed" if failed else "")


def _needs(step: Body | None, name: str) -> str | None:
    """Which steps this one waited for, when the workflow says (a branch or a join)."""
    if not step or "[" in name or "needs" not in step:
        return None
    needs = step.get("needs")
    if not isinstance(needs, list):
        return None
    return "after " + ", ".join(str(n) for n in needs) if needs else "started at once"


def _snapshot_of(name: str, snapshot: dict[str, Body]) -> Body | None:
    """A record's step: itself, or for a fan-out iteration (``name[3]``) its step."""
    return snapshot.get(name) or snapshot.get(name.split("[", 1)[0])


def run_view(run: Body, now: datetime) -> RunView:
    status = _dict(run.get("status"))
    meta, spec = _dict(run.get("metadata")), _dict(run.get("spec"))
    snapshot = {str(s.get("name")): s for s in snapshot_steps(status)}
    state = str(status.get("state") or "queued")
    records = [r for r in status.get("steps") or [] if isinstance(r, dict)]
    steps = tuple(
        _step(run, r, _snapshot_of(str(r.get("name")), snapshot), state, now) for r in records
    )
    reached = {s.name for s in steps}
    main = {str(s.get("name")) for s in _dict(status.get("workflowSpec")).get("steps") or []}
    run_error = _dict(status.get("error"))
    started = parse_time(status.get("startedAt"))
    finished = parse_time(status.get("finishedAt"))
    version = status.get("workflowVersion")
    annotations, labels = _dict(meta.get("annotations")), _dict(meta.get("labels"))
    origin, event = origin_of(str(meta.get("namespace") or ""), spec.get("input"))
    input_ = spec.get("input")
    return RunView(
        name=str(meta.get("name") or ""),
        workflow=str(_dict(spec.get("workflowRef")).get("name") or ""),
        state=state,
        version=version if isinstance(version, int) else None,
        started_at=started,
        finished_at=finished,
        duration=_duration(started, finished, now),
        error=str(run_error["message"]) if run_error.get("message") else None,
        error_step=str(run_error["step"]) if run_error.get("step") else None,
        steps=steps,
        # Fallback and finally steps only run on failure or at the end: not 'to come'.
        not_reached=tuple(
            n for n in snapshot if n not in reached and state not in FINAL and n in main
        ),
        cancel_requested=bool(spec.get("cancel")),
        pause_requested=bool(spec.get("paused")),
        retries=len(status.get("retries") or []) if isinstance(status.get("retries"), list) else 0,
        created_at=parse_time(meta.get("creationTimestamp")),
        event=event,
        event_source=str(_dict(input_).get("source")) if event else None,
        origin=origin,
        parent=str(annotations[PARENT]) if annotations.get(PARENT) else None,
        parent_step=str(annotations[PARENT_STEP]) if annotations.get(PARENT_STEP) else None,
        triggered_by=str(annotations[TRIGGERED_BY]) if annotations.get(TRIGGERED_BY) else None,
        trigger=str(labels[TRIGGER_LABEL]) if labels.get(TRIGGER_LABEL) else None,
        input=_shown(input_),
        output=_shown(status.get("output")),
    )


# -- Kubernetes Events about the run -------------------------------------------------------------


@dataclass(frozen=True)
class EventView:
    type: str
    reason: str
    message: str
    count: int
    last: datetime | None


#: Events of one object shown on its page (the newest).
MAX_EVENTS = 50


def event_views(items: list[Body]) -> list[EventView]:
    """Events of ``involvedObject`` the run, newest first (at most MAX_EVENTS)."""
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        series = _dict(item.get("series"))
        last = (
            parse_time(series.get("lastObservedTime"))
            or parse_time(item.get("lastTimestamp"))
            or parse_time(item.get("eventTime"))
            or parse_time(item.get("firstTimestamp"))
            or parse_time(_dict(item.get("metadata")).get("creationTimestamp"))
        )
        count = series.get("count") or item.get("count") or 1
        out.append(
            EventView(
                type=str(item.get("type") or "Normal"),
                reason=str(item.get("reason") or ""),
                message=str(item.get("message") or item.get("note") or ""),
                count=count if isinstance(count, int) else 1,
                last=last,
            )
        )
    out.sort(key=lambda e: e.last.timestamp() if e.last else 0.0, reverse=True)
    return out[:MAX_EVENTS]
