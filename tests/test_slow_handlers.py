"""A slow handler delays only its own work: with 50 step calls held by a slow server, quick
runs of another workflow complete as they do alone (before, the slow calls held every
reconcile worker and the quick runs waited for them)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp import web

from tests.conftest import ControllerProcess, Kubectl, eventually
from tests.support.threaded_server import ThreadedServer
from tests.support.workflow_helpers import (
    get_workflow,
    http,
    secret_value,
    serving,
    wait_phase,
    workflow,
)

SLOW_CALLS = 50
PER_HANDLER = 32  # the default BLOCKFLOW_CALLS_PER_HANDLER


class HeldServer:
    """Answers each request once ``release`` is set; counts what it holds."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.holding = 0
        self.answered = 0
        self.server = ThreadedServer(self._app).start()

    def _app(self) -> web.Application:
        async def held(_: web.Request) -> web.Response:
            self.holding += 1
            try:
                while not self.release.is_set():  # noqa: ASYNC110 (set from the test's thread)
                    await asyncio.sleep(0.05)
            finally:
                self.holding -= 1
            self.answered += 1
            return web.json_response({"ok": True})

        app = web.Application()
        app.router.add_get("/", held)
        return app


def quick_server() -> ThreadedServer:
    async def quick(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def app() -> web.Application:
        application = web.Application()
        application.router.add_get("/", quick)
        return application

    return ThreadedServer(app).start()


def http_workflow(name: str, url: str) -> dict[str, object]:
    step = {
        "name": "call",
        "uses": {"type": "http"},
        "with": {"method": "GET", "url": url, "timeoutSeconds": 300},
        "retryPolicy": {"maxAttempts": 1},
        "timeoutSeconds": 300,
    }
    return workflow(name, {"trigger": {"webhook": {}}, "steps": [step]})


def completed(kubectl: Kubectl, namespace: str, name: str) -> int:
    """Runs of the workflow that completed, by its counters (history keeps only the last)."""
    return int(
        (get_workflow(kubectl, namespace, name).get("status") or {}).get("successCount") or 0
    )


@pytest.mark.slow
def test_quick_runs_complete_while_a_slow_handler_holds_fifty_calls(
    kubectl: Kubectl, namespace: str, run_controller: Callable[..., ControllerProcess]
) -> None:
    slow, quick = HeldServer(), quick_server()
    try:
        serving(run_controller, namespace)
        kubectl.apply(namespace, http_workflow("slow", slow.server.url + "/"))
        kubectl.apply(namespace, http_workflow("quick", quick.url + "/"))
        urls = {}
        for name in ("slow", "quick"):
            wait_phase(kubectl, namespace, name, "Activated")
            urls[name] = secret_value(
                kubectl, namespace, f"{name}-workflow-signals", "triggerCallbackUrl"
            )

        def quick_round(done_before: int) -> float:
            started = time.monotonic()
            with ThreadPoolExecutor(5) as pool:
                assert all(
                    s == 202
                    for s, _ in pool.map(lambda _: http("POST", urls["quick"], {}), range(5))
                )
            eventually(
                lambda: completed(kubectl, namespace, "quick") == done_before + 5,
                what="five quick runs completed",
            )
            return time.monotonic() - started

        alone = quick_round(0)
        with ThreadPoolExecutor(10) as pool:
            sent = list(pool.map(lambda _: http("POST", urls["slow"], {}), range(SLOW_CALLS)))
        assert all(status == 202 for status, _ in sent)
        eventually(lambda: slow.holding == PER_HANDLER, what="the slow server holding its limit")
        beside_slow = quick_round(5)
        # The quick runs completed while every slow call was still held.
        assert slow.answered == 0 and slow.holding == PER_HANDLER
        print(f"\nfive quick runs: {alone:.2f} s alone, {beside_slow:.2f} s beside "
              f"{SLOW_CALLS} slow calls (ratio {beside_slow / alone:.2f})")  # fmt: skip
        slow.release.set()
        eventually(
            lambda: completed(kubectl, namespace, "slow") == SLOW_CALLS,
            timeout=60,
            what="every slow run completed once released",
        )
        assert slow.answered == SLOW_CALLS
    finally:
        slow.release.set()
        slow.server.stop()
        quick.stop()
