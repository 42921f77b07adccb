"""A step's timeoutSeconds and a run's end a call in flight when they fall due: the attempt
fails as timed out (its late answer is never recorded), and the run ends at its deadline.
Before, a step with a 2 s timeout against a server answering after 8 s completed after 8 s."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.conftest import ControllerProcess, Kubectl, eventually
from tests.support.step_service import StepService
from tests.support.threaded_server import ThreadedServer
from tests.support.workflow_helpers import (
    http,
    secret_value,
    serving,
    step,
    wait_phase,
    wait_run,
    workflow,
)

ANSWER_AFTER = 8.0


class LateServer:
    """Answers every request ANSWER_AFTER seconds after it came."""

    def __init__(self) -> None:
        self.arrived = 0
        self.answered = 0
        self._lock = threading.Lock()
        self.server = ThreadedServer(self._app).start()

    def _app(self) -> web.Application:
        async def late(_: web.Request) -> web.Response:
            with self._lock:
                self.arrived += 1
            await asyncio.sleep(ANSWER_AFTER)
            with self._lock:
                self.answered += 1
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_get("/", late)
        return app


def late_workflow(name: str, url: str, **timeouts: Any) -> dict[str, Any]:
    call = {
        "name": "call",
        "uses": {"type": "http"},
        "with": {"method": "GET", "url": url},
        "retryPolicy": {"maxAttempts": 1},
    }
    if "step" in timeouts:
        call["timeoutSeconds"] = timeouts["step"]
    spec: dict[str, Any] = {"trigger": {"webhook": {}}, "steps": [call]}
    if "run" in timeouts:
        spec["timeoutSeconds"] = timeouts["run"]
    return workflow(name, spec)


def test_step_and_run_timeouts_end_a_call_in_flight(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    server = LateServer()
    try:
        serving(run_controller, namespace)
        url = server.server.url + "/"
        kubectl.apply(
            namespace,
            late_workflow("step-timeout", url, step=2),
            late_workflow("run-timeout", url, run=3),
        )
        names = {}
        for name in ("step-timeout", "run-timeout"):
            wait_phase(kubectl, namespace, name, "Activated")
            trigger = secret_value(
                kubectl, namespace, f"{name}-workflow-signals", "triggerCallbackUrl"
            )
            status, reply = http("POST", trigger, {})
            assert status == 202, reply
            names[name] = reply["run"]
        eventually(lambda: server.arrived == 2, what="both calls under way")

        timed_out = wait_run(kubectl, namespace, names["step-timeout"], "failed", timeout=7)
        ended = wait_run(kubectl, namespace, names["run-timeout"], "failed", timeout=7)
        # Both ended while the server still held both calls: nothing late was recorded.
        assert server.answered == 0
        call = step(timed_out, "call")
        assert (call["state"], call["error"]["message"]) == (
            "failed",
            "step call timed out after 2s",
        )
        assert "outcome" not in call or call["outcome"] is None
        assert ended["status"]["error"]["message"] == "run timed out after 3s"
        assert step(ended, "call")["state"] == "cancelled"
    finally:
        server.server.stop()


def test_a_step_blocks_timeout_ends_its_call_in_flight(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    """The same for an App's step block: its handler answers after 8 s, the step's 2 s
    timeout fails the attempt at 2 s, and the late outcome is never recorded."""
    service.controls.execute_delay = ANSWER_AFTER
    serving(run_controller, namespace)
    pay = {
        "name": "pay",
        "uses": {"app": "svc", "type": "charge"},
        "timeoutSeconds": 2,
        "retryPolicy": {"maxAttempts": 1},
    }
    kubectl.apply(
        namespace,
        service.app_manifest(),
        workflow("slow-block", {"trigger": {"webhook": {}}, "steps": [pay]}),
    )
    wait_phase(kubectl, namespace, "slow-block", "Activated")
    trigger = secret_value(kubectl, namespace, "slow-block-workflow-signals", "triggerCallbackUrl")
    status, reply = http("POST", trigger, {})
    assert status == 202, reply
    service.wait_for("execute")
    failed = wait_run(kubectl, namespace, reply["run"], "failed", timeout=7)
    record = step(failed, "pay")
    assert record["error"]["message"] == "step pay timed out after 2s"
    assert record.get("outcome") is None
