"""Workflows end to end: the real controller, the real API server, real HTTP on loopback.

A step service (tests/support/step_service.py) plays the App handler (step and trigger blocks)
and the target of `http` steps, so calls, idempotency keys and effects are counted at a
real server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from controller.server.tokens import token_hash
from tests.conftest import ControllerProcess, Kubectl, eventually
from tests.support.step_service import StepService
from tests.support.workflow_helpers import (
    get_run,
    get_workflow,
    http,
    runs,
    secret_value,
    serving,
    set_state,
    step,
    wait_phase,
    wait_run,
    workflow,
)


def base(controller: ControllerProcess) -> str:
    return f"http://127.0.0.1:{controller.port}"


def trigger_url(kubectl: Kubectl, namespace: str, name: str) -> str:
    return secret_value(kubectl, namespace, f"{name}-workflow-signals", "triggerCallbackUrl")


def only_run(kubectl: Kubectl, namespace: str, name: str) -> str:
    found = eventually(lambda: runs(kubectl, namespace, name), what=f"a run of {name}")
    assert len(found) == 1, [r["metadata"]["name"] for r in found]
    return str(found[0]["metadata"]["name"])


# -- activation ------------------------------------------------------------------------------


def test_a_webhook_run_uses_cel_and_the_http_step_sends_its_execution_id(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    controller = serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        workflow(
            "signup",
            {
                "trigger": {"webhook": {}},
                "steps": [
                    {
                        "name": "create",
                        "uses": {"type": "http"},
                        "with": {
                            "method": "POST",
                            "url": service.url + "/effects",
                            "body": {"name": "${{ event.body.name }}", "n": "${{ event.query.n }}"},
                        },
                    },
                    {
                        "name": "greet",
                        "uses": {"type": "emit"},
                        "with": {
                            "type": "Signup.done",
                            "data": {
                                "text": "Hello ${{ event.body.name }}, effect "
                                "${{ steps.create.data.body.effect }}"
                            },
                        },
                    },
                ],
            },
        ),
    )
    wf = wait_phase(kubectl, namespace, "signup", "Activated")
    assert wf["status"]["lifecycle"]["status"] == "ready"
    url = trigger_url(kubectl, namespace, "signup")
    assert url.startswith(base(controller) + "/triggers/")
    # The URL's token is a secret: only its hash is in the Workflow.
    assert url.rsplit("/", 1)[1] not in json.dumps(wf)
    assert wf["status"]["activation"]["tokenHash"] == token_hash(url.rsplit("/", 1)[1])

    status, reply = http("POST", url + "?n=7", {"name": "Ada"})
    assert status == 202, reply
    run = get_run(kubectl, namespace, reply["run"])  # exists when 202 is answered
    done = wait_run(kubectl, namespace, run["metadata"]["name"], "completed")
    create = step(done, "create")
    assert service.effects == {create["uniqueExecutionId"]: 1}
    assert create["outcome"]["data"]["body"]["echo"] == {"name": "Ada", "n": "7"}
    assert step(done, "greet")["outcome"]["data"]["type"] == "Signup.done"
    assert done["status"]["output"]["type"] == "Signup.done"
    assert done["metadata"]["ownerReferences"][0]["name"] == "signup"
    conditions = {c["type"]: c["status"] for c in done["status"]["conditions"]}
    assert conditions == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}

    counted = eventually(
        lambda: (
            (s := get_workflow(kubectl, namespace, "signup")["status"]).get("successCount") and s
        ),
        what="counters",
    )
    assert (counted["runCount"], counted["successCount"], counted.get("failureCount", 0)) == (
        1,
        1,
        0,
    )
    assert counted["phase"] == "Activated"


def test_activation_is_refused_with_the_field_and_the_fix(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        workflow(
            "broken",
            {
                "trigger": {"event": "Deal.won"},
                "steps": [{"name": "a", "uses": {"app": "nope", "type": "x"}}],
            },
        ),
        workflow("empty", {"trigger": {"event": "Deal.won"}}),
    )

    def failed(name: str) -> dict[str, Any] | None:
        status = get_workflow(kubectl, namespace, name).get("status") or {}
        return status if (status.get("lifecycle") or {}).get("status") == "failed" else None

    broken = eventually(lambda: failed("broken"), what="broken refused")
    assert "spec.steps[0].uses.app: App 'nope' not found" in broken["lifecycle"]["description"]
    assert broken["phase"] == "Draft"
    stalled = {c["type"]: c for c in broken["conditions"]}["Stalled"]
    assert stalled["status"] == "True"
    empty = eventually(lambda: failed("empty"), what="empty refused")
    assert "spec.steps: at least one step is required" in empty["lifecycle"]["description"]
    kubectl.run("wait", "--for=condition=Stalled", "-n", namespace, "workflow/empty")


# -- events ----------------------------------------------------------------------------------


def cloud_event(event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "crm",
        "type": "Deal.won",
        "data": data,
    }


def test_events_need_the_bearer_token_start_one_run_per_id_and_paused_workflows_ignore_them(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    controller = serving(run_controller, namespace)
    kubectl.run(
        "create",
        "secret",
        "generic",
        "blockflow-events",
        "-n",
        namespace,
        "--from-literal=token=s3cret",
    )
    kubectl.apply(
        namespace,
        workflow(
            "deals",
            {
                "trigger": {"event": "Deal.won"},
                "steps": [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 0}}],
            },
        ),
    )
    wait_phase(kubectl, namespace, "deals", "Activated")
    url = f"{base(controller)}/events/{namespace}"
    structured = {"Content-Type": "application/cloudevents+json"}
    status, reply = http("POST", url, cloud_event("1", {"x": 1}), headers=structured)
    assert status == 401 and "blockflow-events" in reply["error"]
    auth = {**structured, "Authorization": "Bearer s3cret"}
    status, reply = http("POST", url, cloud_event("1", {"x": 1}), headers=auth)
    assert (status, reply) == (202, {"runs": 1})
    assert len(runs(kubectl, namespace, "deals")) == 1  # exists once 202 is answered
    status, reply = http("POST", url, cloud_event("1", {"x": 1}), headers=auth)
    assert (status, reply) == (202, {"runs": 0})  # same source and id: no second run
    binary = {
        "Authorization": "Bearer s3cret",
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "2",
        "ce-source": "crm",
        "ce-type": "Deal.won",
    }
    status, reply = http("POST", url, {"x": 2}, headers=binary)
    assert (status, reply) == (202, {"runs": 1})
    status, reply = http("POST", url, {"specversion": "1.0"}, headers=auth)
    assert status == 400 and "id, source, type" in reply["error"]

    found = runs(kubectl, namespace, "deals")
    assert [r["spec"]["input"]["data"] for r in found] == [{"x": 1}, {"x": 2}]
    for run in found:
        wait_run(kubectl, namespace, run["metadata"]["name"], "completed")

    set_state(kubectl, namespace, "deals", "Paused")
    wait_phase(kubectl, namespace, "deals", "Paused")
    status, reply = http("POST", url, cloud_event("3", {}), headers=auth)
    assert (status, reply) == (202, {"runs": 0})
    assert len(runs(kubectl, namespace, "deals")) == 2
    eventually(
        lambda: get_workflow(kubectl, namespace, "deals")["status"].get("ignoredCount") == 1,
        what="ignoredCount",
    )


# -- deferred steps and callbacks --------------------------------------------------------------


def test_a_deferred_step_is_resumed_by_its_callback_and_only_then(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        service.app_manifest(),
        workflow(
            "pay",
            {
                "trigger": {"webhook": {}},
                "steps": [
                    {
                        "name": "charge",
                        "uses": {"app": "svc", "type": "charge"},
                        "with": {"mode": "defer", "amount": "${{ event.body.amount }}"},
                    },
                    {"name": "after", "uses": {"type": "sleep"}, "with": {"seconds": 0}},
                ],
            },
        ),
    )
    wait_phase(kubectl, namespace, "pay", "Activated")
    status, reply = http("POST", trigger_url(kubectl, namespace, "pay"), {"amount": 42})
    assert status == 202
    name = reply["run"]
    waiting = wait_run(kubectl, namespace, name, "waiting")
    execute = service.wait_for("execute")[0]
    assert execute["with"] == {"mode": "defer", "amount": 42}
    callback = execute["metadata"]["finishCallbackUrl"]
    record = eventually(
        lambda: (
            (s := step(get_run(kubectl, namespace, name), "charge"))["state"] == "waiting" and s
        ),
        what="charge waiting",
    )
    assert record["callbackTokenHash"] == token_hash(callback.rsplit("/", 1)[1])
    assert callback.rsplit("/", 1)[1] not in json.dumps(get_run(kubectl, namespace, name))
    assert execute["metadata"]["uniqueExecutionId"] == record["uniqueExecutionId"]
    assert waiting["status"]["workflowVersion"] == 1

    assert http("POST", callback, {"noop": True}) == (
        202,
        {"run": name, "step": "charge", "state": "waiting"},
    )
    assert step(get_run(kubectl, namespace, name), "charge")["state"] == "waiting"
    status, reply = http("POST", callback, {"outcome": "paid", "ref": "p-1"})
    assert (status, reply["state"]) == (200, "completed")
    done = wait_run(kubectl, namespace, name, "completed")
    assert step(done, "charge")["outcome"] == {
        "id": "paid",
        "data": {"outcome": "paid", "ref": "p-1"},
    }
    finish = service.received("finish")
    assert len(finish) == 2 and finish[1]["request"]["body"]["ref"] == "p-1"
    status, reply = http("POST", callback, {"outcome": "again"})
    assert status == 410 and "no longer takes callbacks" in reply["error"]
    status, reply = http("POST", callback.rsplit("/", 1)[0] + "/not-a-token", {})
    assert status == 404
    assert len(service.received("finish")) == 2


# -- retries and error handling ----------------------------------------------------------------


def test_retryable_errors_retry_with_one_execution_id_and_fallback_runs_on_failure(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    serving(run_controller, namespace)
    fast = {"maxAttempts": 3, "backoff": {"initialSeconds": 0.2, "factor": 2}}
    spec: dict[str, Any] = {
        "trigger": {"webhook": {}},
        "retryPolicy": fast,
        "errorHandling": "Fallback",
        "steps": [
            {
                "name": "wobbly",
                "uses": {"app": "svc", "type": "charge"},
                "with": {"mode": "flaky", "failures": 2},
            },
            {
                "name": "declined",
                "uses": {"app": "svc", "type": "charge"},
                "with": {"mode": "error", "message": "card declined"},
            },
            {"name": "never", "uses": {"type": "sleep"}, "with": {"seconds": 0}},
        ],
        "fallback": [
            {
                "name": "refund",
                "uses": {"type": "http"},
                "with": {
                    "method": "POST",
                    "url": service.url + "/effects",
                    "body": {"failed": "${{ steps.declined.error }}"},
                },
            },
        ],
    }
    kubectl.apply(namespace, service.app_manifest(), workflow("flaky", spec))
    wait_phase(kubectl, namespace, "flaky", "Activated")
    _, reply = http("POST", trigger_url(kubectl, namespace, "flaky"), {})
    # A step failed for good; the fallback ran and completed, so the run completed.
    ended = wait_run(kubectl, namespace, reply["run"], "completed")
    wobbly = step(ended, "wobbly")
    assert (wobbly["state"], wobbly["attempts"]) == ("completed", 3)
    executions = [c for c in service.received("execute") if c["with"]["mode"] == "flaky"]
    assert [c["metadata"]["attempt"] for c in executions] == [1, 2, 3]
    assert {c["metadata"]["uniqueExecutionId"] for c in executions} == {wobbly["uniqueExecutionId"]}
    declined = step(ended, "declined")
    assert (declined["state"], declined["attempts"]) == ("failed", 1)  # not retryable
    assert declined["error"]["message"] == "card declined"
    assert step(ended, "never")["state"] == "skipped"
    refund = step(ended, "fallback.refund")
    assert refund["state"] == "completed"
    assert refund["outcome"]["data"]["body"]["echo"] == {"failed": "card declined"}

    # Stop (the default): the same failure fails the run, and kstatus says Stalled.
    stop = {**spec, "errorHandling": "Stop", "fallback": []}
    kubectl.apply(namespace, workflow("flaky", stop))
    eventually(
        lambda: get_workflow(kubectl, namespace, "flaky")["status"]["activation"]["version"] == 2,
        what="version 2",
    )
    _, reply = http("POST", trigger_url(kubectl, namespace, "flaky"), {})
    failed = wait_run(kubectl, namespace, reply["run"], "failed")
    assert failed["status"]["error"] == {"message": "card declined", "step": "declined"}
    assert [s["name"] for s in failed["status"]["steps"]] == ["wobbly", "declined"]
    kubectl.run("wait", "--for=condition=Stalled", "-n", namespace, f"wfr/{reply['run']}")
    counters = eventually(
        lambda: (
            (s := get_workflow(kubectl, namespace, "flaky")["status"]).get("failureCount") and s
        ),
        what="failureCount",
    )
    assert (counters["runCount"], counters["successCount"], counters["failureCount"]) == (2, 1, 1)


# -- trigger blocks --------------------------------------------------------------------------------


def test_a_trigger_block_activates_once_per_version_and_its_old_url_stops_after_deactivation(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    serving(run_controller, namespace)
    spec = {
        "trigger": {"block": {"app": "svc", "type": "ticket", "config": {"queue": "support"}}},
        "steps": [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 0}}],
    }
    kubectl.apply(namespace, service.app_manifest(), workflow("tickets", spec))
    wf = wait_phase(kubectl, namespace, "tickets", "Activated")
    activate = service.wait_for("activate")
    assert len(activate) == 1
    first_url = activate[0]["metadata"]["triggerCallbackUrl"]
    first_id = activate[0]["metadata"]["uniqueActivationId"]
    assert activate[0]["entity"]["config"] == {"queue": "support"}
    assert wf["status"]["activation"]["uniqueActivationId"] == first_id
    assert trigger_url(kubectl, namespace, "tickets") == first_url
    assert first_url.rsplit("/", 1)[1] not in json.dumps(wf)

    status, reply = http("POST", first_url, {"id": "T-1", "subject": "help"})
    assert status == 202 and reply["duplicate"] is False
    run = wait_run(kubectl, namespace, reply["run"], "completed")
    assert run["spec"]["input"] == {"id": "T-1", "subject": "help"}
    assert http("POST", first_url, {"id": "T-1"})[1]["duplicate"] is True  # same outcome id
    assert http("POST", first_url, {"ignore": True}) == (200, {"ignored": True})

    # An edit: the old version is deactivated (once), the new one activated (once). While
    # the old version's deactivation runs, its URL still starts runs of the old version.
    service.controls.deactivate_delay = 2.0
    kubectl.apply(namespace, workflow("tickets", {**spec, "description": "v2"}))
    service.wait_for("deactivate")
    status, reply = http("POST", first_url, {"id": "T-during"})
    assert status == 202, reply
    during = wait_run(kubectl, namespace, reply["run"], "completed")
    assert during["status"]["workflowVersion"] == 1
    service.controls.deactivate_delay = 0.0
    eventually(
        lambda: get_workflow(kubectl, namespace, "tickets")["status"]["activation"]["version"] == 2,
        what="version 2 active",
    )
    deactivate = service.wait_for("deactivate")
    assert [d["metadata"]["uniqueActivationId"] for d in deactivate] == [first_id]
    activate = service.received("activate")
    assert len(activate) == 2
    second_url = activate[1]["metadata"]["triggerCallbackUrl"]
    assert second_url != first_url
    assert http("POST", first_url, {"id": "T-2"})[0] == 404
    assert http("POST", second_url, {"id": "T-2"})[0] == 202

    # Pause deactivates; an activation error keeps it off and is never deactivated.
    set_state(kubectl, namespace, "tickets", "Paused")
    wait_phase(kubectl, namespace, "tickets", "Paused")
    assert len(service.wait_for("deactivate", 2)) == 2
    service.controls.activate_error = "the ticket system is down"
    set_state(kubectl, namespace, "tickets", "Active")

    def refused() -> dict[str, Any] | None:
        status = get_workflow(kubectl, namespace, "tickets")["status"]
        return status if status["lifecycle"]["status"] == "failed" else None

    status_ = eventually(refused, what="activation refused")
    assert "the ticket system is down" in status_["lifecycle"]["description"]
    assert status_.get("activation") is None
    # The activation is retried with backoff, and the handler sees each attempt counted.
    retried = eventually(
        lambda: (
            (
                get_workflow(kubectl, namespace, "tickets")["status"].get("activationAttempts")
                or {}
            ).get("attempts", 0)
            >= 2
        ),
        timeout=20,
        what="a second activation attempt",
    )
    assert retried
    attempts = [call["metadata"]["attempt"] for call in service.received("activate")]
    last = attempts[-1]
    assert last >= 2 and attempts[-last:] == list(range(1, last + 1)), attempts
    kubectl.run("delete", "workflow", "tickets", "-n", namespace, "--wait=false")
    eventually(
        lambda: (
            "tickets"
            not in kubectl.run(
                "get", "workflows.blockflow.dev", "-n", namespace, "-o", "name"
            ).stdout
        ),
        what="workflow deleted",
    )
    assert len(service.received("deactivate")) == 2  # never for the failed activation


# -- hooks and approvals ---------------------------------------------------------------------


def test_hooks_need_the_hook_key_check_their_schema_and_approvals_record_who(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    controller = serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        workflow(
            "review",
            {
                "trigger": {"webhook": {}},
                "steps": [
                    {
                        "name": "docs",
                        "uses": {"type": "hook"},
                        "with": {
                            "token": '${{ "docs:" + event.body.id }}',
                            "schema": {"type": "object", "required": ["url"]},
                            "until": "size(events) >= 2",
                        },
                    },
                    {"name": "boss", "uses": {"type": "approval"}},
                ],
            },
        ),
    )
    wait_phase(kubectl, namespace, "review", "Activated")
    name = http("POST", trigger_url(kubectl, namespace, "review"), {"id": "D7"})[1]["run"]
    eventually(
        lambda: step(get_run(kubectl, namespace, name), "docs")["state"] == "waiting",
        what="docs waiting",
    )
    hook = f"{base(controller)}/hooks/docs:D7"
    key = secret_value(kubectl, namespace, "review-workflow-signals", "hookKey")
    auth = {"Authorization": f"Bearer {key}"}
    assert http("POST", hook, {"url": "a"})[0] == 401
    assert http("POST", hook, {"url": "a"}, headers={"Authorization": "Bearer nope"})[0] == 401
    status, reply = http("POST", hook, {"nourl": 1}, headers=auth)
    assert status == 400 and "required" in reply["error"]
    assert step(get_run(kubectl, namespace, name), "docs")["received"] == []
    assert http("POST", hook, {"url": "a"}, headers=auth) == (200, {"runs": {name: "waiting"}})
    assert http("POST", hook, {"url": "b"}, headers=auth) == (200, {"runs": {name: "completed"}})
    assert http("POST", f"{base(controller)}/hooks/docs:OTHER", {}, headers=auth)[0] == 404

    eventually(
        lambda: step(get_run(kubectl, namespace, name), "boss")["state"] == "waiting",
        what="approval waiting",
    )
    approval = f"{base(controller)}/hooks/approval:{namespace}:{name}:boss"
    status, reply = http("POST", approval, {"decision": "maybe"}, headers=auth)
    assert status == 400 and "approve" in reply["error"]
    status, _ = http("POST", approval, {"decision": "approve", "by": "ada"}, headers=auth)
    assert status == 200
    done = wait_run(kubectl, namespace, name, "completed")
    assert [e["url"] for e in step(done, "docs")["outcome"]["data"]["events"]] == ["a", "b"]
    boss = step(done, "boss")["outcome"]
    assert boss["id"] == "approved" and boss["data"]["by"] == "ada"


# -- cancellation and concurrency ------------------------------------------------------------


def test_runs_queue_behind_concurrency_and_a_stopped_run_is_cancelled(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        workflow(
            "serial",
            {
                "trigger": {"webhook": {}},
                "concurrency": {"max": 1, "policy": "Queue"},
                "steps": [{"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 3600}}],
            },
        ),
    )
    wait_phase(kubectl, namespace, "serial", "Activated")
    url = trigger_url(kubectl, namespace, "serial")
    first = http("POST", url, {})[1]["run"]
    assert step(wait_run(kubectl, namespace, first, "waiting"), "nap")["state"] == "waiting"
    wait_phase(kubectl, namespace, "serial", "Triggered")
    second = http("POST", url, {})[1]["run"]
    assert second > first  # names sort by start time
    wait_run(kubectl, namespace, second, "queued")

    kubectl.run(
        "patch", "wfr", first, "-n", namespace, "--type=merge", "-p", '{"spec":{"cancel":true}}'
    )
    cancelled = wait_run(kubectl, namespace, first, "cancelled")
    assert step(cancelled, "nap")["state"] == "cancelled"
    wait_run(kubectl, namespace, second, "waiting")  # its turn came: it sleeps now


# -- Blockflow's own events, timeouts, exact counters, metrics ------------------------------


def test_blockflows_own_events_start_workflows_and_a_step_timeout_fails_the_run(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    """Block.ready starts one workflow; its run's step times out (a deferred step nobody
    calls back), the run fails, and WorkflowRun.failed starts another workflow."""
    controller = serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        service.app_manifest(),
        workflow(
            "on-ready",
            {
                "trigger": {"event": "Block.ready"},
                "steps": [
                    {
                        "name": "slow",
                        "uses": {"app": "svc", "type": "charge"},
                        "with": {"mode": "defer", "block": "${{ event.data.name }}"},
                        "timeoutSeconds": 1,
                    }
                ],
            },
        ),
        workflow(
            "on-failure",
            {
                "trigger": {"event": "WorkflowRun.failed"},
                "steps": [{"name": "note", "uses": {"type": "sleep"}, "with": {"seconds": 0}}],
            },
        ),
    )
    wait_phase(kubectl, namespace, "on-ready", "Activated")
    wait_phase(kubectl, namespace, "on-failure", "Activated")
    kubectl.apply(
        namespace,
        {
            "apiVersion": "blockflow.dev/v1alpha1",
            "kind": "App",
            "metadata": {"name": "demo"},
            "spec": {"handler": {"python": "demo"}},
        },
        {
            "apiVersion": "blockflow.dev/v1alpha1",
            "kind": "Block",
            "metadata": {"name": "assets"},
            "spec": {"app": "demo", "type": "bucket", "config": {"name": "assets"}},
        },
    )
    name = only_run(kubectl, namespace, "on-ready")
    failed = wait_run(kubectl, namespace, name, "failed")
    assert failed["spec"]["input"]["type"] == "Block.ready"
    assert failed["spec"]["input"]["data"]["name"] == "assets"
    assert step(failed, "slow")["error"]["message"] == "step slow timed out after 1s"
    assert service.received("execute")[0]["with"]["block"] == "assets"
    follow_up = only_run(kubectl, namespace, "on-failure")
    done = wait_run(kubectl, namespace, follow_up, "completed")
    assert done["spec"]["input"]["data"]["run"] == name
    assert done["spec"]["input"]["data"]["error"]["step"] == "slow"

    metrics = http("GET", base(controller) + "/metrics")[1]
    assert 'blockflow_runs_started_total{trigger="event"} 2.0' in metrics
    assert "blockflow_handler_call_seconds_count" in metrics
    assert 'blockflow_reconciles_total{kind="Block",result="ok"}' in metrics
    # What controller-runtime operators get by default: process, build, work-queue metrics.
    for series in (
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        'blockflow_build_info{python_version="',
        'workqueue_depth{name="runs"} ',
        'workqueue_adds_total{name="runs"} ',
        'workqueue_work_duration_seconds_count{name="runs"} ',
        'workqueue_queue_duration_seconds_bucket{le="0.005",name="runs"} ',
        'workqueue_longest_running_processor_seconds{name="runs"} ',
        'controller_runtime_max_concurrent_reconciles{controller="runs"} ',
    ):
        assert series in metrics, series


def test_counters_stay_exact_under_concurrent_runs(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        workflow(
            "busy",
            {
                "trigger": {"webhook": {}},
                "successfulRunsLimit": 100,
                "steps": [
                    {"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 0}},
                    {"name": "b", "uses": {"type": "sleep"}, "with": {"seconds": 0}},
                ],
            },
        ),
    )
    wait_phase(kubectl, namespace, "busy", "Activated")
    url = trigger_url(kubectl, namespace, "busy")
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: http("POST", url, {}), range(24)))
    assert all(status == 202 for status, _ in replies)

    def settled() -> dict[str, Any] | None:
        status = get_workflow(kubectl, namespace, "busy")["status"]
        # Activated again once no run is active (Triggered while runs were).
        done = status.get("successCount") == 24 and status["phase"] == "Activated"
        return status if done else None

    status = eventually(settled, timeout=60, what="24 successes, phase Activated")
    assert status["runCount"] == 24
    assert len(runs(kubectl, namespace, "busy")) == 24


def test_a_signed_webhook_checks_its_hmac_and_answers_with_its_static_response(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    serving(run_controller, namespace)
    kubectl.run(
        "create", "secret", "generic", "github", "-n", namespace, "--from-literal=secret=hush"
    )
    kubectl.apply(
        namespace,
        workflow(
            "push",
            {
                "trigger": {
                    "webhook": {
                        "signature": {"secretRef": {"name": "github", "key": "secret"}},
                        "response": {"status": 200, "body": {"thanks": True}},
                    }
                },
                "steps": [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 0}}],
            },
        ),
    )
    wait_phase(kubectl, namespace, "push", "Activated")
    url = trigger_url(kubectl, namespace, "push")
    body = json.dumps({"after": "abc123"}).encode()
    good = "sha256=" + hmac.new(b"hush", body, hashlib.sha256).hexdigest()
    status, reply = http("POST", url, raw=body)
    assert status == 401 and "X-Hub-Signature-256" in reply["error"]
    status, reply = http("POST", url, raw=body, headers={"X-Hub-Signature-256": "sha256=00"})
    assert status == 401 and "does not match" in reply["error"]
    assert runs(kubectl, namespace, "push") == []
    headers = {"X-Hub-Signature-256": good, "X-GitHub-Event": "push"}
    assert http("POST", url, raw=body, headers=headers) == (200, {"thanks": True})
    # A form-encoded PUT with a query string is a run's event too.
    form = b"a=1&b=two"
    signed = {
        "X-Hub-Signature-256": "sha256=" + hmac.new(b"hush", form, hashlib.sha256).hexdigest()
    }
    http(
        "PUT",
        url + "?source=ci",
        raw=form,
        headers={**signed, "Content-Type": "application/x-www-form-urlencoded"},
    )
    found = eventually(
        lambda: len(runs(kubectl, namespace, "push")) == 2 and runs(kubectl, namespace, "push")
    )
    first, second = (r["spec"]["input"] for r in found)
    assert first["method"] == "POST" and first["body"] == {"after": "abc123"}
    assert first["headers"]["x-github-event"] == "push"
    assert (second["method"], second["query"], second["body"]) == (
        "PUT",
        {"source": "ci"},
        {"a": "1", "b": "two"},
    )


def test_a_high_failure_rate_is_an_event_and_archived_is_final(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        service.app_manifest(),
        workflow(
            "fragile",
            {
                "trigger": {"webhook": {}},
                "steps": [
                    {
                        "name": "pay",
                        "uses": {"app": "svc", "type": "charge"},
                        "with": {"mode": "${{ event.body.mode }}"},
                    },
                ],
            },
        ),
        workflow(
            "pager",
            {
                "trigger": {"event": "Workflow.highFailureRate"},
                "steps": [{"name": "page", "uses": {"type": "sleep"}, "with": {"seconds": 0}}],
            },
        ),
    )
    wait_phase(kubectl, namespace, "fragile", "Activated")
    wait_phase(kubectl, namespace, "pager", "Activated")
    url = trigger_url(kubectl, namespace, "fragile")
    for mode in ["outcome"] * 8 + ["error"] * 2:  # 20 % of 10 runs fail
        name = http("POST", url, {"mode": mode})[1]["run"]
        wait_run(kubectl, namespace, name, "completed" if mode == "outcome" else "failed")
    paged = only_run(kubectl, namespace, "pager")
    alert = wait_run(kubectl, namespace, paged, "completed")["spec"]["input"]
    assert alert["data"] == {"workflow": "fragile", "runs": 10, "failureRate": 0.2}

    set_state(kubectl, namespace, "fragile", "Archived")
    wait_phase(kubectl, namespace, "fragile", "Archived")
    assert http("POST", url, {"mode": "outcome"})[1]["ignored"] is True
    set_state(kubectl, namespace, "fragile", "Active")

    def refused() -> dict[str, Any] | None:
        status = get_workflow(kubectl, namespace, "fragile")["status"]
        return status if status["lifecycle"]["status"] == "failed" else None

    status = eventually(refused, what="leaving Archived refused")
    assert "Archived is final" in status["lifecycle"]["description"]
    assert status["phase"] == "Archived"


@pytest.mark.parametrize("policy", ["Skip", "Replace"])
def test_concurrency_skip_terminates_the_newcomer_and_replace_cancels_the_oldest(
    policy: str,
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
) -> None:
    serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        workflow(
            "single",
            {
                "trigger": {"webhook": {}},
                "concurrency": {"max": 1, "policy": policy},
                "steps": [{"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 3600}}],
            },
        ),
    )
    wait_phase(kubectl, namespace, "single", "Activated")
    url = trigger_url(kubectl, namespace, "single")
    first = http("POST", url, {})[1]["run"]
    wait_run(kubectl, namespace, first, "waiting")
    second = http("POST", url, {})[1]["run"]
    if policy == "Skip":
        skipped = wait_run(kubectl, namespace, second, "terminated")
        assert "skipped: 1 runs of single are active" in skipped["status"]["error"]["message"]
        assert get_run(kubectl, namespace, first)["status"]["state"] == "waiting"
    else:
        wait_run(kubectl, namespace, first, "cancelled")
        wait_run(kubectl, namespace, second, "waiting")
