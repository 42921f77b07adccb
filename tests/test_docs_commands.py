"""The docs' commands, run as written: README.md, docs/ and the examples' READMEs, one shell per
document, against `make demo` started as the README says — so a doc whose command stops working
fails here.

The reader is a new user on this machine: a shell without the project's virtualenv or a
KUBECONFIG, which runs `eval "$(hack/control-plane.sh env)"` first (the README's step), then
each command of the document in order. What cannot run here, what a placeholder stands for and
what never ends by itself is in tests/support/doc_rules.py, each with its reason; every other
command must exit 0, and curl must get no HTTP error.

If a documented port is taken on this machine (a `make demo` of your own), the demo gets a free
one and the commands are rewritten to it. The namespace is the documented `blockflow-demo`, so
the test refuses to start while a demo runs on the same control plane.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, Cluster, Kubectl, free_port
from tests.support.doc_commands import commands_of, outcomes, plan, report, script
from tests.support.doc_rules import DOCUMENTS, HELPERS, RULES

pytestmark = pytest.mark.slow

DEMO_NAMESPACE = "blockflow-demo"
# The ports the docs name: the controller, the example CRM, the OAuth provider, the webhook.
DOCUMENTED_PORTS = {"http": 8080, "crm": 8090, "oauth": 8091, "admission": 8443}


@dataclass
class Demo:
    ports: dict[str, int]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes]
    local: list[tuple[str, str]] = field(default_factory=list)


def _taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _reader_env() -> dict[str, str]:
    """The environment of a new user's shell: none of the test run's virtualenv, KUBECONFIG or
    Blockflow settings."""
    venv = str(REPO / ".venv")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"KUBECONFIG", "VIRTUAL_ENV", "PYTHONPATH"}
        and not (key.startswith("BLOCKFLOW_") and key != "BLOCKFLOW_CONTROL_PLANE_DIR")
    }
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if not p.startswith(venv))
    return env


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return int(answer.status) == 200
    except OSError:
        return False


def _names(kubectl: Kubectl, kind: str) -> set[str]:
    listed = kubectl.run("get", kind, "-o", "json").stdout
    return {item["metadata"]["name"] for item in json.loads(listed)["items"]}


def _untracked() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


@pytest.fixture(scope="module")
def demo(
    cluster: Cluster, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    if DEMO_NAMESPACE in _names(kubectl, "namespaces"):
        pytest.fail(
            f"namespace {DEMO_NAMESPACE} exists on the test control plane: a demo runs there "
            "(stop it and `make down`, or give the tests their own BLOCKFLOW_CONTROL_PLANE_DIR)"
        )
    namespaces, webhooks = (
        _names(kubectl, "namespaces"),
        _names(kubectl, "validatingwebhookconfigurations"),
    )
    untracked = _untracked()
    ports = {name: free_port() if _taken(port) else port for name, port in DOCUMENTED_PORTS.items()}
    local = [
        (f"127.0.0.1:{DOCUMENTED_PORTS[n]}", f"127.0.0.1:{ports[n]}")
        for n in ("http", "crm", "oauth")
        if ports[n] != DOCUMENTED_PORTS[n]
    ]
    env = _reader_env()
    if ports["http"] != DOCUMENTED_PORTS["http"]:
        env["BLOCKFLOW_HTTP_PORT"] = str(ports["http"])  # where `blockflow approve` posts
    log = tmp_path_factory.mktemp("demo") / "make-demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                "make", "--no-print-directory", "demo",
                f"BLOCKFLOW_HTTP_PORT={ports['http']}",
                f"BLOCKFLOW_ADMISSION_PORT={ports['admission']}",
                f"DEMO_CRM_PORT={ports['crm']}",
                f"DEMO_OAUTH_PORT={ports['oauth']}",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 600  # the first `make demo` may install and build
        while not _ready(ports["http"]):
            if proc.poll() is not None:
                pytest.fail(f"make demo exited {proc.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"make demo's controller not ready in 600 s:\n{log.read_text()[-4000:]}"
                )
            time.sleep(0.5)
        yield Demo(ports, env, log, proc, local)
    finally:
        try:
            # The namespaces first, while the demo's controller runs: it drains what it
            # finalizes.
            created = sorted(_names(kubectl, "namespaces") - namespaces)
            for name in created:
                kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")
            for name in created:
                kubectl.run(
                    "wait", "--for=delete", f"namespace/{name}", "--timeout=120s", timeout=130
                )
        finally:
            # Then Ctrl-C, as the README says: make's trap stops the CRM and the OAuth
            # provider; a demo left running would act on every later test's namespace.
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            for name in sorted(_names(kubectl, "validatingwebhookconfigurations") - webhooks):
                kubectl.run("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
            for path in sorted(_untracked() - untracked):
                (REPO / path).unlink(missing_ok=True)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_commands_of_the_document_run_as_written(document: str, demo: Demo) -> None:
    commands = commands_of((REPO / document).read_text(), document)
    planned = plan(commands, RULES, local=demo.local)
    helpers = HELPERS
    for old, new in demo.local:
        helpers = helpers.replace(old, new)
    done = subprocess.run(
        ["bash", "-c", script(planned, REPO, helpers=helpers)],
        env=demo.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode != 97, f'`eval "$(hack/control-plane.sh env)"` failed: {done.stderr}'
    results = outcomes(planned, done.stdout)
    failed = [result for result in results if result.problems]
    ran = len(results)
    assert ran > 0 or all(p.skipped for p in planned)
    assert not failed, (
        f"{len(failed)} of the {ran} commands of {document} that run here failed:\n\n"
        f"{report(failed)}\n\n(make demo's log: {demo.log}; the shell's stderr: "
        f"{done.stderr[-2000:]})"
    )
