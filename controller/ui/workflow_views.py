"""A workflow's own page, from the Workflow as the API server returns it (pure functions).

Its trigger, steps (``uses`` and ``with``, sensitive-looking values hidden), version and
activation — a refused activation is ``status.lifecycle.status: failed`` with the reason in
its description and in the Stalled condition, while the phase stays Draft — and its YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.kube.objects import Body
from controller.times import parse_time
from controller.ui.redact import as_json, as_yaml
from controller.ui.run_views import uses_text
from controller.ui.views import WorkflowView, workflow_view

#: metadata fields shown in the YAML (the rest is bookkeeping: managedFields, uid …).
_SHOWN_METADATA = ("name", "namespace", "labels", "generation", "creationTimestamp")


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class StepSpecView:
    name: str
    uses: str
    inputs: str | None
    #: needs, if, forEach, retries, timeout: one line each.
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ConditionView:
    type: str
    status: str
    reason: str | None
    message: str | None


@dataclass(frozen=True)
class WorkflowPageView:
    workflow: WorkflowView
    description: str | None
    #: spec.state: what the workflow is asked to be (Active, Paused, Draft, Archived).
    wanted: str
    trigger: str
    input_schema: str | None
    steps: tuple[StepSpecView, ...]
    fallback: tuple[StepSpecView, ...]
    finally_: tuple[StepSpecView, ...]
    settings: tuple[tuple[str, str], ...]
    conditions: tuple[ConditionView, ...]
    #: The refused activation's reason (status.lifecycle failed): shown as an alert.
    refused: str | None
    activated_version: int | None
    activated_at: datetime | None
    activation_attempts: int | None
    #: The version being activated, when it is not the activated one yet.
    pending_version: int | None
    yaml: str


def trigger_text(trigger: object) -> str:
    """One line: what starts a run of the workflow."""
    trigger = _dict(trigger)
    parts = []
    if trigger.get("event"):
        parts.append(f"event {trigger['event']}")
    if "webhook" in trigger:
        webhook = _dict(trigger.get("webhook"))
        signed = " (signed)" if webhook.get("signature") else ""
        parts.append(f"webhook{signed}")
    if "schedule" in trigger:
        schedule = _dict(trigger.get("schedule"))
        parts.append(f"schedule {schedule.get('cron')} ({schedule.get('timezone') or 'UTC'})")
    if "block" in trigger:
        block = _dict(trigger.get("block"))
        parts.append(f"trigger block {block.get('app')}/{block.get('type')}")
    if "manual" in trigger:
        parts.append("manual")
    return ", ".join(parts) or "none (started by hand or by a workflow step)"


def _steps(steps: object) -> tuple[StepSpecView, ...]:
    out = []
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, dict):
            continue
        notes = []
        if step.get("needs"):
            notes.append("needs " + ", ".join(str(n) for n in step["needs"]))
        if step.get("if"):
            notes.append(f"if {step['if']}")
        if step.get("forEach"):
            most = step.get("maxConcurrency")
            notes.append(f"for each {step['forEach']}" + (f", {most} at a time" if most else ""))
        retry = _dict(step.get("retryPolicy"))
        if retry.get("maxAttempts"):
            notes.append(f"up to {retry['maxAttempts']} attempts")
        if step.get("timeoutSeconds"):
            notes.append(f"timeout {step['timeoutSeconds']} s")
        with_ = step.get("with")
        out.append(
            StepSpecView(
                name=str(step.get("name")),
                uses=uses_text(step),
                inputs=as_json(with_) if with_ else None,
                notes=tuple(notes),
            )
        )
    return tuple(out)


def _settings(spec: Body) -> tuple[tuple[str, str], ...]:
    """(label, text) of what the workflow sets beyond its defaults."""
    out = []
    concurrency = _dict(spec.get("concurrency"))
    if concurrency.get("max"):
        key = f" per {concurrency['key']}" if concurrency.get("key") else ""
        policy = concurrency.get("policy") or "Queue"
        out.append(("Concurrency", f"at most {concurrency['max']} active{key} ({policy})"))
    if spec.get("timeoutSeconds"):
        out.append(("Run timeout", f"{spec['timeoutSeconds']} s"))
    events = [str(c.get("event")) for c in spec.get("cancelOn") or [] if isinstance(c, dict)]
    if events:
        out.append(("Cancelled by", ", ".join(events)))
    if spec.get("errorHandling") not in (None, "Stop"):
        out.append(("On a step failure", str(spec["errorHandling"])))
    retry = _dict(spec.get("retryPolicy"))
    if retry.get("maxAttempts"):
        out.append(("Retries", f"up to {retry['maxAttempts']} attempts per step"))
    return tuple(out)


def _yaml(body: Body) -> str:
    meta = _dict(body.get("metadata"))
    shown = {
        "apiVersion": body.get("apiVersion") or "blockflow.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {k: meta[k] for k in _SHOWN_METADATA if meta.get(k)},
        "spec": body.get("spec") or {},
    }
    return as_yaml(shown)


def workflow_page_view(body: Body, active: dict[str, int] | None) -> WorkflowPageView:
    spec, status = _dict(body.get("spec")), _dict(body.get("status"))
    lifecycle = _dict(status.get("lifecycle"))
    activation = _dict(status.get("activation"))
    attempts = _dict(status.get("activationAttempts"))
    version = status.get("version")
    activated = activation.get("version") if isinstance(activation.get("version"), int) else None
    conditions = tuple(
        ConditionView(
            type=str(c.get("type")),
            status=str(c.get("status")),
            reason=str(c["reason"]) if c.get("reason") else None,
            message=str(c["message"]) if c.get("message") else None,
        )
        for c in status.get("conditions") or []
        if isinstance(c, dict)
    )
    refused = None
    if lifecycle.get("status") == "failed":
        refused = str(lifecycle.get("description") or "") or next(
            (c.message for c in conditions if c.type == "Stalled" and c.message), "refused"
        )
    schema = spec.get("inputSchema")
    return WorkflowPageView(
        workflow=workflow_view(body, active),
        description=str(spec["description"]) if spec.get("description") else None,
        wanted=str(spec.get("state") or "Draft"),
        trigger=trigger_text(spec.get("trigger")),
        input_schema=as_json(schema) if isinstance(schema, dict) else None,
        steps=_steps(spec.get("steps")),
        fallback=_steps(spec.get("fallback")),
        finally_=_steps(spec.get("finally")),
        settings=_settings(spec),
        conditions=conditions,
        refused=refused,
        activated_version=activated,
        activated_at=parse_time(activation.get("activatedAt")),
        activation_attempts=attempts.get("attempts")
        if isinstance(attempts.get("attempts"), int)
        else None,
        pending_version=version
        if isinstance(version, int) and version != activated and spec.get("state") == "Active"
        else None,
        yaml=_yaml(body),
    )
