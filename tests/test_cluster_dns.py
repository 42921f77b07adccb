"""Cluster DNS against the real local API server: a Service's name resolves to its ClusterIP
once it exists and is NXDOMAIN once it is deleted, in-process and as the CLI process."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.testing.cluster_dns import DnsServer, ServiceSource
from tests.conftest import REPO, Cluster, Kubectl, eventually
from tests.unit.test_cluster_dns import AAAA, NOERROR, NXDOMAIN, udp_ask


def service(name: str, *, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 80}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def json_kubeconfig(cluster: Cluster) -> dict[str, Any]:
    try:
        return dict(json.loads(cluster.kubeconfig.read_text()))
    except json.JSONDecodeError:
        pytest.skip("cluster DNS reads JSON kubeconfigs (the local control plane's), not YAML")


def answer(address: tuple[str, int], name: str, qtype: int = 1) -> tuple[int, list[str]] | None:
    try:
        return udp_ask(address, name, qtype)
    except OSError:  # not listening yet
        return None


def test_service_name_resolves_until_the_service_is_deleted(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    json_kubeconfig(cluster)
    source = ServiceSource.from_kubeconfig(cluster.kubeconfig).start()
    server = DnsServer("127.0.0.1", 0, source.lookup).start()
    try:
        kubectl.apply(namespace, service("db", headless=True), service("web"))
        ip = kubectl.run(
            "get", "service", "web", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
        ).stdout
        assert ip and ip != "None"
        web = f"web.{namespace}.svc.cluster.local"
        eventually(
            lambda: answer(server.address, web) == (NOERROR, [ip]),
            timeout=10,
            what=f"{web} to resolve to {ip}",
        )
        assert answer(server.address, web.upper()) == (NOERROR, [ip])
        assert answer(server.address, web, AAAA) == (NOERROR, [])
        # Headless Services are left unresolved; "db" was created before "web", so it is known.
        assert answer(server.address, f"db.{namespace}.svc.cluster.local") == (NXDOMAIN, [])
        assert answer(server.address, "example.com") == (NXDOMAIN, [])

        kubectl.run("delete", "service", "web", "-n", namespace)
        eventually(
            lambda: answer(server.address, web) == (NXDOMAIN, []),
            timeout=10,
            what=f"{web} to be NXDOMAIN after the Service is deleted",
        )
    finally:
        server.stop()
        source.stop()


def test_command_line_with_server_token_and_ca_files(
    cluster: Cluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    config = json_kubeconfig(cluster)
    context = config["current-context"]
    user = next(c["context"]["user"] for c in config["contexts"] if c["name"] == context)
    token = next(u["user"]["token"] for u in config["users"] if u["name"] == user)
    (entry,) = config["clusters"]
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "ca.crt").write_bytes(
        base64.b64decode(entry["cluster"]["certificate-authority-data"])
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A domain other than the default, to see --domain reach both the server and the lookup.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.testing.cluster_dns",
            "--server",
            entry["cluster"]["server"],
            "--token-file",
            str(tmp_path / "token"),
            "--ca",
            str(tmp_path / "ca.crt"),
            "--listen",
            f"127.0.0.1:{port}",
            "--domain",
            "blockflow.test",
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        kubectl.apply(namespace, service("api"))
        ip = kubectl.run(
            "get", "service", "api", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
        ).stdout
        name = f"api.{namespace}.svc.blockflow.test"
        eventually(
            lambda: proc.poll() is not None or answer(("127.0.0.1", port), name) == (NOERROR, [ip]),
            timeout=15,
            what=f"{name} to resolve to {ip}",
        )
        assert proc.poll() is None, "the DNS process exited early"
        cluster_local = f"api.{namespace}.svc.cluster.local"
        assert answer(("127.0.0.1", port), cluster_local) == (NXDOMAIN, [])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert proc.returncode == 0, output
    assert f"serving blockflow.test on 127.0.0.1:{port}" in output
