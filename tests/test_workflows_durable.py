"""Runs survive anything: kill -9 at every transition, downtime across schedule slots;
runs created by hand; Jobs; history limits."""

from __future__ import annotations

import contextlib
import json
import signal
import time
import urllib.error
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Cluster, ControllerProcess, Kubectl, eventually, free_port
from tests.support.step_service import StepService
from tests.support.workflow_helpers import (
    get_run,
    get_workflow,
    http,
    patch_status,
    runs,
    secret_value,
    serving,
    step,
    wait_phase,
    wait_run,
    workflow,
)


def kill(controller: ControllerProcess) -> None:
    controller.proc.send_signal(signal.SIGKILL)
    controller.proc.wait(timeout=10)


def durable_workflow(service: StepService) -> dict[str, Any]:
    effect = {"method": "POST", "url": service.url + "/slow-effects", "body": {"n": 1}}
    return workflow(
        "durable",
        {
            "trigger": {"webhook": {}},
            "steps": [
                {"name": "first", "uses": {"type": "http"}, "with": effect},
                {"name": "second", "uses": {"type": "http"}, "with": effect},
                {
                    "name": "pay",
                    "uses": {"app": "svc", "type": "charge"},
                    "with": {"mode": "defer"},
                },
                {"name": "third", "uses": {"type": "http"}, "with": effect},
                {"name": "nap", "uses": {"type": "sleep"}, "with": {"seconds": 1}},
            ],
        },
    )


HTTP_STEPS = ("first", "second", "third")


def start_durable_run(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
    port: int,
) -> tuple[ControllerProcess, str]:
    controller = serving(run_controller, namespace, port)
    kubectl.apply(namespace, service.app_manifest(), durable_workflow(service))
    wait_phase(kubectl, namespace, "durable", "Activated")
    url = secret_value(kubectl, namespace, "durable-workflow-signals", "triggerCallbackUrl")
    return controller, http("POST", url, {})[1]["run"]


def finished_and_counted(kubectl: Kubectl, namespace: str, name: str) -> bool:
    status = get_run(kubectl, namespace, name).get("status") or {}
    return status.get("state") == "completed" and "finished" in status.get("accounted", [])


def assert_exactly_once(
    kubectl: Kubectl, namespace: str, name: str, service: StepService
) -> dict[str, Any]:
    done = get_run(kubectl, namespace, name)
    keys = {step(done, s)["uniqueExecutionId"] for s in HTTP_STEPS}
    assert set(service.effects) == keys  # one effect per execution id, nothing else
    assert sorted(service.effects.values()) == [1, 2, 3]
    counters = eventually(
        lambda: (
            (s := get_workflow(kubectl, namespace, "durable")["status"]).get("successCount") and s
        ),
        what="counted",
    )
    assert (counters["runCount"], counters["successCount"]) == (1, 1)
    assert [r["metadata"]["name"] for r in runs(kubectl, namespace, "durable")] == [name]
    return done


def pay_callback_if_waiting(
    kubectl: Kubectl, namespace: str, name: str, service: StepService
) -> None:
    run = get_run(kubectl, namespace, name)
    pay = next((s for s in run.get("status", {}).get("steps", []) if s["name"] == "pay"), None)
    if pay is None or pay["state"] != "waiting":
        return
    callback = service.received("execute")[-1]["metadata"]["finishCallbackUrl"]
    # The controller may die right after recording it: the run shows what happened.
    with contextlib.suppress(urllib.error.URLError, ConnectionError):
        http("POST", callback, {"outcome": "paid"})


@pytest.mark.slow
def test_a_crash_after_every_write_of_a_run_loses_nothing(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    """Each controller process dies (SIGKILL) right after its first run status write, so the
    run advances exactly one durable transition per process: a crash at every transition."""
    port = free_port()
    controller, name = start_durable_run(kubectl, namespace, run_controller, service, port)
    controller.stop()
    crashes = 0
    while not finished_and_counted(kubectl, namespace, name):
        controller = run_controller(
            "--namespace",
            namespace,
            port=port,
            env={"BLOCKFLOW_CRASH_AFTER_RUN_WRITES": "1"},
            module="tests.support.crashing_controller",
        )
        deadline = time.monotonic() + 60
        while controller.proc.poll() is None:
            pay_callback_if_waiting(kubectl, namespace, name, service)
            if finished_and_counted(kubectl, namespace, name):
                break
            if time.monotonic() > deadline:
                status = dict(get_run(kubectl, namespace, name)["status"])
                status.pop("workflowSpec", None)
                raise AssertionError(f"the controller neither wrote nor died; run: {status}")
            time.sleep(0.2)
        if controller.proc.poll() is None:
            controller.stop()
        else:
            assert controller.proc.returncode == -signal.SIGKILL
            crashes += 1
        assert crashes < 40, "the run never completed"
    # One crash per durable write: admitted + first called, first recorded + second called,
    # second recorded + pay called, pay deferred, pay finished by its callback, third called,
    # third recorded + nap called, nap waiting, finished. A restart slower than a time-based
    # wait (the 1 s nap, a retry's backoff) finds it over and goes on without that write, so
    # on a loaded machine a few of these merge; at least five crashes always remain.
    assert crashes >= 5
    done = assert_exactly_once(kubectl, namespace, name, service)
    assert all(step(done, s)["attempts"] == 1 for s in (*HTTP_STEPS, "pay", "nap"))


@pytest.mark.slow
def test_kill_9_during_each_http_call_repeats_the_call_with_the_same_key_only(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    service: StepService,
) -> None:
    """kill -9 while each http step's request is in flight (the server applies it anyway):
    after the restart the same request is re-issued with the same Idempotency-Key, and the
    effect exists once."""
    service.controls.effect_delay = 1.0
    port = free_port()
    controller, name = start_durable_run(kubectl, namespace, run_controller, service, port)
    killed_during: set[str] = set()

    def fresh_arrival() -> list[str]:
        """A request of a step not interrupted yet, in flight now (watched closely)."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            fresh = [k for k in service.arrivals if k not in killed_during]
            if fresh:
                return fresh
            time.sleep(0.005)
        return []

    while not finished_and_counted(kubectl, namespace, name):
        fresh = fresh_arrival()
        if fresh:  # its answer is a second away: the kill lands mid-call
            kill(controller)
            killed_during.update(fresh)
            controller = serving(run_controller, namespace, port)
        else:
            pay_callback_if_waiting(kubectl, namespace, name, service)
    assert len(killed_during) == 3
    assert_exactly_once(kubectl, namespace, name, service)
    # Each interrupted request was applied by the server and re-issued once, same key.
    assert all(service.effect_requests[k] == 2 for k in killed_during), service.effect_requests


def test_a_schedule_catches_up_missed_slots_once_and_within_its_bound(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
) -> None:
    controller = serving(run_controller, namespace)
    every_minute = {"cron": "* * * * *", "maxCatchUp": 2}
    long = [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 3600}}]
    kubectl.apply(
        namespace,
        workflow(
            "nightly",
            {
                "trigger": {"schedule": every_minute},
                "steps": [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 0}}],
            },
        ),
        workflow(
            "forbid",
            {
                "trigger": {"schedule": {**every_minute, "concurrencyPolicy": "Forbid"}},
                "steps": long,
            },
        ),
        workflow(
            "replace",
            {
                "trigger": {"schedule": {**every_minute, "concurrencyPolicy": "Replace"}},
                "steps": long,
            },
        ),
    )
    workflows = ("nightly", "forbid", "replace")

    def baseline(name: str) -> Callable[[], Any]:
        return lambda: get_workflow(kubectl, namespace, name)["status"].get("lastScheduleTime")

    for name in workflows:
        wait_phase(kubectl, namespace, name, "Activated")
        eventually(baseline(name), what="schedule baseline")
    controller.stop()
    before = {r["metadata"]["name"] for r in runs(kubectl, namespace)}
    # The controller was "down" for ten minutes: ten slots were missed, two are caught up.
    down_since = datetime.now(UTC) - timedelta(minutes=10)
    for name in workflows:
        path = f"/apis/blockflow.dev/v1alpha1/namespaces/{namespace}/workflows/{name}"
        patch_status(cluster, path, {"lastScheduleTime": down_since.isoformat()})

    controller = serving(run_controller, namespace)

    def caught_up() -> list[dict[str, Any]] | None:
        new = [
            r for r in runs(kubectl, namespace, "nightly") if r["metadata"]["name"] not in before
        ]
        return new if len(new) >= 2 else None

    new = eventually(caught_up, what="two caught-up runs")
    slots = sorted(datetime.fromisoformat(r["spec"]["input"]["scheduledTime"]) for r in new)
    assert len(set(slots)) == len(slots)  # one run per slot
    newest = datetime.now(UTC).replace(second=0, microsecond=0)
    assert all(newest - timedelta(minutes=2) <= s <= newest for s in slots), slots
    assert slots[1] - slots[0] == timedelta(minutes=1)
    for run in new:
        wait_run(kubectl, namespace, run["metadata"]["name"], "completed")

    # Forbid: the second slot found the first run still active and was skipped (ignored);
    # Replace: the second slot's run replaced the first one.
    eventually(
        lambda: get_workflow(kubectl, namespace, "forbid")["status"].get("ignoredCount", 0) >= 1,
        what="the forbidden slot counted as ignored",
    )
    forbid = [r for r in runs(kubectl, namespace, "forbid") if r["metadata"]["name"] not in before]
    assert len(forbid) == 1
    eventually(
        lambda: (
            len(
                [
                    r
                    for r in runs(kubectl, namespace, "replace")
                    if r["metadata"]["name"] not in before
                ]
            )
            >= 2
        ),
        what="the replacing run",
    )
    replace = [
        r for r in runs(kubectl, namespace, "replace") if r["metadata"]["name"] not in before
    ]
    assert len(replace) >= 2  # (one more if a minute boundary passed meanwhile)
    for older in replace[:-1]:
        wait_run(kubectl, namespace, older["metadata"]["name"], "cancelled")
    wait_run(kubectl, namespace, replace[-1]["metadata"]["name"], "waiting")

    # A restart does not start the same slots again.
    controller.stop()
    serving(run_controller, namespace)
    nightly = runs(kubectl, namespace, "nightly")  # one listing: a new minute may add a run
    names = {r["metadata"]["name"] for r in nightly}
    scheduled = [datetime.fromisoformat(r["spec"]["input"]["scheduledTime"]) for r in nightly]
    assert len(scheduled) == len(set(scheduled)) == len(names)


def test_a_run_created_by_hand_runs_a_job_step_until_the_job_reports_success(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
) -> None:
    serving(run_controller, namespace)
    template = {
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "args": ["true"]}],
                }
            }
        }
    }
    kubectl.apply(
        namespace,
        workflow(
            "batch",
            {
                "trigger": {"event": "Batch.requested"},
                "steps": [
                    {
                        "name": "job",
                        "uses": {"type": "kubernetes.job"},
                        "with": {"template": template, "pollSeconds": 0.5},
                    }
                ],
            },
        ),
    )
    wait_phase(kubectl, namespace, "batch", "Activated")
    manual = {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "by-hand"},
        "spec": {"workflowRef": {"name": "batch"}, "input": {"why": "test"}},
    }
    kubectl.run("create", "-n", namespace, "-f", "-", input=json.dumps(manual))
    jobs = eventually(lambda: kubectl.json("get", "jobs", "-n", namespace)["items"], what="the Job")
    job = jobs[0]
    assert job["metadata"]["ownerReferences"][0]["name"] == "by-hand"
    assert (
        wait_run(kubectl, namespace, "by-hand", "waiting")["status"]["steps"][0]["state"]
        == "waiting"
    )
    path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{job['metadata']['name']}"
    patch_status(
        cluster,
        path,
        {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    )
    done = wait_run(kubectl, namespace, "by-hand", "completed")
    assert step(done, "job")["outcome"] == {
        "id": "succeeded",
        "data": {"job": job["metadata"]["name"], "succeeded": 1},
    }
    assert step(done, "job")["attempts"] == 1  # polled, not retried


def test_history_limits_delete_the_oldest_finished_runs_and_inactive_workflows_refuse_runs(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    serving(run_controller, namespace)
    kubectl.apply(
        namespace,
        workflow(
            "short",
            {
                "trigger": {"webhook": {}},
                "successfulRunsLimit": 2,
                "steps": [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 0}}],
            },
        ),
        workflow(
            "drafty",
            {
                "state": "Draft",
                "trigger": {"webhook": {}},
                "steps": [{"name": "a", "uses": {"type": "sleep"}, "with": {"seconds": 0}}],
            },
        ),
    )
    wait_phase(kubectl, namespace, "short", "Activated")
    url = secret_value(kubectl, namespace, "short-workflow-signals", "triggerCallbackUrl")
    names = []
    for _ in range(4):
        name = http("POST", url, {})[1]["run"]
        wait_run(kubectl, namespace, name, "completed")
        names.append(name)
    eventually(
        lambda: [r["metadata"]["name"] for r in runs(kubectl, namespace, "short")] == names[2:],
        what="only the two newest runs kept",
    )
    assert get_workflow(kubectl, namespace, "short")["status"]["runCount"] == 4

    manual = {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "too-early"},
        "spec": {"workflowRef": {"name": "drafty"}},
    }
    kubectl.run("create", "-n", namespace, "-f", "-", input=json.dumps(manual))
    refused = wait_run(kubectl, namespace, "too-early", "failed")
    assert "Workflow drafty is not active (phase Draft)" in refused["status"]["error"]["message"]
    assert "blockflow workflow activate drafty" in refused["status"]["error"]["message"]
