"""Branches, joins, conditions, finally steps, input schemas, manual workflows, and runs an
operator pauses, resumes and retries — against the real API server, with real HTTP
services on loopback and the real controller process (killed with SIGKILL mid-branch)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import ControllerProcess, Kubectl, eventually, free_port
from tests.support.step_service import StepService
from tests.support.workflow_helpers import (
    get_run,
    http,
    secret_value,
    serving,
    step,
    wait_phase,
    wait_run,
    workflow,
)


def effect(service: StepService, path: str = "/effects", **body: Any) -> dict[str, Any]:
    return {"method": "POST", "url": service.url + path, "body": body}


def new_run(name: str, workflow_name: str, input_: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"workflowRef": {"name": workflow_name}}
    if input_ is not None:
        spec["input"] = input_
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": spec,
    }


def branching(service: StepService) -> dict[str, Any]:
    """Route on an outcome (lookup → created or existing), a branch beside it (audit), a
    join (notify), and a finally step that reports how the run ended."""
    slow = effect(service, "/slow-effects", what="${{ run.name }}")
    return workflow(
        "orders",
        {
            # No trigger: started by hand (a WorkflowRun applied).
            "steps": [
                {"name": "lookup", "uses": {"app": "svc", "type": "charge"}},
                {
                    "name": "created",
                    "if": "${{ steps.lookup.id == 'ok' }}",
                    "needs": ["lookup"],
                    "uses": {"type": "http"},
                    "with": slow,
                },
                {
                    "name": "existing",
                    "if": "steps.lookup.id == 'missing'",
                    "needs": ["lookup"],
                    "uses": {"type": "http"},
                    "with": slow,
                },
                {"name": "audit", "needs": ["lookup"], "uses": {"type": "http"}, "with": slow},
                {
                    "name": "notify",
                    "needs": ["created", "existing", "audit"],
                    "uses": {"type": "http"},
                    "with": effect(
                        service,
                        created="${{ steps.created.state }}",
                        existing="${{ steps.existing.state }}",
                    ),
                },
            ],
            "finally": [
                {
                    "name": "report",
                    "uses": {"type": "http"},
                    "with": effect(service, state="${{ run.state }}"),
                }
            ],
        },
    )


def kill(controller: ControllerProcess) -> None:
    controller.proc.send_signal(signal.SIGKILL)
    controller.proc.wait(timeout=10)


def both_running(kubectl: Kubectl, namespace: str, name: str) -> bool:
    steps = {s["name"]: s["state"] for s in get_run(kubectl, namespace, name)["status"]["steps"]}
    return steps.get("created") == "running" and steps.get("audit") == "running"


def test_branches_run_side_by_side_join_skip_and_finally_survive_a_kill(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    port = free_port()
    controller = serving(run_controller, namespace, port)
    kubectl.apply(namespace, service.app_manifest(), branching(service))
    wait_phase(kubectl, namespace, "orders", "Activated")  # no trigger needed

    # Both branches are called at once, each holding its answer for 1 s.
    service.controls.effect_delay = 1.0
    kubectl.apply(namespace, new_run("first", "orders"))
    eventually(lambda: both_running(kubectl, namespace, "first"), what="both branches running")
    done = wait_run(kubectl, namespace, "first", "completed")
    states = {s["name"]: s["state"] for s in done["status"]["steps"]}
    assert states == {
        "lookup": "completed",
        "created": "completed",
        "existing": "skipped",
        "audit": "completed",
        "notify": "completed",
        "finally.report": "completed",
    }
    assert "condition is false" in step(done, "existing")["reason"]
    notify_key = step(done, "notify")["uniqueExecutionId"]
    assert service.bodies[notify_key] == {"created": "completed", "existing": "skipped"}
    assert service.bodies[step(done, "finally.report")["uniqueExecutionId"]] == {
        "state": "completed"
    }
    created, audit = (step(done, s)["startedAt"] for s in ("created", "audit"))
    assert abs(_seconds(created) - _seconds(audit)) < 1.0  # started together

    # kill -9 while both branches' calls are in flight: a new controller calls them again
    # with the same keys, each effect is applied once, the join and finally run once.
    service.controls.effect_delay = 5.0
    kubectl.apply(namespace, new_run("second", "orders"))
    run = eventually(
        lambda: (
            both_running(kubectl, namespace, "second") and get_run(kubectl, namespace, "second")
        ),
        what="both branches of the second run in flight",
    )
    keys = [step(run, s)["uniqueExecutionId"] for s in ("created", "audit")]
    eventually(lambda: all(service.arrivals[k] == 1 for k in keys), what="both calls arrived")
    kill(controller)
    service.controls.effect_delay = 0.0
    serving(run_controller, namespace, port)
    done = wait_run(kubectl, namespace, "second", "completed")
    assert all(service.arrivals[k] == 2 for k in keys)  # called again, same key …
    assert all(k in service.effects for k in keys)  # … and applied once
    assert service.effect_requests[step(done, "notify")["uniqueExecutionId"]] == 1
    assert step(done, "finally.report")["state"] == "completed"


def _seconds(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_a_failed_run_is_retried_from_its_failed_step_and_a_paused_run_waits(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    port = free_port()
    controller = serving(run_controller, namespace, port)
    kubectl.apply(
        namespace,
        workflow(
            "payout",
            {
                "trigger": {"manual": {}},
                "steps": [
                    {"name": "prepare", "uses": {"type": "http"}, "with": effect(service, n=1)},
                    {"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 1}},
                    {"name": "pay", "uses": {"type": "http"}, "with": effect(service, n=2)},
                ],
            },
        ),
    )
    wait_phase(kubectl, namespace, "payout", "Activated")

    # The service is down when `pay` runs: the run fails there.
    service.controls.effects_down = 503
    kubectl.apply(namespace, new_run("p1", "payout"))
    service.controls.effects_down = None
    eventually(
        lambda: any(
            s["name"] == "nap" for s in get_run(kubectl, namespace, "p1")["status"]["steps"]
        ),
        what="the nap reached",
    )
    service.controls.effects_down = 503
    failed = wait_run(kubectl, namespace, "p1", "failed")
    assert failed["status"]["error"]["step"] == "pay"
    prepared = step(failed, "prepare")
    first_pay_key = step(failed, "pay")["uniqueExecutionId"]

    # Retried once the service is back: prepare keeps its outcome, pay runs again.
    service.controls.effects_down = None
    kubectl.run(
        "annotate",
        "workflowrun.blockflow.dev",
        "p1",
        "-n",
        namespace,
        "blockflow.dev/retried-by=jane@example.com",
    )
    kubectl.run(
        "patch",
        "workflowrun.blockflow.dev",
        "p1",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"retry": 1}}),
    )
    done = wait_run(kubectl, namespace, "p1", "completed")
    assert step(done, "prepare") == prepared
    pay = step(done, "pay")
    assert pay["uniqueExecutionId"] != first_pay_key and pay["attempts"] == 1
    (retry,) = done["status"]["retries"]
    assert (retry["by"], retry["previousState"], retry["steps"]) == (
        "jane@example.com",
        "failed",
        ["pay"],
    )
    events = kubectl.json("get", "events", "-n", namespace)["items"]
    assert any(e["reason"] == "Retried" and "by jane@example.com" in e["message"] for e in events)
    workflow_status = kubectl.json("get", "workflows.blockflow.dev", "payout", "-n", namespace)
    counted = workflow_status["status"]
    assert (counted["runCount"], counted["failureCount"], counted["successCount"]) == (1, 1, 1)

    # Paused while it naps: the nap's timer passes without firing; resumed, it goes on.
    kubectl.apply(namespace, new_run("p2", "payout"))
    eventually(
        lambda: any(
            s["name"] == "nap" and s["state"] == "waiting"
            for s in get_run(kubectl, namespace, "p2")["status"]["steps"]
        ),
        what="p2 napping",
    )
    pause = json.dumps({"spec": {"paused": True}})
    kubectl.run(
        "patch", "workflowrun.blockflow.dev", "p2", "-n", namespace, "--type=merge", "-p", pause
    )
    paused = wait_run(kubectl, namespace, "p2", "paused")
    assert paused["status"]["pausedAt"]
    kill(controller)  # a restart keeps it paused
    serving(run_controller, namespace, port)
    time.sleep(2.0)  # the nap falls due meanwhile: nothing may happen (a wait for no change)
    still = get_run(kubectl, namespace, "p2")
    assert still["status"]["state"] == "paused"
    assert [s["name"] for s in still["status"]["steps"]] == ["prepare", "nap"]
    resume = json.dumps({"spec": {"paused": False}})
    kubectl.run(
        "patch", "workflowrun.blockflow.dev", "p2", "-n", namespace, "--type=merge", "-p", resume
    )
    done = wait_run(kubectl, namespace, "p2", "completed")
    assert done["status"]["pausedSeconds"] >= 2.0


def test_an_input_schema_refuses_bad_payloads_before_any_run_exists(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
) -> None:
    serving(run_controller, namespace)
    schema = {
        "type": "object",
        "required": ["body"],
        "properties": {
            "body": {
                "type": "object",
                "required": ["orderId"],
                "properties": {"orderId": {"type": "integer"}},
            }
        },
    }
    nap = [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 0}}]
    kubectl.apply(
        namespace,
        workflow("typed", {"trigger": {"webhook": {}}, "inputSchema": schema, "steps": nap}),
        workflow(
            "typed-by-hand",
            {"inputSchema": {"type": "object", "required": ["orderId"]}, "steps": nap},
        ),
    )
    wait_phase(kubectl, namespace, "typed", "Activated")
    url = secret_value(kubectl, namespace, "typed-workflow-signals", "triggerCallbackUrl")
    status, reply = http("POST", url, {"orderId": "seven", "card": "4242424242424242"})
    assert status == 400, reply
    assert "input.body.orderId: must be of type integer" in reply["error"]
    assert "4242" not in json.dumps(reply)  # the rejected value is never echoed
    status, reply = http("POST", url, {"orderId": 7})
    assert status == 202
    wait_run(kubectl, namespace, reply["run"], "completed")
    assert len(kubectl.json("get", "workflowruns.blockflow.dev", "-n", namespace)["items"]) == 1

    # A run applied by hand with input its workflow refuses fails at once, saying why.
    wait_phase(kubectl, namespace, "typed-by-hand", "Activated")
    kubectl.apply(namespace, new_run("bad", "typed-by-hand", {"order": 1}))
    failed = wait_run(kubectl, namespace, "bad", "failed")
    assert failed["status"]["error"]["message"] == (
        "spec.input: the input does not match spec.inputSchema: "
        "input: missing required field orderId"
    )
    assert failed["status"]["steps"] == []


def test_a_sub_workflow_waits_for_an_event_across_a_kill_and_cancel_on_stops_parent_and_child(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    port = free_port()
    controller = serving(run_controller, namespace, port)
    kubectl.run(
        "create",
        "secret",
        "generic",
        "blockflow-events",
        "-n",
        namespace,
        "--from-literal=token=s3cret",
    )
    order = "${{ event.orderId }}"
    kubectl.apply(
        namespace,
        workflow(
            "charge",
            {
                "steps": [
                    {
                        "name": "paid",
                        "uses": {"type": "waitForEvent"},
                        "with": {
                            "type": "Payment.succeeded",
                            "match": {"data.orderId": order},
                            "timeoutSeconds": 300,
                        },
                    }
                ]
            },
        ),
        workflow(
            "checkout",
            {
                "cancelOn": [{"event": "Order.cancelled", "match": {"data.orderId": order}}],
                "steps": [
                    {
                        "name": "pay",
                        "uses": {"type": "workflow"},
                        "with": {"name": "charge", "input": {"orderId": order}},
                    },
                    {
                        "name": "ship",
                        "if": "${{ steps.pay.data.output.data.amount == 42 }}",
                        "uses": {"type": "http"},
                        "with": effect(service, order=order),
                    },
                ],
            },
        ),
    )
    for name in ("charge", "checkout"):
        wait_phase(kubectl, namespace, name, "Activated")
    for n in (1, 2):
        kubectl.apply(namespace, new_run(f"order-{n}", "checkout", {"orderId": n}))

    def child_of(parent: str) -> dict[str, Any] | None:
        record = next(iter(get_run(kubectl, namespace, parent)["status"].get("steps") or []), None)
        if record is None or not record.get("child"):
            return None
        child = get_run(kubectl, namespace, record["child"])
        waiting = (child.get("status") or {}).get("state") == "waiting"
        return child if waiting else None

    first = eventually(lambda: child_of("order-1"), what="order-1's charge run waiting")
    second = eventually(lambda: child_of("order-2"), what="order-2's charge run waiting")
    assert first["metadata"]["annotations"]["blockflow.dev/parent-run"] == "order-1"

    # kill -9 while parent and child wait: the event reaches the child after the restart.
    kill(controller)
    controller = serving(run_controller, namespace, port)
    events = f"http://127.0.0.1:{controller.port}/events/{namespace}"
    auth = {"Content-Type": "application/cloudevents+json", "Authorization": "Bearer s3cret"}
    paid = {
        "specversion": "1.0",
        "id": "p-1",
        "source": "psp",
        "type": "Payment.succeeded",
        "data": {"orderId": 1, "amount": 42},
    }
    status, _ = http("POST", events, paid, headers=auth)
    assert status == 202
    done = wait_run(kubectl, namespace, "order-1", "completed")
    pay = step(done, "pay")
    assert pay["outcome"]["data"]["run"] == first["metadata"]["name"]
    assert step(done, "ship")["state"] == "completed"
    assert wait_run(kubectl, namespace, first["metadata"]["name"], "completed")
    assert (
        sum(
            r["metadata"].get("annotations", {}).get("blockflow.dev/parent-run") == "order-1"
            for r in kubectl.json("get", "workflowruns.blockflow.dev", "-n", namespace)["items"]
        )
        == 1
    )  # one child, though the parent was re-planned after the kill

    # order-2 is cancelled by an event: the parent, and the child it waits for, stop.
    cancelled = {**paid, "id": "c-2", "type": "Order.cancelled", "data": {"orderId": 2}}
    assert http("POST", events, cancelled, headers=auth)[0] == 202
    wait_run(kubectl, namespace, "order-2", "cancelled")
    wait_run(kubectl, namespace, second["metadata"]["name"], "cancelled")


def test_a_fan_out_runs_each_item_once_under_its_limit_across_a_kill(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    port = free_port()
    controller = serving(run_controller, namespace, port)
    kubectl.apply(
        namespace,
        workflow(
            "mailer",
            {
                "steps": [
                    {
                        "name": "send",
                        "forEach": "${{ event.users }}",
                        "maxConcurrency": 5,
                        "uses": {"type": "http"},
                        "with": effect(
                            service, "/slow-effects", user="${{ item }}", i="${{ index }}"
                        ),
                    },
                    {
                        "name": "summary",
                        "uses": {"type": "http"},
                        "with": effect(service, sent="${{ size(steps.send.data) }}"),
                    },
                ]
            },
        ),
    )
    wait_phase(kubectl, namespace, "mailer", "Activated")
    users = [f"user-{n:02d}" for n in range(30)]
    service.controls.effect_delay = 0.3
    kubectl.apply(namespace, new_run("mail-all", "mailer", {"users": users}))

    def in_progress() -> int:
        steps = get_run(kubectl, namespace, "mail-all")["status"].get("steps") or []
        return sum(s["name"].startswith("send[") and s["state"] == "running" for s in steps)

    # Never more than 5 iterations at once; kill -9 a third of the way through.
    seen = 0
    while len(service.bodies) < 10:
        seen = max(seen, in_progress())
        time.sleep(0.05)
    assert 1 <= seen <= 5
    kill(controller)
    service.controls.effect_delay = 0.0
    serving(run_controller, namespace, port)
    done = wait_run(kubectl, namespace, "mail-all", "completed", timeout=60)

    send = step(done, "send")
    assert send["progress"] == "c" * 30
    assert [r["body"]["echo"]["user"] for r in send["outcome"]["data"]] == users
    assert not any(s["name"].startswith("send[") for s in done["status"]["steps"])
    applied = [b["user"] for b in service.bodies.values() if b and "user" in b]
    assert sorted(applied) == users  # each item applied once, under one key
    summary = service.bodies[step(done, "summary")["uniqueExecutionId"]]
    assert summary == {"sent": 30}
