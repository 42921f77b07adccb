"""examples/onboarding end to end: the real controller, the real API server and the example CRM
(``examples/onboarding/crm.py``) as a subprocess on a free loopback port.

The manifests are ``examples/onboarding/workflow.yaml`` itself, with only the CRM's address
rewritten. Everything goes through the doors a user uses: ``POST /events/<namespace>`` with
a structured CloudEvent, ``POST /hooks/<token>`` with the workflow's hookKey, kubectl, and
the CRM's own API.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from controller.workflows.naming import WORKFLOW_LABEL
from tests.conftest import EXAMPLES_DIR, ControllerProcess, Kubectl, eventually, free_port

EXAMPLE_DIR = EXAMPLES_DIR / "onboarding"
CRM_ADDRESS = "127.0.0.1:8090"  # what workflow.yaml says; the test's CRM listens elsewhere
ONBOARDING = "onboarding"
WELCOME = "welcome"
EVENTS_TOKEN = "demo-events-token"
RUNS = "workflowruns.blockflow.dev"

# Loopback only: never through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One request; the status and the parsed JSON answer (text when it is not JSON)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _opener.open(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return status, raw.decode(errors="replace")


def reachable(url: str) -> bool:
    try:
        return http("GET", url)[0] == 200
    except OSError:
        return False


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def crm() -> Iterator[str]:
    """The example CRM on a free port; its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE_DIR / "crm.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(
            lambda: proc.poll() is not None or reachable(f"{url}/customers"),
            timeout=20,
            what="the example CRM to listen",
        )
        assert proc.poll() is None, f"crm.py exited ({proc.returncode})"
        yield url
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        print(f"\n----- crm.py output -----\n{output}")


def _rewrite(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {k: _rewrite(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, old, new) for v in value]
    return value


def manifests(crm_url: str) -> list[dict[str, Any]]:
    """The documents of workflow.yaml, pointed at the test's CRM."""
    text = (EXAMPLE_DIR / "workflow.yaml").read_text()
    assert CRM_ADDRESS in text
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    host_port = crm_url.removeprefix("http://")
    rewritten: list[dict[str, Any]] = [_rewrite(doc, CRM_ADDRESS, host_port) for doc in documents]
    assert CRM_ADDRESS not in json.dumps(rewritten)
    return rewritten


# -- reading state -----------------------------------------------------------------------------


def runs_of(kubectl: Kubectl, namespace: str, workflow: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        "get", RUNS, "-n", namespace, "-l", f"{WORKFLOW_LABEL}={workflow}"
    )["items"]
    return items


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    for record in (run.get("status") or {}).get("steps") or []:
        if record["name"] == name:
            return dict(record)
    return {}


def the_run_when(
    kubectl: Kubectl,
    namespace: str,
    workflow: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
) -> dict[str, Any]:
    """The workflow's single run, once `check` holds for it."""

    seen: list[list[dict[str, Any]]] = [[]]

    def probe() -> dict[str, Any] | None:
        found = seen[0] = runs_of(kubectl, namespace, workflow)
        if len(found) == 1 and check(found[0]):
            return found[0]
        return None

    try:
        run: dict[str, Any] = eventually(probe, what=f"the one {workflow} run {what}")
    except AssertionError as exc:
        statuses = json.dumps([r.get("status") for r in seen[0]], indent=1)
        raise AssertionError(f"{exc}\nruns of {workflow} (status): {statuses}") from None
    return run


def state(run: dict[str, Any]) -> str | None:
    return (run.get("status") or {}).get("state")


def settles(check: Callable[[], Any], timeout: float) -> bool:
    """Whether `check` holds within `timeout` seconds (for a check asserted later)."""
    try:
        eventually(check, timeout=timeout)
    except AssertionError:
        return False
    return True


# -- the scenario ------------------------------------------------------------------------------


def test_onboarding_example_end_to_end(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    crm: str,
) -> None:
    controller = run_controller("--namespace", namespace)
    api = f"http://127.0.0.1:{controller.port}"
    kubectl.apply(namespace, *manifests(crm))

    def phase(workflow: str) -> str | None:
        body = kubectl.json("get", "workflow", workflow, "-n", namespace)
        return (body.get("status") or {}).get("phase")

    eventually(
        lambda: all(phase(w) == "Activated" for w in (ONBOARDING, WELCOME)),
        what=f"Workflows {ONBOARDING} and {WELCOME} to be Activated",
    )
    eventually(lambda: reachable(f"{api}/readyz"), what="the controller's /readyz")

    # A won deal, as a structured CloudEvent.
    event = {
        "specversion": "1.0",
        "id": "deal-4711-won",
        "source": "crm.example/deals",
        "type": "Deal.won",
        "data": {"dealId": 4711, "company": "ACME"},
    }
    headers = {
        "Authorization": f"Bearer {EVENTS_TOKEN}",
        "Content-Type": "application/cloudevents+json",
    }
    events_url = f"{api}/events/{namespace}"
    assert http("POST", events_url, event, headers) == (202, {"runs": 1})
    (run,) = runs_of(kubectl, namespace, ONBOARDING)
    run_name = run["metadata"]["name"]
    assert run["spec"]["input"]["data"] == event["data"]

    # The same event again (same source and id): no second run.
    assert http("POST", events_url, event, headers) == (202, {"runs": 0})
    assert [r["metadata"]["name"] for r in runs_of(kubectl, namespace, ONBOARDING)] == [run_name]
    # A wrong token starts nothing either.
    refused, _ = http("POST", events_url, event, {**headers, "Authorization": "Bearer nope"})
    assert refused == 401

    # The customer is created; the run waits for the approval.
    run = the_run_when(
        kubectl,
        namespace,
        ONBOARDING,
        lambda r: step(r, "approve").get("state") == "waiting",
        "with step approve waiting",
    )
    # ...and while it waits for a hook the run's own state is `waiting`. Checked now, asserted
    # at the end, so that this does not hide how the rest of the scenario goes.
    run_was_waiting = settles(
        lambda: state(runs_of(kubectl, namespace, ONBOARDING)[0]) == "waiting", timeout=10
    )
    state_while_waiting = state(runs_of(kubectl, namespace, ONBOARDING)[0])
    created = step(run, "createCustomer")
    assert created["state"] == "completed", created
    assert created["outcome"]["data"]["status"] == 201
    customer = created["outcome"]["data"]["body"]
    assert customer["name"] == "ACME" and customer["id"].startswith("cus_")
    assert http("GET", f"{crm}/customers") == (200, [customer])

    listed = subprocess.run(
        [sys.executable, "-m", "controller", "run", "list", "-n", namespace],
        capture_output=True,
        text=True,
        env=kubectl.env(),
        timeout=30,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert run_name in listed.stdout

    # The approval: the hook token from the event, the hookKey from the workflow's Secret.
    hook_url = f"{api}/hooks/deal:4711"
    approval = {"decision": "approve", "by": "ada"}
    json_type = {"Content-Type": "application/json"}
    status, answer = http("POST", hook_url, approval, json_type)
    assert status == 401, answer
    status, answer = http("POST", hook_url, approval, {**json_type, "Authorization": "Bearer x"})
    assert status == 401, answer
    assert step(runs_of(kubectl, namespace, ONBOARDING)[0], "approve")["state"] == "waiting"

    secret = eventually(
        lambda: (
            kubectl.json("get", "secret", f"{ONBOARDING}-workflow-signals", "-n", namespace).get(
                "data"
            )
            or {}
        ).get("hookKey"),
        what=f"the hookKey in Secret {ONBOARDING}-workflow-signals",
    )
    hook_key = base64.b64decode(secret).decode()
    status, answer = http(
        "POST", hook_url, approval, {**json_type, "Authorization": f"Bearer {hook_key}"}
    )
    assert status == 200, answer
    assert run_name in answer["runs"]

    run = the_run_when(
        kubectl, namespace, ONBOARDING, lambda r: state(r) == "completed", "completed"
    )
    assert [(s["name"], s["state"]) for s in run["status"]["steps"]] == [
        ("createCustomer", "completed"),
        ("approve", "completed"),
        ("announce", "completed"),
    ]
    approve = step(run, "approve")["outcome"]
    assert approve["id"] == "approved" and approve["data"]["by"] == "ada"
    announce = step(run, "announce")["outcome"]
    assert announce["id"] == "emitted"
    assert announce["data"]["type"] == "Customer.onboarded" and announce["data"]["runs"] == 1

    # Exactly one customer, however often the step was tried.
    assert http("GET", f"{crm}/customers") == (200, [customer])

    # Customer.onboarded started the welcome workflow, which looked the customer up.
    welcome = the_run_when(
        kubectl, namespace, WELCOME, lambda r: state(r) == "completed", "completed"
    )
    assert welcome["spec"]["input"]["type"] == "Customer.onboarded"
    assert welcome["spec"]["input"]["data"] == {
        "customerId": customer["id"],
        "company": "ACME",
        "approved": True,
        "approvedBy": "ada",
    }
    fetched = step(welcome, "fetchCustomer")
    assert fetched["state"] == "completed", fetched
    assert fetched["outcome"]["data"] == {"status": 200, "body": customer}

    assert run_was_waiting, (
        f"while its step approve waited for a hook, run {run_name} had status.state "
        f"{state_while_waiting!r}; expected 'waiting'"
    )
