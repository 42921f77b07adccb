"""Small helpers for workflow tests: HTTP calls on loopback, and reading runs and secrets."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lightkube import KubeConfig

from controller.kube.connection import connection_info
from controller.kube.rest import MERGE_PATCH, RestClient
from tests.conftest import Cluster, ControllerProcess, Kubectl, blockflow, eventually


def workflow(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return blockflow("Workflow", name, {"state": "Active", **spec})


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One HTTP request; (status, parsed JSON body or text)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text) if text else None
    except json.JSONDecodeError:
        return status, text


def secret_value(kubectl: Kubectl, namespace: str, name: str, key: str) -> str:
    data = kubectl.json("get", "secret", name, "-n", namespace).get("data") or {}
    return base64.b64decode(data[key]).decode()


def get_workflow(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.json("get", "workflows.blockflow.dev", name, "-n", namespace)
    return found


def wait_phase(kubectl: Kubectl, namespace: str, name: str, phase: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = get_workflow(kubectl, namespace, name)
        return body if (body.get("status") or {}).get("phase") == phase else None

    found: dict[str, Any] = eventually(check, what=f"workflow {name} phase {phase}")
    return found


def runs(
    kubectl: Kubectl, namespace: str, workflow_name: str | None = None
) -> list[dict[str, Any]]:
    args = ["get", "workflowruns.blockflow.dev", "-n", namespace]
    if workflow_name:
        args += ["-l", f"blockflow.dev/workflow={workflow_name}"]
    items: list[dict[str, Any]] = kubectl.json(*args)["items"]
    return sorted(items, key=lambda r: r["metadata"]["name"])


def get_run(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.json("get", "workflowruns.blockflow.dev", name, "-n", namespace)
    return found


def wait_run(
    kubectl: Kubectl, namespace: str, name: str, state: str, timeout: float = 30
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = get_run(kubectl, namespace, name)
        return body if (body.get("status") or {}).get("state") == state else None

    try:
        found: dict[str, Any] = eventually(check, timeout=timeout, what=f"run {name} {state}")
    except AssertionError as exc:
        status = (get_run(kubectl, namespace, name).get("status") or {}).copy()
        status.pop("workflowSpec", None)
        raise AssertionError(f"{exc}; the run's status: {json.dumps(status)}") from None
    return found


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in run["status"]["steps"] if s["name"] == name)
    return found


def patch_status(cluster: Cluster, path: str, status: dict[str, Any]) -> None:
    """A merge patch of a status subresource, as a controller would write it (kubectl 1.20
    has no --subresource). `path` is the object's API path."""

    async def patch() -> None:
        single = KubeConfig.from_file(cluster.kubeconfig).get()
        client = RestClient(lambda: connection_info(single))
        try:
            await client.request(
                "PATCH", path + "/status", body={"status": status}, content_type=MERGE_PATCH
            )
        finally:
            await client.close()

    # Its own thread and loop: the test session's event loop is left alone.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, patch()).result(timeout=30)


def readyz(controller: ControllerProcess) -> int | None:
    """The controller's /readyz status, or None while nothing listens yet."""
    try:
        return http("GET", f"http://127.0.0.1:{controller.port}/readyz")[0]
    except urllib.error.URLError:
        return None


def serving(
    run_controller: Callable[..., ControllerProcess], namespace: str, port: int | None = None
) -> ControllerProcess:
    """The controller, watching only the test's namespace, once it is ready."""
    controller = run_controller("--namespace", namespace, port=port)
    eventually(lambda: readyz(controller) == 200, what="the controller ready")
    return controller


def set_state(kubectl: Kubectl, namespace: str, name: str, state: str) -> None:
    """Activate, pause or archive a workflow, as `kubectl patch` would."""
    patch = json.dumps({"spec": {"state": state}})
    kubectl.run("patch", "workflow", name, "-n", namespace, "--type=merge", "-p", patch)
