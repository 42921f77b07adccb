"""The Python SDK's helpers (lifecycle.sync, lifecycle.prompt, timers, kv) end up in the reply
of the call that used them, through the same transport the controller uses."""

from __future__ import annotations

from typing import Any

import pytest

from controller.handlers.protocol import (
    AppHttpRequest,
    EntityInput,
    ExecuteRequest,
    HttpReply,
    HttpRequestData,
    HttpResponse,
    SyncReply,
    SyncRequest,
    TimerInput,
    TimerReply,
    TimerRequest,
)
from controller.handlers.python_transport import PythonTransport
from controller.handlers.sdk import BlockType, Handler, HandlerContext
from controller.handlers.transport import HandlerError

APP = EntityInput(kind="App", name="gh", namespace="team", uid="u", generation=1)


class Helpful(Handler):
    async def sync_app(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        ctx.lifecycle.prompt.create("auth", "Authorize", url="https://p/authorize")
        ctx.timers.set("expiry", 30, {"why": "auth"}, prompt_key="auth")
        ctx.kv.set("asked", ctx.kv.get("asked", 0) + 1)
        return SyncReply(new_status="in_progress", prompts=[])

    async def http_app(self, request: AppHttpRequest, ctx: HandlerContext) -> HttpReply:
        ctx.lifecycle.prompt.delete("auth")
        ctx.kv.delete("asked")
        ctx.lifecycle.sync()
        return HttpReply(response=HttpResponse(status=302, headers={"Location": "/"}))

    async def timer_app(self, request: TimerRequest, ctx: HandlerContext) -> TimerReply:
        assert request.timer.payload == {"why": "auth"}
        return TimerReply(state={"explicit": True})


class Step(BlockType):
    kind = "step"

    async def execute(self, request: ExecuteRequest, ctx: HandlerContext) -> Any:
        ctx.kv.set("not", "here")
        return {"type": "outcome", "id": "done"}


async def test_helpers_become_the_replys_prompts_timers_state_and_sync_request() -> None:
    transport = PythonTransport(Helpful(version="1"))
    reply = await transport.call(SyncRequest(entity=APP, state={"asked": 1, "keep": "me"}))
    assert isinstance(reply, SyncReply)
    assert [p.key for p in reply.prompts or []] == ["auth"]
    assert reply.prompts and reply.prompts[0].redirect and reply.prompts[0].redirect.url
    (timer,) = reply.timers or []
    assert (timer.key, timer.delay_seconds, timer.prompt_key) == ("expiry", 30, "auth")
    assert reply.state == {"asked": 2, "keep": "me"}  # the whole KV state, updated
    assert reply.request_sync is False

    request = HttpRequestData(method="GET", path="/callback")
    answered = await transport.call(
        AppHttpRequest(entity=APP, state={"asked": 2, "keep": "me"}, request=request)
    )
    assert isinstance(answered, HttpReply)
    assert answered.prompt_deletes == ["auth"]
    assert answered.state == {"keep": "me"}
    assert answered.request_sync is True
    assert answered.response.status == 302


async def test_a_replys_own_state_wins_and_untouched_kv_writes_nothing() -> None:
    transport = PythonTransport(Helpful(version="1"))
    timer = TimerInput(key="expiry", payload={"why": "auth"})
    reply = await transport.call(TimerRequest(entity=APP, state={"a": 1}, timer=timer))
    assert reply.state == {"explicit": True}
    plain = await transport.call(SyncRequest(entity=APP.model_copy(update={"kind": "App"})))
    assert plain.state == {"asked": 1}


async def test_helpers_in_an_operation_whose_reply_cannot_carry_them_are_an_error() -> None:
    handler = Handler(version="1", block_types={"step": Step()})
    step = EntityInput(kind="Block", name="s", namespace="team", uid="u", generation=1, type="step")
    with pytest.raises(HandlerError) as refused:
        await PythonTransport(handler).call(ExecuteRequest(entity=step))
    assert "only be used in sync, drain, http and timer, not in execute" in refused.value.message


async def test_an_app_without_an_http_endpoint_answers_404() -> None:
    reply = await PythonTransport(Handler(version="1")).call(
        AppHttpRequest(entity=APP, request=HttpRequestData(method="GET", path="/x"))
    )
    assert reply.response.status == 404
