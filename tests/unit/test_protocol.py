"""The handler protocol: one set of models, published as JSON Schema, strict about replies."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from controller.handlers import schema_export
from controller.handlers.protocol import (
    PROTOCOL_VERSION,
    DeferReply,
    EntityInput,
    ExecuteReply,
    OutcomeReply,
    SyncReply,
    SyncRequest,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "protocol"


def test_published_json_schema_matches_the_models() -> None:
    expected = schema_export.rendered_files()
    on_disk = {p.name: p.read_text() for p in DOCS.glob("*.json")}
    stale = sorted(n for n in expected if on_disk.get(n) != expected[n])
    assert not stale and set(on_disk) == set(expected), (
        f"docs/protocol is stale ({stale}); run `make protocol`"
    )


def test_requests_carry_the_protocol_version_in_camel_case() -> None:
    entity = EntityInput(kind="Block", name="b", namespace="ns", uid="u", generation=3)
    wire = SyncRequest(entity=entity).model_dump(by_alias=True, mode="json")
    assert wire["protocolVersion"] == PROTOCOL_VERSION
    assert wire["operation"] == "sync"
    assert wire["metadata"]["attempt"] == 1


def test_sync_reply_is_strict_about_field_names() -> None:
    reply = SyncReply.model_validate(
        {"newStatus": "in_progress", "nextScheduleDelay": 3, "signalUpdates": {"bucketId": "b-1"}}
    )
    assert reply.next_schedule_delay == 3
    with pytest.raises(ValidationError, match="newstatus"):
        SyncReply.model_validate({"newstatus": "ready"})
    with pytest.raises(ValidationError, match=r"new_status|newStatus"):
        SyncReply.model_validate({"newStatus": "drained"})


def test_step_replies_are_told_apart_by_type() -> None:
    adapter: TypeAdapter[object] = TypeAdapter(ExecuteReply)
    assert isinstance(adapter.validate_python({"type": "defer"}), DeferReply)
    outcome = adapter.validate_python({"type": "outcome", "id": "success", "data": {"n": 1}})
    assert isinstance(outcome, OutcomeReply) and outcome.data == {"n": 1}
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "no-op"})  # only `finish` may answer no-op
