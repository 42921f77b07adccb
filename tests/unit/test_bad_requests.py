"""Bad input from the outside world is a 4xx naming the problem, never a 500.

Each case was answered 500 once: JSON nested 100,000 deep (RecursionError), a 5,000-digit
integer (ValueError from int conversion), `NaN`, and a non-ASCII bearer token or signature
(`hmac.compare_digest` raises TypeError on non-ASCII text)."""

from __future__ import annotations

from typing import Any

import pytest

from controller import safe_json
from controller.server.backend import IncomingRequest
from controller.server.tokens import same
from tests.support.runtimes import TOKENS, running

DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE = b'{"n": ' + b"9" * 5000 + b"}"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (DEEP, "nested deeper than 64 levels"),
        (b'{"a": "[[[[' + b"[" * 100 + b'"}', None),  # brackets inside a string are text
        (HUGE, "cannot be read"),
        (b'{"n": NaN}', "NaN is not a JSON number"),
        (b'{"n": -Infinity}', "-Infinity is not a JSON number"),
        (b"\xff\xfe", "Expecting value"),
        (b"{", "Expecting property name"),
        (b'{"ok": [1, {"two": 2}]}', None),
    ],
)
def test_safe_json(data: bytes, error: str | None) -> None:
    if error is None:
        safe_json.loads(data)
        return
    with pytest.raises(safe_json.JsonError, match=error.replace("[", r"\[")):
        safe_json.loads(data)


@pytest.mark.parametrize(
    ("given", "expected", "equal"),
    [("abc", "abc", True), ("abc", "abd", False), ("ключ", "abc", False), ("ключ", "ключ", True)],
)
def test_same_compares_any_text(given: str, expected: str, equal: bool) -> None:
    assert same(given, expected) is equal


def request(body: bytes, headers: dict[str, str] | None = None) -> IncomingRequest:
    return IncomingRequest(
        method="POST",
        path="/",
        headers={"Content-Type": "application/json", **(headers or {})},
        query={},
        body=body,
        content_type="application/json",
    )


HOLD = {"name": "hold", "uses": {"type": "hook"}, "with": {"token": "tok"}}


async def test_bad_bodies_and_tokens_get_4xx_on_every_route() -> None:
    async with running() as rt:
        spec = {"state": "Active", "trigger": {"webhook": {}}, "steps": [HOLD]}
        await rt.apply("Workflow", "wf", spec)
        await rt.settle()
        wf = await rt.get("Workflow", "wf")
        webhook_token = TOKENS.webhook(wf["metadata"]["uid"])
        backend = rt.workflows.backend
        assert (await backend.trigger(webhook_token, request(b"{}"))).status == 202
        await rt.settle()
        key = TOKENS.hook_key(wf["metadata"]["uid"])
        rt.kube.put(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "blockflow-events", "namespace": "ns"},
                "data": {"token": "c2VjcmV0"},  # "secret"
            }
        )
        cases: list[tuple[str, Any, int]] = [
            ("webhook, deep", backend.trigger(webhook_token, request(DEEP)), 400),
            ("webhook, NaN", backend.trigger(webhook_token, request(b'{"n": NaN}')), 400),
            (
                "hook, deep",
                backend.hook("tok", request(DEEP, {"Authorization": f"Bearer {key}"})),
                400,
            ),
            (
                "hook, huge int",
                backend.hook("tok", request(HUGE, {"Authorization": f"Bearer {key}"})),
                400,
            ),
            (
                "hook, non-ASCII bearer",
                backend.hook("tok", request(b"{}", {"Authorization": "Bearer ключ"})),
                401,
            ),
            (
                "events, non-ASCII bearer",
                backend.events("ns", request(b"{}", {"Authorization": "Bearer ключ"})),
                401,
            ),
            (
                "events, deep",
                backend.events(
                    "ns",
                    request(
                        DEEP,
                        {
                            "Authorization": "Bearer secret",
                            "Content-Type": "application/cloudevents+json",
                        },
                    ),
                ),
                400,
            ),
            ("callback, deep, unknown token", backend.callback("nope", request(DEEP)), 404),
        ]
        for what, call, status in cases:
            reply = await call
            assert reply.status == status, (what, reply.status, reply.body)
