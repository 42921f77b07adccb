"""`blockflow workflow ...` and `blockflow run get|list|stop` against the real API server.

These verbs only read and edit API objects, so no controller runs here: the tests play the
controller's part themselves where needed (a run's status, a workflow's signals Secret).
The CLI always runs as a real subprocess, the way a user runs it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from lightkube import KubeConfig

from controller.kube.connection import connection_info
from controller.kube.rest import MERGE_PATCH, RestClient
from controller.workflows.naming import WORKFLOW_LABEL, workflow_secret_name
from tests.conftest import Cluster, Kubectl, blockflow, eventually

VENV_BIN = Path(sys.prefix) / "bin"
RUNS = "workflowruns.blockflow.dev"


def minimal_workflow(name: str, state: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "trigger": {"webhook": {}},
        "steps": [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 1}}],
    }
    if state:
        spec["state"] = state
    return blockflow("Workflow", name, spec)


def cli(
    kubectl: Kubectl, *args: str, input: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`python -m controller ARGS` with the test cluster's kubeconfig."""
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        input=input,
        capture_output=True,
        text=True,
        env=kubectl.env(),
        timeout=timeout,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """A failure with exit `code`, one line on stderr mentioning `needles`, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def workflow_state(kubectl: Kubectl, namespace: str, name: str) -> str:
    return str(
        kubectl.run("get", "workflow", name, "-n", namespace, "-o", "jsonpath={.spec.state}").stdout
    )


def runs(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", RUNS, "-n", namespace)["items"]
    return sorted(items, key=lambda item: str(item["metadata"]["name"]))


def patch_run_status(cluster: Cluster, namespace: str, name: str, status: dict[str, Any]) -> None:
    """Set a run's status as the controller would (kubectl 1.20 has no --subresource)."""
    patch_status(cluster, f"namespaces/{namespace}/workflowruns/{name}", status)


def activated(cluster: Cluster, kubectl: Kubectl, namespace: str, name: str) -> None:
    """The workflow as the controller leaves it once activated (no controller runs here)."""
    spec = kubectl.json("get", "workflows.blockflow.dev", name, "-n", namespace)["spec"]
    status = {"phase": "Activated", "activation": {"version": 1, "spec": spec}}
    patch_status(cluster, f"namespaces/{namespace}/workflows/{name}", status)


def patch_status(cluster: Cluster, path: str, status: dict[str, Any]) -> None:
    async def patch() -> None:
        single = KubeConfig.from_file(cluster.kubeconfig).get()
        client = RestClient(lambda: connection_info(single))
        try:
            await client.request(
                "PATCH",
                f"/apis/blockflow.dev/v1alpha1/{path}/status",
                body={"status": status},
                content_type=MERGE_PATCH,
            )
        finally:
            await client.close()

    # Its own thread and loop: the test session's event loop is left alone.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, patch()).result(timeout=30)


# -- activate / pause / archive -----------------------------------------------------------------


def test_activate_pause_archive_edit_spec_state(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"))
    for verb, state in (("activate", "Active"), ("pause", "Paused"), ("archive", "Archived")):
        result = cli(kubectl, "workflow", verb, "wf", "-n", namespace)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"workflow.blockflow.dev/wf state set to {state}"
        assert workflow_state(kubectl, namespace, "wf") == state

    # Archived is final: neither activate nor pause touches the object.
    version = kubectl.json("get", "workflow", "wf", "-n", namespace)["metadata"]["resourceVersion"]
    for verb in ("activate", "pause"):
        refused = cli(kubectl, "workflow", verb, "wf", "-n", namespace)
        assert_clean_error(refused, 1, "wf", "Archived")
        assert refused.stdout == ""
    after = kubectl.json("get", "workflow", "wf", "-n", namespace)
    assert after["spec"]["state"] == "Archived"
    assert after["metadata"]["resourceVersion"] == version

    # Archiving again is harmless (no confirmation asked, nothing read from stdin).
    again = cli(kubectl, "workflow", "archive", "wf", "-n", namespace, input="")
    assert again.returncode == 0, again.stderr


def test_state_verbs_on_a_missing_workflow_and_the_default_namespace(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    missing = cli(kubectl, "workflow", "activate", "nope", "-n", namespace)
    assert_clean_error(missing, 1, f"workflow nope not found in namespace {namespace}")

    # Without -n: the kubeconfig context's namespace.
    config = kubectl.json("config", "view", "--raw", "--flatten", "--minify")
    config["contexts"][0]["context"]["namespace"] = namespace
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    kubectl.apply(namespace, minimal_workflow("wf"))
    in_context = Kubectl(kubectl.binary, kubeconfig)
    result = cli(in_context, "wf", "pause", "wf")
    assert result.returncode == 0, result.stderr
    assert workflow_state(kubectl, namespace, "wf") == "Paused"


# -- trigger ------------------------------------------------------------------------------------


def test_trigger_creates_an_owned_labelled_run_with_the_input(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"))
    activated(cluster, kubectl, namespace, "wf")
    workflow = kubectl.json("get", "workflow", "wf", "-n", namespace)

    first = cli(kubectl, "workflow", "trigger", "wf", "-n", namespace, "--input", '{"x": 1}')
    assert first.returncode == 0, first.stderr
    second = cli(kubectl, "workflow", "trigger", "wf", "-n", namespace, "--input-file", "-",
                 input='{"order": {"id": "o-7"}, "items": [1, 2]}')  # fmt: skip
    assert second.returncode == 0, second.stderr
    names = [first.stdout.strip(), second.stdout.strip()]
    assert all(name.startswith("wf-") for name in names), names
    assert names[0] < names[1], "run names sort by the time they were triggered"

    created = {run["metadata"]["name"]: run for run in runs(kubectl, namespace)}
    assert sorted(created) == names
    for name, expected in zip(
        names, [{"x": 1}, {"order": {"id": "o-7"}, "items": [1, 2]}], strict=True
    ):
        run = created[name]
        assert run["spec"]["workflowRef"] == {"name": "wf"}
        assert run["spec"]["input"] == expected
        assert run["metadata"]["labels"][WORKFLOW_LABEL] == "wf"
        assert run["metadata"]["labels"]["blockflow.dev/trigger"] == "manual"
        [owner] = run["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Workflow",
            "wf",
            workflow["metadata"]["uid"],
        )
        assert owner["controller"] is True


def test_trigger_usage_errors_and_a_missing_workflow(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"))
    bad = cli(kubectl, "workflow", "trigger", "wf", "-n", namespace, "--input", "{not json")
    assert_clean_error(bad, 2, "--input", "JSON")
    not_an_object = cli(kubectl, "workflow", "trigger", "wf", "-n", namespace, "--input", "[1]")
    assert_clean_error(not_an_object, 2, "--input must be a JSON object")
    broken = tmp_path / "input.json"
    broken.write_text("[1, 2")
    bad_file = cli(
        kubectl, "workflow", "trigger", "wf", "-n", namespace, "--input-file", str(broken)
    )
    assert_clean_error(bad_file, 2, "--input-file")
    assert runs(kubectl, namespace) == []

    missing = cli(kubectl, "workflow", "trigger", "nope", "-n", namespace)
    assert_clean_error(missing, 1, f"workflow nope not found in namespace {namespace}")
    assert missing.stdout == ""
    assert runs(kubectl, namespace) == []


@pytest.mark.parametrize(
    ("phase", "why"),
    [
        ("Draft", "is not active (phase Draft); activate it with `blockflow workflow activate wf"),
        ("Paused", "is not active (phase Paused)"),
        ("Archived", "is archived and starts no runs"),
    ],
)
def test_trigger_of_an_inactive_workflow_fails_at_once_with_the_reason(
    cluster: Cluster, kubectl: Kubectl, namespace: str, phase: str, why: str
) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"))
    patch_status(cluster, f"namespaces/{namespace}/workflows/wf", {"phase": phase})
    refused = cli(kubectl, "workflow", "trigger", "wf", "-n", namespace)
    assert_clean_error(refused, 1, why)
    assert refused.stdout == ""
    assert runs(kubectl, namespace) == []


def _start_waiting_trigger(
    kubectl: Kubectl, namespace: str, *extra: str
) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "workflow", "trigger", "wf", "-n", namespace,
         "--wait", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=kubectl.env(),
    )  # fmt: skip
    assert proc.stdout is not None
    run = proc.stdout.readline().strip()  # the run's name comes first, before waiting
    assert run.startswith("wf-"), (run, proc.poll())
    return proc, run


def test_trigger_wait_reports_the_final_state(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"))
    activated(cluster, kubectl, namespace, "wf")
    started = time.monotonic()

    proc, run = _start_waiting_trigger(kubectl, namespace, "--timeout", "20")
    patch_run_status(cluster, namespace, run, {"state": "running"})
    time.sleep(0.7)
    assert proc.poll() is None, "a running run is not finished"
    patch_run_status(cluster, namespace, run, {"state": "completed"})
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.strip() == "completed"

    proc, run = _start_waiting_trigger(kubectl, namespace)
    patch_run_status(
        cluster, namespace, run, {"state": "failed", "error": {"message": "boom", "step": "a"}}
    )
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert out.strip() == "failed"
    assert "boom" in err and "Traceback" not in err
    assert time.monotonic() - started < 10


def test_trigger_wait_times_out(cluster: Cluster, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"))
    activated(cluster, kubectl, namespace, "wf")
    result = cli(kubectl, "workflow", "trigger", "wf", "-n", namespace, "--wait", "--timeout", "1")
    run = result.stdout.strip()
    assert run.startswith("wf-")
    assert_clean_error(result, 1, "timed out", run)


# -- url ----------------------------------------------------------------------------------------


def test_url_prints_the_trigger_url_or_says_why_there_is_none(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"))
    missing = cli(kubectl, "workflow", "url", "wf", "-n", namespace)
    assert_clean_error(missing, 1, "workflow wf has no trigger URL", "webhook", "activated")

    url = "https://hooks.example.test/workflows/abc?key=s3cret"
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": workflow_secret_name("wf")},
        "data": {"hookKey": base64.b64encode(b"k").decode()},
    }
    kubectl.apply(namespace, secret)
    without_url = cli(kubectl, "workflow", "url", "wf", "-n", namespace)
    assert_clean_error(without_url, 1, "has no trigger URL")

    secret["data"]["triggerCallbackUrl"] = base64.b64encode(url.encode()).decode()
    kubectl.apply(namespace, secret)
    result = cli(kubectl, "workflow", "url", "wf", "-n", namespace)
    assert result.returncode == 0, result.stderr
    assert result.stdout == url + "\n"


# -- run list / get / stop ----------------------------------------------------------------------


def _two_workflows_with_runs(cluster: Cluster, kubectl: Kubectl, namespace: str) -> tuple[str, str]:
    kubectl.apply(namespace, minimal_workflow("wf"), minimal_workflow("other"))
    names = []
    for workflow in ("wf", "other"):
        activated(cluster, kubectl, namespace, workflow)
        result = cli(kubectl, "workflow", "trigger", workflow, "-n", namespace)
        assert result.returncode == 0, result.stderr
        names.append(result.stdout.strip())
    return names[0], names[1]


def test_run_list_and_get(cluster: Cluster, kubectl: Kubectl, namespace: str) -> None:
    wf_run, other_run = _two_workflows_with_runs(cluster, kubectl, namespace)
    patch_run_status(
        cluster,
        namespace,
        wf_run,
        {
            "state": "failed",
            "workflowVersion": 3,
            "startedAt": "2024-05-01T10:00:00Z",
            "finishedAt": "2024-05-01T10:00:09Z",
            "error": {"message": "step a failed", "step": "a"},
            "steps": [
                {
                    "name": "a",
                    "state": "failed",
                    "attempts": 2,
                    "startedAt": "2024-05-01T10:00:01Z",
                    "finishedAt": "2024-05-01T10:00:09Z",
                    "error": {"message": "bucket is gone", "retryable": False},
                },
                {"name": "b", "state": "completed", "attempts": 1, "outcome": {"id": "success"}},
                {"name": "c", "state": "running", "attempts": 1},
            ],
        },
    )

    listed = cli(kubectl, "run", "list", "-n", namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert [item["metadata"]["name"] for item in document["items"]] == sorted([wf_run, other_run])

    table = cli(kubectl, "run", "list", "-n", namespace)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.strip().splitlines()
    assert header.split() == ["NAME", "WORKFLOW", "STATE", "STEPS", "STARTED", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines}
    assert set(rows) == {wf_run, other_run}
    assert rows[wf_run][1:4] == ["wf", "failed", "2/3"]
    assert rows[wf_run][4].endswith(("d", "y"))  # started long ago
    assert rows[other_run][1:5] == ["other", "<none>", "0/0", "<none>"]

    only_wf = cli(kubectl, "run", "ls", "-n", namespace, "-w", "wf", "-o", "yaml")
    assert only_wf.returncode == 0, only_wf.stderr
    assert wf_run in only_wf.stdout and other_run not in only_wf.stdout

    got = cli(kubectl, "run", "get", wf_run, "-n", namespace, "-o", "json")
    assert got.returncode == 0, got.stderr
    run = json.loads(got.stdout)
    assert run["metadata"]["name"] == wf_run and run["status"]["state"] == "failed"

    described = cli(kubectl, "run", "get", wf_run, "-n", namespace)
    assert described.returncode == 0, described.stderr
    text = described.stdout
    assert "wf (version 3)" in text
    assert "step a failed (step a)" in text
    steps = text.split("Steps:")[1].strip().splitlines()
    assert steps[0].split() == [
        "NAME", "STATE", "ATTEMPTS", "OUTCOME", "STARTED", "FINISHED", "ERROR"
    ]  # fmt: skip
    assert steps[1].split() == [
        "a", "failed", "2", "-", "2024-05-01T10:00:01Z", "2024-05-01T10:00:09Z",
        "bucket", "is", "gone",
    ]  # fmt: skip
    assert steps[2].split()[:4] == ["b", "completed", "1", "success"]
    assert steps[3].split()[:3] == ["c", "running", "1"]

    missing = cli(kubectl, "run", "get", "nope", "-n", namespace)
    assert_clean_error(missing, 1, f"workflowrun nope not found in namespace {namespace}")


def test_run_stop_sets_spec_cancel(cluster: Cluster, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"))
    activated(cluster, kubectl, namespace, "wf")
    run = cli(kubectl, "workflow", "trigger", "wf", "-n", namespace).stdout.strip()
    stopped = cli(kubectl, "run", "stop", run, "-n", namespace)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"workflowrun.blockflow.dev/{run} cancel requested"
    assert kubectl.json("get", RUNS, run, "-n", namespace)["spec"]["cancel"] is True

    missing = cli(kubectl, "run", "stop", "nope", "-n", namespace)
    assert_clean_error(missing, 1, "workflowrun nope not found")


def test_forbidden_is_one_line(cluster: Cluster, kubectl: Kubectl, namespace: str) -> None:
    if cluster.user_kubeconfig is None:
        pytest.skip("needs the local control plane's unprivileged user")
    user = Kubectl(kubectl.binary, cluster.user_kubeconfig)
    result = cli(user, "run", "list", "-n", namespace)
    assert_clean_error(result, 1, "Forbidden")


# -- kubectl plugin -----------------------------------------------------------------------------


def test_kubectl_blockflow_plugin(cluster: Cluster, kubectl: Kubectl, namespace: str) -> None:
    assert (VENV_BIN / "kubectl-blockflow").exists(), "pip install -e . installs the plugin"
    kubectl.apply(namespace, minimal_workflow("wf"))
    activated(cluster, kubectl, namespace, "wf")
    env = {**kubectl.env(), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    def plugin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kubectl.binary, "blockflow", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )

    triggered = plugin("workflow", "trigger", "wf", "-n", namespace)
    assert triggered.returncode == 0, triggered.stderr
    run = triggered.stdout.strip()
    eventually(lambda: runs(kubectl, namespace), timeout=5, what="the run")
    listed = plugin("run", "list", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    assert run in listed.stdout
    usage = plugin("workflow", "--help")
    assert "usage: kubectl blockflow workflow" in usage.stdout
