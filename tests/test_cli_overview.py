"""`blockflow status|events|sync|drain|approve|reject` against the real API server.

The CLI runs as a real subprocess with the test cluster's kubeconfig; the controller runs
where a verb needs it (status of a ready Block, an approval answered through its hooks).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import yaml

from tests.conftest import ControllerProcess, Kubectl, blockflow, eventually
from tests.test_cli_workflows import assert_clean_error, cli

RUNS = "workflowruns.blockflow.dev"


def cli_all(kubectl: Kubectl, *calls: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Independent CLI calls at once (each is a Python start-up: keep the tests fast)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda args: cli(kubectl, *args), calls))


def ready(controller: ControllerProcess) -> ControllerProcess:
    def serving() -> bool:
        try:
            url = f"http://127.0.0.1:{controller.port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    eventually(serving, what="readyz")
    return controller


def get(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kubectl.json("get", kind, name, "-n", namespace)
    return result


def demo(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        namespace,
        blockflow("App", "demo", {"handler": {"python": "demo"}}),
        blockflow(
            "Block",
            "x",
            {"app": "demo", "type": "bucket", "config": {"name": "x", "provisionSeconds": 0}},
        ),
    )


def test_status_shows_apps_blocks_and_signal_names_never_sensitive_values(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    demo(kubectl, namespace)
    run_controller("--namespace", namespace)

    def block_ready() -> dict[str, Any] | None:
        block = get(kubectl, namespace, "blocks.blockflow.dev", "x")
        status = block.get("status") or {}
        return status if (status.get("lifecycle") or {}).get("status") == "ready" else None

    status = eventually(block_ready, what="block x ready")
    bucket_id = status["signals"]["bucketId"]

    result, as_json, as_yaml = cli_all(
        kubectl,
        ("status", "-n", namespace),
        ("status", "-n", namespace, "-o", "json"),
        ("status", "-n", namespace, "-o", "yaml"),
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "App demo" in text and "Block x (bucket) ready" in text, text
    assert "Bucket x is ready" in text
    assert f"bucketId={bucket_id}" in text
    assert "accessKey (sensitive)" in text

    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    (app,) = data["apps"]
    (block,) = app["blocks"]
    assert block["name"] == "x" and block["status"] == "ready"
    assert block["sensitiveSignals"] == ["accessKey"]
    assert "accessKey" not in block["signals"]
    assert yaml.safe_load(as_yaml.stdout) == data

    # The controller posts events on transitions: the Block's Ready is among them.
    def ready_event() -> list[dict[str, Any]] | None:
        listed = cli(kubectl, "events", "-n", namespace, "--for", "Block/x", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        found: list[dict[str, Any]] = json.loads(listed.stdout)["events"]
        return found if any(e["reason"] == "Ready" for e in found) else None

    found = eventually(ready_event, what="a Ready event")
    assert all(e["object"] == "block/x" for e in found)
    table = cli(kubectl, "events", "-n", namespace)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["TIME", "TYPE", "OBJECT", "REASON", "MESSAGE"]
    assert "block/x" in table.stdout and "Ready" in table.stdout


def test_approve_a_pending_approval_listed_by_status(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    controller = run_controller("--namespace", namespace)
    kubectl.apply(
        namespace,
        blockflow(
            "Workflow",
            "boss",
            {
                "state": "Active",
                "trigger": {"webhook": {}},
                "steps": [{"name": "boss", "uses": {"type": "approval"}}],
            },
        ),
    )
    ready(controller)
    run = {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "r1"},
        "spec": {"workflowRef": {"name": "boss"}},
    }
    kubectl.run("create", "-n", namespace, "-f", "-", input=json.dumps(run))
    eventually(
        lambda: (get(kubectl, namespace, RUNS, "r1").get("status") or {}).get("state") == "waiting",
        what="run waiting",
    )

    as_json, as_text, wrong = cli_all(
        kubectl,
        ("status", "-n", namespace, "-o", "json"),
        ("status", "-n", namespace),
        ("approve", "r1", "--step", "nope", "-n", namespace),
    )
    data = json.loads(as_json.stdout)
    path = f"/hooks/approval:{namespace}:r1:boss"
    (approval,) = data["pendingApprovals"]
    assert approval["run"] == "r1" and approval["step"] == "boss"
    assert approval["workflow"] == "boss" and approval["hookPath"] == path
    (workflow,) = data["workflows"]
    assert [r["name"] for r in workflow["activeRuns"]] == ["r1"]
    text = as_text.stdout
    assert "Pending approvals:" in text and path in text and "Workflow boss" in text
    # A wrong step is named; the run stays waiting.
    assert_clean_error(wrong, 1, "nope", "boss")

    url = f"http://127.0.0.1:{controller.port}"
    approved = cli(kubectl, "approve", "r1", "--by", "ada", "-n", namespace, "--url", url)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == "workflowrun.blockflow.dev/r1 step boss approved"

    def completed() -> dict[str, Any] | None:
        current = get(kubectl, namespace, RUNS, "r1")
        return current if current.get("status", {}).get("state") == "completed" else None

    done = eventually(completed, what="run completed")
    (record,) = done["status"]["steps"]
    assert record["outcome"]["id"] == "approved"
    assert record["outcome"]["data"]["by"] == "ada"

    # Not waiting any more: a clear error, exit 1.
    again = cli(kubectl, "reject", "r1", "-n", namespace, "--url", url)
    assert_clean_error(again, 1, "not waiting for an approval", "completed")


def test_sync_and_drain_set_the_request_annotations(kubectl: Kubectl, namespace: str) -> None:
    demo(kubectl, namespace)
    result = cli(kubectl, "sync", "BLOCKS/x", "-n", namespace)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "block.blockflow.dev/x sync requested"
    annotations = get(kubectl, namespace, "blocks.blockflow.dev", "x")["metadata"]["annotations"]
    when = datetime.fromisoformat(annotations["blockflow.dev/requested-sync-at"])
    assert when.tzinfo is not None

    drained = cli(kubectl, "drain", "app/demo", "-n", namespace)
    assert drained.returncode == 0, drained.stderr
    assert drained.stdout.strip() == "app.blockflow.dev/demo drain requested"
    app = get(kubectl, namespace, "apps.blockflow.dev", "demo")
    assert "blockflow.dev/requested-drain-at" in app["metadata"]["annotations"]

    assert_clean_error(cli(kubectl, "sync", "block/nope", "-n", namespace), 1, "nope")


def test_usage_errors_exit_2(kubectl: Kubectl, namespace: str) -> None:
    usage = (
        ("sync", "x"),
        ("sync", "pod/x"),
        ("drain",),
        ("status", "-o", "toml"),
        ("events", "--for", "thing"),
        ("approve",),
        ("approve", "r1", "--url", "ftp://x", "-n", namespace),
    )
    *results, missing, empty = cli_all(
        kubectl, *usage, ("approve", "nope", "-n", namespace), ("status", "-n", namespace)
    )
    for args, result in zip(usage, results, strict=True):
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert_clean_error(missing, 1, "workflowrun nope not found")
    assert empty.returncode == 0 and "Apps: <none>" in empty.stdout
