"""examples/orders end to end: the real controller, the real API server and the example CRM
(``examples/onboarding/crm.py``) as a subprocess. The manifests are
``examples/orders/workflow.yaml`` itself, with the CRM's address rewritten and the payment
wait shortened from 300 s to 4 s. Events go in through ``POST /events/<namespace>``.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import yaml

from tests.conftest import EXAMPLES_DIR, ControllerProcess, Kubectl, eventually
from tests.support.workflow_helpers import serving, wait_phase, wait_run
from tests.test_onboarding_example import CRM_ADDRESS, EVENTS_TOKEN, _rewrite, crm, http, step

__all__ = ["crm"]  # the fixture, used by name

ORDERS = EXAMPLES_DIR / "orders" / "workflow.yaml"
RUNS = "workflowruns.blockflow.dev"


def manifests(crm_url: str) -> list[dict[str, Any]]:
    text = ORDERS.read_text().replace("timeoutSeconds: 300", "timeoutSeconds: 4")
    assert CRM_ADDRESS in text and "timeoutSeconds: 4" in text
    host = crm_url.removeprefix("http://")
    documents = [_rewrite(d, CRM_ADDRESS, host) for d in yaml.safe_load_all(text) if d]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "blockflow-events"},
        "stringData": {"token": EVENTS_TOKEN},
    }
    return [secret, *documents]


def event(type_: str, id_: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"specversion": "1.0", "id": id_, "source": "shop.example", "type": type_, "data": data}


def run_of(kubectl: Kubectl, namespace: str, order: int) -> dict[str, Any] | None:
    for run in kubectl.json("get", RUNS, "-n", namespace)["items"]:
        data = ((run["spec"].get("input") or {}).get("data")) or {}
        if run["spec"]["workflowRef"]["name"] == "fulfil-order" and data.get("orderId") == order:
            return dict(run)
    return None


def records(crm_url: str, kind: str) -> list[Any]:
    return [r["body"] for r in http("GET", f"{crm_url}/records/{kind}")[1]]


def test_an_order_fans_out_waits_for_its_payment_ships_or_reminds_and_reports(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    crm: str,
) -> None:
    controller = serving(run_controller, namespace)
    kubectl.apply(namespace, *manifests(crm))
    for name in ("fulfil-order", "send-invoice"):
        wait_phase(kubectl, namespace, name, "Activated")
    url = f"http://127.0.0.1:{controller.port}/events/{namespace}"
    headers = {
        "Authorization": f"Bearer {EVENTS_TOKEN}",
        "Content-Type": "application/cloudevents+json",
    }

    def send(type_: str, id_: str, data: dict[str, Any]) -> Any:
        status, reply = http("POST", url, event(type_, id_, data), headers)
        assert status == 202, reply
        return reply

    # Order 1 is paid while it waits: it ships.
    items = ["sku-1", "sku-2", "sku-3", "sku-4"]
    assert send("Order.placed", "o-1", {"orderId": 1, "customer": "acme", "items": items}) == {
        "runs": 1
    }
    eventually(
        lambda: step(run_of(kubectl, namespace, 1) or {}, "paid").get("state") == "waiting",
        what="order 1 waiting for its payment",
    )
    send("Payment.succeeded", "p-1", {"orderId": 1, "amount": 42})
    first = run_of(kubectl, namespace, 1)
    assert first is not None
    done = wait_run(kubectl, namespace, first["metadata"]["name"], "completed")
    states = {s["name"]: s["state"] for s in done["status"]["steps"]}
    assert states == {
        "reserve": "completed",
        "invoice": "completed",
        "paid": "completed",
        "ship": "completed",
        "remind": "skipped",
        "finally.report": "completed",
    }
    assert sorted(r["sku"] for r in records(crm, "reservations")) == items
    (shipment,) = records(crm, "shipments")
    (invoice,) = [r for r in http("GET", f"{crm}/records/invoices")[1]]
    assert shipment == {"orderId": 1, "items": 4, "invoice": invoice["id"]}
    assert records(crm, "notifications") == [{"orderId": 1, "state": "completed", "error": None}]

    # Order 2 is never paid: after the wait's timeout it reminds instead of shipping.
    send("Order.placed", "o-2", {"orderId": 2, "customer": "bolt", "items": ["sku-9"]})
    second = eventually(lambda: run_of(kubectl, namespace, 2), what="order 2's run")
    late = wait_run(kubectl, namespace, second["metadata"]["name"], "completed", timeout=60)
    assert step(late, "paid")["outcome"]["id"] == "timeout"
    assert (step(late, "ship")["state"], step(late, "remind")["state"]) == ("skipped", "completed")

    # Order 3 has no items: refused by the input schema, no run; order 4 is cancelled.
    assert send("Order.placed", "o-3", {"orderId": 3, "customer": "acme"}) == {"runs": 0}
    warnings = kubectl.json("get", "events", "-n", namespace)["items"]
    assert any(
        e["reason"] == "InputRefused" and "input.data: missing required field items" in e["message"]
        for e in warnings
    ), json.dumps([e["message"] for e in warnings])
    send("Order.placed", "o-4", {"orderId": 4, "customer": "cato", "items": ["sku-1"]})
    fourth = eventually(lambda: run_of(kubectl, namespace, 4), what="order 4's run")
    send("Order.cancelled", "c-4", {"orderId": 4})
    wait_run(kubectl, namespace, fourth["metadata"]["name"], "cancelled")

    # One order per customer at a time (concurrency.key), across a kill -9.
    send("Order.placed", "o-5", {"orderId": 5, "customer": "dora", "items": ["sku-1"]})
    fifth = eventually(lambda: run_of(kubectl, namespace, 5), what="order 5's run")
    wait_run(kubectl, namespace, fifth["metadata"]["name"], "waiting")
    send("Order.placed", "o-6", {"orderId": 6, "customer": "dora", "items": ["sku-2"]})
    sixth = eventually(lambda: run_of(kubectl, namespace, 6), what="order 6's run")
    queued = wait_run(kubectl, namespace, sixth["metadata"]["name"], "queued")
    assert queued["status"]["concurrencyKey"] == "dora"
    controller.proc.send_signal(signal.SIGKILL)
    controller.proc.wait(timeout=10)
    controller = serving(run_controller, namespace)
    url = f"http://127.0.0.1:{controller.port}/events/{namespace}"
    assert run_of(kubectl, namespace, 6)["status"]["state"] == "queued"  # type: ignore[index]
    send("Payment.succeeded", "p-5", {"orderId": 5})
    wait_run(kubectl, namespace, fifth["metadata"]["name"], "completed")
    wait_run(kubectl, namespace, sixth["metadata"]["name"], "waiting")
