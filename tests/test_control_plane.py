"""The local control plane: real API server, RBAC, garbage collection, namespace deletion, verbs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO, Cluster, Kubectl, demo_block, eventually

SCRIPT = REPO / "hack" / "control-plane.sh"


def test_objects_owned_by_a_block_are_garbage_collected(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(namespace, demo_block("owner"))
    uid = kubectl.run(
        "get", "block", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    owner_ref = {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "Block",
        "name": "owner",
        "uid": uid,
    }
    kubectl.apply(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "owned", "ownerReferences": [owner_ref]},
        },
    )
    kubectl.run("delete", "block", "owner", "-n", namespace)
    # The garbage collector discovers new CRDs periodically (~30 s), hence the generous wait.
    eventually(
        lambda: (
            kubectl.run("get", "configmap", "owned", "-n", namespace, check=False).returncode != 0
        ),
        timeout=90,
        what="the owned ConfigMap to be garbage-collected",
    )


def test_deleted_namespace_goes_away(kubectl: Kubectl) -> None:
    name = f"t-ns-deletion-{os.getpid()}"
    kubectl.run("create", "namespace", name)
    kubectl.run("create", "configmap", "x", "-n", name, "--from-literal=a=b")
    result = kubectl.run("delete", "namespace", name, "--timeout=60s")
    assert f'namespace "{name}" deleted' in result.stdout
    assert kubectl.run("get", "namespace", name, check=False).returncode != 0


def test_rbac_is_enforced_for_the_non_admin_user(cluster: Cluster, namespace: str) -> None:
    if cluster.user_kubeconfig is None:
        raise AssertionError("the local control plane always provides a non-admin user")
    user = Kubectl(cluster.kubectl.binary, cluster.user_kubeconfig)
    result = user.run("get", "blocks", "-n", namespace, check=False)
    assert result.returncode != 0
    assert "forbidden" in result.stderr
    assert 'User "blockflow-user" cannot list resource "blocks"' in result.stderr


def test_up_is_idempotent_and_verbs_report_the_running_plane(cluster: Cluster) -> None:
    assert cluster.plane is not None
    env = {**os.environ, "BLOCKFLOW_CONTROL_PLANE_DIR": str(cluster.plane.state_dir)}
    before = cluster.plane.load_state()
    up = subprocess.run(
        ["bash", str(SCRIPT), "up"], capture_output=True, text=True, env=env, check=True
    )
    assert "already running" in up.stderr
    after = cluster.plane.load_state()
    assert before is not None and after is not None and before.pids == after.pids
    out = subprocess.run(
        ["bash", str(SCRIPT), "env"], capture_output=True, text=True, env=env, check=True
    )
    assert f"export KUBECONFIG={cluster.plane.kubeconfig}" in out.stdout.splitlines()
    status = subprocess.run(
        ["bash", str(SCRIPT), "status"], capture_output=True, text=True, env=env
    )
    assert status.returncode == 0 and after.server in status.stdout
    for args, token in (([], after.admin_token), (["--user"], after.user_token)):
        printed = subprocess.run(
            ["bash", str(SCRIPT), "token", *args], capture_output=True, text=True, env=env
        )
        assert printed.returncode == 0 and printed.stdout.strip() == token


def test_a_second_control_plane_gets_its_own_ports_and_stops_cleanly(
    cluster: Cluster, tmp_path: Path
) -> None:
    assert cluster.plane is not None
    env = {**os.environ, "BLOCKFLOW_CONTROL_PLANE_DIR": str(tmp_path / "cp2")}

    def script(verb: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), verb], capture_output=True, text=True, env=env, timeout=120
        )

    try:
        assert script("up").returncode == 0
        status = script("status")
        assert status.returncode == 0
        first = cluster.plane.load_state()
        assert first is not None and first.server not in status.stdout
        second_kubeconfig = tmp_path / "cp2" / "kubeconfig"
        version = Kubectl(cluster.kubectl.binary, second_kubeconfig).run("get", "namespaces")
        assert "kube-system" in version.stdout
    finally:
        down = script("down")
    assert down.returncode == 0 and "control plane stopped" in down.stderr
    stopped = script("status")
    assert stopped.returncode == 3 and "stopped" in stopped.stdout
    assert not (tmp_path / "cp2").exists()
    # The session's own control plane is untouched.
    assert cluster.plane.is_running()
