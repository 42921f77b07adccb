"""kstatus conditions (Ready, Reconciling, Stalled) derived from the lifecycle status.

`kubectl wait --for=condition=Ready`, Argo CD and Flux read these; every
condition carries ``observedGeneration`` and keeps its ``lastTransitionTime``
while its status does not change.

The rule: an object is in exactly one of three kstatus states, and the conditions say
which (kstatus reads ``Reconciling=True`` as InProgress, ``Stalled=True`` as Failed, then
``Ready=False`` as InProgress, anything else as Current):

| lifecycle | Ready | Reconciling | Stalled | kstatus |
|---|---|---|---|---|
| ``ready`` | True | False | False | Current |
| ``drained`` (not deleting) | True (1) | False | False | Current |
| ``in_progress``, ``draining`` | False | True | False | InProgress |
| ``failed``, ``draining_failed`` | False | False | True | Failed |
| ``drained`` while deleting | False | False | False | Terminating |

(1) reason ``Drained``; a Workflow's is its ``spec.state``: ``Draft``, ``Paused``, ``Archived``.

``Ready=True`` therefore means "settled in the state asked for": serving, or offline on
purpose (drained on request, a Draft, Paused or Archived workflow), which its reason tells
apart. So `kubectl wait --for=condition=Ready` and Flux's ``wait: true`` finish for a
directory that holds a paused workflow, and a settled object never looks in progress.
"""

from __future__ import annotations

from datetime import datetime

from controller.api.common import Condition, ConditionStatus, LifecycleState

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"
TYPES = (READY, RECONCILING, STALLED)

_REASONS = {
    LifecycleState.READY: "Ready",
    LifecycleState.IN_PROGRESS: "InProgress",
    LifecycleState.FAILED: "Failed",
    LifecycleState.DRAINING: "Draining",
    LifecycleState.DRAINED: "Drained",
    LifecycleState.DRAINING_FAILED: "DrainingFailed",
}

#: Ready=True reasons of objects that are settled but do not serve (offline on purpose).
SETTLED_OFFLINE_REASONS = frozenset({"Drained", "Draft", "Paused", "Archived"})

_WORKING = (LifecycleState.IN_PROGRESS, LifecycleState.DRAINING)
_BROKEN = (LifecycleState.FAILED, LifecycleState.DRAINING_FAILED)


def _flag(value: bool) -> ConditionStatus:
    return ConditionStatus.TRUE if value else ConditionStatus.FALSE


def wanted_statuses(state: LifecycleState, *, deleting: bool = False) -> dict[str, ConditionStatus]:
    """Ready, Reconciling and Stalled for a lifecycle status (the table above)."""
    settled = state is LifecycleState.READY or (state is LifecycleState.DRAINED and not deleting)
    return {
        READY: _flag(settled),
        RECONCILING: _flag(state in _WORKING),
        STALLED: _flag(state in _BROKEN),
    }


def outdated(state: LifecycleState, previous: list[Condition], *, deleting: bool = False) -> bool:
    """Whether the conditions written do not say what this rule says for `state` (e.g.
    written by an older controller): they need rewriting even when nothing else changes.
    None written is not outdated (nothing to correct; the next write adds them)."""
    written = {c.type: c.status for c in previous}
    return bool(written) and any(
        written.get(kind) != status
        for kind, status in wanted_statuses(state, deleting=deleting).items()
    )


def conditions_for(
    state: LifecycleState,
    *,
    message: str,
    generation: int,
    now: datetime,
    previous: list[Condition],
    reason: str | None = None,
    deleting: bool = False,
) -> list[Condition]:
    """The three conditions for a lifecycle status; `reason` overrides the default one."""
    reason = reason or _REASONS[state]
    before = {c.type: c for c in previous}
    out = []
    for kind, status in wanted_statuses(state, deleting=deleting).items():
        old = before.get(kind)
        changed = old is None or old.status != status
        out.append(
            Condition(
                type=kind,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now if changed or old is None else old.last_transition_time,
                observed_generation=generation,
            )
        )
    return out
