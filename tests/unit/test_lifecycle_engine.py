"""The pure lifecycle core, transition by transition (no cluster, no clock, no I/O)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.api.common import LifecycleState as S
from controller.api.common import LifecycleStatus
from controller.handlers.protocol import DrainReply, SyncReply
from controller.handlers.transport import HandlerError
from controller.lifecycle import engine
from controller.lifecycle.engine import Action, Observed

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def rng() -> random.Random:
    return random.Random(7)


def observed(state: S | None = None, **kw: Any) -> Observed:
    lifecycle_fields: dict[str, Any] = {
        k: kw.pop(k)
        for k in (
            "next_sync_time",
            "attempts",
            "handler_version_seen",
            "last_handled_sync_at",
            "last_handled_drain_at",
        )
        if k in kw
    }
    if "handler_version_seen" in lifecycle_fields:
        lifecycle_fields["handler_version"] = lifecycle_fields.pop("handler_version_seen")
    lifecycle = LifecycleStatus(status=state, **lifecycle_fields) if state else None
    kw.setdefault("generation", 1)
    kw.setdefault("observed_generation", 1 if state else None)
    return Observed(lifecycle=lifecycle, **kw)


def conditions(decision: engine.Decision) -> dict[str, str]:
    return {c["type"]: c["status"] for c in decision.status_patch["conditions"]}


# -- plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obs", "action", "reason"),
    [
        (observed(None), Action.SYNC, "FirstSeen"),
        (observed(S.READY, generation=2), Action.SYNC, "SpecChanged"),
        (observed(S.READY, requested_sync_at="t1"), Action.SYNC, "SyncRequested"),
        (observed(S.READY, requested_sync_at="t1", last_handled_sync_at="t1"), Action.NONE, "Idle"),
        (
            observed(S.READY, handler_version="2", handler_version_seen="1"),
            Action.SYNC,
            "HandlerVersionChanged",
        ),
        (observed(S.READY, next_sync_time=NOW - timedelta(seconds=1)), Action.SYNC, "Scheduled"),
        (observed(S.READY, inputs_hash="new"), Action.SYNC, "InputsChanged"),
        (observed(S.READY, sync_requested_by_handler=True), Action.SYNC, "HandlerRequested"),
        (observed(S.IN_PROGRESS, next_sync_time=NOW), Action.SYNC, "Scheduled"),
        (observed(S.FAILED, next_sync_time=NOW - timedelta(seconds=1)), Action.SYNC, "Retry"),
        (
            observed(S.DRAINED, handler_version="2", handler_version_seen="1"),
            Action.NONE,
            "Drained",
        ),
        (observed(S.DRAINED, generation=2), Action.SYNC, "SpecChanged"),
        (observed(S.READY, requested_drain_at="d1"), Action.DRAIN, "DrainRequested"),
        (
            observed(S.DRAINED, requested_drain_at="d1", last_handled_drain_at="d1"),
            Action.NONE,
            "Drained",
        ),
        (observed(S.DRAINING, next_sync_time=NOW), Action.DRAIN, "DrainRescheduled"),
        (observed(S.READY, deleting=True), Action.DRAIN, "Deleting"),
        (observed(S.READY, deleting=True, orphan=True), Action.RELEASE, "Orphan"),
        (observed(S.DRAINED, deleting=True), Action.RELEASE, "Drained"),
        (
            observed(S.DRAINING_FAILED, deleting=True, next_sync_time=NOW - timedelta(seconds=1)),
            Action.DRAIN,
            "Deleting",
        ),
        # A drain that waited for dependents (nothing scheduled) runs when woken.
        (observed(S.DRAINING, deleting=True), Action.DRAIN, "Deleting"),
        (
            observed(S.DRAINING, requested_drain_at="d1", last_handled_drain_at="d1"),
            Action.DRAIN,
            "DrainRescheduled",
        ),
    ],
)
def test_plan_calls_the_handler_exactly_when_needed(
    obs: Observed, action: Action, reason: str
) -> None:
    decided = engine.plan(obs, NOW)
    assert (decided.action, decided.reason) == (action, reason)


def test_a_future_sync_time_waits_until_then_at_any_status() -> None:
    later = NOW + timedelta(minutes=5)
    for state in (S.READY, S.IN_PROGRESS, S.FAILED):
        decided = engine.plan(observed(state, next_sync_time=later), NOW)
        assert decided.action is Action.WAIT and decided.at == later
    decided = engine.plan(observed(S.DRAINING_FAILED, deleting=True, next_sync_time=later), NOW)
    assert decided.action is Action.WAIT and decided.at == later


# -- after sync ----------------------------------------------------------------------------


def test_ready_sets_conditions_and_schedules_drift_checks() -> None:
    reply = SyncReply(new_status="ready", next_schedule_delay=60, custom_status_description="OK")
    decision = engine.after_sync(observed(None, handler_version="1.0"), reply, NOW, rng())
    lifecycle = decision.status_patch["lifecycle"]
    assert lifecycle["status"] == "ready" and lifecycle["description"] == "OK"
    assert lifecycle["handlerVersion"] == "1.0" and lifecycle["attempts"] == 0
    assert conditions(decision) == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    assert decision.status_patch["observedGeneration"] == 1
    assert decision.requeue_at is not None
    assert NOW + timedelta(seconds=60) <= decision.requeue_at <= NOW + timedelta(seconds=66)
    assert [e.reason for e in decision.events] == ["Ready"]


def test_in_progress_is_reconciling_and_steady_syncs_record_no_event() -> None:
    reply = SyncReply(new_status="in_progress", next_schedule_delay=3, signal_updates={"a": 1})
    decision = engine.after_sync(observed(S.IN_PROGRESS), reply, NOW, rng())
    assert conditions(decision) == {"Ready": "False", "Reconciling": "True", "Stalled": "False"}
    assert decision.status_patch["signals"] == {"a": 1}
    assert decision.events == []


def test_failed_reply_backs_off_and_counts_attempts() -> None:
    obs = observed(S.FAILED, attempts=2)
    decision = engine.after_sync(obs, SyncReply(new_status="failed"), NOW, rng())
    lifecycle = decision.status_patch["lifecycle"]
    assert lifecycle["attempts"] == 3 and lifecycle["lastError"] == "Failed"
    assert conditions(decision)["Stalled"] == "True"
    assert decision.requeue_at is not None
    delay = (decision.requeue_at - NOW).total_seconds()
    assert 20 * 0.8 <= delay <= 20 * 1.2  # 5 s · 2² with ±20 % jitter
    assert decision.events[0].type == "Warning"


def test_backoff_is_capped() -> None:
    assert engine.backoff_delay(30, rng()) <= engine.BACKOFF_MAX * (1 + engine.BACKOFF_JITTER)


def test_a_failed_call_is_retried_by_backoff_not_by_the_change_that_caused_it() -> None:
    obs = observed(S.READY, generation=2, inputs_hash="h2", requested_sync_at="t9")
    decision = engine.after_sync(obs, HandlerError("boom", reason="HandlerTimeout"), NOW, rng())
    lifecycle = LifecycleStatus.model_validate(decision.status_patch["lifecycle"])
    replanned = Observed(
        generation=2,
        observed_generation=2,
        lifecycle=lifecycle,
        inputs_hash="h2",
        requested_sync_at="t9",
    )
    assert engine.plan(replanned, NOW).action is Action.WAIT


def test_handler_error_keeps_signals_and_honours_retry_after() -> None:
    error = HandlerError("rate limited", reason="RateLimited", retry_after=42)
    obs = observed(S.READY, signals={"bucketId": "b-1"})
    decision = engine.after_sync(obs, error, NOW, rng())
    assert "signals" not in decision.status_patch
    assert decision.requeue_at == NOW + timedelta(seconds=42)
    assert decision.status_patch["lifecycle"]["lastError"] == "rate limited"
    assert decision.status_patch["conditions"][0]["reason"] == "RateLimited"
    assert decision.events[0].reason == "RateLimited"


def test_sensitive_signals_never_reach_the_status_patch() -> None:
    reply = SyncReply(new_status="ready", signal_updates={"bucketId": "b", "accessKey": "s3cr3t"})
    obs = observed(None, sensitive_signal_names=frozenset({"accessKey"}))
    decision = engine.after_sync(obs, reply, NOW, rng())
    assert decision.status_patch["signals"] == {"bucketId": "b"}
    assert decision.sensitive_signal_updates == {"accessKey": "s3cr3t"}
    assert "s3cr3t" not in repr(decision.status_patch) + repr(decision.events)


def test_requested_sync_is_echoed_and_prompts_and_state_pass_through() -> None:
    reply = SyncReply.model_validate(
        {
            "newStatus": "in_progress",
            "prompts": [{"key": "oauth", "description": "Authorize"}],
            "state": {"cursor": 3},
        }
    )
    decision = engine.after_sync(observed(S.READY, requested_sync_at="t2"), reply, NOW, rng())
    assert decision.status_patch["lifecycle"]["lastHandledSyncAt"] == "t2"
    assert decision.effects is reply  # prompts and timers: controller/lifecycle/effects.py
    assert decision.state_update == {"cursor": 3}


def test_condition_transition_time_is_kept_while_status_is_unchanged() -> None:
    first = engine.after_sync(observed(None), SyncReply(new_status="ready"), NOW, rng())
    from controller.api.common import Condition

    previous = [Condition.model_validate(c) for c in first.status_patch["conditions"]]
    later = NOW + timedelta(hours=1)
    again = engine.after_sync(
        observed(S.READY, conditions=previous), SyncReply(new_status="ready"), later, rng()
    )
    ready = next(c for c in again.status_patch["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == NOW.isoformat().replace("+00:00", "Z")


# -- after drain ---------------------------------------------------------------------------


def test_drained_while_deleting_releases_the_finalizer() -> None:
    decision = engine.after_drain(
        observed(S.READY, deleting=True), DrainReply(new_status="drained"), NOW, rng()
    )
    assert decision.release_finalizer
    assert conditions(decision) == {"Ready": "False", "Reconciling": "False", "Stalled": "False"}


def test_drained_by_annotation_keeps_the_finalizer_and_echoes_the_request() -> None:
    obs = observed(S.READY, requested_drain_at="d1")
    decision = engine.after_drain(obs, DrainReply(new_status="drained"), NOW, rng())
    assert not decision.release_finalizer
    assert decision.status_patch["lifecycle"]["lastHandledDrainAt"] == "d1"


def test_draining_reruns_later_and_is_reconciling() -> None:
    reply = DrainReply(new_status="draining", next_schedule_delay=5)
    decision = engine.after_drain(observed(S.READY, deleting=True), reply, NOW, rng())
    assert not decision.release_finalizer
    assert decision.requeue_at is not None and decision.requeue_at >= NOW + timedelta(seconds=5)
    assert conditions(decision)["Reconciling"] == "True"


def test_draining_failed_keeps_the_finalizer_and_retries_with_backoff() -> None:
    for outcome in (
        DrainReply(new_status="draining_failed"),
        HandlerError("x", reason="HandlerTimeout"),
    ):
        decision = engine.after_drain(observed(S.READY, deleting=True), outcome, NOW, rng())
        assert not decision.release_finalizer
        assert decision.status_patch["lifecycle"]["status"] == "draining_failed"
        assert conditions(decision)["Stalled"] == "True"
        assert decision.requeue_at is not None and decision.requeue_at > NOW


# -- blocked -------------------------------------------------------------------------------


def test_waiting_for_a_dependency_names_it_and_schedules_nothing() -> None:
    message = "Waiting for signal bucketId of Block assets"
    decision = engine.blocked(
        observed(None), NOW, state=S.IN_PROGRESS, reason="DependencyNotReady", message=message
    )
    assert decision.status_patch["lifecycle"]["description"] == message
    ready = next(c for c in decision.status_patch["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "DependencyNotReady"
    assert decision.requeue_at is None
    # Re-deciding the same wait records no second event.
    lifecycle = LifecycleStatus.model_validate(decision.status_patch["lifecycle"])
    again = engine.blocked(
        Observed(generation=1, lifecycle=lifecycle),
        NOW,
        state=S.IN_PROGRESS,
        reason="DependencyNotReady",
        message=message,
    )
    assert again.events == []


def test_fixed_field_change_is_stalled_without_a_handler_call() -> None:
    decision = engine.blocked(
        observed(S.READY, generation=2),
        NOW,
        state=S.FAILED,
        reason="FixedFieldChanged",
        message="spec.config.name is fixed",
        warn=True,
    )
    assert conditions(decision)["Stalled"] == "True"
    assert decision.events[0].type == "Warning"
