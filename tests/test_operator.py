"""The controller process starts, sees objects of every kind, and stops cleanly."""

from __future__ import annotations

import signal
from collections.abc import Callable

from tests.conftest import ControllerProcess, Kubectl, blockflow, demo_block


def test_controller_sees_objects_and_stops_cleanly(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    kubectl.apply(namespace, blockflow("App", "demo", {"handler": {"python": "demo"}}))
    controller = run_controller("--namespace", namespace)
    controller.wait_for_log(
        lambda r: (
            r.get("event") == "object seen" and r.get("kind") == "App" and r.get("name") == "demo"
        ),
        what="App demo seen at startup",
    )
    # An object created while it runs is seen too, through the watch.
    kubectl.apply(
        namespace, blockflow("WorkflowRun", "run-1", {"workflowRef": {"name": "onboarding"}})
    )
    seen = controller.wait_for_log(
        lambda r: r.get("event") == "object seen" and r.get("name") == "run-1",
        what="WorkflowRun run-1 seen",
    )
    assert seen["kind"] == "WorkflowRun" and seen["namespace"] == namespace
    assert controller.stop(signal.SIGTERM) == 0
    controller.wait_for_log(lambda r: r.get("event") == "blockflow operator stopped", timeout=5)


def test_controller_watches_only_its_namespaces(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    other = f"{namespace}-other"
    kubectl.run("create", "namespace", other)
    try:
        for ns, name in ((namespace, "mine"), (other, "theirs")):
            kubectl.apply(ns, demo_block(name))
        controller = run_controller(env={"BLOCKFLOW_NAMESPACES": namespace})
        controller.wait_for_log(
            lambda r: r.get("name") == "mine" and r.get("event") == "object seen"
        )
        assert controller.stop(signal.SIGINT) == 0
        assert not [r for r in controller.records() if r.get("name") == "theirs"]
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
