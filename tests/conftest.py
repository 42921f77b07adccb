"""Fixtures: one real control plane per session, CRDs installed, a namespace per test,
and a helper that runs the real controller process against it.

Set BLOCKFLOW_TEST_KUBECONFIG to run the cluster tests against an existing cluster
instead (opt-in; the default is always the local control plane).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller.kube import decoding
from controller.testing.control_plane import ControlPlane

REPO = Path(__file__).resolve().parents[1]
CRDS_DIR = REPO / "crds"
EXAMPLES_DIR = REPO / "examples"


# -- reporting -------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: nothing may be counted as passing that did not run."""
    if os.environ.get("BLOCKFLOW_FAIL_ON_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        print(f"\nBLOCKFLOW_FAIL_ON_SKIP: {skipped} test(s) skipped", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


# -- cluster ---------------------------------------------------------------------------------


@dataclass
class Kubectl:
    """kubectl bound to one kubeconfig."""

    binary: str
    kubeconfig: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, namespace: str, *documents: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        """`kubectl apply` of manifests given as dicts (JSON is valid YAML)."""
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(documents)})
        return self.run("apply", "-n", namespace, "-f", "-", input=text)


def blockflow(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A Blockflow manifest."""
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def eventually(check: Callable[[], Any], *, timeout: float = 30, what: str = "") -> Any:
    """Poll `check` until it returns something truthy (returned), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or check!r}; last: {last!r}"
    )


def demo_block(name: str) -> dict[str, Any]:
    return blockflow("Block", name, {"app": "demo", "type": "bucket"})


@dataclass
class Cluster:
    kubeconfig: Path
    user_kubeconfig: Path | None
    kubectl: Kubectl
    plane: ControlPlane | None = None


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    existing = os.environ.get("BLOCKFLOW_TEST_KUBECONFIG")
    if existing:
        on_path = shutil.which("kubectl")
        assert on_path, "BLOCKFLOW_TEST_KUBECONFIG needs kubectl on PATH"
        yield Cluster(Path(existing), None, Kubectl(on_path, Path(existing)))
        return
    plane = ControlPlane()
    state, started = plane.up()
    kubectl = Kubectl(state.binaries["kubectl"], plane.kubeconfig)
    yield Cluster(plane.kubeconfig, plane.user_kubeconfig, kubectl, plane)
    if started and os.environ.get("BLOCKFLOW_KEEP_CONTROL_PLANE") != "1":
        plane.down(quiet=True)


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Kubectl:
    """kubectl with the CRDs installed and established."""
    cluster.kubectl.run("apply", "-f", str(CRDS_DIR))
    cluster.kubectl.run(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{p.stem}" for p in sorted(CRDS_DIR.glob("*.yaml"))),
    )
    return cluster.kubectl


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{secrets.token_hex(3)}"
    kubectl.run("create", "namespace", name)
    yield name
    release_finalizers(kubectl, name)
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def release_finalizers(kubectl: Kubectl, namespace: str) -> None:
    """The controller has stopped by now: drop its finalizers so the namespace can go."""
    listed = kubectl.run("get", "blockflow", "-n", namespace, "-o", "json", check=False)
    if listed.returncode != 0:
        return
    for item in decoding.loads(listed.stdout).get("items", []):  # objects of any depth
        if item["metadata"].get("finalizers"):
            kind, name = item["kind"].lower(), item["metadata"]["name"]
            kubectl.run(
                "patch",
                kind,
                name,
                "-n",
                namespace,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )


# -- the controller process ------------------------------------------------------------------


@dataclass
class ControllerProcess:
    """`blockflow controller` in a subprocess; its JSON log lines are collected for assertions."""

    proc: subprocess.Popen[str]
    port: int = 0
    lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    def start_reading(self) -> None:
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _output_closed(self) -> bool:
        return self._reader is not None and not self._reader.is_alive()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30, what: str = ""
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for record in self.records():
                    if predicate(record):
                        return record
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._output_closed():
                    raise AssertionError(
                        f"no log record matching {what or predicate!r} within {timeout}s; "
                        f"controller exit code {self.proc.poll()}; last lines:\n"
                        + "\n".join(self.lines[-30:])
                    )
                self._cond.wait(timeout=min(remaining, 0.5))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"controller did not stop within {timeout}s of signal {sig}"
            ) from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_controller(
    cluster: Cluster,
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    module: str = "controller",
) -> ControllerProcess:
    """The real controller (`python -m controller controller`) against the test cluster, its
    output read in the background; the caller stops it. ``module`` runs another entry
    point with the same arguments (tests.support.crashing_controller)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "controller", "--log-format", "json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "BLOCKFLOW_HTTP_PORT": str(port),
            **(env or {}),
        },
    )
    controller = ControllerProcess(proc, port)
    controller.start_reading()
    return controller


@pytest.fixture
def run_controller(
    cluster: Cluster, kubectl: Kubectl, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ControllerProcess]]:
    """Start the real controller (`python -m controller controller`) against the test cluster."""
    started: list[ControllerProcess] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
        module: str = "controller",
    ) -> ControllerProcess:
        controller = start_controller(cluster, *args, env=env, port=port, module=module)
        started.append(controller)
        return controller

    yield start
    for controller in started:
        if controller.proc.poll() is None:
            controller.stop(timeout=20)
        if _failed(request):
            print(f"\n----- controller log (pid {controller.proc.pid}) -----")
            print("\n".join(controller.lines[-200:]))


@pytest.fixture
def service() -> Iterator[Any]:
    """A step/trigger handler and effects server on loopback (tests/support/step_service.py)."""
    from tests.support.step_service import StepService

    server = StepService().start()
    yield server
    server.stop()


# -- PostgreSQL --------------------------------------------------------------------------------

from tests.support.pg_fixture import postgres  # noqa: E402, F401  (a throwaway server per session)
