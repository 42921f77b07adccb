"""kstatus with the real controller: `kubectl wait --for=condition=Ready` (and `Stalled`)
works for every Blockflow kind, as Flux's `wait: true` relies on; the Argo CD health checks
of docs/gitops/ agree on the live objects."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import ControllerProcess, Kubectl, blockflow
from tests.unit.test_gitops_health import health


@pytest.fixture
def bad_request_url() -> Iterator[str]:
    """A tiny aiohttp server on 127.0.0.1 that answers every request with 400."""

    async def reject(request: web.Request) -> web.Response:
        return web.json_response({"error": "bad request"}, status=400)

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", reject)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/reject"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def wait(kubectl: Kubectl, namespace: str, condition: str, *resources: str) -> None:
    kubectl.run(
        "wait",
        f"--for=condition={condition}",
        "--timeout=20s",
        "-n",
        namespace,
        *resources,
        timeout=30,
    )


def workflow(name: str, steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return blockflow(
        "Workflow", name, {"state": "Active", "trigger": {"webhook": {}}, "steps": steps, **spec}
    )


def create_run(kubectl: Kubectl, namespace: str, name: str, workflow_name: str) -> None:
    run = {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": workflow_name}},
    }
    kubectl.run("create", "-n", namespace, "-f", "-", input=json.dumps(run))


def test_kubectl_wait_for_ready_and_stalled(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    bad_request_url: str,
) -> None:
    run_controller("--namespace", namespace)
    kubectl.apply(
        namespace,
        blockflow("App", "demo", {"handler": {"python": "demo"}}),
        blockflow("Block", "b", {"app": "demo", "type": "bucket", "config": {"name": "x"}}),
        workflow("wf", [{"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 0}}]),
        workflow(
            "rejected",
            [
                {
                    "name": "call",
                    "uses": {"type": "http"},
                    "with": {"method": "POST", "url": bad_request_url},
                }
            ],
            errorHandling="Stop",
        ),
    )
    entities = ["app.blockflow.dev/demo", "block.blockflow.dev/b", "workflow.blockflow.dev/wf"]
    wait(kubectl, namespace, "Ready", *entities, "workflow.blockflow.dev/rejected")

    create_run(kubectl, namespace, "r", "wf")
    create_run(kubectl, namespace, "bad", "rejected")
    wait(kubectl, namespace, "Ready", "workflowrun.blockflow.dev/r")
    wait(kubectl, namespace, "Stalled", "workflowrun.blockflow.dev/bad")

    # The Argo CD health checks say the same of the live objects.
    for resource in [*entities, "workflowrun.blockflow.dev/r"]:
        status, message = health(kubectl.json("get", resource, "-n", namespace))
        assert status == "Healthy", (resource, message)
    bad = kubectl.json("get", "workflowrun.blockflow.dev/bad", "-n", namespace)
    assert bad["status"]["state"] == "failed"
    status, message = health(bad)
    assert status == "Degraded"
    assert "answered 400" in message, message
