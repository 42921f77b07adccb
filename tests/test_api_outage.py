"""While the controller cannot reach the API server it says so: `/readyz` is 503 naming the
API server, a webhook is a 503 with Retry-After (the sender retries), and when the API server
is back everything goes on, nothing lost.

The controller reaches the API server through a loopback TCP proxy the test cuts, so the
real API server keeps serving the other tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Cluster, ControllerProcess, Kubectl, eventually
from tests.support.tcp_proxy import TcpProxy
from tests.support.workflow_helpers import (
    get_workflow,
    http,
    readyz,
    secret_value,
    wait_phase,
    workflow,
)


def proxied_kubeconfig(cluster: Cluster, proxy_dir: Path) -> tuple[Path, TcpProxy]:
    text = Path(cluster.kubeconfig).read_text()
    found = re.search(r"https://127\.0\.0\.1:(\d+)", text)
    assert found, "the kubeconfig names no loopback API server"
    proxy = TcpProxy(("127.0.0.1", int(found.group(1))))
    path = proxy_dir / "kubeconfig"
    path.write_text(text.replace(found.group(0), f"https://127.0.0.1:{proxy.port}"))
    return path, proxy


def test_readyz_and_webhooks_say_503_while_the_api_server_is_unreachable(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    tmp_path: Path,
) -> None:
    kubeconfig, proxy = proxied_kubeconfig(cluster, tmp_path)
    try:
        steps = [{"name": "wait", "uses": {"type": "sleep"}, "with": {"seconds": 0}}]
        kubectl.apply(namespace, workflow("w", {"trigger": {"webhook": {}}, "steps": steps}))
        controller = run_controller("--namespace", namespace, env={"KUBECONFIG": str(kubeconfig)})
        eventually(lambda: readyz(controller) == 200, what="the controller ready")
        wait_phase(kubectl, namespace, "w", "Activated")
        url = secret_value(kubectl, namespace, "w-workflow-signals", "triggerCallbackUrl")
        assert http("POST", url, {"n": 1})[0] == 202

        proxy.cut()
        base = f"http://127.0.0.1:{controller.port}"
        status, body = eventually(
            lambda: (r := http("GET", base + "/readyz"))[0] == 503 and r,
            what="/readyz not ready",
        )
        assert body["reason"] == "the Kubernetes API server cannot be reached"
        status, reply = http("POST", url, {"n": 2})
        assert status == 503, reply

        proxy.restore()
        eventually(lambda: readyz(controller) == 200, what="ready again")
        eventually(lambda: http("POST", url, {"n": 3})[0] == 202, what="webhooks accepted again")
        eventually(
            lambda: (
                (get_workflow(kubectl, namespace, "w").get("status") or {}).get("successCount") == 2
            ),
            what="both accepted runs completed and counted",
        )
        assert controller.proc.poll() is None
    finally:
        proxy.cut()
