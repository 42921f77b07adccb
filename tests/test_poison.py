"""Objects nested deeper than the controller can handle are quarantined, and the controller
goes on: before, one such object stopped every watch on every restart.

The objects are created without the admission webhook (as with a failurePolicy of Ignore
while the controller is down); the API server stores JSON nested up to 10,000 levels.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.conftest import ControllerProcess, Kubectl, blockflow, eventually

DEPTH = 3000


def deep_json(doc: dict[str, Any]) -> str:
    """``doc`` with its "DEEP" value replaced by lists nested 3,000 deep."""
    return json.dumps(doc).replace('"DEEP"', "[" * DEPTH + "1" + "]" * DEPTH)


def jsonpath(kubectl: Kubectl, namespace: str, what: str, path: str) -> str:
    return kubectl.run("get", what, "-n", namespace, "-o", f"jsonpath={path}").stdout


def test_deep_objects_are_quarantined_and_the_rest_is_reconciled_across_restarts(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    deep_app = blockflow("App", "deep", {"handler": {"python": "demo"}, "config": {"x": "DEEP"}})
    deep_run = blockflow("WorkflowRun", "deep-run", {"workflowRef": {"name": "w"}, "input": {}})
    deep_run["spec"]["input"] = {"x": "DEEP"}
    for doc in (deep_app, deep_run):
        kubectl.run("create", "-n", namespace, "-f", "-", input=deep_json(doc))
    kubectl.apply(namespace, blockflow("App", "good", {"handler": {"python": "demo"}}))
    controller = run_controller("--namespace", namespace)

    kubectl.run("wait", "--for=condition=Ready", "app/good", "-n", namespace, "--timeout=30s")
    eventually(
        lambda: jsonpath(kubectl, namespace, "app/deep", "{.status.lifecycle.status}") == "failed",
        what="the deep App failed",
    )
    reason = jsonpath(
        kubectl, namespace, "app/deep", '{.status.conditions[?(@.type=="Ready")].reason}'
    )
    assert reason == "Undecodable"
    message = jsonpath(kubectl, namespace, "app/deep", "{.status.lifecycle.description}")
    assert "nested deeper than 100 levels" in message and "flatten it" in message
    eventually(
        lambda: jsonpath(kubectl, namespace, "wfr/deep-run", "{.status.state}") == "failed",
        what="the deep run failed",
    )
    error = jsonpath(kubectl, namespace, "wfr/deep-run", "{.status.error.message}")
    assert "nested deeper than 100 levels" in error
    events = kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=deep"
    )["items"]
    assert any(e["type"] == "Warning" and e["reason"] == "Undecodable" for e in events), events
    with urllib.request.urlopen(f"http://127.0.0.1:{controller.port}/metrics") as reply:
        assert 'blockflow_undecodable_objects_total{kind="App"}' in reply.read().decode()

    # The watch goes on after the deep objects, and a restart lists them without stopping.
    kubectl.apply(namespace, blockflow("App", "later", {"handler": {"python": "demo"}}))
    kubectl.run("wait", "--for=condition=Ready", "app/later", "-n", namespace, "--timeout=30s")
    assert controller.stop(signal.SIGTERM) == 0
    restarted = run_controller("--namespace", namespace)
    restarted.wait_for_log(lambda r: r.get("event") == "http server listening")
    kubectl.apply(namespace, blockflow("App", "after", {"handler": {"python": "demo"}}))
    kubectl.run("wait", "--for=condition=Ready", "app/after", "-n", namespace, "--timeout=30s")
    assert restarted.proc.poll() is None
    assert jsonpath(kubectl, namespace, "app/deep", "{.status.lifecycle.status}") == "failed"
