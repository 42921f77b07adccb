"""Fixtures for tests that run Pods: a local control plane with a node (its own state directory,
so it never disturbs the plane the other tests use), the images built from this checkout and
loaded into the node, and the chart installed with Helm's Go library.

The node needs root and the packages of `hack/install-deps.sh --node`. At the end of the session
the node is taken down (unless it was running before, or BLOCKFLOW_KEEP_CONTROL_PLANE=1) and
anything it left behind — processes, mounts, the bridge, iptables rules — fails the session.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from controller.testing.control_plane import ControlPlane
from tests.conftest import CRDS_DIR, REPO, Kubectl, eventually, release_finalizers

NODE_PLANE_DIR = Path(os.environ.get("BLOCKFLOW_NODE_PLANE_DIR", REPO / ".local" / "node-plane"))
CHART = REPO / "charts" / "blockflow"
IMAGE_REPOSITORY, IMAGE_TAG = "localhost/blockflow", "dev"
HANDLER_IMAGE = "localhost/storage-handler:dev"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/node/" in str(item.path):
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.slow)


@dataclass
class NodeCluster:
    plane: ControlPlane
    kubectl: Kubectl

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[NodeCluster]:
    plane = ControlPlane(NODE_PLANE_DIR)
    state, started = plane.up(node=True)
    env = {**os.environ, "BLOCKFLOW_CONTROL_PLANE_DIR": str(plane.state_dir)}
    built = subprocess.run(
        ["make", "--no-print-directory", "node-images"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, f"make node-images failed:\n{built.stdout}\n{built.stderr}"
    kubectl = Kubectl(state.binaries["kubectl"], plane.kubeconfig)
    kubectl.run("apply", "-f", str(CRDS_DIR))
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR))
    yield NodeCluster(plane, kubectl)
    if started and os.environ.get("BLOCKFLOW_KEEP_CONTROL_PLANE") != "1":
        plane.down(quiet=True)  # raises, naming what the node left behind


@pytest.fixture
def nkubectl(node_cluster: NodeCluster) -> Kubectl:
    return node_cluster.kubectl


def make_namespace(kubectl: Kubectl, hint: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:30].strip("-")
    name = f"n-{base}-{secrets.token_hex(3)}"
    kubectl.run("create", "namespace", name)
    return name


def drop_namespace(kubectl: Kubectl, name: str) -> None:
    release_finalizers(kubectl, name)
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def nnamespace(nkubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the node's plane for one test."""
    name = make_namespace(nkubectl, request.node.name)
    yield name
    drop_namespace(nkubectl, name)


def image_values(**extra: Any) -> dict[str, Any]:
    """Chart values for the image built from this checkout (it is in the node, never pulled)."""
    return {
        "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
        **extra,
    }


def helm_config(cluster: NodeCluster, namespace: str) -> helm.Config:
    return helm.Config(kubeconfig_path=str(cluster.kubeconfig), namespace=namespace)


def pods(kubectl: Kubectl, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "pods", "-n", namespace, "-l", selector)[
        "items"
    ]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return bool(condition["status"] == "True")
    return False


def leader_pod(kubectl: Kubectl, namespace: str, selector: str) -> dict[str, Any] | None:
    """The one Ready Pod labelled as the leader, when there is exactly one."""
    leaders = [
        p
        for p in pods(kubectl, namespace, selector)
        if p["metadata"].get("labels", {}).get("blockflow.dev/leader") == "true" and is_ready(p)
    ]
    return leaders[0] if len(leaders) == 1 else None


def run_in_pod(
    kubectl: Kubectl, namespace: str, pod: str, code: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Python code run inside a Pod with `kubectl exec`."""
    return kubectl.run(
        "exec", "-n", namespace, pod, "--", "python3", "-c", code, timeout=timeout, check=False
    )


def python_job(code: str) -> dict[str, Any]:
    """A Job spec (with `metadata?`, `spec`, as the kubernetes.job step takes it) whose one Pod
    runs Python code in the controller's image, never retried."""
    return {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": f"{IMAGE_REPOSITORY}:{IMAGE_TAG}",
                            "imagePullPolicy": "Never",
                            "command": ["python3", "-c", code],
                        }
                    ],
                }
            },
        }
    }


def toolbox(kubectl: Kubectl, namespace: str, name: str = "toolbox") -> str:
    """A long-running Pod from the controller's image, to run probes from inside the cluster."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
            "containers": [
                {
                    "name": "main",
                    "image": f"{IMAGE_REPOSITORY}:{IMAGE_TAG}",
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", "import time; time.sleep(86400)"],
                    "securityContext": {"readOnlyRootFilesystem": True},
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }
    kubectl.apply(namespace, pod)
    kubectl.run("wait", "--for=condition=Ready", f"pod/{name}", "-n", namespace, "--timeout=90s")
    return name


__all__ = ["eventually"]
