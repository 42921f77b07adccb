"""What users see through kubectl: examples accepted, bad input refused, explain, columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLES_DIR, Kubectl, blockflow, demo_block


def test_every_example_is_accepted_by_the_api_server(kubectl: Kubectl, namespace: str) -> None:
    result = kubectl.run("apply", "-n", namespace, "-R", "-f", str(EXAMPLES_DIR))
    created = [line for line in result.stdout.splitlines() if line.endswith(" created")]
    documents = sum(
        text.count("\nkind: ") + text.startswith("kind: ")
        for text in (p.read_text() for p in EXAMPLES_DIR.rglob("*.yaml"))
    )
    assert len(created) == documents
    listed = kubectl.json("get", "blockflow", "-n", namespace)["items"]
    kinds = {item["kind"] for item in listed}
    assert kinds == {"App", "Block", "Workflow", "WorkflowRun"}


def test_server_side_defaults_are_applied(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(namespace, demo_block("b"))
    spec = kubectl.json("get", "block", "b", "-n", namespace)["spec"]
    assert spec["deletionPolicy"] == "Delete"


def test_free_form_config_is_kept_verbatim(kubectl: Kubectl, namespace: str) -> None:
    config = {
        "name": "x",
        "nested": {"list": [1, "two", {"three": 3.5}], "flag": True},
        "kmsKey": {"signalRef": {"block": "key", "signal": "keyId"}},
    }
    kubectl.apply(
        namespace, blockflow("Block", "b", {"app": "demo", "type": "bucket", "config": config})
    )
    assert kubectl.json("get", "block", "b", "-n", namespace)["spec"]["config"] == config


INVALID = {
    "wrong type": (
        "kind: Block\nmetadata: {name: bad}\n"
        "spec: {app: demo, type: bucket, config: not-an-object}\n",
        ["spec.config", "must be of type object"],
    ),
    "missing required field": (
        "kind: Block\nmetadata: {name: bad}\nspec: {type: bucket}\n",
        ["spec.app", "Required value"],
    ),
    "unknown enum value": (
        "kind: Block\nmetadata: {name: bad}\n"
        "spec: {app: demo, type: bucket, deletionPolicy: Sometimes}\n",
        ["spec.deletionPolicy", 'Unsupported value: "Sometimes"', '"Delete", "Orphan"'],
    ),
    "missing spec": ("kind: App\nmetadata: {name: bad}\n", ["spec", "Required value"]),
    "two handler transports": (
        "kind: App\nmetadata: {name: bad}\n"
        "spec: {handler: {python: demo, http: {url: 'http://h:8080'}}}\n",
        ["spec.handler", "at most 1 properties"],
    ),
    "handler url without scheme": (
        "kind: App\nmetadata: {name: bad}\nspec: {handler: {http: {url: 'h:8080'}}}\n",
        ["spec.handler.http.url", "should match"],
    ),
    "unknown workflow state": (
        "kind: Workflow\nmetadata: {name: bad}\nspec: {state: Running}\n",
        ["spec.state", 'Unsupported value: "Running"', '"Draft", "Active", "Paused", "Archived"'],
    ),
    "two triggers": (
        "kind: Workflow\nmetadata: {name: bad}\nspec: {trigger: {event: Deal.won, webhook: {}}}\n",
        ["spec.trigger", "at most 1 properties"],
    ),
    "step name not usable in CEL": (
        "kind: Workflow\nmetadata: {name: bad}\n"
        "spec: {steps: [{name: 'send mail', uses: {type: http}}]}\n",
        ["spec.steps.name", "should match"],
    ),
    "negative timeout": (
        "kind: Workflow\nmetadata: {name: bad}\n"
        "spec: {steps: [{name: s, uses: {type: http}, timeoutSeconds: -5}]}\n",
        ["spec.steps.timeoutSeconds", "greater than or equal to 1"],
    ),
    "run input that is not an object": (
        "kind: WorkflowRun\nmetadata: {name: bad}\n"
        "spec: {workflowRef: {name: wf}, input: [1, 2]}\n",
        ["spec.input", "must be of type object"],
    ),
    "run without workflow": (
        "kind: WorkflowRun\nmetadata: {name: bad}\nspec: {input: {a: 1}}\n",
        ["spec.workflowRef", "Required value"],
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID), ids=sorted(INVALID))
def test_invalid_manifest_is_rejected_naming_the_field(
    kubectl: Kubectl, namespace: str, case: str
) -> None:
    body, expected = INVALID[case]
    manifest = "apiVersion: blockflow.dev/v1alpha1\n" + body
    # --validate=false: the API server itself must refuse it (GitOps tools skip kubectl's checks).
    result = kubectl.run(
        "apply", "--validate=false", "-n", namespace, "-f", "-", input=manifest, check=False
    )
    assert result.returncode != 0, f"accepted: {manifest}"
    for fragment in expected:
        assert fragment in result.stderr, f"{fragment!r} not in: {result.stderr}"
    assert kubectl.run("get", "blockflow", "-n", namespace, "-o", "name").stdout == ""


def test_kubectl_explain_shows_the_model_descriptions(kubectl: Kubectl) -> None:
    block = kubectl.run("explain", "block.spec").stdout
    assert "Desired state of a Block." in block
    assert "Name of the App (same namespace) whose handler runs it." in block
    assert "Delete runs the handler's drain on deletion; Orphan skips it." in block
    steps = kubectl.run("explain", "workflow.spec.steps").stdout
    assert "Unique step name; CEL sees its result as steps.<name>." in steps
    lifecycle = kubectl.run("explain", "app.status.lifecycle").stdout
    assert "ready, in_progress, failed, draining, drained or draining_failed." in lifecycle


def test_category_short_names_and_printer_columns(kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-R", "-f", str(EXAMPLES_DIR / "demo"))
    kubectl.run("apply", "-n", namespace, "-f", str(EXAMPLES_DIR / "onboarding" / "workflow.yaml"))
    everything = kubectl.run("get", "blockflow", "-n", namespace).stdout
    for name in (
        "app.blockflow.dev/demo",
        "block.blockflow.dev/assets",
        "workflow.blockflow.dev/onboarding",
    ):
        assert name in everything
    blocks_header = kubectl.run("get", "blk", "-n", namespace).stdout.splitlines()[0].split()
    assert blocks_header == ["NAME", "APP", "TYPE", "STATUS", "DESCRIPTION", "AGE"]
    workflow_header = kubectl.run("get", "bfwf", "-n", namespace).stdout.splitlines()[0]
    assert workflow_header.split() == [
        "NAME", "PHASE", "STATUS", "VERSION", "RUNS", "LAST", "RUN", "DESCRIPTION", "AGE"
    ]  # fmt: skip
    assert kubectl.run("get", "wfr", "-n", namespace).returncode == 0


def test_examples_directory_is_not_empty() -> None:
    assert len(list(Path(EXAMPLES_DIR).rglob("*.yaml"))) >= 4
