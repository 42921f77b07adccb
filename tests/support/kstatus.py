"""kstatus, as Flux's `wait: true`, Argo-style tools and `kubectl`-like waiters compute it,
for custom resources: a small pure-Python rendering of its generic rules, so tests can ask
"what would Flux say of this object?" without Go.

For a resource with no type-specific rules (every custom resource), in this order:

1. ``metadata.deletionTimestamp`` set → **Terminating**;
2. ``status.observedGeneration`` present and not ``metadata.generation`` → **InProgress**;
3. the first condition that is ``Reconciling=True`` (→ **InProgress**) or ``Stalled=True``
   (→ **Failed**), in list order;
4. a ``Ready`` condition: ``True`` → **Current**, ``False`` or ``Unknown`` → **InProgress**;
5. otherwise **Current** (no status at all included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CURRENT, IN_PROGRESS, FAILED, TERMINATING = "Current", "InProgress", "Failed", "Terminating"


@dataclass(frozen=True)
class Result:
    status: str
    message: str


def compute(obj: dict[str, Any]) -> Result:
    """The kstatus result of one object (as `kubectl get -o json` returns it)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return Result(TERMINATING, "Resource scheduled for deletion")
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return Result(
            IN_PROGRESS,
            f"{obj.get('kind')} generation is {generation}, "
            f"but latest observed generation is {observed}",
        )
    conditions = status.get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return Result(IN_PROGRESS, condition.get("message") or "")
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return Result(FAILED, condition.get("message") or "")
    for condition in conditions:
        if condition.get("type") != "Ready":
            continue
        if condition.get("status") == "True":
            return Result(CURRENT, "Resource is Ready")
        if condition.get("status") in ("False", "Unknown"):
            return Result(IN_PROGRESS, condition.get("message") or "")
        # any other status: this Ready condition says nothing; look on
    return Result(CURRENT, "Resource is current")
