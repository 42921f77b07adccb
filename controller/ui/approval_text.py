"""The steps of a run's workflow snapshot, and what an approval step asks its approver.

An approval's ``with.message`` ("Onboard ${{ event.data.company }}?") is rendered the way the
run renders its steps' ``with`` — against the run's event and its earlier steps' outcomes —
so the approver reads what they are deciding. A message that cannot be rendered (a step it
names has not run) is shown as written.
"""

from __future__ import annotations

from typing import Any

#: Longest message shown (the rest is cut).
MESSAGE_MAX = 1000


def snapshot_steps(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step of the run's workflow snapshot: steps, fallback, finally."""
    spec = status.get("workflowSpec")
    if not isinstance(spec, dict):
        return []
    steps = [
        *(spec.get("steps") or []),
        *(spec.get("fallback") or []),
        *(spec.get("finally") or []),
    ]
    return [s for s in steps if isinstance(s, dict)]


def is_approval(step: dict[str, Any] | None) -> bool:
    uses = (step or {}).get("uses")
    return isinstance(uses, dict) and uses.get("type") == "approval" and not uses.get("app")


def approval_message(run: dict[str, Any], step: dict[str, Any] | None) -> str | None:
    """The approval step's ``with.message`` for this run (rendered when it can be)."""
    with_ = (step or {}).get("with")
    message = with_.get("message") if isinstance(with_, dict) else None
    if message is None:
        return None
    text = message if isinstance(message, str) else str(message)
    if "${{" in text:
        text = _rendered(run, text)
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def _rendered(run: dict[str, Any], text: str) -> str:
    try:
        from controller.api.workflowrun import WorkflowRunStatus
        from controller.workflows.run_context import cel_context
        from controller.workflows.templating import render

        status = WorkflowRunStatus.model_validate(run.get("status") or {})
        value = render(text, cel_context(run, status), "with.message")
    except Exception:  # shown as written: a page never fails on a message
        return text
    return value if isinstance(value, str) else str(value)
