"""kstatus conditions (Ready, Reconciling, Stalled) derived from the lifecycle status.

`kubectl wait --for=condition=Ready`, Argo CD and Flux read these; every
condition carries ``observedGeneration`` and keeps its ``lastTransitionTime``
while its status does not change.
"""

from __future__ import annotations

from datetime import datetime

from controller.api.common import Condition, ConditionStatus, LifecycleState

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"

_REASONS = {
    LifecycleState.READY: "Ready",
    LifecycleState.IN_PROGRESS: "InProgress",
    LifecycleState.FAILED: "Failed",
    LifecycleState.DRAINING: "Draining",
    LifecycleState.DRAINED: "Drained",
    LifecycleState.DRAINING_FAILED: "DrainingFailed",
}


def _flag(value: bool) -> ConditionStatus:
    return ConditionStatus.TRUE if value else ConditionStatus.FALSE


def conditions_for(
    state: LifecycleState,
    *,
    message: str,
    generation: int,
    now: datetime,
    previous: list[Condition],
    reason: str | None = None,
) -> list[Condition]:
    """The three conditions for a lifecycle status; `reason` overrides the default one."""
    reason = reason or _REASONS[state]
    wanted = {
        READY: _flag(state is LifecycleState.READY),
        RECONCILING: _flag(state in (LifecycleState.IN_PROGRESS, LifecycleState.DRAINING)),
        STALLED: _flag(state in (LifecycleState.FAILED, LifecycleState.DRAINING_FAILED)),
    }
    before = {c.type: c for c in previous}
    out = []
    for kind, status in wanted.items():
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
