"""Tokens are unguessable and stored only as hashes; CloudEvents parse in both HTTP modes."""

from __future__ import annotations

import json

import pytest

from controller.server import cloudevents
from controller.server.tokens import matches, new_token, token_hash


def test_tokens_are_256_bit_url_safe_and_only_their_hash_matches() -> None:
    token, stored = new_token()
    other, _ = new_token()
    assert len(token) >= 43 and all(c.isalnum() or c in "-_" for c in token)
    assert token != other and token not in stored
    assert matches(token, stored) and not matches(other, stored)
    assert stored == token_hash(token)


STRUCTURED = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "crm",
    "type": "Deal.won",
    "subject": "deal/7",
    "data": {"deal": {"name": "ACME"}},
    "tenant": "eu",
}


def test_structured_mode() -> None:
    event = cloudevents.parse(
        {"Content-Type": "application/cloudevents+json; charset=utf-8"},
        json.dumps(STRUCTURED).encode(),
    )
    assert (event.id, event.source, event.type, event.subject) == (
        "e-1",
        "crm",
        "Deal.won",
        "deal/7",
    )
    assert event.data == {"deal": {"name": "ACME"}}
    assert event.extensions == {"tenant": "eu"}
    assert event.as_input()["data"]["deal"]["name"] == "ACME"
    assert event.dedupe_key == "crm\ne-1"


def test_binary_mode() -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "e-2",
        "ce-source": "crm",
        "ce-type": "Deal.won",
        "Ce-Tenant": "eu",
        "content-type": "application/json",
    }
    event = cloudevents.parse(headers, b'{"amount": 3}')
    assert (event.id, event.type, event.data) == ("e-2", "Deal.won", {"amount": 3})
    assert event.extensions == {"tenant": "eu"}
    text = cloudevents.parse({**headers, "content-type": "text/plain"}, b"hello")
    assert text.data == "hello"


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"content-type": "application/json"}, b"{}", 415, "not a CloudEvent"),
        ({"content-type": "application/cloudevents+json"}, b"{nope", 400, "not valid JSON"),
        (
            {"content-type": "application/cloudevents+json"},
            json.dumps({**STRUCTURED, "id": ""}).encode(),
            400,
            "missing CloudEvents attribute(s) id",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            json.dumps({**STRUCTURED, "specversion": "0.3"}).encode(),
            400,
            "unsupported specversion",
        ),
        (
            {
                "ce-specversion": "1.0",
                "ce-id": "1",
                "ce-source": "s",
                "ce-type": "t",
                "content-type": "application/octet-stream",
            },
            b"\x00",
            415,
            "unsupported data content type",
        ),
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s"}, b"", 400, "attribute(s) type"),
    ],
)
def test_bad_events_get_a_clear_4xx(
    headers: dict[str, str], body: bytes, status: int, message: str
) -> None:
    with pytest.raises(cloudevents.EventError) as error:
        cloudevents.parse(headers, body)
    assert error.value.status == status and message in error.value.message
