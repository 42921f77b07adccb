"""Approve / reject from the page: the same path as ``POST /hooks/<token>``, in process.

A hook POST proves itself with the workflow's hookKey; a person on the page proves
themselves with their Kubernetes identity instead (the page has checked, with a
SubjectAccessReview, that they may ``update`` the run). The decision is then delivered
exactly as a hook delivers it — :func:`deliver_hook` under the run's lock through
:meth:`RunResumer.resume_hook` — with ``who`` set to the authenticated username, so the
step's outcome records who decided (``data.by``) and when (``data.at``), and the run
resumes at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from controller.api.workflowrun import StepRecord, StepState, WorkflowRunStatus
from controller.kube.objects import Key, status_of
from controller.workflows.steps import HookDelivery, HookRejected, deliver_hook

if TYPE_CHECKING:
    from controller.api.workflow import Step
    from controller.workflows.runtime import WorkflowRuntime

DECISIONS = ("approve", "reject")


class ApprovalError(Exception):
    """Why a decision was not recorded: an HTTP status and a message for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Approvals(Protocol):
    async def decide(
        self,
        namespace: str,
        run: str,
        step: str,
        decision: str,
        who: str,
        comment: str | None = None,
    ) -> str:
        """Record the decision; the step's new state. Raises ApprovalError."""
        ...


class RuntimeApprovals:
    """Decisions delivered through the controller's workflow runtime."""

    def __init__(self, workflows: WorkflowRuntime) -> None:
        self.workflows = workflows

    async def decide(
        self,
        namespace: str,
        run: str,
        step: str,
        decision: str,
        who: str,
        comment: str | None = None,
    ) -> str:
        if decision not in DECISIONS:
            raise ApprovalError(400, f"a decision is approve or reject, not {decision!r}")
        body = await self.workflows.api.get("WorkflowRun", namespace, run)
        if body is None:
            raise ApprovalError(404, f"workflowrun {run} not found in namespace {namespace}")
        status = WorkflowRunStatus.model_validate(status_of(body))
        record = next(
            (
                r
                for r in status.steps
                if r.name == step and r.state is StepState.WAITING and r.hook_token_hash
            ),
            None,
        )
        if record is None or record.hook_token_hash is None:
            raise ApprovalError(
                409, f"step {step} of workflowrun {run} is not waiting for an approval"
            )
        now = self.workflows.now()
        payload: dict[str, Any] = {"decision": decision}
        if comment:
            payload["comment"] = comment

        def deliver(found: Step, waiting: StepRecord) -> HookDelivery:
            if found.name != step or found.uses.type != "approval" or found.uses.app:
                raise HookRejected(f"step {step} of workflowrun {run} is not an approval step")
            return deliver_hook(found, waiting, payload, now, who=who)

        try:
            state = await self.workflows.resumer.resume_hook(
                Key("WorkflowRun", namespace, run), record.hook_token_hash, deliver
            )
        except HookRejected as exc:
            raise ApprovalError(409, str(exc)) from None
        if state is None:
            raise ApprovalError(
                409, f"step {step} of workflowrun {run} is not waiting for an approval any more"
            )
        return state
