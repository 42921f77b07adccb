"""The CLI as people who use kubectl expect it, against the real API server.

One meaning per command (`blockflow controller` runs the controller, `blockflow run` alone only
prints its verbs), kubectl's global flags on every verb, output formats, short names, the
verbs next to kubectl's and argo's (workflow list|get, run watch|logs|delete), completion,
the kubectl plugin without .venv/bin on PATH, and approvals whose hook token is computed.
The CLI always runs as a real subprocess; where no controller runs, the tests play its part
(a run's status).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, ControllerProcess, Kubectl, blockflow, eventually, free_port
from tests.test_cli_overview import cli_all, get, ready
from tests.test_cli_workflows import (
    activated,
    assert_clean_error,
    cli,
    minimal_workflow,
    patch_run_status,
)

ROOT = Path(__file__).resolve().parents[1]
RUNS = "workflowruns.blockflow.dev"


def _ageless(text: str) -> str:
    """Output with its ages (``0s``, ``12m``, ``3h``) blanked."""
    return re.sub(r"\b\d+[smhd]\b", "AGE", text)


def a_run(name: str, workflow: str = "wf") -> dict[str, Any]:
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name, "labels": {"blockflow.dev/workflow": workflow}},
        "spec": {"workflowRef": {"name": workflow}},
    }


def create_runs(kubectl: Kubectl, namespace: str, *names: str) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": [a_run(n) for n in names]}
    kubectl.run("create", "-n", namespace, "-f", "-", input=json.dumps(listed))


def step_status(state: str, *steps: tuple[str, str], **extra: Any) -> dict[str, Any]:
    spec = {
        "steps": [
            {"name": "a", "uses": {"type": "sleep"}},
            {"name": "b", "uses": {"type": "sleep"}},
        ]
    }
    records = []
    for name, step_state in steps:
        record: dict[str, Any] = {"name": name, "state": step_state, "attempts": 1}
        record["startedAt"] = "2026-01-01T00:00:01Z" if name == "a" else "2026-01-01T00:00:03Z"
        if step_state in ("completed", "failed"):
            record["finishedAt"] = "2026-01-01T00:00:02Z" if name == "a" else "2026-01-01T00:00:04Z"
        if step_state == "failed":
            record["error"] = {"message": "the bucket is gone"}
        records.append(record)
    return {
        "state": state,
        "startedAt": "2026-01-01T00:00:00Z",
        "workflowSpec": spec,
        "steps": records,
        **extra,
    }


# -- one meaning per command ----------------------------------------------------------------------


def test_run_without_a_verb_prints_its_verbs_and_starts_nothing(kubectl: Kubectl) -> None:
    bare, verbless, controller_help, version, version_flag = cli_all(
        kubectl,
        ("run",),
        ("run", "-n", "default"),
        ("controller", "--help"),
        ("version",),
        ("--version",),
    )
    for result in (bare, verbless):
        assert result.returncode == 2, result
        assert "list|get|watch|logs|stop|delete|retry|pause|resume" in result.stderr
        assert "blockflow controller" in result.stderr
    assert controller_help.returncode == 0
    for flag in ("--namespace", "--log-format", "--verbose"):
        assert flag in controller_help.stdout
    assert version.stdout == version_flag.stdout and version.stdout.startswith("blockflow ")


# -- global flags and output formats -------------------------------------------------------------


def two_context_kubeconfig(cluster: Cluster, tmp_path: Path, namespace: str) -> Path:
    """The test cluster's kubeconfig with a second context whose namespace is ``namespace``
    and a current context that points nowhere usable."""
    config = json.loads(cluster.kubeconfig.read_text())
    context = config["contexts"][0]
    config["contexts"].append(
        {"name": "team", "context": {**context["context"], "namespace": namespace}}
    )
    config["clusters"].append({"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}})
    config["contexts"].append(
        {"name": "broken", "context": {"cluster": "nowhere", "user": context["context"]["user"]}}
    )
    config["current-context"] = "broken"
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def test_kubeconfig_context_namespace_and_all_namespaces(
    cluster: Cluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    create_runs(kubectl, namespace, "r1", "r2")
    config = str(two_context_kubeconfig(cluster, tmp_path, namespace))
    (
        by_context,
        flags_first,
        current_broken,
        no_context,
        everywhere,
        everywhere_names,
        not_a_list,
        missing_file,
    ) = cli_all(
        kubectl,
        ("run", "list", "--kubeconfig", config, "--context", "team"),
        ("--kubeconfig", config, "--context", "team", "-o", "name", "run", "list"),
        ("run", "list", "--kubeconfig", config),
        ("run", "list", "--kubeconfig", config, "--context", "nope"),
        ("run", "list", "-A"),
        ("run", "list", "--all-namespaces", "-o", "name"),
        ("run", "get", "r1", "-A", "-n", namespace),
        ("run", "list", "--kubeconfig", str(tmp_path / "absent")),
    )
    assert by_context.returncode == 0, by_context.stderr
    assert [line.split()[0] for line in by_context.stdout.splitlines()] == ["NAME", "r1", "r2"]
    assert flags_first.stdout.split() == [
        "workflowrun.blockflow.dev/r1",
        "workflowrun.blockflow.dev/r2",
    ]
    assert_clean_error(current_broken, 1, "cannot reach the API server at https://127.0.0.1:1")
    assert "connection refused" in current_broken.stderr
    assert_clean_error(no_context, 1, 'context "nope" does not exist')
    assert everywhere.returncode == 0, everywhere.stderr
    header, *rows = everywhere.stdout.splitlines()
    assert header.split()[:2] == ["NAMESPACE", "NAME"]
    assert [namespace, "r1"] in [row.split()[:2] for row in rows]
    assert "workflowrun.blockflow.dev/r2" in everywhere_names.stdout.split()
    assert_clean_error(not_a_list, 2, "-A/--all-namespaces only applies to list verbs")
    assert_clean_error(missing_file, 1, "--kubeconfig", "no such file")


def test_output_formats(cluster: Cluster, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"))
    activated(cluster, kubectl, namespace, "wf")
    create_runs(kubectl, namespace, "r1")
    ready_condition = {"type": "Ready", "status": "False", "message": "run paused"}
    patch_run_status(
        cluster,
        namespace,
        "r1",
        step_status("running", ("a", "running"), conditions=[ready_condition]),
    )
    wide, as_json, as_yaml, one_name, wf_wide, wf_names, wf_one, wrong = cli_all(
        kubectl,
        ("run", "list", "-n", namespace, "-o", "wide"),
        ("run", "list", "-n", namespace, "-o", "json"),
        ("run", "get", "r1", "-n", namespace, "-o", "yaml"),
        ("run", "get", "r1", "-n", namespace, "-o", "name"),
        ("workflow", "list", "-n", namespace, "-o", "wide"),
        ("wf", "ls", "-n", namespace, "-o", "name"),
        ("workflow", "get", "wf", "-n", namespace, "-o", "json"),
        ("run", "list", "-n", namespace, "-o", "toml"),
    )
    header, row = wide.stdout.splitlines()
    assert header.split() == ["NAME", "WORKFLOW", "STATE", "STEPS", "STARTED", "AGE", "MESSAGE"]
    assert row.split()[:4] == ["r1", "wf", "running", "0/2"] and row.endswith("run paused")
    listed = json.loads(as_json.stdout)
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["r1"]
    assert "name: r1" in as_yaml.stdout and "state: running" in as_yaml.stdout
    assert one_name.stdout == "workflowrun.blockflow.dev/r1\n"
    assert wf_wide.stdout.splitlines()[0].split()[-2:] == ["TRIGGER", "DESCRIPTION"]
    assert "webhook" in wf_wide.stdout.splitlines()[1]
    assert wf_names.stdout == "workflow.blockflow.dev/wf\n"
    assert json.loads(wf_one.stdout)["metadata"]["name"] == "wf"
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


# -- the verbs kubectl and argo have --------------------------------------------------------------


def test_workflow_list_and_get(cluster: Cluster, kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(namespace, minimal_workflow("wf"), minimal_workflow("other", state="Paused"))
    activated(cluster, kubectl, namespace, "wf")
    create_runs(kubectl, namespace, "wf-r1")
    listed, described, short, missing, empty_ns = cli_all(
        kubectl,
        ("workflow", "list", "-n", namespace),
        ("workflow", "get", "wf", "-n", namespace),
        ("wf", "get", "bfwf/wf", "-n", namespace),
        ("workflow", "get", "nope", "-n", namespace),
        ("workflow", "list", "-n", f"{namespace}-empty"),
    )
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "STATE", "PHASE", "STATUS"]
    assert [r.split()[:3] for r in rows] == [
        ["other", "Paused", "<none>"],
        ["wf", "Draft", "Activated"],
    ]
    text = described.stdout
    for needle in (
        "Name:",
        "wf",
        "Trigger:",
        "webhook",
        "Steps:",
        "sleep",
        "Recent runs:",
        "wf-r1",
    ):
        assert needle in text, text
    # The same page by its short name (ages may have ticked over a second in between).
    assert _ageless(short.stdout) == _ageless(described.stdout)
    assert_clean_error(missing, 1, "workflow nope not found")
    assert empty_ns.returncode == 0 and "No resources found" in empty_ns.stderr


def test_run_delete(kubectl: Kubectl, namespace: str) -> None:
    create_runs(kubectl, namespace, "r1", "r2")
    deleted = cli(kubectl, "run", "delete", "r1", "wfr/r2", "-n", namespace)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines() == [
        'workflowrun.blockflow.dev "r1" deleted',
        'workflowrun.blockflow.dev "r2" deleted',
    ]
    assert kubectl.json("get", RUNS, "-n", namespace)["items"] == []
    assert_clean_error(cli(kubectl, "run", "delete", "r1", "-n", namespace), 1, "r1 not found")


def watch(kubectl: Kubectl, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl.env(),
    )


def test_run_watch_prints_step_transitions_until_the_run_ends(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    create_runs(kubectl, namespace, "ok", "bad")
    patch_run_status(cluster, namespace, "ok", step_status("running", ("a", "running")))
    patch_run_status(cluster, namespace, "bad", step_status("running", ("a", "running")))
    followers = {
        name: watch(kubectl, name, "-n", namespace, "--timeout", "60") for name in ("ok", "bad")
    }
    for name, follower in followers.items():
        assert follower.stdout is not None
        # The run as it is now: the run, then its running step. Then the watch is open.
        assert follower.stdout.readline().split()[1:] == ["run", name, "running"]
        assert follower.stdout.readline().split()[1:] == ["step", "a", "running"]
    patch_run_status(
        cluster, namespace, "ok", step_status("running", ("a", "completed"), ("b", "running"))
    )
    patch_run_status(
        cluster,
        namespace,
        "ok",
        step_status(
            "completed", ("a", "completed"), ("b", "completed"), finishedAt="2026-01-01T00:00:05Z"
        ),
    )
    patch_run_status(
        cluster,
        namespace,
        "bad",
        step_status(
            "failed",
            ("a", "failed"),
            finishedAt="2026-01-01T00:00:05Z",
            error={"message": "the bucket is gone", "step": "a"},
        ),
    )
    ok_out, ok_err = followers["ok"].communicate(timeout=60)
    assert followers["ok"].returncode == 0, ok_err
    lines = [line.split(None, 1)[1] for line in ok_out.splitlines()]
    assert lines == ["step a completed", "step b running", "step b completed", "run ok completed"]
    bad_out, bad_err = followers["bad"].communicate(timeout=60)
    assert followers["bad"].returncode == 1, bad_err
    assert bad_out.splitlines()[-1].split(None, 1)[1] == (
        "run bad failed: the bucket is gone (step a)"
    )
    # A run that has ended already: its story, and the exit status, at once.
    again = cli(kubectl, "run", "watch", "wfr/bad", "-n", namespace)
    assert again.returncode == 1 and "run bad failed" in again.stdout
    assert_clean_error(cli(kubectl, "run", "watch", "nope", "-n", namespace), 1, "nope not found")


def test_run_logs_are_the_runs_history_in_time_order(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    create_runs(kubectl, namespace, "r1")
    patch_run_status(
        cluster,
        namespace,
        "r1",
        step_status(
            "failed",
            ("a", "completed"),
            ("b", "failed"),
            finishedAt="2026-01-01T00:00:05Z",
            error={"message": "the bucket is gone", "step": "b"},
        ),
    )
    run_uid = kubectl.json("get", RUNS, "r1", "-n", namespace)["metadata"]["uid"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "r1.retry"},
        "involvedObject": {
            "apiVersion": "blockflow.dev/v1alpha1",
            "kind": "WorkflowRun",
            "name": "r1",
            "namespace": namespace,
            "uid": run_uid,
        },
        "reason": "StepRetrying",
        "message": "step b: attempt 1 failed",
        "type": "Warning",
        "firstTimestamp": "2026-01-01T00:00:03.500000Z",
        "lastTimestamp": "2026-01-01T00:00:03.500000Z",
        "count": 2,
    }
    kubectl.run("create", "-n", namespace, "-f", "-", input=json.dumps(event))
    logs, as_json = cli_all(
        kubectl,
        ("run", "logs", "r1", "-n", namespace),
        ("run", "logs", "r1", "-n", namespace, "-o", "json"),
    )
    assert logs.returncode == 0, logs.stderr
    entries = json.loads(as_json.stdout)["entries"]
    story = [(e["source"], e["message"]) for e in entries if not e["message"].startswith("created")]
    assert story == [
        ("run", "started"),
        ("step/a", "started"),
        ("step/a", "completed"),
        ("step/b", "started"),
        ("event/Warning", "StepRetrying: step b: attempt 1 failed (x2)"),
        ("step/b", "failed: the bucket is gone"),
        ("run", "failed: the bucket is gone"),
    ]
    assert logs.stdout.splitlines()[0].split() == ["TIME", "SOURCE", "MESSAGE"]


# -- short names and errors -----------------------------------------------------------------------


def test_short_names_everywhere_kubectl_takes_them(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        namespace,
        blockflow("App", "demo", {"handler": {"python": "demo"}}),
        blockflow("Block", "assets", {"app": "demo", "type": "bucket", "config": {"name": "a"}}),
    )
    create_runs(kubectl, namespace, "r1")
    spellings = (
        "blk/assets",
        "block/assets",
        "blocks/assets",
        "Block/assets",
        "blocks.blockflow.dev/assets",
    )
    results = cli_all(
        kubectl,
        *(("sync", ref, "-n", namespace) for ref in spellings),
        ("drain", "bfapp/demo", "-n", namespace, "-o", "name"),
        ("run", "get", "wfr/r1", "-n", namespace, "-o", "name"),
        ("wfr", "get", "workflowrun/r1", "-n", namespace, "-o", "name"),
        ("run", "get", "wf/r1", "-n", namespace),
        ("sync", "wfr/r1", "-n", namespace),
        ("events", "--for", "wfr/r1", "-n", namespace),
    )
    *synced, drained, got, got_again, wrong_kind, not_syncable, events = results
    for result in synced:
        assert result.returncode == 0, result.stderr
        assert result.stdout == "block.blockflow.dev/assets sync requested\n"
    assert drained.stdout == "app.blockflow.dev/demo\n"
    assert got.stdout == got_again.stdout == "workflowrun.blockflow.dev/r1\n"
    assert_clean_error(wrong_kind, 2, "expected NAME or workflowrun.blockflow.dev/NAME")
    assert_clean_error(not_syncable, 2, "KIND one of", "blk")
    assert events.returncode == 0, events.stderr


def test_errors_name_no_python_classes(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = json.loads(kubectl.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    env = {**kubectl.env(), "KUBECONFIG": str(path)}
    down = subprocess.run(
        [sys.executable, "-m", "controller", "status", "-n", namespace],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert_clean_error(
        down, 1, f"cannot reach the API server at https://127.0.0.1:{port}: connection refused"
    )
    assert "Error" not in down.stderr and "Connector" not in down.stderr


# -- completion -----------------------------------------------------------------------------------


def complete(kubectl: Kubectl, line: str) -> list[str]:
    """What bash completes for ``line`` (the word under the cursor is the last one)."""
    script = cli(kubectl, "completion", "bash")
    assert script.returncode == 0, script.stderr
    words = line.split(" ")
    probe = (
        f"{script.stdout}\n"
        f"COMP_WORDS=({' '.join(json.dumps(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_blockflow; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    # The script completes names through `blockflow` itself: put this checkout's first.
    env = {
        **kubectl.env(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion(kubectl: Kubectl, namespace: str) -> None:
    create_runs(kubectl, namespace, "alpha", "beta")
    assert {"run", "runs"} <= set(complete(kubectl, "blockflow ru"))
    assert complete(kubectl, "blockflow run l") == ["list", "ls", "logs"]
    assert complete(kubectl, "blockflow -n x wf a") == ["activate", "archive"]
    assert "--kubeconfig" in complete(kubectl, "blockflow run list --ku")
    assert complete(kubectl, "blockflow run list -o y") == ["yaml"]
    assert complete(kubectl, f"blockflow run get -n {namespace} a") == ["alpha"]
    assert complete(kubectl, f"blockflow -n {namespace} approve ") == ["alpha", "beta"]


def test_zsh_completion_loads_and_completes_through_bashcompinit(
    kubectl: Kubectl, namespace: str
) -> None:
    """zsh runs the bash function through bashcompinit, whose `_bash_complete` calls it with
    ksh arrays and hands COMPREPLY to compadd (which filters by the typed prefix itself)."""
    zsh = shutil.which("zsh")
    assert zsh, "zsh is missing: hack/install-deps.sh installs it"
    create_runs(kubectl, namespace, "alpha", "beta")
    script = cli(kubectl, "completion", "zsh")
    assert script.returncode == 0, script.stderr

    def complete_zsh(line: str) -> list[str]:
        words = line.split(" ")
        probe = (
            f"{script.stdout}\n"
            'print -r -- "registered: ${_comps[blockflow]}"\n'
            "setopt ksharrays\n"
            f"COMP_WORDS=({' '.join(json.dumps(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
            '_blockflow; print -rl -- "${COMPREPLY[@]}"\n'
        )
        env = {
            **kubectl.env(),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        done = subprocess.run(
            [zsh, "-f", "-c", probe], capture_output=True, text=True, env=env, check=False
        )
        assert done.returncode == 0 and not done.stderr, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == "registered: _bash_complete -F _blockflow"
        return lines[1:]

    verbs = complete_zsh("blockflow run l")
    assert {"list", "ls", "logs"} <= set(verbs) and "approve" not in verbs
    assert {"alpha", "beta"} <= set(complete_zsh(f"blockflow run get -n {namespace} a"))


# -- the kubectl plugin ---------------------------------------------------------------------------


def test_kubectl_plugin_from_the_control_planes_env(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    if cluster.plane is None:
        pytest.skip("needs the local control plane (hack/control-plane.sh env)")
    create_runs(kubectl, namespace, "r1")
    venv_bin = str(Path(sys.executable).parent)
    bare_path = os.pathsep.join(
        p
        for p in os.environ["PATH"].split(os.pathsep)
        if p and Path(p).resolve() != Path(venv_bin).resolve()
    )
    env = {
        **os.environ,
        "PATH": bare_path,
        "BLOCKFLOW_CONTROL_PLANE_DIR": str(cluster.plane.state_dir),
    }
    env.pop("KUBECONFIG", None)
    context = json.loads(cluster.kubeconfig.read_text())["contexts"][0]["name"]
    # What the docs print: eval the env, then kubectl blockflow with kubectl's flags after it.
    script = (
        'eval "$(hack/control-plane.sh env)"\n'
        # blockflow itself is the checkout's, through hack/plugins, not .venv/bin on PATH.
        '[[ "$(command -v blockflow)" == */hack/plugins/blockflow ]] || exit 9\n'
        "blockflow --version >/dev/null || exit 8\n"
        f'kubectl blockflow --kubeconfig "$KUBECONFIG" --context {context} -n {namespace} '
        "run list\n"
        f"kubectl blockflow run get r1 -n {namespace} -o name\n"
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    lines = done.stdout.splitlines()
    assert lines[0].split()[0] == "NAME" and lines[1].split()[0] == "r1"
    assert lines[2] == "workflowrun.blockflow.dev/r1"


# -- approvals whose token is computed ------------------------------------------------------------


def test_approve_a_step_whose_hook_token_is_computed(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    controller = run_controller("--namespace", namespace)
    kubectl.apply(
        namespace,
        blockflow(
            "Workflow",
            "deal",
            {
                "state": "Active",
                "trigger": {"webhook": {}},
                "steps": [
                    {
                        "name": "approve",
                        "uses": {"type": "approval"},
                        "with": {
                            "token": '${{ "deal:" + string(event.dealId) }}',
                            "message": "Onboard ${{ event.company }}?",
                        },
                    }
                ],
            },
        ),
    )
    ready(controller)
    eventually(
        lambda: (
            get(kubectl, namespace, "workflows.blockflow.dev", "deal")
            .get("status", {})
            .get("phase")
            == "Activated"
        ),
        what="workflow activated",
    )
    triggered = cli(
        kubectl,
        "workflow",
        "trigger",
        "deal",
        "-n",
        namespace,
        "--input",
        '{"dealId": 42, "company": "ACME"}',
    )
    assert triggered.returncode == 0, triggered.stderr
    run = triggered.stdout.strip()
    eventually(
        lambda: (get(kubectl, namespace, RUNS, run).get("status") or {}).get("state") == "waiting",
        what="run waiting",
    )
    # --url's default follows the controller's port (BLOCKFLOW_HTTP_PORT) and BLOCKFLOW_URL.
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = {**kubectl.env(), "BLOCKFLOW_URL": nowhere}
    refused = subprocess.run(
        [sys.executable, "-m", "controller", "approve", run, "-n", namespace],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert_clean_error(refused, 1, f"nothing answers at {nowhere}", "BLOCKFLOW_URL")
    env = {**kubectl.env(), "BLOCKFLOW_HTTP_PORT": str(controller.port)}
    env.pop("BLOCKFLOW_URL", None)
    approved = subprocess.run(
        [sys.executable, "-m", "controller", "approve", run, "-n", namespace, "--by", "ada"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"workflowrun.blockflow.dev/{run} step approve approved"
    watched = cli(kubectl, "run", "watch", run, "-n", namespace, "--timeout", "60", timeout=90)
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    (record,) = get(kubectl, namespace, RUNS, run)["status"]["steps"]
    assert record["outcome"]["id"] == "approved" and record["outcome"]["data"]["by"] == "ada"


def test_label_selectors_on_list_verbs(kubectl: Kubectl, namespace: str) -> None:
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [a_run("r1", "wf"), a_run("x1", "other"), a_run("x2", "other")],
    }
    kubectl.run("create", "-n", namespace, "-f", "-", input=json.dumps(listed))
    team = minimal_workflow("labelled")
    team["metadata"]["labels"] = {"team": "a"}
    kubectl.apply(namespace, team, minimal_workflow("plain"))
    runs, both, workflows = cli_all(
        kubectl,
        ("run", "list", "-n", namespace, "-l", "blockflow.dev/workflow=other", "-o", "name"),
        ("run", "list", "-n", namespace, "-l", "blockflow.dev/workflow", "-w", "wf", "-o", "name"),
        ("workflow", "list", "-n", namespace, "--selector", "team=a", "-o", "name"),
    )
    assert runs.stdout.split() == [
        "workflowrun.blockflow.dev/x1",
        "workflowrun.blockflow.dev/x2",
    ]
    assert both.stdout.split() == ["workflowrun.blockflow.dev/r1"]
    assert workflows.stdout.split() == ["workflow.blockflow.dev/labelled"]


def test_approving_without_the_right_to_read_the_hook_key_points_to_the_page(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    if cluster.user_kubeconfig is None:
        pytest.skip("needs the local control plane's unprivileged user")
    create_runs(kubectl, namespace, "r1")
    patch_run_status(
        cluster,
        namespace,
        "r1",
        {
            "state": "waiting",
            "workflowSpec": {"steps": [{"name": "boss", "uses": {"type": "approval"}}]},
            "steps": [{"name": "boss", "state": "waiting", "attempts": 1}],
        },
    )
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "run-reader"},
        "rules": [
            {"apiGroups": ["blockflow.dev"], "resources": ["workflowruns"], "verbs": ["get"]}
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "run-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "run-reader"},
        "subjects": [{"kind": "User", "name": "blockflow-user"}],
    }
    kubectl.apply(namespace, role, binding)
    user = Kubectl(kubectl.binary, cluster.user_kubeconfig)
    refused = cli(user, "approve", "r1", "-n", namespace, "--url", "http://127.0.0.1:9")
    assert_clean_error(
        refused, 1, "you may not read Secret wf-workflow-signals", "http://127.0.0.1:9/ui/"
    )


def test_run_logs_follow_goes_on_until_the_run_ends(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    create_runs(kubectl, namespace, "r1")
    patch_run_status(cluster, namespace, "r1", step_status("running", ("a", "running")))
    follower = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "logs", "r1", "-n", namespace, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl.env(),
    )
    assert follower.stdout is not None
    history = []
    while not (line := follower.stdout.readline()).startswith("--- following"):
        assert line, follower.stderr.read() if follower.stderr else ""
        history.append(line)
    assert history[0].split() == ["TIME", "SOURCE", "MESSAGE"]
    assert any(line.split()[1:] == ["step/a", "started"] for line in history)
    done = step_status(
        "completed", ("a", "completed"), ("b", "completed"), finishedAt="2026-01-01T00:00:05Z"
    )
    patch_run_status(cluster, namespace, "r1", done)
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert out.splitlines()[-1].split(None, 1)[1] == "run r1 completed"
