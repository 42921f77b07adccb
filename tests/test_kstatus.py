"""kstatus with the real controller: `kubectl wait --for=condition=Ready` (and `Stalled`)
works for every Blockflow kind, and what kstatus computes (Flux's `wait: true`;
tests/support/kstatus.py) of live objects in every state is what a Flux user expects: settled
objects Current, real failures Failed, only work in progress InProgress. The Argo CD health
checks of docs/gitops/ agree on the live objects."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from controller.handlers.protocol import PROTOCOL_VERSION
from tests.conftest import ControllerProcess, Kubectl, blockflow, eventually
from tests.support import kstatus
from tests.support.threaded_server import ThreadedServer
from tests.unit.test_gitops_health import KSTATUS_OF_HEALTH, health


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


# -- every kind in every state, as Flux sees it ----------------------------------------------


class Peer:
    """What the controller talks to, on 127.0.0.1: an HTTP App handler that replies what
    the App's config says (`sync`, `drain`: protocol JSON), `/reject` (400 to anything) and
    `/hold` (answers only once released, so an `http` step stays running)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.server = ThreadedServer(self._app, shutdown_timeout=1)

    @property
    def url(self) -> str:
        return self.server.url

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._info)
        app.router.add_post("/reject", self._reject)
        app.router.add_post("/hold", self._hold)
        app.router.add_post("/{operation}", self._operation)
        return app

    async def _info(self, _: web.Request) -> web.Response:
        return web.json_response({"version": "1.0.0", "protocolVersion": PROTOCOL_VERSION})

    async def _operation(self, request: web.Request) -> web.Response:
        operation = request.match_info["operation"]
        config = (await request.json())["entity"].get("config") or {}
        default = {"sync": {"newStatus": "ready"}, "drain": {"newStatus": "drained"}}
        return web.json_response(config.get(operation) or default.get(operation) or {})

    async def _reject(self, _: web.Request) -> web.Response:
        return web.json_response({"error": "bad request"}, status=400)

    async def _hold(self, request: web.Request) -> web.Response:
        for _ in range(600):
            if self.released.is_set():
                break
            await asyncio.sleep(0.1)
        return web.json_response({"released": True})


@pytest.fixture
def peer() -> Iterator[Peer]:
    peer = Peer()
    peer.server.start()
    yield peer
    peer.released.set()
    peer.server.stop()


def http_app(name: str, peer: Peer, **config: Any) -> dict[str, Any]:
    return blockflow("App", name, {"handler": {"http": {"url": peer.url}}, "config": config})


def scripted(name: str, **config: Any) -> dict[str, Any]:
    return blockflow("Block", name, {"app": "scripted", "type": "scripted", "config": config})


def step(name: str, type_: str, **with_: Any) -> dict[str, Any]:
    return {"name": name, "uses": {"type": type_}, "with": with_}


def get(kubectl: Kubectl, namespace: str, ref: str) -> dict[str, Any]:
    result = kubectl.run("get", ref, "-n", namespace, "-o", "json", check=False)
    return dict(json.loads(result.stdout)) if result.returncode == 0 else {}


def lifecycle_is(state: str, phase: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return (status.get("lifecycle") or {}).get("status") == state and (
            phase is None or status.get("phase") == phase
        )

    return check


def run_is(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (obj.get("status") or {}).get("state") == state


def patch(kubectl: Kubectl, namespace: str, ref: str, body: dict[str, Any]) -> None:
    kubectl.run("patch", ref, "-n", namespace, "--type=merge", "-p", json.dumps(body))


def drain(kubectl: Kubectl, namespace: str, ref: str) -> None:
    """A drain without deleting: the annotation docs/concepts.md describes."""
    kubectl.run("annotate", ref, "-n", namespace, "blockflow.dev/requested-drain-at=d1")


#: (object, when it has got there, kstatus, Ready reason)
Case = tuple[str, Callable[[dict[str, Any]], bool], str, str]

CASES: list[Case] = [
    ("app.blockflow.dev/demo", lifecycle_is("ready"), kstatus.CURRENT, "Ready"),
    (
        "app.blockflow.dev/installing",
        lifecycle_is("in_progress"),
        kstatus.IN_PROGRESS,
        "InProgress",
    ),
    ("app.blockflow.dev/misconfigured", lifecycle_is("failed"), kstatus.FAILED, "Failed"),
    ("app.blockflow.dev/retired", lifecycle_is("drained"), kstatus.CURRENT, "Drained"),
    ("block.blockflow.dev/ready", lifecycle_is("ready"), kstatus.CURRENT, "Ready"),
    (
        "block.blockflow.dev/progressing",
        lifecycle_is("in_progress"),
        kstatus.IN_PROGRESS,
        "InProgress",
    ),
    ("block.blockflow.dev/failed", lifecycle_is("failed"), kstatus.FAILED, "Failed"),
    ("block.blockflow.dev/drained", lifecycle_is("drained"), kstatus.CURRENT, "Drained"),
    ("block.blockflow.dev/draining", lifecycle_is("draining"), kstatus.IN_PROGRESS, "Draining"),
    (
        "block.blockflow.dev/drainfail",
        lifecycle_is("draining_failed"),
        kstatus.FAILED,
        "DrainingFailed",
    ),
    ("workflow.blockflow.dev/active", lifecycle_is("ready", "Activated"), kstatus.CURRENT, "Ready"),
    ("workflow.blockflow.dev/draft", lifecycle_is("drained", "Draft"), kstatus.CURRENT, "Draft"),
    ("workflow.blockflow.dev/paused", lifecycle_is("drained", "Paused"), kstatus.CURRENT, "Paused"),
    (
        "workflow.blockflow.dev/archived",
        lifecycle_is("drained", "Archived"),
        kstatus.CURRENT,
        "Archived",
    ),
    ("workflow.blockflow.dev/refused", lifecycle_is("failed", "Draft"), kstatus.FAILED, "Failed"),
    ("workflowrun.blockflow.dev/running", run_is("running"), kstatus.IN_PROGRESS, "Running"),
    ("workflowrun.blockflow.dev/waiting", run_is("waiting"), kstatus.IN_PROGRESS, "Waiting"),
    ("workflowrun.blockflow.dev/completed", run_is("completed"), kstatus.CURRENT, "Completed"),
    ("workflowrun.blockflow.dev/failed", run_is("failed"), kstatus.FAILED, "Failed"),
    ("workflowrun.blockflow.dev/cancelled", run_is("cancelled"), kstatus.CURRENT, "Cancelled"),
]


def test_kstatus_of_every_kind_in_every_state(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    peer: Peer,
) -> None:
    run_controller("--namespace", namespace)
    sleep = [step("nap", "sleep", seconds=0)]
    kubectl.apply(
        namespace,
        blockflow("App", "demo", {"handler": {"python": "demo"}}),
        blockflow("App", "retired", {"handler": {"python": "demo"}}),
        blockflow("App", "scripted", {"handler": {"python": "scripted"}}),
        http_app("installing", peer, sync={"newStatus": "in_progress"}),
        http_app("misconfigured", peer, sync={"newStatus": "failed"}),
        scripted("ready"),
        scripted("progressing", sync={"newStatus": "in_progress"}),
        scripted("failed", sync={"newStatus": "failed"}),
        scripted("drained"),
        scripted("draining", drain={"newStatus": "draining", "nextScheduleDelay": 600}),
        scripted("drainfail", drain={"newStatus": "draining_failed"}),
        workflow("active", sleep),
        workflow("draft", sleep, state="Draft"),
        workflow("paused", sleep),
        workflow("archived", sleep),
        workflow("refused", [{"name": "x", "uses": {"app": "nowhere", "type": "x"}}]),
        workflow("quick", sleep),
        workflow(
            "held", [step("call", "http", method="POST", url=f"{peer.url}/hold", timeoutSeconds=60)]
        ),
        workflow("hooked", [step("approve", "hook", token="t-${{ run.name }}")]),
        workflow(
            "rejected",
            [step("call", "http", method="POST", url=f"{peer.url}/reject")],
            errorHandling="Stop",
        ),
    )
    wait(
        kubectl,
        namespace,
        "Ready",
        "app/retired",
        "block.blockflow.dev/drained",
        "block.blockflow.dev/draining",
        "block.blockflow.dev/drainfail",
        "workflow.blockflow.dev/paused",
        "workflow.blockflow.dev/archived",
        "workflow.blockflow.dev/quick",
        "workflow.blockflow.dev/held",
        "workflow.blockflow.dev/hooked",
        "workflow.blockflow.dev/rejected",
    )

    # Settle into the states that need a second step: drains on request, pause, archive, runs.
    for ref in ("app/retired", "block/drained", "block/draining", "block/drainfail"):
        drain(kubectl, namespace, ref)
    patch(kubectl, namespace, "workflow/paused", {"spec": {"state": "Paused"}})
    patch(kubectl, namespace, "workflow/archived", {"spec": {"state": "Archived"}})
    for run, workflow_name in (
        ("running", "held"),
        ("waiting", "hooked"),
        ("completed", "quick"),
        ("failed", "rejected"),
        ("cancelled", "hooked"),
        ("late", "quick"),
    ):
        create_run(kubectl, namespace, run, workflow_name)
    eventually(
        lambda: run_is("waiting")(get(kubectl, namespace, "wfr/cancelled")),
        timeout=60,
        what="run cancelled waiting",
    )
    patch(kubectl, namespace, "wfr/cancelled", {"spec": {"cancel": True}})

    try:
        for ref, done, expected, reason in CASES:
            obj = settle(kubectl, namespace, ref, done)
            result = kstatus.compute(obj)
            assert result.status == expected, (ref, result, obj.get("status"))
            ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
            assert ready["reason"] == reason, (ref, ready)
            assert ready["observedGeneration"] == obj["metadata"]["generation"], ref
            argo, message = health(obj)
            assert KSTATUS_OF_HEALTH[argo] == expected, (ref, argo, message)

        # `kubectl wait --for=condition=Ready` finishes exactly for the Current ones.
        current = [ref for ref, _, expected, _ in CASES if expected == kstatus.CURRENT]
        wait(kubectl, namespace, "Ready", *current)

        # A spec change after a run has ended (a late `blockflow run stop`): observed, and
        # nothing else happens, so the run does not look in progress for ever.
        late = settle(kubectl, namespace, "wfr/late", run_is("completed"))
        patch(kubectl, namespace, "wfr/late", {"spec": {"cancel": True}})
        acknowledged = settle(kubectl, namespace, "wfr/late", run_is("completed"))
        assert acknowledged["metadata"]["generation"] == late["metadata"]["generation"] + 1
        assert kstatus.compute(acknowledged).status == kstatus.CURRENT
        assert acknowledged["status"]["finishedAt"] == late["status"]["finishedAt"]
    finally:
        peer.released.set()


def settle(
    kubectl: Kubectl, namespace: str, ref: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The object once the controller has written the state wanted for its current
    generation (before that, kstatus may see no status at all and call it Current)."""

    def check() -> dict[str, Any] | None:
        obj = get(kubectl, namespace, ref)
        if not obj or not done(obj):
            return None
        observed = (obj.get("status") or {}).get("observedGeneration")
        return obj if observed == obj["metadata"]["generation"] else None

    found: dict[str, Any] = eventually(check, timeout=60, what=ref)
    return found


def test_conditions_an_older_controller_wrote_are_rewritten_on_start(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    """A Block drained under the old rule (Ready=False alone: InProgress for ever) becomes
    Current when the new controller starts, without calling its handler again."""
    controller = run_controller("--namespace", namespace)
    kubectl.apply(
        namespace,
        blockflow("App", "scripted", {"handler": {"python": "scripted"}}),
        scripted("old"),
    )
    wait(kubectl, namespace, "Ready", "block.blockflow.dev/old")
    drain(kubectl, namespace, "block/old")
    drained = settle(kubectl, namespace, "block/old", lifecycle_is("drained"))
    controller.stop()

    for item in drained["status"]["conditions"]:
        item["status"] = "False"  # what the controller wrote before Ready=True for drained
    path = f"/apis/blockflow.dev/v1alpha1/namespaces/{namespace}/blocks/old/status"
    kubectl.run("replace", "--raw", path, "-f", "-", input=json.dumps(drained))
    assert kstatus.compute(get(kubectl, namespace, "block/old")).status == kstatus.IN_PROGRESS

    run_controller("--namespace", namespace)
    wait(kubectl, namespace, "Ready", "block.blockflow.dev/old")
    now = get(kubectl, namespace, "block/old")
    assert kstatus.compute(now).status == kstatus.CURRENT
    ready = next(c for c in now["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Drained"
    # Only the conditions changed: no sync, no drain (the handler was not called).
    assert now["status"]["lifecycle"] == drained["status"]["lifecycle"]
    assert now["status"]["signals"] == drained["status"]["signals"]
