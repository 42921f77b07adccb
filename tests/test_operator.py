"""The controller process starts, sees objects of every kind, and stops cleanly."""

from __future__ import annotations

import signal
from collections.abc import Callable

from tests.conftest import ControllerProcess, Kubectl, blockflow, eventually


def test_controller_sees_objects_and_stops_cleanly(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    kubectl.apply(namespace, blockflow("App", "demo", {"handler": {"python": "demo"}}))
    controller = run_controller("--namespace", namespace)
    kubectl.run("wait", "--for=condition=Ready", "app/demo", "-n", namespace, "--timeout=30s")
    # An object created while it runs is seen too, through the watch: this run names a
    # workflow that does not exist, and says so.
    kubectl.apply(
        namespace, blockflow("WorkflowRun", "run-1", {"workflowRef": {"name": "onboarding"}})
    )

    def failed() -> str | None:
        status = kubectl.json("get", "wfr", "run-1", "-n", namespace).get("status") or {}
        return str(status["error"]["message"]) if status.get("state") == "failed" else None

    message = eventually(failed, what="run-1 failed")
    assert message == (
        f"spec.workflowRef.name: Workflow onboarding not found in namespace {namespace}"
    )
    assert controller.stop(signal.SIGTERM) == 0
    controller.wait_for_log(lambda r: r.get("event") == "blockflow operator stopped", timeout=5)


def test_controller_watches_only_its_namespaces(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    other = f"{namespace}-other"
    kubectl.run("create", "namespace", other)
    try:
        for ns in (namespace, other):
            kubectl.apply(ns, blockflow("App", "demo", {"handler": {"python": "demo"}}))
        controller = run_controller(env={"BLOCKFLOW_NAMESPACES": namespace})
        kubectl.run("wait", "--for=condition=Ready", "app/demo", "-n", namespace, "--timeout=30s")
        assert controller.stop(signal.SIGINT) == 0
        theirs = kubectl.json("get", "app", "demo", "-n", other)
        assert "status" not in theirs or not theirs["status"].get("lifecycle")
    finally:
        kubectl.run("delete", "namespace", other, "--wait=false", check=False)


def test_controller_logs_are_json_lines(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    controller = run_controller("--namespace", namespace)
    controller.wait_for_log(lambda r: r.get("event") == "blockflow operator starting")
    assert controller.stop() == 0
    non_json = [
        line for line in controller.lines if line.strip() and not line.lstrip().startswith("{")
    ]
    assert non_json == []
