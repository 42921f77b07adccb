"""Run admission: whether a new run may start, from plain values.

A run is admitted against its Workflow's *activated* spec: a workflow that is missing,
not active, or activated at another version than the run asks for refuses it (the run
fails, saying why). Then `concurrency` decides against the workflow's other active
runs: start it, keep it queued, skip it (terminated, saying why), or start it and cancel
the oldest runs so that no more than `max` stay active (policy Replace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from controller.api.workflow import Concurrency, RunConcurrencyPolicy
from controller.kube.objects import Body, Key, status_of


class Verdict(Enum):
    RUN = "run"
    QUEUE = "queue"
    SKIP = "skip"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    #: Why (for SKIP and REFUSE): the run's error message.
    message: str = ""
    #: Runs to cancel so that this one fits (policy Replace), oldest first.
    cancel: list[Key] = field(default_factory=list)


def refusal(workflow: Body | None, name: str, namespace: str, version: int | None) -> str | None:
    """Why a run of ``name`` cannot start at all (None: it can)."""
    if workflow is None:
        return f"spec.workflowRef.name: Workflow {name} not found in namespace {namespace}"
    activation = status_of(workflow).get("activation") or {}
    if not activation.get("spec"):
        phase = status_of(workflow).get("phase") or "Draft"
        if phase == "Archived":
            return f"Workflow {name} is archived and starts no runs; create a new Workflow"
        return (
            f"Workflow {name} is not active (phase {phase}); activate it with "
            f"`blockflow workflow activate {name} -n {namespace}`"
        )
    if version is not None and version != activation.get("version"):
        return (
            f"spec.workflowVersion: version {version} of Workflow {name} is no longer active "
            f"(active: {activation.get('version')})"
        )
    return None


def admit(
    workflow: Body | None,
    name: str,
    namespace: str,
    version: int | None,
    concurrency: Concurrency | None,
    others: list[Key],
) -> Admission:
    """The verdict for one run, given the workflow's other active runs (oldest first)."""
    refused = refusal(workflow, name, namespace, version)
    if refused is not None:
        return Admission(Verdict.REFUSE, refused)
    if concurrency is None or len(others) < concurrency.max:
        return Admission(Verdict.RUN)
    if concurrency.policy is RunConcurrencyPolicy.QUEUE:
        return Admission(Verdict.QUEUE)
    if concurrency.policy is RunConcurrencyPolicy.SKIP:
        return Admission(
            Verdict.SKIP,
            f"skipped: {len(others)} runs of {name} are active "
            f"(concurrency.max {concurrency.max}, policy Skip)",
        )
    return Admission(Verdict.RUN, cancel=others[: len(others) - concurrency.max + 1])


def activated_spec(workflow: Body) -> tuple[dict[str, Any], int | None]:
    """The activated spec a run snapshots, and its version."""
    activation = status_of(workflow).get("activation") or {}
    return activation["spec"], activation.get("version")
