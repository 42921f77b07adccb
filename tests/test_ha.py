"""Two replicas: one leads (holds the Lease), one stands by; kill -9 the leader and the
standby takes over within the lease duration, with no run lost."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from tests.conftest import Cluster, ControllerProcess, Kubectl, eventually
from tests.support.workflow_helpers import (
    get_run,
    http,
    readyz,
    secret_value,
    step,
    wait_phase,
    wait_run,
    workflow,
)

LEASE_SECONDS = 3


def runs_page(controller: ControllerProcess, namespace: str, token: str) -> str:
    """The replica's run list page, for someone signed in with ``token``."""
    url = f"http://127.0.0.1:{controller.port}/ui/namespaces/{namespace}/runs"
    status, page = http("GET", url, headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and isinstance(page, str), (status, page)
    return page


def scrape(controller: ControllerProcess) -> str:
    """The replica's /metrics (served by standbys too)."""
    text = http("GET", f"http://127.0.0.1:{controller.port}/metrics")[1]
    assert isinstance(text, str), text
    return text


def test_the_standby_takes_over_from_a_killed_leader_and_no_run_is_lost(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
) -> None:
    env = {
        "BLOCKFLOW_LEADER_ELECTION": "true",
        "BLOCKFLOW_LEASE_SECONDS": str(LEASE_SECONDS),
        "BLOCKFLOW_CONTROLLER_NAMESPACE": namespace,  # the Lease and the token key live here
        "BLOCKFLOW_LEASE_NAME": "blockflow-" + namespace[-6:],
    }
    leader = run_controller("--namespace", namespace, env=env)
    eventually(lambda: readyz(leader) == 200, what="the first replica leads")
    standby = run_controller("--namespace", namespace, env=env)
    standby.wait_for_log(lambda r: r.get("event", "").startswith("standing by"), what="standby")
    assert readyz(standby) == 503  # the Service sends nothing to a standby
    lease_metric = f'leader_election_master_status{{name="{env["BLOCKFLOW_LEASE_NAME"]}"}}'
    assert f"{lease_metric} 1.0" in scrape(leader)
    assert f"{lease_metric} 0.0" in scrape(standby)
    # Its web page says why its run lists are empty, not just shows them empty.
    if cluster.plane is not None:
        state = cluster.plane.load_state()
        assert state is not None
        token = state.admin_token
        assert "This replica is standing by" in runs_page(standby, namespace, token)
        assert "standing by" not in runs_page(leader, namespace, token)

    kubectl.apply(
        namespace,
        workflow(
            "ha",
            {
                "trigger": {"webhook": {}},
                "steps": [
                    {"name": "wait", "uses": {"type": "hook"}, "with": {"token": "go"}},
                    {"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 2}},
                ],
            },
        ),
    )
    wait_phase(kubectl, namespace, "ha", "Activated")
    url = secret_value(kubectl, namespace, "ha-workflow-signals", "triggerCallbackUrl")
    name = http("POST", url, {})[1]["run"]
    wait_run(kubectl, namespace, name, "waiting")
    assert get_run(kubectl, namespace, name)["metadata"]["labels"]["blockflow.dev/trigger"] == (
        "webhook"
    )

    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait(timeout=10)
    killed = time.monotonic()
    eventually(lambda: readyz(standby) == 200, timeout=30, what="the standby took over")
    took_over = time.monotonic() - killed
    assert took_over < 3 * LEASE_SECONDS + 5, took_over
    assert f"{lease_metric} 1.0" in scrape(standby)
    if cluster.plane is not None:
        assert "standing by" not in runs_page(standby, namespace, token)

    key = secret_value(kubectl, namespace, "ha-workflow-signals", "hookKey")
    hook = f"http://127.0.0.1:{standby.port}/hooks/go"
    status, reply = http("POST", hook, {"ok": True}, headers={"Authorization": f"Bearer {key}"})
    assert (status, reply) == (200, {"runs": {name: "completed"}})
    done = wait_run(kubectl, namespace, name, "completed")
    assert step(done, "nap")["state"] == "completed"
    lease = kubectl.json("get", "lease", env["BLOCKFLOW_LEASE_NAME"], "-n", namespace)
    assert lease["spec"]["holderIdentity"].endswith(f"-{standby.proc.pid}")
    assert lease["spec"]["leaseTransitions"] >= 1
    assert get_run(kubectl, namespace, name)["status"]["accounted"] == ["started", "finished"]
