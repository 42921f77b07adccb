"""Every built-in step, called as the run driver calls it: a real HTTP server on loopback for
`http`, the in-memory API server for `kubernetes.job`, recorded publishes for `emit`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from controller.api.workflow import Step
from controller.api.workflowrun import StepRecord, StepState
from controller.handlers.protocol import ErrorReply, OutcomeReply
from controller.server.tokens import token_hash
from controller.workflows.activation import BUILTIN_STEPS
from controller.workflows.steps import (
    STEPS,
    HookRejected,
    StepCall,
    Wait,
    approval_token,
    deliver_hook,
)
from controller.workflows.steps.base import ChildRefused, ChildRun, StepTools
from tests.support.fake_kube import FakeKube

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def step(type_: str, with_: dict[str, Any] | None = None) -> Step:
    return Step.model_validate({"name": "s", "uses": {"type": type_}, "with": with_ or {}})


def call(type_: str, with_: dict[str, Any], **record: Any) -> StepCall:
    return StepCall(
        namespace="ns",
        run_name="wf-abc",
        run_uid="run-uid",
        step=step(type_, with_),
        record=StepRecord(
            name="s", state=StepState.RUNNING, unique_execution_id="exec-123456789", **record
        ),
        with_=with_,
        now=NOW,
    )


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, Any]] = []

    async def __call__(self, ns: str, type_: str, source: str, id_: str, data: Any) -> int:
        self.events.append((ns, type_, source, id_, data))
        return 2


class Children:
    """Child runs asked for by `workflow` steps."""

    def __init__(self) -> None:
        self.started: list[ChildRun] = []

    async def __call__(self, child: ChildRun) -> None:
        if child.workflow == "missing":
            raise ChildRefused("spec.steps[0].with.name: Workflow missing not found")
        self.started.append(child)


@pytest.fixture
async def tools() -> AsyncIterator[StepTools]:
    async with aiohttp.ClientSession() as http:
        yield StepTools(FakeKube(), http, Published(), Children())


async def run(tools: StepTools, c: StepCall) -> Any:
    return await STEPS[c.step.uses.type](c, tools)


def test_every_admitted_step_type_has_an_implementation() -> None:
    assert set(STEPS) == set(BUILTIN_STEPS)


# -- sleep ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("with_", "expected"),
    [
        ({"seconds": 0}, "done"),
        ({"seconds": 30}, NOW + timedelta(seconds=30)),
        ({"until": "2026-12-03T11:00:00Z"}, "done"),
        ({"until": "2026-12-03T13:00:00+00:00"}, NOW + timedelta(hours=1)),
        ({"seconds": -1}, "with.seconds: must be a number of seconds ≥ 0"),
        ({"until": "2026-12-03T13:00:00"}, "with.until: needs a time zone offset"),
        ({"until": "tomorrow"}, "with.until: must be an RFC 3339 time"),
        ({}, "with.seconds: set seconds or until"),
    ],
)
async def test_sleep(tools: StepTools, with_: dict[str, Any], expected: Any) -> None:
    reply = await run(tools, call("sleep", with_))
    if expected == "done":
        assert isinstance(reply, OutcomeReply) and reply.id == "done"
    elif isinstance(expected, datetime):
        assert reply == Wait(at=expected)
    else:
        assert isinstance(reply, ErrorReply) and not reply.retryable
        assert expected in reply.message


async def test_a_sleep_resumed_after_a_restart_counts_from_its_start(tools: StepTools) -> None:
    started = NOW - timedelta(seconds=20)
    assert await run(tools, call("sleep", {"seconds": 30}, started_at=started)) == Wait(
        at=NOW + timedelta(seconds=10)
    )


# -- http -------------------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        await request.read()
        code = int(request.query.get("status", "200"))
        if request.path == "/slow":
            await release.wait()  # answers only once the test is over
        return web.json_response({"ok": code < 400}, status=code)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    release.set()
    await runner.cleanup()


async def test_http_posts_json_with_the_execution_id_as_idempotency_key(
    tools: StepTools, server: tuple[str, list[web.Request]]
) -> None:
    url, seen = server
    reply = await run(tools, call("http", {"url": f"{url}/x", "method": "post", "body": {"a": 1}}))
    assert reply == OutcomeReply(id="success", data={"status": 200, "body": {"ok": True}})
    assert seen[0].method == "POST"
    assert seen[0].headers["Idempotency-Key"] == "exec-123456789"
    assert seen[0].headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("status", "with_", "retryable"),
    [
        (503, {}, True),
        (429, {}, True),
        (503, {"retryOnServerError": False}, False),
        (404, {}, False),
    ],
)
async def test_http_failures(
    tools: StepTools,
    server: tuple[str, list[web.Request]],
    status: int,
    with_: dict[str, Any],
    retryable: bool,
) -> None:
    url, _ = server
    reply = await run(tools, call("http", {"url": f"{url}/x?status={status}&token=s3", **with_}))
    assert isinstance(reply, ErrorReply) and reply.retryable is retryable
    assert f"answered {status}" in reply.message
    assert "s3" not in reply.message  # the query string may hold secrets


async def test_http_times_out_and_says_so(
    tools: StepTools, server: tuple[str, list[web.Request]]
) -> None:
    url, _ = server
    reply = await run(tools, call("http", {"url": f"{url}/slow", "timeoutSeconds": 0.2}))
    assert isinstance(reply, ErrorReply) and reply.retryable
    assert "timed out after 0.2s" in reply.message


async def test_http_refuses_a_url_that_is_not_http(tools: StepTools) -> None:
    reply = await run(tools, call("http", {"url": "file:///etc/passwd"}))
    assert isinstance(reply, ErrorReply) and "with.url" in reply.message


# -- emit, hook, approval ---------------------------------------------------------------------


async def test_emit_publishes_with_the_execution_id_as_event_id(tools: StepTools) -> None:
    reply = await run(tools, call("emit", {"type": "Order.placed", "data": {"n": 1}}))
    published = tools.publish
    assert isinstance(published, Published)
    assert published.events == [
        (
            "ns",
            "Order.placed",
            "blockflow.dev/namespaces/ns/workflowruns/wf-abc",
            "exec-123456789",
            {"n": 1},
        )
    ]
    assert reply == OutcomeReply(
        id="emitted", data={"type": "Order.placed", "id": "exec-123456789", "runs": 2}
    )
    missing = await run(tools, call("emit", {}))
    assert isinstance(missing, ErrorReply) and "with.type" in missing.message


async def test_hook_and_approval_wait_for_their_token(tools: StepTools) -> None:
    assert await run(tools, call("hook", {"token": "t-1"})) == Wait(
        at=None, hook_token_hash=token_hash("t-1")
    )
    assert await run(tools, call("approval", {})) == Wait(
        at=None, hook_token_hash=token_hash(approval_token("ns", "wf-abc", "s"))
    )
    missing = await run(tools, call("hook", {}))
    assert isinstance(missing, ErrorReply) and "with.token" in missing.message


def test_a_hook_delivery_checks_the_schema_and_waits_until_its_condition() -> None:
    hook = step(
        "hook", {"schema": {"type": "object", "required": ["n"]}, "until": "size(events) >= 2"}
    )
    record = StepRecord(name="s", state=StepState.WAITING)
    with pytest.raises(HookRejected, match="does not match the schema"):
        deliver_hook(hook, record, {"m": 1}, NOW)
    first = deliver_hook(hook, record, {"n": 1}, NOW)
    assert first.reply is None and first.received == [{"n": 1}]
    second = deliver_hook(
        hook, record.model_copy(update={"received": first.received}), {"n": 2}, NOW
    )
    assert second.reply is not None and second.reply.id == "received"


@pytest.mark.parametrize(
    ("payload", "who", "outcome", "by"),
    [
        ({"decision": "approve", "by": "ada"}, None, "approved", "ada"),
        ({"decision": "reject", "by": "ada"}, "grace", "rejected", "grace"),  # the page's user wins
    ],
)
def test_an_approval_records_the_decision_and_who(
    payload: dict[str, Any], who: str | None, outcome: str, by: str
) -> None:
    delivered = deliver_hook(
        step("approval"), StepRecord(name="s", state=StepState.WAITING), payload, NOW, who
    )
    assert delivered.reply is not None
    assert (delivered.reply.id, delivered.reply.data["by"]) == (outcome, by)
    with pytest.raises(HookRejected):
        deliver_hook(
            step("approval"),
            StepRecord(name="s", state=StepState.WAITING),
            {"decision": "maybe"},
            NOW,
        )


# -- kubernetes.job ---------------------------------------------------------------------------

TEMPLATE = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


async def test_a_job_is_created_once_owned_by_the_run_and_polled_until_it_completes(
    tools: StepTools,
) -> None:
    kube = tools.kube
    assert isinstance(kube, FakeKube)
    first = await run(tools, call("kubernetes.job", {"template": TEMPLATE, "pollSeconds": 2}))
    assert first == Wait(at=NOW + timedelta(seconds=2))
    again = await run(tools, call("kubernetes.job", {"template": TEMPLATE, "pollSeconds": 2}))
    assert again == first
    jobs = kube.objects("jobs", "ns")
    assert len(jobs) == 1 and kube.writes("POST", "/jobs") == 1  # re-polled, not re-created
    job = jobs[0]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "run-uid"
    assert job["metadata"]["labels"]["blockflow.dev/execution-id"] == "exec-123456789"
    path = f"/apis/batch/v1/namespaces/ns/jobs/{job['metadata']['name']}/status"
    complete = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    await kube.request(
        "PATCH", path, body={"status": complete}, content_type="application/merge-patch+json"
    )
    done = await run(tools, call("kubernetes.job", {"template": TEMPLATE}))
    assert isinstance(done, OutcomeReply) and done.id == "succeeded"


async def test_a_failed_job_fails_the_step_with_its_reason(tools: StepTools) -> None:
    kube = tools.kube
    assert isinstance(kube, FakeKube)
    await run(tools, call("kubernetes.job", {"template": TEMPLATE}))
    name = kube.objects("jobs", "ns")[0]["metadata"]["name"]
    failed = {
        "conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]
    }
    await kube.request(
        "PATCH",
        f"/apis/batch/v1/namespaces/ns/jobs/{name}/status",
        body={"status": failed},
        content_type="application/merge-patch+json",
    )
    reply = await run(tools, call("kubernetes.job", {"template": TEMPLATE}))
    assert isinstance(reply, ErrorReply) and not reply.retryable
    assert "BackoffLimitExceeded" in reply.message
    refused = await run(tools, call("kubernetes.job", {"template": {"metadata": {}}}))
    assert isinstance(refused, ErrorReply) and "with.template" in refused.message
