"""The chart installed into the real API server with Helm's Go library (helm-python-sdk),
upgraded and uninstalled; what its ServiceAccount may do, asked of the API server with
`kubectl auth can-i --as`. (There are no nodes: the Pod never runs; the objects are real.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import helm_python as helm
import pytest

from tests.conftest import Cluster, Kubectl

CHART = str(Path(__file__).resolve().parents[1] / "charts" / "blockflow")


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[tuple[helm.Config, str]]:
    name = "bf-" + namespace[-6:]
    with helm.Config(kubeconfig_path=str(cluster.kubeconfig), namespace=namespace) as cfg:
        yield cfg, name
        cfg.uninstall(name, ignore_not_found=True)


def test_install_grants_what_the_controller_needs_and_nothing_else(
    kubectl: Kubectl, namespace: str, release: tuple[helm.Config, str]
) -> None:
    cfg, name = release
    installed = cfg.install(CHART, name, {}, namespace=namespace)
    assert (installed["revision"], installed["status"]) == (1, "deployed")
    fullname = f"{name}-blockflow"
    for kind in ("deployment", "serviceaccount", "service", "poddisruptionbudget", "role"):
        kubectl.run(
            "get", kind, fullname if kind != "role" else f"{fullname}-self", "-n", namespace
        )
    kubectl.run("get", "clusterrole", fullname)

    account = f"system:serviceaccount:{namespace}:{fullname}"
    elsewhere = "some-team"

    def can(*args: str) -> bool:
        result = kubectl.run("auth", "can-i", *args, f"--as={account}", check=False)
        return result.stdout.strip() == "yes"

    allowed = [
        ("watch", "workflowruns.blockflow.dev", "-n", elsewhere),
        ("create", "workflowruns.blockflow.dev", "-n", elsewhere),
        ("delete", "workflowruns.blockflow.dev", "-n", elsewhere),
        ("patch", "blocks.blockflow.dev", "--subresource=status", "-n", elsewhere),
        ("patch", "workflows.blockflow.dev", "-n", elsewhere),
        ("get", "secrets", "-n", elsewhere),
        ("create", "secrets", "-n", elsewhere),
        ("create", "events", "-n", elsewhere),
        ("create", "jobs.batch", "-n", elsewhere),
        ("update", "leases.coordination.k8s.io", "-n", namespace),
        # The web page: who a token is, and what that person may do.
        ("create", "tokenreviews.authentication.k8s.io"),
        ("create", "subjectaccessreviews.authorization.k8s.io"),
    ]
    refused = [
        ("list", "secrets", "-n", elsewhere),
        ("watch", "secrets", "-n", elsewhere),
        ("delete", "secrets", "-n", elsewhere),
        ("delete", "namespaces"),
        ("create", "pods", "-n", elsewhere),
        ("delete", "workflows.blockflow.dev", "-n", elsewhere),
        ("update", "clusterroles.rbac.authorization.k8s.io"),
        ("get", "nodes"),
        ("update", "leases.coordination.k8s.io", "-n", elsewhere),
    ]
    assert [a for a in allowed if not can(*a)] == []
    assert [r for r in refused if can(*r)] == []

    # The admission webhook: registered with the CA of the Secret the chart made.
    webhook = f"{fullname}-{namespace}"[:63].rstrip("-")  # cluster-scoped: one per release
    secret = kubectl.json("get", "secret", f"{fullname}-admission", "-n", namespace)
    registered = kubectl.json("get", "validatingwebhookconfiguration", webhook)
    (hook,) = registered["webhooks"]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert hook["clientConfig"]["service"]["name"] == fullname

    upgraded = cfg.upgrade(CHART, name, {"logLevel": "DEBUG"}, namespace=namespace)
    assert upgraded["revision"] == 2
    deployment = kubectl.json("get", "deployment", fullname, "-n", namespace)
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["BLOCKFLOW_LOG_LEVEL"] == "DEBUG"
    # An upgrade keeps the certificate: replicas still serving it stay trusted.
    kept = kubectl.json("get", "secret", f"{fullname}-admission", "-n", namespace)
    assert kept["data"] == secret["data"]
    (hook,) = kubectl.json("get", "validatingwebhookconfiguration", webhook)["webhooks"]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]

    cfg.uninstall(name)
    gone = kubectl.run("get", "clusterrole", fullname, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    gone = kubectl.run("get", "validatingwebhookconfiguration", webhook, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert kubectl.run("get", "deployment", fullname, "-n", namespace, check=False).returncode != 0
