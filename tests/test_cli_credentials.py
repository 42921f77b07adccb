"""The CLI's credentials and cost against the real API server: exec credential plugins and
token files as kubectl runs them, and a read command that loads none of the controller's
libraries."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from controller.pki import openssl
from tests.conftest import Cluster, Kubectl
from tests.test_cli_kubectl_like import create_runs
from tests.test_cli_workflows import assert_clean_error
from tests.unit.test_cli_client import HEAVY


def with_user(cluster: Cluster, tmp_path: Path, user: dict[str, Any]) -> Path:
    """The test cluster's kubeconfig with its user's credentials replaced by ``user``."""
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"][0]["user"] = user
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def admin_token(cluster: Cluster) -> str:
    return str(json.loads(cluster.kubeconfig.read_text())["users"][0]["user"]["token"])


def blockflow(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", *args, "--kubeconfig", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_exec_plugin_and_token_file(
    cluster: Cluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    create_runs(kubectl, namespace, "r1")
    plugin = tmp_path / "credential-helper"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": admin_token(cluster)},
    }
    plugin.write_text(
        "#!/bin/sh\n"
        '[ -n "$KUBERNETES_EXEC_INFO" ] || { echo "no exec info" >&2; exit 3; }\n'
        f'[ "$1" = "--cluster=local" ] || {{ echo "args: $*" >&2; exit 4; }}\n'
        f"echo '{json.dumps(credential)}'\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": str(plugin),
            "args": ["--cluster=local"],
        }
    }
    listed = blockflow(with_user(cluster, tmp_path, exec_user), "run", "list", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[0] == "r1"

    failing = {"exec": {**exec_user["exec"], "args": ["--cluster=elsewhere"]}}
    refused = blockflow(with_user(cluster, tmp_path, failing), "run", "list", "-n", namespace)
    assert_clean_error(
        refused, 1, "exec credential plugin", "failed (4)", "args: --cluster=elsewhere"
    )

    token_file = tmp_path / "token"
    token_file.write_text(admin_token(cluster) + "\n")
    by_file = blockflow(
        with_user(cluster, tmp_path, {"tokenFile": "token"}),  # relative to the kubeconfig
        "run",
        "get",
        "r1",
        "-n",
        namespace,
        "-o",
        "name",
    )
    assert by_file.returncode == 0, by_file.stderr
    assert by_file.stdout == "workflowrun.blockflow.dev/r1\n"

    token_file.write_text("not-a-token\n")
    unauthorized = blockflow(
        with_user(cluster, tmp_path, {"tokenFile": str(token_file)}), "run", "list", "-n", namespace
    )
    assert_clean_error(unauthorized, 1, "Error from server (Unauthorized)")


def test_a_read_command_against_the_cluster_loads_no_heavy_module(
    kubectl: Kubectl, namespace: str
) -> None:
    create_runs(kubectl, namespace, "r1")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "controller", "run", "list", "-n", namespace],
        capture_output=True,
        text=True,
        env=kubectl.env(),
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and "r1" in done.stdout, done.stderr
    loaded = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert loaded & HEAVY == set()


def test_client_certificates_inline_and_as_files(
    cluster: Cluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    if cluster.plane is None:
        pytest.skip("needs the local control plane's CA to sign a client certificate")
    create_runs(kubectl, namespace, "r1")
    pki = cluster.plane.state_dir / "pki"
    key, csr, cert = tmp_path / "user.key", tmp_path / "user.csr", tmp_path / "user.crt"
    openssl("genrsa", "-out", str(key), "2048")
    openssl(
        "req",
        "-new",
        "-key",
        str(key),
        "-subj",
        "/O=system:masters/CN=cert-admin",
        "-out",
        str(csr),
    )
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
        "-CAcreateserial", "-CAserial", str(tmp_path / "ca.srl"), "-days", "1", "-out", str(cert),
    )  # fmt: skip
    inline = {
        "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
    }
    files = {"client-certificate": "user.crt", "client-key": str(key)}
    for user in (inline, files):
        listed = blockflow(with_user(cluster, tmp_path, user), "run", "list", "-n", namespace)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[1].split()[0] == "r1"


class ConnectProxy:
    """An HTTP proxy that tunnels CONNECT to loopback and remembers what it was asked."""

    def __init__(self, answer: int = 200) -> None:
        self.answer = answer
        self.requests: list[str] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = client.recv(1)
            if not byte:
                client.close()
                return
            head += byte
        self.requests.append(head.decode())
        target = head.split(b" ")[1].decode()
        if self.answer != 200:
            client.sendall(f"HTTP/1.1 {self.answer} Forbidden\r\n\r\n".encode())
            client.close()
            return
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


def test_proxies_as_kubectl_uses_them(
    cluster: Cluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    create_runs(kubectl, namespace, "r1")
    proxy, refusing = ConnectProxy(), ConnectProxy(answer=403)
    try:
        config = json.loads(cluster.kubeconfig.read_text())
        server = config["clusters"][0]["cluster"]["server"]
        config["clusters"][0]["cluster"]["proxy-url"] = (
            f"http://ada:s%40cret@127.0.0.1:{proxy.port}"
        )
        path = tmp_path / "kubeconfig"
        path.write_text(json.dumps(config))
        listed = blockflow(path, "run", "list", "-n", namespace, "-o", "name")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == "workflowrun.blockflow.dev/r1\n"
        (asked,) = proxy.requests
        authority = server.split("://", 1)[1]
        assert asked.startswith(f"CONNECT {authority} HTTP/1.1\r\n")
        assert f"Proxy-Authorization: Basic {base64.b64encode(b'ada:s@cret').decode()}" in asked

        config["clusters"][0]["cluster"]["proxy-url"] = f"http://127.0.0.1:{refusing.port}"
        path.write_text(json.dumps(config))
        refused = blockflow(path, "run", "list", "-n", namespace)
        assert_clean_error(refused, 1, "cannot reach the API server", "answered 403 Forbidden")

        # $HTTPS_PROXY is not used for a loopback API server (Go's rule, so kubectl's too).
        env = {**kubectl.env(), "HTTPS_PROXY": f"http://127.0.0.1:{refusing.port}"}
        direct = subprocess.run(
            [sys.executable, "-m", "controller", "run", "list", "-n", namespace],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert direct.returncode == 0, direct.stderr
        assert len(refusing.requests) == 1
    finally:
        proxy.close()
        refusing.close()
