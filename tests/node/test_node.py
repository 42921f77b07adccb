"""The local node runs Pods as a cluster does: ServiceAccount tokens, the `kubernetes` Service
and cluster DNS from inside a Pod, `kubectl logs` and `kubectl exec`, Jobs run to completion by
the Job controller; and the controller's image runs non-root on a read-only root filesystem."""

from __future__ import annotations

import json

from controller import __version__
from tests.conftest import Kubectl, eventually
from tests.node.conftest import IMAGE_REPOSITORY, IMAGE_TAG, python_job, run_in_pod, toolbox

IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"


def test_a_pod_reaches_the_api_server_by_its_service_name_with_its_token(
    nkubectl: Kubectl, nnamespace: str
) -> None:
    # The Pod's ServiceAccount may read Pods of its namespace, nothing more.
    nkubectl.run("create", "role", "read-pods", "--verb=get", "--resource=pods", "-n", nnamespace)
    nkubectl.run(
        "create",
        "rolebinding",
        "read-pods",
        "--role=read-pods",
        f"--serviceaccount={nnamespace}:default",
        "-n",
        nnamespace,
    )
    pod = toolbox(nkubectl, nnamespace)
    probe = run_in_pod(
        nkubectl,
        nnamespace,
        pod,
        """
import json, socket, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
token = open(sa + "token").read()
context = ssl.create_default_context(cafile=sa + "ca.crt")
namespace = open(sa + "namespace").read()
request = urllib.request.Request(
    f"https://kubernetes.default.svc/api/v1/namespaces/{namespace}/pods/{socket.gethostname()}",
    headers={"Authorization": "Bearer " + token},
)
with urllib.request.urlopen(request, context=context, timeout=10) as response:
    print(json.dumps({"ip": socket.gethostbyname("kubernetes.default"),
                      "pod": json.load(response)["metadata"]["namespace"]}))
""",
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    service = nkubectl.json("get", "service", "kubernetes", "-n", "default")
    assert seen == {"ip": service["spec"]["clusterIP"], "pod": nnamespace}


def test_the_image_runs_non_root_on_a_read_only_root_and_prints_its_version(
    nkubectl: Kubectl, nnamespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "version"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True},  # the image's own user must satisfy it
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": [
                        "sh",
                        "-c",
                        "blockflow version; id -u; touch /probe 2>/dev/null && echo rw || echo ro",
                    ],
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    nkubectl.apply(nnamespace, pod)
    eventually(
        lambda: (
            nkubectl.json("get", "pod", "version", "-n", nnamespace)["status"].get("phase")
            in ("Succeeded", "Failed")
        ),
        timeout=90,
        what="the version Pod to finish",
    )
    phase = nkubectl.json("get", "pod", "version", "-n", nnamespace)["status"]["phase"]
    logs = nkubectl.run("logs", "version", "-n", nnamespace).stdout.split()
    assert phase == "Succeeded", logs
    assert logs[:2] == ["blockflow", __version__], logs
    assert logs[-2:] == ["10001", "ro"]


def test_a_job_runs_to_completion_and_kubectl_logs_shows_its_output(
    nkubectl: Kubectl, nnamespace: str
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "count"},
        **python_job("print(sum(range(10)))"),
    }
    nkubectl.apply(nnamespace, job)
    nkubectl.run(
        "wait",
        "--for=condition=Complete",
        "job/count",
        "-n",
        nnamespace,
        "--timeout=90s",
        timeout=100,
    )
    assert nkubectl.run("logs", "job/count", "-n", nnamespace).stdout.strip() == "45"
