"""Side effects of handler replies: prompts kept until deleted, timers by key (pure)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.handlers.protocol import HttpReply, SyncReply, TimerReply
from controller.lifecycle import effects

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def prompt(key: str, description: str = "Authorize") -> dict[str, Any]:
    return {"key": key, "description": description, "redirect": {"url": f"https://p/{key}"}}


def test_prompts_are_added_replaced_by_key_and_kept_until_deleted() -> None:
    status: dict[str, Any] = {"prompts": [prompt("a"), prompt("b")]}
    reply = SyncReply.model_validate(
        {"newStatus": "in_progress", "prompts": [prompt("b", "Again"), prompt("c")]}
    )
    patch = effects.effects_patch(status, reply, NOW)
    assert [(p["key"], p["description"]) for p in patch["prompts"]] == [
        ("a", "Authorize"),
        ("b", "Again"),
        ("c", "Authorize"),
    ]
    # A reply that says nothing about prompts leaves them alone (no field in the patch).
    assert effects.effects_patch(status, SyncReply(new_status="ready"), NOW) == {}
    deleted = effects.effects_patch(
        {"prompts": patch["prompts"]},
        HttpReply.model_validate({"promptDeletes": ["a", "nope"]}),
        NOW,
    )
    assert [p["key"] for p in deleted["prompts"]] == ["b", "c"]


def test_a_timer_with_an_existing_key_replaces_it_and_the_earliest_wakes_first() -> None:
    first = effects.effects_patch(
        {},
        SyncReply.model_validate(
            {
                "newStatus": "in_progress",
                "timers": [
                    {"key": "expiry", "delaySeconds": 300, "promptKey": "oauth"},
                    {"key": "poll", "delaySeconds": 60, "payload": {"n": 1}},
                ],
            }
        ),
        NOW,
    )
    status = {"timers": first["timers"]}
    assert effects.next_due(status) == NOW + timedelta(seconds=60)
    again = effects.effects_patch(
        status,
        TimerReply.model_validate({"timers": [{"key": "poll", "delaySeconds": 600}]}),
        NOW,
    )
    timers = {t["key"]: t for t in again["timers"]}
    assert len(again["timers"]) == 2
    assert datetime.fromisoformat(timers["poll"]["dueTime"]) == NOW + timedelta(seconds=600)
    assert "payload" not in timers["poll"]
    assert timers["expiry"]["promptKey"] == "oauth"
    assert effects.due_timers({"timers": again["timers"]}, NOW + timedelta(seconds=299)) == []
    (due,) = effects.due_timers({"timers": again["timers"]}, NOW + timedelta(seconds=300))
    assert due.key == "expiry"


def test_a_fired_timer_goes_unless_it_was_set_again_meanwhile_and_finds_its_prompt() -> None:
    status = {
        "prompts": [prompt("oauth")],
        "timers": [
            {"key": "expiry", "dueTime": NOW.isoformat(), "promptKey": "oauth"},
            {"key": "poll", "dueTime": (NOW + timedelta(seconds=5)).isoformat()},
        ],
    }
    (fired,) = effects.due_timers(status, NOW)
    found = effects.prompt_for(status, fired)
    assert found is not None and found.key == "oauth"
    assert [t["key"] for t in effects.timer_done(status, fired)] == ["poll"]
    reset = {
        **status,
        "timers": [{"key": "expiry", "dueTime": (NOW + timedelta(hours=1)).isoformat()}],
    }
    assert [t["key"] for t in effects.timer_done(reset, fired)] == ["expiry"]
    assert effects.prompt_for({"prompts": []}, fired) is None


def test_a_failing_timer_is_retried_with_backoff_then_dropped() -> None:
    status: dict[str, Any] = {"timers": [{"key": "t", "dueTime": NOW.isoformat()}]}
    rng = random.Random(1)
    delays = []
    for _ in range(effects.TIMER_ATTEMPTS - 1):
        (fired,) = effects.due_timers(status, datetime.max.replace(tzinfo=UTC))
        timers, dropped = effects.timer_failed(status, fired, NOW, rng)
        assert not dropped
        status = {"timers": timers}
        due = effects.next_due(status)
        assert due is not None
        delays.append(due)
    assert delays == sorted(delays) and delays[0] > NOW
    (fired,) = effects.due_timers(status, datetime.max.replace(tzinfo=UTC))
    timers, dropped = effects.timer_failed(status, fired, NOW, rng)
    assert dropped and timers == []


def test_a_sync_request_is_written_down_as_due_now_so_a_restart_still_syncs() -> None:
    later = (NOW + timedelta(hours=1)).isoformat()
    status: dict[str, Any] = {"lifecycle": {"status": "in_progress", "nextSyncTime": later}}
    assert effects.sync_request_patch(status, NOW) == {
        "lifecycle": {"nextSyncTime": NOW.isoformat()}
    }
    idle: dict[str, Any] = {"lifecycle": {"status": "in_progress"}}
    assert effects.sync_request_patch(idle, NOW) == {"lifecycle": {"nextSyncTime": NOW.isoformat()}}
    already_due = {"lifecycle": {"status": "failed", "nextSyncTime": NOW.isoformat()}}
    assert effects.sync_request_patch(already_due, NOW) == {}
    assert effects.sync_request_patch({}, NOW) == {}  # the first sync is due anyway
