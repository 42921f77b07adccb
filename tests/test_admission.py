"""Admission: `kubectl apply` of invalid Blockflow objects is refused by the controller's
validating webhook, which the real API server calls over HTTPS on loopback.

Each test registers the webhook the way `make demo` does (`blockflow admission local`), scoped
to its own namespace by a label and with failurePolicy Fail, then applies manifests with
kubectl and reads kubectl's error text.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    Cluster,
    ControllerProcess,
    Kubectl,
    blockflow,
    eventually,
    free_port,
)
from tests.support.workflow_helpers import readyz, wait_phase, workflow

DENIED = 'admission webhook "validate.blockflow.dev" denied the request: '


@pytest.fixture
def admitted(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    tmp_path: Path,
) -> Iterator[ControllerProcess]:
    """The controller serving the webhook, registered for this test's namespace only."""
    port, name = free_port(), f"blockflow-{namespace}"
    label = f"blockflow.dev/admission-test={namespace}"
    registered = subprocess.run(
        [
            sys.executable, "-m", "controller", "admission", "local", "--port", str(port),
            "--dir", str(tmp_path / "admission"), "--name", name, "--failure-policy", "Fail",
            "--namespace-label", label,
        ],
        env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert f"BLOCKFLOW_ADMISSION_PORT={port}" in registered.stdout
    kubectl.run("label", "namespace", namespace, label)
    controller = run_controller(
        "--namespace",
        namespace,
        env={
            "BLOCKFLOW_ADMISSION_PORT": str(port),
            "BLOCKFLOW_ADMISSION_CERT_DIR": str(tmp_path / "admission"),
        },
    )
    eventually(lambda: readyz(controller) == 200, what="the controller ready")
    yield controller
    kubectl.run("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")


def refused(kubectl: Kubectl, namespace: str, *documents: dict[str, Any]) -> str:
    """Apply; assert kubectl failed because the webhook said no; the webhook's message."""
    result = _apply(kubectl, namespace, documents)
    assert result.returncode != 0, f"the apply was accepted: {result.stdout}"
    assert DENIED in result.stderr, result.stderr
    return result.stderr.split(DENIED, 1)[1].strip()


def _apply(
    kubectl: Kubectl, namespace: str, documents: tuple[dict[str, Any], ...]
) -> subprocess.CompletedProcess[str]:
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(documents)})
    return kubectl.run("apply", "-n", namespace, "-f", "-", input=text, check=False)


def exists(kubectl: Kubectl, namespace: str, ref: str) -> bool:
    return kubectl.run("get", ref, "-n", namespace, check=False).returncode == 0


def test_an_invalid_workflow_cannot_be_activated_and_each_field_is_named(
    kubectl: Kubectl, namespace: str, admitted: ControllerProcess
) -> None:
    spec = {
        "trigger": {"schedule": {"cron": "0 25 * * *", "timezone": "Mars/Olympus"}},
        "steps": [{"name": "post", "uses": {"type": "http"}, "with": {"url": "${{ event.( }}"}}],
    }
    message = refused(kubectl, namespace, workflow("nightly", spec))
    assert "spec.trigger.schedule.cron: field 2 (hour): 25 is out of range 0-23" in message
    cyclic = {
        "state": "Active",
        "steps": [
            {"name": "a", "needs": ["b"], "uses": {"type": "sleep"}, "with": {"seconds": 0}},
            {"name": "b", "needs": ["a"], "uses": {"type": "sleep"}, "with": {"seconds": 0}},
            {"name": "c", "needs": ["z"], "if": "${{ x == }}", "uses": {"type": "sleep"}},
        ],
    }
    graph = refused(kubectl, namespace, workflow("loops", cyclic))
    assert "spec.steps[2].needs: no step named z in spec.steps" in graph
    assert "spec.steps[2].if: ${{ x == }} does not compile" in graph
    assert "spec.trigger.schedule.timezone: unknown time zone 'Mars/Olympus'" in message
    assert "spec.steps[0].with.url: ${{ event.( }} does not compile" in message
    assert not exists(kubectl, namespace, "workflow/nightly"), "nothing is half-created"

    # A draft may be incomplete; activating it is what is refused, and it stays a draft.
    draft = workflow("nightly", {**spec, "state": "Draft"})
    assert _apply(kubectl, namespace, (draft,)).returncode == 0
    activate = kubectl.run(
        "patch", "workflow", "nightly", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"state":"Active"}}', check=False,
    )  # fmt: skip
    assert activate.returncode != 0 and DENIED in activate.stderr, activate.stderr
    got = kubectl.json("get", "workflow", "nightly", "-n", namespace)
    assert got["spec"]["state"] == "Draft"

    # Fixed, it activates.
    fixed = workflow(
        "nightly",
        {
            "trigger": {"schedule": {"cron": "0 23 * * *", "timezone": "Europe/Berlin"}},
            "steps": [{"name": "post", "uses": {"type": "sleep"}, "with": {"seconds": 1}}],
        },
    )
    assert _apply(kubectl, namespace, (fixed,)).returncode == 0
    wait_phase(kubectl, namespace, "nightly", "Activated")


def test_archived_is_final_at_apply_time(
    kubectl: Kubectl, namespace: str, admitted: ControllerProcess
) -> None:
    spec = {"trigger": {"webhook": {}}, "steps": [{"name": "a", "uses": {"type": "sleep"}}]}
    assert (
        _apply(kubectl, namespace, (workflow("old", {**spec, "state": "Archived"}),)).returncode
        == 0
    )
    wait_phase(kubectl, namespace, "old", "Archived")
    message = refused(kubectl, namespace, workflow("old", spec))
    assert message.startswith("spec.state:"), message
    assert "Archived" in message


def test_block_types_fixed_fields_and_signal_refs_are_checked(
    kubectl: Kubectl, namespace: str, admitted: ControllerProcess
) -> None:
    kubectl.apply(namespace, blockflow("App", "scripted", {"handler": {"python": "scripted"}}))
    kubectl.run("wait", "--for=condition=Ready", "--timeout=60s", "app/scripted", "-n", namespace)

    message = refused(
        kubectl, namespace, blockflow("Block", "b", {"app": "scripted", "type": "bukket"})
    )
    assert message == "spec.type: App scripted offers no block type 'bukket' (offered: scripted)"

    block = blockflow(
        "Block", "b", {"app": "scripted", "type": "scripted", "config": {"fixedName": "a"}}
    )
    assert _apply(kubectl, namespace, (block,)).returncode == 0
    kubectl.run("wait", "--for=condition=Ready", "--timeout=60s", "block/b", "-n", namespace)
    renamed = blockflow(
        "Block", "b", {"app": "scripted", "type": "scripted", "config": {"fixedName": "z"}}
    )
    message = refused(kubectl, namespace, renamed)
    assert message.startswith("spec.config.fixedName is fixed: it was 'a' and cannot change")
    got = kubectl.json("get", "block", "b", "-n", namespace)
    assert got["spec"]["config"] == {"fixedName": "a"}, "the refused change left nothing behind"

    malformed = {"signalRef": {"block": "b"}}
    message = refused(
        kubectl,
        namespace,
        blockflow(
            "Block", "c", {"app": "scripted", "type": "scripted", "config": {"k": malformed}}
        ),
    )
    assert message.startswith("spec.config.k.signalRef.signal: required"), message
    elsewhere = {"signalRef": {"block": "b", "signal": "x", "namespace": "kube-system"}}
    message = refused(
        kubectl,
        namespace,
        blockflow("App", "other", {"handler": {"python": "noop"}, "config": {"k": elsewhere}}),
    )
    assert message.startswith(
        "spec.config.k.signalRef.namespace: signals can only be referenced"
    ), message

    # The controller's own writes (finalizers, deletion) pass: deleting works.
    kubectl.run("delete", "block", "b", "-n", namespace, "--timeout=60s")


def test_objects_nested_deeper_than_the_controller_reads_are_refused_naming_the_field(
    kubectl: Kubectl, namespace: str, admitted: ControllerProcess
) -> None:
    app = blockflow("App", "deep", {"handler": {"python": "demo"}, "config": {"x": "DEEP"}})
    run = blockflow("WorkflowRun", "deep", {"workflowRef": {"name": "w"}, "input": {"x": "DEEP"}})
    for doc, field in ((app, "spec.config.x"), (run, "spec.input.x")):
        text = json.dumps(doc).replace('"DEEP"', "[" * 3000 + "1" + "]" * 3000)
        result = kubectl.run("create", "-n", namespace, "-f", "-", input=text, check=False)
        assert result.returncode != 0 and DENIED in result.stderr, result.stderr
        message = result.stderr.split(DENIED, 1)[1]
        assert message.startswith(field) and "nested deeper than 80 levels" in message, message
    shallow = blockflow("WorkflowRun", "ok", {"workflowRef": {"name": "w"}, "input": {"a": [1]}})
    assert _apply(kubectl, namespace, (shallow,)).returncode == 0
