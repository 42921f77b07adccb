"""What each page shows, from the objects as the API server returns them (pure functions).

Only what a person should see goes into a view: lifecycle status and description, the
*non-sensitive* signals of ``status.signals`` (sensitive ones live in Secrets and are only
counted), prompts, workflow counters. Never a Secret or a Block's config. Runs are
:mod:`controller.ui.run_views`, a workflow's own page :mod:`controller.ui.workflow_views`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from controller.kube.objects import Body
from controller.times import parse_time

#: Signal values longer than this are cut (the full value is in the tooltip, up to TITLE_MAX).
SIGNAL_MAX = 64
TITLE_MAX = 512


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


def name_of(body: Body) -> str:
    return str((body.get("metadata") or {}).get("name") or "")


_name = name_of


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


# -- Workflows ---------------------------------------------------------------------------------


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
    #: The lifecycle status: ``failed`` when an activation was refused (its reason is
    #: ``description``), ``ready`` once activated.
    lifecycle: str | None = None


def _count(status: Body, field: str) -> int:
    value = status.get(field)
    return value if isinstance(value, int) and value >= 0 else 0


def success_rate(succeeded: int, failed: int) -> float | None:
    finished = succeeded + failed
    return succeeded / finished if finished else None


def workflow_view(body: Body, active: dict[str, int] | None) -> WorkflowView:
    status = _status(body)
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    succeeded, failed = _count(status, "successCount"), _count(status, "failureCount")
    version = status.get("version")
    lifecycle = status.get("lifecycle") if isinstance(status.get("lifecycle"), dict) else {}
    assert isinstance(lifecycle, dict)
    return WorkflowView(
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
        active=None if active is None else active.get(_name(body), 0),
        description=lifecycle.get("description"),
        lifecycle=lifecycle.get("status"),
    )


def workflow_views(workflows: Sequence[Body], active: dict[str, int] | None) -> list[WorkflowView]:
    """Each workflow (by name) with its counters; ``active``: active runs per workflow, when
    the person may see runs."""
    return [workflow_view(body, active) for body in sorted(workflows, key=_name)]
