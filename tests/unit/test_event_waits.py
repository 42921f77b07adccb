"""Runs waiting for events — waitForEvent steps, cancelOn — and concurrency per key: the
index alone (pure), then the workflow engine against the in-memory API."""

from __future__ import annotations

import asyncio
from typing import Any

from controller.kube.objects import Key
from controller.workflows.event_waits import EventMatch, EventWaits
from tests.support.runtimes import TOKENS, Runtimes, running
from tests.unit.test_workflow_runtime import active, post, webhook, workflow


def run(name: str) -> Key:
    return Key("WorkflowRun", "ns", name)


def paid(order: Any, type_: str = "Payment.succeeded") -> dict[str, Any]:
    return {"type": type_, "source": "psp", "id": f"evt-{order}", "data": {"orderId": order}}


def test_an_event_finds_only_the_runs_waiting_for_its_values() -> None:
    waits = EventWaits()
    for n in range(1000):
        waits.put(run(f"r{n}"), [("pay", EventMatch("Payment.succeeded", {"data.orderId": n}))])
    waits.put(run("any"), [("pay", EventMatch("Payment.succeeded", {}))])
    waits.put(run("c"), [(None, EventMatch("Order.cancelled", {"data.orderId": 7}))])
    assert waits.matching("ns", paid(7)) == [(run("any"), "pay"), (run("r7"), "pay")]
    assert waits.matching("other-ns", paid(7)) == []
    assert waits.matching("ns", paid("7")) == [(run("any"), "pay")]  # "7" is not 7
    assert waits.matching("ns", {"type": "Payment.succeeded", "data": {}}) == [(run("any"), "pay")]
    assert waits.matching("ns", paid(7, "Order.cancelled")) == [(run("c"), None)]
    waits.drop(run("r7"))
    assert waits.matching("ns", paid(7)) == [(run("any"), "pay")]
    assert len(waits) == 1001  # 1,000 - r7 + any + c


WAIT = {
    "name": "paid",
    "uses": {"type": "waitForEvent"},
    "with": {
        "type": "Payment.succeeded",
        "match": {"data.orderId": "${{ event.body.orderId }}"},
        "timeoutSeconds": "${{ event.body.wait }}",
    },
}
SHIP = {
    "name": "ship",
    "if": "${{ steps.paid.id == 'received' }}",
    "uses": {"type": "sleep"},
    "with": {"seconds": 0},
}
REMIND = {
    "name": "remind",
    "needs": ["paid"],
    "if": "${{ steps.paid.id == 'timeout' }}",
    "uses": {"type": "sleep"},
    "with": {"seconds": 0},
}


async def states(rt: Runtimes, name: str) -> tuple[str, dict[str, str]]:
    status = (await rt.get("WorkflowRun", name))["status"]
    return status["state"], {s["name"]: s["state"] for s in status["steps"]}


async def publish(rt: Runtimes, event: dict[str, Any]) -> int:
    triggers = rt.workflows.triggers
    return await triggers.publish(
        "ns", event["type"], event["source"], event["id"], None, event=event
    )


async def test_a_run_waits_for_its_own_event_or_branches_on_the_timeout() -> None:
    async with running() as rt:
        wf = await active(rt, "orders", workflow({"webhook": {}}, [WAIT, SHIP, REMIND]))
        seven = (await webhook(rt, wf, {"orderId": 7, "wait": 60})).body["run"]
        eight = (await webhook(rt, wf, {"orderId": 8, "wait": 60})).body["run"]
        await rt.settle()
        assert await states(rt, seven) == ("waiting", {"paid": "waiting"})
        await publish(rt, paid(7))
        await rt.settle()
        assert await states(rt, seven) == (
            "completed",
            {"paid": "completed", "ship": "completed", "remind": "skipped"},
        )
        received = (await rt.get("WorkflowRun", seven))["status"]["steps"][0]["outcome"]
        assert received["id"] == "received" and received["data"]["data"] == {"orderId": 7}
        assert await states(rt, eight) == ("waiting", {"paid": "waiting"})
        await publish(rt, paid(7))  # again: no run waits for it any more
        await rt.settle()
        assert await states(rt, eight) == ("waiting", {"paid": "waiting"})

        late = (await webhook(rt, wf, {"orderId": 9, "wait": 0.05})).body["run"]
        for _ in range(200):  # the timeout is a wake-up 50 ms later, which settle() ignores
            await rt.settle()
            if (await states(rt, late))[0] == "completed":
                break
            await asyncio.sleep(0.01)
        assert await states(rt, late) == (
            "completed",
            {"paid": "completed", "ship": "skipped", "remind": "completed"},
        )


async def test_cancel_on_an_event_cancels_only_the_matching_run() -> None:
    hold = {"name": "hold", "uses": {"type": "hook"}, "with": {"token": "h-${{ event.body.n }}"}}
    cancel_on = [{"event": "Order.cancelled", "match": {"data.orderId": "${{ event.body.n }}"}}]
    async with running() as rt:
        wf = await active(rt, "wf", workflow({"webhook": {}}, [hold], cancelOn=cancel_on))
        one = (await webhook(rt, wf, {"n": 1})).body["run"]
        two = (await webhook(rt, wf, {"n": 2})).body["run"]
        await rt.settle()
        assert await publish(rt, paid(1, "Order.cancelled")) == 0  # no run started, one reached
        rt.observe(await rt.get("WorkflowRun", one), "MODIFIED")  # the watch's echo
        await rt.settle()
        assert (await states(rt, one))[0] == "cancelled"
        assert (await states(rt, two))[0] == "waiting"


async def test_concurrency_counts_runs_per_key_value() -> None:
    hold = {"name": "hold", "uses": {"type": "hook"}, "with": {"token": "k-${{ event.body.n }}"}}
    per_customer = {"max": 1, "key": "${{ event.body.customer }}"}
    async with running() as rt:
        wf = await active(rt, "wf", workflow({"webhook": {}}, [hold], concurrency=per_customer))
        a1 = (await webhook(rt, wf, {"n": 1, "customer": "acme"})).body["run"]
        await rt.settle()
        a2 = (await webhook(rt, wf, {"n": 2, "customer": "acme"})).body["run"]
        b1 = (await webhook(rt, wf, {"n": 3, "customer": "bolt"})).body["run"]
        await rt.settle()
        assert [(await states(rt, r))[0] for r in (a1, a2, b1)] == ["waiting", "queued", "waiting"]
        assert (await rt.get("WorkflowRun", a2))["status"]["concurrencyKey"] == "acme"
        key = TOKENS.hook_key(wf["metadata"]["uid"])
        assert (await rt.workflows.backend.hook("k-1", post({}, bearer=key))).status == 200
        await rt.settle()
        assert [(await states(rt, r))[0] for r in (a1, a2, b1)] == [
            "completed",
            "waiting",
            "waiting",
        ]
