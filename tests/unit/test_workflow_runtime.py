"""The workflow engine against the in-memory API: activation, triggers, runs, counters, hooks.

Runs here use built-in steps only (sleep, hook, emit), so everything but the API server is
real: the activator through the lifecycle runtime, the trigger index, the run driver,
the one writer of a Workflow's counters and phase, the HTTP backend.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from controller.server.backend import IncomingRequest, Reply
from controller.workflows.run_index import Indexes
from tests.support.fake_kube import FakeKube
from tests.support.runtimes import TOKENS, Runtimes, running

NAP = {"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 0}}


def workflow(trigger: dict[str, Any], steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"state": "Active", "trigger": trigger, "steps": steps, **extra}


def post(body: Any = None, bearer: str | None = None) -> IncomingRequest:
    headers = {"Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return IncomingRequest(
        method="POST",
        path="/",
        headers=headers,
        query={},
        body=json.dumps(body).encode() if body is not None else b"",
        content_type="application/json",
    )


async def active(rt: Runtimes, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = await rt.apply("Workflow", name, spec)
    await rt.settle()
    body = await rt.get("Workflow", name)
    assert body["status"]["phase"] == "Activated", body["status"]
    return body


async def webhook(rt: Runtimes, body: dict[str, Any], payload: Any = None) -> Reply:
    token = TOKENS.webhook(body["metadata"]["uid"])
    return await rt.workflows.backend.trigger(token, post(payload if payload else {"n": 1}))


async def test_a_webhook_run_completes_and_is_counted_once() -> None:
    async with running() as rt:
        wf = await active(rt, "wf", workflow({"webhook": {}}, [NAP, {**NAP, "name": "again"}]))
        assert wf["status"]["activation"]["version"] == 1
        reply = await webhook(rt, wf)
        assert reply.status == 202
        await rt.settle()
        run = await rt.get("WorkflowRun", reply.body["run"])
        assert run["status"]["state"] == "completed"
        assert [s["state"] for s in run["status"]["steps"]] == ["completed", "completed"]
        counted = (await rt.get("Workflow", "wf"))["status"]
        assert (counted["runCount"], counted["successCount"]) == (1, 1)
        assert counted["phase"] == "Activated"


async def test_a_draft_workflow_ignores_its_webhook_and_counts_it() -> None:
    async with running() as rt:
        wf = await active(rt, "wf", workflow({"webhook": {}}, [NAP]))
        drafted = await rt.api.patch_spec("Workflow", "ns", "wf", {"spec": {"state": "Draft"}})
        rt.observe(drafted, "MODIFIED")
        await rt.settle()
        assert (await rt.get("Workflow", "wf"))["status"]["phase"] == "Draft"
        reply = await webhook(rt, wf)
        assert (reply.status, reply.body["ignored"]) == (202, True)
        assert (await rt.get("Workflow", "wf"))["status"]["ignoredCount"] == 1
        assert rt.kube.objects("workflowruns") == []


async def test_concurrency_skip_terminates_the_run_over_the_limit() -> None:
    hold = {"name": "hold", "uses": {"type": "hook"}, "with": {"token": "t-${{ event.body.n }}"}}
    spec = workflow({"webhook": {}}, [hold], concurrency={"max": 1, "policy": "Skip"})
    async with running() as rt:
        wf = await active(rt, "wf", spec)
        first = await webhook(rt, wf, {"n": 1})
        await rt.settle()
        second = await webhook(rt, wf, {"n": 2})
        await rt.settle()
        assert (await rt.get("WorkflowRun", first.body["run"]))["status"]["state"] == "waiting"
        skipped = (await rt.get("WorkflowRun", second.body["run"]))["status"]
        assert skipped["state"] == "terminated"
        assert "concurrency.max 1, policy Skip" in skipped["error"]["message"]


async def test_a_hook_resumes_its_waiting_run_with_the_hook_key_only() -> None:
    hold = {
        "name": "hold",
        "uses": {"type": "hook"},
        "with": {"token": "order-${{ event.body.n }}"},
    }
    async with running() as rt:
        wf = await active(rt, "wf", workflow({"webhook": {}}, [hold]))
        started = await webhook(rt, wf, {"n": 7})
        await rt.settle()
        backend = rt.workflows.backend
        assert (await backend.hook("order-7", post({"ok": True}))).status == 401
        assert (await backend.hook("order-7", post({}, bearer="wrong"))).status == 401
        assert (await backend.hook("order-8", post({}, bearer="x"))).status == 404
        key = TOKENS.hook_key(wf["metadata"]["uid"])
        resumed = await backend.hook("order-7", post({"ok": True}, bearer=key))
        assert resumed.status == 200
        await rt.settle()
        run = await rt.get("WorkflowRun", started.body["run"])
        assert run["status"]["state"] == "completed"
        # The same hook again (its answer was lost, say): the step has finished, and says so.
        again = await backend.hook("order-7", post({"ok": True}, bearer=key))
        assert again.status == 410, again.body
        # And after a restart, from what the API server has: a new index knows the token.
        fresh = Indexes()
        fresh.put(rt.key("WorkflowRun", started.body["run"]), run)
        assert fresh.hooks == rt.workflows.index.hooks != {}


async def test_an_emitted_event_starts_the_subscribed_workflow_once() -> None:
    emit = {"name": "tell", "uses": {"type": "emit"}, "with": {"type": "Order.placed"}}
    async with running() as rt:
        source = await active(rt, "source", workflow({"webhook": {}}, [emit]))
        await active(rt, "listener", workflow({"event": "Order.placed"}, [NAP]))
        await webhook(rt, source)
        await rt.settle()
        listener_runs = [
            r
            for r in rt.kube.objects("workflowruns")
            if r["spec"]["workflowRef"]["name"] == "listener"
        ]
        assert len(listener_runs) == 1
        assert (await rt.get("WorkflowRun", listener_runs[0]["metadata"]["name"]))["status"][
            "state"
        ] == "completed"


async def test_a_block_becoming_ready_is_an_event_other_workflows_trigger_on() -> None:
    async with running() as rt:
        await active(rt, "on-ready", workflow({"event": "Block.ready"}, [NAP]))
        await rt.apply("App", "a", {"handler": {"python": "scripted"}})
        await rt.apply("Block", "b", {"app": "a", "type": "scripted", "config": {}})
        await rt.settle()
        runs = rt.kube.objects("workflowruns")
        assert len(runs) == 1
        assert runs[0]["spec"]["input"]["data"]["name"] == "b"


async def test_a_watch_event_older_than_the_controllers_own_write_does_not_strand_a_run() -> None:
    """The watch may deliver a run's earlier version after the controller wrote a newer one
    (whose echo it then skips): the index keeps the newer one, so the hook still finds it."""
    hold = {"name": "hold", "uses": {"type": "hook"}, "with": {"token": "late-${{ event.body.n }}"}}
    async with running() as rt:
        wf = await active(rt, "wf", workflow({"webhook": {}}, [hold]))
        started = await webhook(rt, wf, {"n": 1})
        first_seen = await rt.get("WorkflowRun", started.body["run"])  # not admitted yet
        await rt.settle()
        waiting = await rt.get("WorkflowRun", started.body["run"])
        assert waiting["status"]["state"] == "waiting"
        rt.observe({**first_seen, "status": {}}, "MODIFIED")  # the late, older event
        await rt.settle()
        key = TOKENS.hook_key(wf["metadata"]["uid"])
        resumed = await rt.workflows.backend.hook("late-1", post({}, bearer=key))
        assert resumed.status == 200


def delivered(payload: Any, **headers: str) -> IncomingRequest:
    request = post(payload)
    return IncomingRequest(
        method="POST",
        path="/",
        headers={**request.headers, **headers},
        query={},
        body=request.body,
        content_type="application/json",
    )


async def test_a_re_delivered_webhook_starts_no_second_run() -> None:
    async with running() as rt:
        github = await active(rt, "gh", workflow({"webhook": {}}, [NAP]))
        stripe_trigger = {"webhook": {"deliveryId": "${{ event.body.id }}"}}
        stripe = await active(rt, "stripe", workflow(stripe_trigger, [NAP]))
        backend = rt.workflows.backend

        async def send(wf: dict[str, Any], request: IncomingRequest) -> Reply:
            return await backend.trigger(TOKENS.webhook(wf["metadata"]["uid"]), request)

        first = await send(github, delivered({"n": 1}, **{"X-GitHub-Delivery": "d-1"}))
        again = await send(github, delivered({"n": 1}, **{"X-GitHub-Delivery": "d-1"}))
        other = await send(github, delivered({"n": 2}, **{"X-GitHub-Delivery": "d-2"}))
        assert (first.status, again.status, other.status) == (202, 200, 202)
        assert again.body == {"duplicate": True, "delivery": "x-github-delivery: d-1"}
        # No id at all: every request is a new run, as before.
        plain = [await send(github, delivered({"n": 3})) for _ in range(2)]
        assert [r.status for r in plain] == [202, 202]

        evt = [await send(stripe, delivered({"id": "evt_1"})) for _ in range(3)]
        assert [r.status for r in evt] == [202, 200, 200]
        no_id = [await send(stripe, delivered({"other": 1})) for _ in range(2)]
        assert [r.status for r in no_id] == [202, 202]
        await rt.settle()
        counts = [(await rt.get("Workflow", n))["status"]["runCount"] for n in ("gh", "stripe")]
        assert counts == [4, 3]


async def test_webhooks_and_events_wait_until_every_run_was_listed() -> None:
    async with running() as rt:
        wf = await active(rt, "wf", workflow({"webhook": {}}, [NAP]))
        backend = rt.workflows.backend
        backend.listed = lambda: False  # as right after a restart, before the first listing
        for reply in (await webhook(rt, wf), await backend.events("ns", post({}, bearer="x"))):
            assert reply.status == 503 and reply.headers["Retry-After"] == "2", reply
        backend.listed = lambda: True
        assert (await webhook(rt, wf)).status == 202


async def test_a_connection_reset_on_a_run_status_write_is_retried_until_it_completes() -> None:
    kube = FakeKube()
    kube.fail("PATCH", "/workflowruns/", aiohttp.ClientOSError(104, "reset"), times=3)
    async with running(kube) as rt:
        wf = await active(rt, "wf", workflow({"webhook": {}}, [NAP]))
        reply = await webhook(rt, wf)
        await rt.settle()
        run = await rt.get("WorkflowRun", reply.body["run"])
        assert run["status"]["state"] == "completed"
        assert rt.kube.failures_left() == 0


async def test_a_workflow_step_waits_for_its_child_run_and_takes_its_output() -> None:
    hold = {"name": "hold", "uses": {"type": "hook"}, "with": {"token": "c-${{ event.n }}"}}
    call = {
        "name": "call",
        "uses": {"type": "workflow"},
        "with": {"name": "child", "input": {"n": "${{ event.body.n }}"}},
    }
    async with running() as rt:
        child_wf = await active(rt, "child", {"state": "Active", "steps": [hold]})  # manual
        parent_wf = await active(rt, "parent", workflow({"webhook": {}}, [call, NAP]))
        for n in (1, 2):
            await webhook(rt, parent_wf, {"n": n})
        await rt.settle()
        runs = {
            r["spec"]["workflowRef"]["name"] + str(r["spec"]["input"].get("n", "")): r
            for r in rt.kube.objects("workflowruns")
        }
        child = runs["child1"]
        assert child["metadata"]["annotations"]["blockflow.dev/parent-step"] == "call"
        parent_name = child["metadata"]["annotations"]["blockflow.dev/parent-run"]
        parent = await rt.get("WorkflowRun", parent_name)
        assert parent["status"]["state"] == "waiting"
        assert parent["status"]["steps"][0]["child"] == child["metadata"]["name"]

        # The child ends: the parent goes on with its output.
        key = TOKENS.hook_key(child_wf["metadata"]["uid"])
        resumed = await rt.workflows.backend.hook("c-1", post({"ok": True}, bearer=key))
        assert resumed.status == 200
        await rt.settle()
        parent = await rt.get("WorkflowRun", parent_name)
        assert parent["status"]["state"] == "completed"
        outcome = parent["status"]["steps"][0]["outcome"]
        assert outcome == {
            "id": "completed",
            "data": {
                "run": child["metadata"]["name"],
                "output": {"payload": {"ok": True}, "events": [{"ok": True}]},  # the hook's
            },
        }

        # The other parent is cancelled: its child is cancelled with it.
        other = runs["child2"]
        other_parent = other["metadata"]["annotations"]["blockflow.dev/parent-run"]
        cancelled = await rt.api.patch_spec(
            "WorkflowRun", "ns", other_parent, {"spec": {"cancel": True}}
        )
        rt.observe(cancelled, "MODIFIED")
        await rt.settle()
        rt.observe(await rt.get("WorkflowRun", other["metadata"]["name"]), "MODIFIED")
        await rt.settle()
        assert (await rt.get("WorkflowRun", other_parent))["status"]["state"] == "cancelled"
        assert (await rt.get("WorkflowRun", other["metadata"]["name"]))["status"][
            "state"
        ] == "cancelled"


async def test_a_workflow_step_fails_at_once_for_a_workflow_that_cannot_run() -> None:
    call = {"name": "call", "uses": {"type": "workflow"}, "with": {"name": "child"}}
    async with running() as rt:
        await rt.apply("Workflow", "child", {"state": "Draft", "steps": [NAP]})
        parent_wf = await active(rt, "parent", workflow({"webhook": {}}, [call]))
        reply = await webhook(rt, parent_wf)
        await rt.settle()
        run = await rt.get("WorkflowRun", reply.body["run"])
        assert run["status"]["state"] == "failed"
        assert run["status"]["error"]["message"] == (
            "step call: Workflow child is Draft: activate it (spec.state: Active)"
        )
        assert len(rt.kube.objects("workflowruns")) == 1
