"""The gauntlet: the controller is killed (SIGKILL) every few seconds while hundreds of runs
and Blocks go through it, the API server is restarted once, and at the end every run and
Block has converged, every step's effect happened under one idempotency key, and the
counters are exact.

Each run calls an http step, waits at a hook whose token comes from its webhook, and calls
another http step. Webhooks are re-sent until accepted (a re-delivery carries the same
Idempotency-Key, so an answer lost to a kill starts no second run) and hooks are POSTed
until their run has resumed: a hook that answers 404 while its run waits for it, after a
restart, is the stale-index bug this test was written for.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from tests.conftest import (
    Cluster,
    ControllerProcess,
    Kubectl,
    blockflow,
    eventually,
    free_port,
)
from tests.support.step_service import StepService
from tests.support.workflow_helpers import (
    get_workflow,
    http,
    runs,
    secret_value,
    workflow,
)

RUNS = 200
BLOCKS = 100
KILL_EVERY = (2.0, 4.5)  # seconds a controller lives, at random
TOKEN = "${{ event.body.tok }}"


def gauntlet_workflow(service: StepService) -> dict[str, Any]:
    effect = {"method": "POST", "url": service.url + "/effects", "body": {"n": 1}}
    return workflow(
        "gauntlet",
        {
            "trigger": {"webhook": {}},
            "successfulRunsLimit": RUNS * 2,
            "steps": [
                {"name": "before", "uses": {"type": "http"}, "with": effect},
                {"name": "wait", "uses": {"type": "hook"}, "with": {"token": TOKEN}},
                {"name": "after", "uses": {"type": "http"}, "with": effect},
            ],
        },
    )  # fmt: skip


def bucket(name: str) -> dict[str, Any]:
    return blockflow("Block", name, {"app": "demo", "type": "bucket", "config": {"name": name}})


class Killer:
    """Starts the controller and kills it with SIGKILL after a few seconds, again and again,
    until stopped; then one last controller runs on."""

    def __init__(self, start: Callable[[], ControllerProcess]) -> None:
        self._start = start
        self._stop = threading.Event()
        self.kills = 0
        self.last: ControllerProcess | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._rng = random.Random(13)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while True:
            self.last = self._start()
            if self._stop.wait(self._rng.uniform(*KILL_EVERY)):
                return  # the last one runs on
            self.last.proc.kill()
            self.last.proc.wait(10)
            self.kills += 1


def until_answered(send: Callable[[], int], done: set[int], what: str, within: float = 90) -> int:
    """``send`` until it answers one of ``done`` (the controller may be dead meanwhile)."""
    deadline = time.monotonic() + within
    answers: list[int] = []
    while True:
        try:
            status = send()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            status = 0  # no controller listening right now
        if status in done:
            return status
        answers.append(status)
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: no answer in {sorted(done)} within {within}s: {answers}")
        time.sleep(0.2)


def deliver(url: str, i: int) -> int:
    """Webhook ``i``; a re-delivery carries the same Idempotency-Key."""
    headers = {"Idempotency-Key": f"delivery-{i}"}
    return http("POST", url, {"tok": f"t-{i}"}, headers=headers)[0]


def hook(base: str, hook_key: str, i: int) -> int:
    auth = {"Authorization": f"Bearer {hook_key}"}
    return http("POST", f"{base}/hooks/t-{i}", {}, headers=auth)[0]


def the_run(kubectl: Kubectl, namespace: str, tok: str) -> str:
    """The run of a hook token, as the API server has it (for a failure's message)."""
    for run in runs(kubectl, namespace, "gauntlet"):
        if ((run["spec"].get("input") or {}).get("body") or {}).get("tok") == tok:
            status = dict(run.get("status") or {})
            status.pop("workflowSpec", None)
            return f"run {run['metadata']['name']}: {status}"
    return f"no run has token {tok}"


def summary(kubectl: Kubectl, namespace: str) -> str:
    """The runs' states, the steps of those not completed, and the counters."""
    found = runs(kubectl, namespace, "gauntlet")
    states = Counter((r.get("status") or {}).get("state") for r in found)
    stuck = [
        (r["metadata"]["name"], [(s["name"], s["state"]) for s in r["status"].get("steps", [])])
        for r in found
        if (r.get("status") or {}).get("state") != "completed"
    ]
    status = dict(get_workflow(kubectl, namespace, "gauntlet").get("status") or {})
    counters = {k: v for k, v in status.items() if k.endswith("Count")}
    return f"{len(found)} runs {dict(states)}; counters {counters}; not completed: {stuck[:10]}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_9_every_few_seconds_and_an_api_server_restart_lose_nothing(
    cluster: Cluster,
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
) -> None:
    service = StepService().start()
    try:
        kubectl.apply(
            namespace,
            blockflow("App", "demo", {"handler": {"python": "demo"}}),
            service.app_manifest(),
            gauntlet_workflow(service),
            *(bucket(f"b-{i}") for i in range(BLOCKS)),
        )  # fmt: skip
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with Killer(lambda: run_controller("--namespace", namespace, port=port)) as killer:
            eventually(
                lambda: (
                    (get_workflow(kubectl, namespace, "gauntlet").get("status") or {}).get("phase")
                    == "Activated"
                ),
                timeout=120,
                what="the workflow activated",
            )
            url = secret_value(
                kubectl, namespace, "gauntlet-workflow-signals", "triggerCallbackUrl"
            )
            hook_key = secret_value(kubectl, namespace, "gauntlet-workflow-signals", "hookKey")
            started = time.monotonic()
            for i in range(RUNS):
                until_answered(partial(deliver, url, i), {200, 202}, f"webhook {i}")
                if i == RUNS // 2 and cluster.plane is not None:
                    cluster.plane.restart_apiserver()
            sent = time.monotonic()
            for i in range(RUNS):
                try:
                    # 410: resumed by an earlier POST whose answer was lost
                    resume = partial(hook, base, hook_key, i)
                    until_answered(resume, {200, 410}, f"hook t-{i}")
                except AssertionError as exc:
                    raise AssertionError(
                        f"{exc}\n{the_run(kubectl, namespace, f't-{i}')}"
                    ) from None
            resumed = time.monotonic()
        assert killer.kills >= 10, killer.kills

        def settled() -> dict[str, Any] | None:
            status = get_workflow(kubectl, namespace, "gauntlet").get("status") or {}
            return status if status.get("successCount") == RUNS else None

        try:
            counters = eventually(settled, timeout=180, what=f"{RUNS} runs completed and counted")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{summary(kubectl, namespace)}") from None
        assert (counters["runCount"], counters.get("failureCount", 0)) == (RUNS, 0)
        found = runs(kubectl, namespace, "gauntlet")
        assert len(found) == RUNS  # no re-sent webhook started a second run
        assert {r["status"]["state"] for r in found} == {"completed"}
        keys = {
            s["uniqueExecutionId"]
            for r in found
            for s in r["status"]["steps"]
            if s["name"] in ("before", "after")
        }
        assert len(keys) == 2 * RUNS
        # Every effect happened, and only under the key its step recorded: a step re-called
        # after a kill used the same key (the service counts each key's effect once).
        assert set(service.effects) == keys

        def blocks() -> Counter[str]:
            found = kubectl.json("get", "blocks", "-n", namespace)["items"]
            return Counter(
                f"{(b.get('status') or {}).get('lifecycle', {}).get('status')}: "
                f"{(b.get('status') or {}).get('lifecycle', {}).get('description')}"
                for b in found
            )

        try:
            eventually(
                lambda: all(state.startswith("ready:") for state in blocks()),
                timeout=120,
                what="Blocks",
            )
        except AssertionError:
            raise AssertionError(f"not all {BLOCKS} Blocks are ready: {blocks()}") from None
        print(
            f"\ngauntlet: {killer.kills} kills; {RUNS} webhooks in {sent - started:.0f} s, "
            f"their hooks in {resumed - sent:.0f} s; converged {time.monotonic() - resumed:.0f} s "
            f"later; {BLOCKS} Blocks"
        )
    finally:
        service.stop()
