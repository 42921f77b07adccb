"""The chart used as a platform engineer uses it, on a node that runs its Pods: `helm install
--wait` of the image built from this checkout with the default two replicas, the admission
webhook reached through the Service, the examples made Ready by the in-cluster controller, an
HTTP handler running as its own Deployment (finishing a deferred step through its callback URL),
trigger and hook URLs handed out by the controller used from inside the cluster, real Jobs, a
leader Pod deleted and an upgrade rolled with runs waiting, and an uninstall that leaves nothing
cluster-scoped behind.

The tests of this module share one release (installing it costs seconds, not the point of each
test) and run in order: the last ones upgrade and uninstall it."""

from __future__ import annotations

import json
import re
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.conftest import EXAMPLES_DIR, REPO, Kubectl, blockflow, eventually
from tests.node.conftest import (
    CHART,
    IMAGE_REPOSITORY,
    IMAGE_TAG,
    NODE_PLANE_DIR,
    NodeCluster,
    drop_namespace,
    helm_config,
    image_values,
    is_ready,
    leader_pod,
    make_namespace,
    pods,
    python_job,
    toolbox,
)
from tests.support.doc_commands import commands_of, outcomes, plan, report, script
from tests.support.doc_rules import CHART_DOCUMENTS, CHART_RULES
from tests.support.workflow_helpers import secret_value, step, wait_phase, wait_run, workflow

LEASE_SECONDS = 5


@dataclass
class Release:
    config: helm.Config
    name: str
    namespace: str

    @property
    def fullname(self) -> str:
        """As the chart's blockflow.fullname names it."""
        return self.name if "blockflow" in self.name else f"{self.name}-blockflow"

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"

    @property
    def url(self) -> str:
        return f"http://{self.fullname}.{self.namespace}.svc:8080"


@pytest.fixture(scope="module")
def release(node_cluster: NodeCluster) -> Iterator[Release]:
    kubectl = node_cluster.kubectl
    namespace = make_namespace(kubectl, "blockflow-system")
    with helm_config(node_cluster, namespace) as config:
        installed = config.install(
            str(CHART),
            "blockflow",  # the release name the docs use: their commands run against it
            image_values(leaseSeconds=LEASE_SECONDS),
            namespace=namespace,
            wait="watcher",  # Helm 4's --wait: kstatus on every object of the release
            timeout=180,
        )
        assert installed["status"] == "deployed"
        yield Release(config, "blockflow", namespace)
        config.uninstall("blockflow", ignore_not_found=True)
    drop_namespace(kubectl, namespace)


@pytest.fixture
def ns(node_cluster: NodeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = make_namespace(node_cluster.kubectl, request.node.name)
    yield name
    drop_namespace(node_cluster.kubectl, name)


def the_leader(kubectl: Kubectl, release: Release) -> dict[str, Any]:
    found: dict[str, Any] = eventually(
        lambda: leader_pod(kubectl, release.namespace, release.selector),
        timeout=60,
        what="exactly one Ready Pod labelled leader",
    )
    return found


def test_install_waits_for_two_ready_replicas_and_the_service_reaches_only_the_leader(
    nkubectl: Kubectl, release: Release
) -> None:
    replicas = pods(nkubectl, release.namespace, release.selector)
    assert len(replicas) == 2
    assert all(p["status"]["phase"] == "Running" and is_ready(p) for p in replicas)
    leader = the_leader(nkubectl, release)
    endpoints = nkubectl.json("get", "endpoints", release.fullname, "-n", release.namespace)
    addresses = [a["ip"] for subset in endpoints.get("subsets", []) for a in subset["addresses"]]
    assert addresses == [leader["status"]["podIP"]]
    deployment = nkubectl.json("get", "deployment", release.fullname, "-n", release.namespace)
    assert deployment["status"]["readyReplicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
    )


def test_the_webhook_refuses_a_bad_manifest_and_the_demo_becomes_ready(
    nkubectl: Kubectl, release: Release, ns: str
) -> None:
    bad = blockflow(
        "Block",
        "bad",
        {"app": "demo", "type": "bucket", "config": {"k": {"signalRef": {"signal": "x"}}}},
    )
    refused = nkubectl.run("apply", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode != 0
    assert 'admission webhook "validate.blockflow.dev" denied the request' in refused.stderr
    assert "spec.config.k.signalRef" in refused.stderr, refused.stderr

    nkubectl.run("apply", "-n", ns, "-f", str(EXAMPLES_DIR / "demo"))
    nkubectl.run(
        "wait",
        "--for=condition=Ready",
        "app/demo",
        "block/assets",
        "block/consumer",
        "-n",
        ns,
        "--timeout=90s",
        timeout=100,
    )
    consumer = nkubectl.json("get", "block", "consumer", "-n", ns)
    assert consumer["status"]["lifecycle"]["status"] == "ready"


def test_an_http_handler_deployment_serves_an_app_and_finishes_a_step_by_its_callback(
    nkubectl: Kubectl, release: Release, ns: str
) -> None:
    folder = EXAMPLES_DIR / "http-handler"
    storage = (folder / "storage.yaml").read_text()
    assert "storage-handler.tools.svc:8080" in storage
    storage = storage.replace("storage-handler.tools.svc", f"storage-handler.{ns}.svc")
    nkubectl.run("apply", "-n", ns, "-f", str(folder / "deploy.yaml"))
    nkubectl.run("apply", "-n", ns, "-f", "-", input=storage)
    nkubectl.run(
        "wait",
        "--for=condition=Ready",
        "app/storage",
        "block/key",
        "block/assets-bucket",
        "-n",
        ns,
        "--timeout=120s",
        timeout=130,
    )
    bucket = nkubectl.json("get", "block", "assets-bucket", "-n", ns)
    assert bucket["status"]["signals"]["bucketId"].startswith("bkt-")
    handler = pods(nkubectl, ns, "app.kubernetes.io/name=storage-handler")
    assert [p["status"]["phase"] for p in handler] == ["Running"]

    # A step of that handler defers; the handler's Pod finishes it through the callback URL the
    # in-cluster controller handed out.
    export = {"app": "storage", "type": "export"}
    nkubectl.apply(
        ns,
        workflow(
            "export",
            {
                "trigger": {"event": "Export.requested"},
                "steps": [{"name": "export", "uses": export, "with": {"bucket": "assets"}}],
            },
        ),
    )
    wait_phase(nkubectl, ns, "export", "Activated")
    run = blockflow("WorkflowRun", "export-1", {"workflowRef": {"name": "export"}})
    nkubectl.run("create", "-n", ns, "-f", "-", input=json.dumps(run))
    done = wait_run(nkubectl, ns, "export-1", "completed", timeout=60)
    assert step(done, "export")["outcome"] == {
        "id": "exported",
        "data": {"exported": "assets", "objects": 3},
    }


def hook_workflow(name: str) -> dict[str, Any]:
    return workflow(
        name,
        {
            "trigger": {"webhook": {}},
            "steps": [
                {
                    "name": "wait",
                    "uses": {"type": "hook"},
                    "with": {"token": "${{ 'go-' + string(event.body.n) }}"},
                },
                {"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 0}},
            ],
        },
    )


POST = """
import json, sys, urllib.request, urllib.error
url, body, key = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else "")
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = "Bearer " + key
request = urllib.request.Request(url, data=body.encode(), method="POST", headers=headers)
try:
    with urllib.request.urlopen(request, timeout=20) as response:
        print(json.dumps([response.status, json.loads(response.read() or b"null")]))
except urllib.error.HTTPError as exc:
    print(json.dumps([exc.code, exc.read().decode()]))
"""


def post_from_pod(
    kubectl: Kubectl, namespace: str, pod: str, url: str, body: Any, key: str = ""
) -> tuple[int, Any]:
    """POST from inside the cluster: the URL is resolved by cluster DNS, routed by kube-proxy.

    A name the test bed's DNS did not resolve is tried again twice (and reported as a warning
    with the DNS server's log): it was seen once in CI and never here, and what is under test is
    the controller, not the test bed."""
    argv = ["exec", "-n", namespace, pod, "--", "python3", "-c", POST, url, json.dumps(body), key]
    for attempt in range(3):
        result = kubectl.run(*argv, timeout=60, check=False)
        if result.returncode == 0 or "Name or service not known" not in result.stderr:
            break
        dns_log = NODE_PLANE_DIR / "logs" / "cluster-dns.log"
        tail = dns_log.read_text().splitlines()[-15:] if dns_log.exists() else []
        warnings.warn(
            f"cluster DNS did not resolve {url.split('/')[2]} (attempt {attempt + 1}); "
            "cluster-dns log:\n" + "\n".join(tail),
            stacklevel=2,
        )
        time.sleep(2)
    assert result.returncode == 0, result.stderr
    status, reply = json.loads(result.stdout)
    return int(status), reply


def start_waiting_run(kubectl: Kubectl, ns: str, pod: str, workflow_name: str, n: int) -> str:
    url = secret_value(kubectl, ns, f"{workflow_name}-workflow-signals", "triggerCallbackUrl")
    status, reply = post_from_pod(kubectl, ns, pod, url, {"n": n})
    assert status == 202, reply
    run: str = reply["run"]
    wait_run(kubectl, ns, run, "waiting")
    return run


def resume(
    kubectl: Kubectl, ns: str, pod: str, release: Release, workflow_name: str, n: int
) -> Any:
    key = secret_value(kubectl, ns, f"{workflow_name}-workflow-signals", "hookKey")
    status, reply = post_from_pod(kubectl, ns, pod, f"{release.url}/hooks/go-{n}", {}, key)
    assert status == 200, reply
    return reply


def test_trigger_and_hook_urls_handed_out_work_from_inside_the_cluster(
    nkubectl: Kubectl, release: Release, ns: str
) -> None:
    pod = toolbox(nkubectl, ns)
    nkubectl.apply(ns, hook_workflow("inside"))
    wait_phase(nkubectl, ns, "inside", "Activated")
    url = secret_value(nkubectl, ns, "inside-workflow-signals", "triggerCallbackUrl")
    assert url.startswith(f"{release.url}/triggers/"), url
    run = start_waiting_run(nkubectl, ns, pod, "inside", 1)
    assert resume(nkubectl, ns, pod, release, "inside", 1) == {"runs": {run: "completed"}}
    done = wait_run(nkubectl, ns, run, "completed")
    assert step(done, "nap")["state"] == "completed"


def test_the_job_step_runs_a_real_job_and_a_failing_job_fails_the_step(
    nkubectl: Kubectl, release: Release, ns: str
) -> None:
    for name, code in (("good", "print('done')"), ("bad", "raise SystemExit(3)")):
        nkubectl.apply(
            ns,
            workflow(
                name,
                {
                    "trigger": {"webhook": {}},
                    "steps": [
                        {
                            "name": "job",
                            "uses": {"type": "kubernetes.job"},
                            "with": {"template": python_job(code), "pollSeconds": 1},
                        }
                    ],
                },
            ),
        )
    pod = toolbox(nkubectl, ns)
    names = {}
    for name in ("good", "bad"):
        wait_phase(nkubectl, ns, name, "Activated")
        url = secret_value(nkubectl, ns, f"{name}-workflow-signals", "triggerCallbackUrl")
        status, reply = post_from_pod(nkubectl, ns, pod, url, {})
        assert status == 202, reply
        names[name] = reply["run"]
    good = wait_run(nkubectl, ns, names["good"], "completed", timeout=120)
    job = step(good, "job")["outcome"]["data"]["job"]
    assert step(good, "job")["outcome"]["id"] == "succeeded"
    assert nkubectl.run("logs", f"job/{job}", "-n", ns).stdout.strip() == "done"
    bad = wait_run(nkubectl, ns, names["bad"], "failed", timeout=120)
    error = step(bad, "job")["error"]
    assert re.search(
        r"Job \S+ failed: Job has reached the specified backoff limit", error["message"]
    )
    assert error["retryable"] is False


@pytest.mark.parametrize("document", CHART_DOCUMENTS)
def test_the_docs_commands_run_against_the_release(
    node_cluster: NodeCluster, release: Release, document: str
) -> None:
    """docs/operations.md's troubleshooting commands, as written but for the namespace (the
    release's, for `blockflow-system`): they find the Pods, probes, logs and registration.
    The http-handler example's, as written: its handler's Deployment in `tools` serves an App
    and two Blocks that become Ready."""
    kubectl = node_cluster.kubectl
    before = {n["metadata"]["name"] for n in kubectl.json("get", "namespaces")["items"]}
    commands = commands_of((REPO / document).read_text(), document)
    planned = plan(commands, CHART_RULES, local=[("blockflow-system", release.namespace)])
    kubectl_dir = Path(kubectl.binary).parent
    setup = f"export KUBECONFIG={node_cluster.kubeconfig} PATH={kubectl_dir}:$PATH"
    try:
        done = subprocess.run(
            ["bash", "-c", script(planned, REPO, setup=setup)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        after = {n["metadata"]["name"] for n in kubectl.json("get", "namespaces")["items"]}
        for made in sorted(after - before):  # `tools`, made by the example's commands
            drop_namespace(kubectl, made)
    results = outcomes(planned, done.stdout)
    failed = [result for result in results if result.problems]
    assert len(results) >= 3
    assert not failed, f"{report(failed)}\n(stderr: {done.stderr[-2000:]})"


def test_a_deleted_leader_and_an_upgrade_lose_no_waiting_run(
    nkubectl: Kubectl, release: Release, ns: str
) -> None:
    pod = toolbox(nkubectl, ns)
    nkubectl.apply(ns, hook_workflow("ha"))
    wait_phase(nkubectl, ns, "ha", "Activated")
    first, second = (start_waiting_run(nkubectl, ns, pod, "ha", n) for n in (1, 2))

    old = the_leader(nkubectl, release)["metadata"]["name"]
    deleted = time.monotonic()
    nkubectl.run("delete", "pod", old, "-n", release.namespace, "--wait=false")
    new = eventually(
        lambda: (
            (p := leader_pod(nkubectl, release.namespace, release.selector))
            and p["metadata"]["name"] != old
            and p
        ),
        timeout=60,
        what="another replica to lead",
    )
    took_over = time.monotonic() - deleted
    assert took_over < LEASE_SECONDS + 10, took_over
    assert resume(nkubectl, ns, pod, release, "ha", 1) == {"runs": {first: "completed"}}
    wait_run(nkubectl, ns, first, "completed")

    before = {p["metadata"]["name"] for p in pods(nkubectl, release.namespace, release.selector)}
    upgraded = release.config.upgrade(
        str(CHART),
        release.name,
        image_values(leaseSeconds=LEASE_SECONDS, logLevel="DEBUG"),
        namespace=release.namespace,
        wait="watcher",
        timeout=180,
    )
    assert upgraded["revision"] == 2
    after = {p["metadata"]["name"] for p in pods(nkubectl, release.namespace, release.selector)}
    assert len(after) == 2 and not after & before and new["metadata"]["name"] not in after
    env = nkubectl.json("get", "deployment", release.fullname, "-n", release.namespace)
    container = env["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "BLOCKFLOW_LOG_LEVEL", "value": "DEBUG"} in container["env"]
    the_leader(nkubectl, release)
    assert resume(nkubectl, ns, pod, release, "ha", 2) == {"runs": {second: "completed"}}
    wait_run(nkubectl, ns, second, "completed")


def cluster_scoped(kubectl: Kubectl, release: Release) -> list[str]:
    found = []
    for kind in ("clusterrole", "clusterrolebinding", "validatingwebhookconfiguration"):
        items = kubectl.json("get", kind, "-l", release.selector)["items"]
        found += [f"{kind}/{item['metadata']['name']}" for item in items]
    return found


def test_uninstall_leaves_nothing_cluster_scoped(nkubectl: Kubectl, release: Release) -> None:
    assert len(cluster_scoped(nkubectl, release)) >= 3  # what the install made
    release.config.uninstall(release.name, wait="watcher", timeout=120)
    assert cluster_scoped(nkubectl, release) == []
    eventually(
        lambda: pods(nkubectl, release.namespace, release.selector) == [],
        timeout=60,
        what="the controller's Pods to go",
    )


def test_install_wait_fails_naming_why_when_the_controller_never_gets_ready(
    node_cluster: NodeCluster, nkubectl: Kubectl, ns: str
) -> None:
    """An image that is not on the node: --wait fails and says which object is not ready; the
    webhook with no ready replica refuses applies until the release is uninstalled."""
    values = image_values()
    values["image"]["tag"] = "missing"
    app = blockflow("App", "demo", {"handler": {"python": "demo"}})
    with helm_config(node_cluster, ns) as config:
        with pytest.raises(helm.HelmError) as failed:
            config.install(str(CHART), "broken", values, namespace=ns, wait="watcher", timeout=20)
        message = str(failed.value)
        assert f"Deployment/{ns}/broken-blockflow not ready" in message, message
        assert "Available: 0/2" in message, message
        blocked = nkubectl.run("apply", "-n", ns, "-f", "-", input=json.dumps(app), check=False)
        assert 'failed calling webhook "validate.blockflow.dev"' in blocked.stderr, blocked
        config.uninstall("broken")
    nkubectl.run("apply", "-n", ns, "-f", "-", input=json.dumps(app))
