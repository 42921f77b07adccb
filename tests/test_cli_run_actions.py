"""`blockflow run retry|pause|resume` against the real API server. No controller runs here:
the test plays its part (a run's status); what is asserted is what the commands ask for
(the run's spec and annotations) and that commands that cannot succeed fail at once."""

from __future__ import annotations

from tests.conftest import Cluster, Kubectl, blockflow
from tests.test_cli_workflows import RUNS, assert_clean_error, cli, patch_run_status, patch_status


def test_retry_pause_and_resume_edit_the_run_and_refuse_what_cannot_work(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(namespace, blockflow("WorkflowRun", "r1", {"workflowRef": {"name": "wf"}}))
    patch_run_status(cluster, namespace, "r1", {"state": "running"})

    # Only an ended, unsuccessful run can be retried.
    assert_clean_error(
        cli(kubectl, "run", "retry", "r1", "-n", namespace),
        1,
        "workflowrun r1 is running: only a failed, terminated or cancelled run can be retried",
    )
    assert_clean_error(
        cli(kubectl, "run", "resume", "r1", "-n", namespace), 1, "workflowrun r1 is not paused"
    )
    paused = cli(kubectl, "run", "pause", "r1", "-n", namespace)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "workflowrun.blockflow.dev/r1 paused"
    assert kubectl.json("get", RUNS, "r1", "-n", namespace)["spec"]["paused"] is True
    resumed = cli(kubectl, "run", "resume", "r1", "-n", namespace)
    assert resumed.returncode == 0, resumed.stderr
    assert kubectl.json("get", RUNS, "r1", "-n", namespace)["spec"]["paused"] is False

    patch_run_status(cluster, namespace, "r1", {"state": "failed"})
    retried = cli(kubectl, "run", "retry", "r1", "-n", namespace, "--by", "ada@example.com")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == (
        "workflowrun.blockflow.dev/r1 retry 1 requested (by ada@example.com)"
    )
    run = kubectl.json("get", RUNS, "r1", "-n", namespace)
    assert (run["spec"]["retry"], run["spec"]["cancel"]) == (1, False)
    assert run["metadata"]["annotations"]["blockflow.dev/retried-by"] == "ada@example.com"
    # Asked again before the controller acted: the same retry, not a second one.
    again = cli(kubectl, "run", "retry", "r1", "-n", namespace)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "workflowrun.blockflow.dev/r1 retry 1 already requested"
    assert kubectl.json("get", RUNS, "r1", "-n", namespace)["spec"]["retry"] == 1
    # Once it was retried and failed again: retry 2, and without --by, who the API server
    # says (or the local user on servers without SelfSubjectReview).
    patch_run_status(
        cluster,
        namespace,
        "r1",
        {"retries": [{"at": "2026-12-04T00:00:00Z", "previousState": "failed"}]},
    )
    second = cli(kubectl, "run", "retry", "r1", "-n", namespace)
    assert second.returncode == 0, second.stderr
    assert "retry 2 requested (by " in second.stdout
    assert_clean_error(
        cli(kubectl, "run", "pause", "r1", "-n", namespace),
        1,
        "workflowrun r1 has ended (failed): there is nothing to pause",
    )
    assert_clean_error(
        cli(kubectl, "run", "retry", "nope", "-n", namespace), 1, "workflowrun nope not found"
    )


def test_trigger_refuses_input_the_workflows_schema_refuses_and_creates_no_run(
    cluster: Cluster, kubectl: Kubectl, namespace: str
) -> None:
    spec = {
        "inputSchema": {"type": "object", "required": ["orderId"]},
        "steps": [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 0}}],
    }
    kubectl.apply(namespace, blockflow("Workflow", "typed", spec))
    status = {"phase": "Activated", "activation": {"version": 1, "spec": spec}}
    patch_status(cluster, f"namespaces/{namespace}/workflows/typed", status)
    assert_clean_error(
        cli(kubectl, "workflow", "trigger", "typed", "-n", namespace, "--input", '{"order": 1}'),
        1,
        "cannot trigger: --input: the input does not match spec.inputSchema: "
        "input: missing required field orderId",
    )
    assert kubectl.json("get", RUNS, "-n", namespace)["items"] == []
    ok = cli(kubectl, "workflow", "trigger", "typed", "-n", namespace, "--input", '{"orderId": 1}')
    assert ok.returncode == 0, ok.stderr
    assert len(kubectl.json("get", RUNS, "-n", namespace)["items"]) == 1
