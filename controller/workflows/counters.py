"""A Workflow's counters and phase, computed from plain values.

Runs are counted on their Workflow exactly once: each count carries a short digest (the
run's uid and what is counted) that the patch records in `status.counted`, a bounded
window; a controller that dies after the patch but before the run's own write finds the
digest on restart and does not count again. Counts of concurrent runs are batched into
one patch. The failure-rate alarm fires once, when the rate crosses its threshold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from controller.api.workflow import WorkflowPhase, WorkflowState
from controller.api.workflowrun import RunState
from controller.workflows.activation import phase_for

#: Digests of the last counted starts and ends kept on the Workflow.
COUNTED_WINDOW = 256
#: The failure-rate alarm: more than this share of ended runs failed …
FAILURE_RATE = 0.1
#: … once at least this many runs have ended.
FAILURE_RATE_MIN_RUNS = 10


@dataclass(frozen=True, slots=True)
class Count:
    """One thing to count on a Workflow: a run's start or end, or an ignored trigger."""

    digest: str
    what: str  # started | finished | ignored
    state: RunState | None = None


def run_count(run_uid: str, what: str, state: RunState | None) -> Count:
    """`what`: started, or the run's finished mark (finished, finished-N after N retries:
    each end of a retried run is counted once)."""
    digest = hashlib.sha256(f"{run_uid}/{what}".encode()).hexdigest()[:16]
    return Count(digest, "finished" if what.startswith("finished") else what, state)


IGNORED = Count("", "ignored")


@dataclass(frozen=True, slots=True)
class Counted:
    """The patch for a batch of counts, and what it means for the phase."""

    patch: dict[str, Any]
    #: Runs this batch starts minus those it ends (not yet in the run index).
    active_delta: int
    ended: int


#: The counters a Workflow's status always has.
COUNTERS = ("runCount", "successCount", "failureCount", "ignoredCount")


def counts_patch(status: dict[str, Any], batch: list[Count], now_iso: str) -> Counted:
    """The status patch that adds ``batch`` to the counters in ``status`` (without the
    phase, which the caller adds). Counts already recorded in `counted` are skipped."""
    counted = list(status.get("counted") or [])
    new = [c for c in batch if c.what in ("started", "finished") and c.digest not in counted]
    ignored = sum(c.what == "ignored" for c in batch)
    started = sum(c.what == "started" for c in new)
    ended = [c for c in new if c.what == "finished"]
    patch: dict[str, Any] = {}
    if new:
        patch["counted"] = [*counted, *(c.digest for c in new)][-COUNTED_WINDOW:]
    if started:
        patch["runCount"] = int(status.get("runCount") or 0) + started
        patch["lastRunAt"] = now_iso
    successes = sum(c.state is RunState.COMPLETED for c in ended)
    failures = sum(c.state is RunState.FAILED for c in ended)
    if successes:
        patch["successCount"] = int(status.get("successCount") or 0) + successes
    if failures:
        patch["failureCount"] = int(status.get("failureCount") or 0) + failures
    if ignored:
        patch["ignoredCount"] = int(status.get("ignoredCount") or 0) + ignored
    for name in COUNTERS:  # 0, not absent, before the first run (kubectl shows 0)
        if name not in status and name not in patch:
            patch[name] = 0
    return Counted(patch, started - len(ended), len(ended))


def phase(wanted: WorkflowState, status: dict[str, Any], active_runs: int) -> WorkflowPhase:
    """The Workflow's phase from its wanted state, last phase, activation and active runs."""
    current = WorkflowPhase(status["phase"]) if status.get("phase") else None
    activated = (status.get("activation") or {}).get("version") is not None
    return phase_for(wanted, current, activated=activated, active_runs=max(0, active_runs))


def failure_rate_crossed(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, float] | None:
    """(ended runs, failure rate) when this update crossed the alarm threshold, else None."""

    def rate(status: dict[str, Any]) -> tuple[int, float]:
        done = int(status.get("successCount") or 0) + int(status.get("failureCount") or 0)
        return done, (int(status.get("failureCount") or 0) / done) if done else 0.0

    done_before, rate_before = rate(before)
    done, now_rate = rate(after)
    over = done >= FAILURE_RATE_MIN_RUNS and now_rate > FAILURE_RATE
    was_over = done_before >= FAILURE_RATE_MIN_RUNS and rate_before > FAILURE_RATE
    return (done, now_rate) if over and not was_over else None
