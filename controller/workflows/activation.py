"""Workflow activation checks and the phase state machine (pure logic).

Activation is refused, with messages that name the field and the fix, when the
workflow cannot work: no steps, steps that wait for each other or for an unknown
step, a step that names nothing runnable, an expression or condition that does not
compile, a schedule that cannot be read, an input schema that is not JSON Schema.
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controller.api.workflow import ErrorHandling, Step, WorkflowPhase, WorkflowSpec, WorkflowState
from controller.handlers.protocol import BlockTypeSpec
from controller.workflows.graph import graph_errors
from controller.workflows.input_schema import input_schema_errors
from controller.workflows.schedule import CronError, parse_cron
from controller.workflows.templating import compile_errors, condition_errors

#: The built-in step types (each implemented in controller/workflows/steps/, one file each).
BUILTIN_STEPS = (
    "http",
    "sleep",
    "hook",
    "approval",
    "emit",
    "kubernetes.job",
    "workflow",
    "waitForEvent",
)

#: App name → its handler's block types, or None when there is no such App.
OfferedTypes = Callable[[str], dict[str, BlockTypeSpec] | None]


def activation_errors(spec: WorkflowSpec, offered: OfferedTypes) -> list[str]:
    """Everything that prevents activating this spec, one message per problem."""
    errors: list[str] = []
    if spec.trigger is not None:  # none: started by hand or by other workflows only
        errors += _trigger_errors(spec, offered)
    if not spec.steps:
        errors.append("spec.steps: at least one step is required to activate")
    if spec.error_handling is ErrorHandling.FALLBACK and not spec.fallback:
        errors.append("spec.fallback: required when errorHandling is Fallback; add fallback steps")
    if spec.input_schema is not None:
        errors += input_schema_errors(spec.input_schema)
    if spec.concurrency is not None and spec.concurrency.key is not None:
        errors += compile_errors(spec.concurrency.key, "spec.concurrency.key")
    for index, cancel in enumerate(spec.cancel_on):
        errors += compile_errors(cancel.match, f"spec.cancelOn[{index}].match")
    errors += _name_errors(spec)
    for field, steps in _lists(spec):
        errors += graph_errors(steps, field)
        for index, step in enumerate(steps):
            errors += _step_errors(step, f"spec.{field}[{index}]", offered)
    return errors


def _lists(spec: WorkflowSpec) -> list[tuple[str, list[Step]]]:
    return [("steps", spec.steps), ("fallback", spec.fallback), ("finally", spec.finally_)]


def _trigger_errors(spec: WorkflowSpec, offered: OfferedTypes) -> list[str]:
    trigger = spec.trigger
    assert trigger is not None
    errors: list[str] = []
    if trigger.schedule is not None:
        try:
            parse_cron(trigger.schedule.cron)
        except CronError as error:
            errors.append(
                f"spec.trigger.schedule.cron: {error}; use five fields "
                "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'"
            )
        try:
            ZoneInfo(trigger.schedule.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(
                f"spec.trigger.schedule.timezone: unknown time zone {trigger.schedule.timezone!r}; "
                "use an IANA name such as Europe/Berlin"
            )
    if trigger.webhook is not None and trigger.webhook.delivery_id is not None:
        errors += compile_errors(trigger.webhook.delivery_id, "spec.trigger.webhook.deliveryId")
    if trigger.block is not None:
        errors += _block_errors(
            trigger.block.app, trigger.block.type, "trigger", "spec.trigger.block", offered
        )
        errors += compile_errors(trigger.block.config, "spec.trigger.block.config")
    return errors


def _name_errors(spec: WorkflowSpec) -> list[str]:
    seen: dict[str, str] = {}
    errors = []
    for field, steps in _lists(spec):
        for index, step in enumerate(steps):
            where = f"spec.{field}[{index}].name"
            if step.name in seen:
                errors.append(f"{where}: {step.name!r} is already used by {seen[step.name]}")
            else:
                seen[step.name] = f"spec.{field}[{index}]"
    return errors


def _step_errors(step: Step, where: str, offered: OfferedTypes) -> list[str]:
    errors: list[str] = []
    if step.uses.app is None:
        if step.uses.type not in BUILTIN_STEPS:
            errors.append(
                f"{where}.uses.type: {step.uses.type!r} is not a built-in step "
                f"({', '.join(BUILTIN_STEPS)}); set uses.app to use an App's step block"
            )
    else:
        errors += _block_errors(step.uses.app, step.uses.type, "step", f"{where}.uses", offered)
    if step.if_ is not None:
        errors += condition_errors(step.if_, f"{where}.if")
    if step.for_each is not None:
        errors += compile_errors(step.for_each, f"{where}.forEach")
    return errors + compile_errors(step.with_, f"{where}.with")


def _block_errors(
    app: str, block_type: str, kind: str, where: str, offered: OfferedTypes
) -> list[str]:
    types = offered(app)
    if types is None:
        return [f"{where}.app: App {app!r} not found in this namespace"]
    spec = types.get(block_type)
    if spec is None or spec.kind != kind:
        names = ", ".join(sorted(n for n, t in types.items() if t.kind == kind)) or "none"
        return [
            f"{where}.type: App {app!r} offers no {kind} block {block_type!r} "
            f"({kind} blocks offered: {names})"
        ]
    return []


def state_change_error(current: WorkflowPhase | None, wanted: WorkflowState) -> str | None:
    """Archived is final: a workflow once archived never runs again."""
    if current is WorkflowPhase.ARCHIVED and wanted is not WorkflowState.ARCHIVED:
        return (
            f"spec.state: an Archived workflow cannot become {wanted.value} (Archived is final); "
            "create a new Workflow instead"
        )
    return None


def phase_for(
    wanted: WorkflowState,
    current: WorkflowPhase | None,
    *,
    activated: bool,
    active_runs: int,
) -> WorkflowPhase:
    """The phase the workflow is in: Draft → Activated ⇄ Triggered ⇄ Paused → Archived."""
    if current is WorkflowPhase.ARCHIVED or wanted is WorkflowState.ARCHIVED:
        return WorkflowPhase.ARCHIVED
    if wanted is WorkflowState.PAUSED:
        return WorkflowPhase.PAUSED
    if wanted is WorkflowState.DRAFT:
        return WorkflowPhase.DRAFT
    if not activated:
        # Activation of this version is under way (or failed): the phase stays what it
        # was — the old version keeps running until its deactivation — Draft at first.
        return current or WorkflowPhase.DRAFT
    return WorkflowPhase.TRIGGERED if active_runs > 0 else WorkflowPhase.ACTIVATED
