"""Handler calls do not hold reconcile workers: a slow handler fills its own slots, and every
other key goes on (head-of-line blocking was: 50 slow step calls held all 32 workers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import cast

import pytest

from controller.runtime.calls import CallLimits
from controller.runtime.controller import DONE, KeyedController, Outcome
from tests.support.background import running


async def until(condition: Callable[[], bool], seconds: float = 5) -> None:
    """Until ``condition`` holds (checked at every turn of the loop), or fail."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 (plain counters, no event to wait on)
            await asyncio.sleep(0)


class Handlers:
    """Reconciles that call handler ``slow`` (held until released) or ``quick``."""

    def __init__(self, limits: CallLimits) -> None:
        self.limits = limits
        self.release = asyncio.Event()
        self.in_flight = {"slow": 0, "quick": 0}
        self.most = {"slow": 0, "quick": 0}
        self.done: set[str] = set()
        self.all_quick_done = asyncio.Event()
        self.quick_keys: set[str] = set()

    async def reconcile(self, key: str) -> Outcome:
        target = key.split("-")[0]
        async with self.limits.slot(target):
            self.in_flight[target] += 1
            self.most[target] = max(self.most[target], self.in_flight[target])
            try:
                if target == "slow":
                    await self.release.wait()
            finally:
                self.in_flight[target] -= 1
        self.done.add(key)
        if self.quick_keys <= self.done:
            self.all_quick_done.set()
        return DONE


async def test_quick_calls_finish_while_fifty_slow_calls_hold_their_handler() -> None:
    handlers = Handlers(CallLimits(total=100, per_target=8))
    controller = KeyedController("runs", handlers.reconcile, workers=4)
    handlers.quick_keys = {f"quick-{i}" for i in range(20)}
    async with running(controller):
        for i in range(50):
            controller.add(f"slow-{i}")
        await until(lambda: handlers.in_flight["slow"] == 8)
        for key in sorted(handlers.quick_keys):
            controller.add(key)
        await asyncio.wait_for(handlers.all_quick_done.wait(), 5)
        # Every quick call finished while the slow handler still held all it may hold.
        assert handlers.in_flight["slow"] == 8
        assert handlers.most["slow"] == 8  # its own limit, never more
        assert not any(key.startswith("slow") for key in handlers.done)
        handlers.release.set()
        await asyncio.wait_for(controller.wait_idle(), 5)
    assert len(handlers.done) == 70


async def test_the_overall_limit_bounds_calls_to_all_handlers_together() -> None:
    limits = CallLimits(total=3, per_target=10)
    gate = asyncio.Event()
    in_flight = most = 0

    async def call(target: str) -> None:
        nonlocal in_flight, most
        async with limits.slot(target):
            in_flight += 1
            most = max(most, in_flight)
            await gate.wait()
            in_flight -= 1

    tasks = [asyncio.create_task(call(f"h{i % 4}")) for i in range(12)]
    await until(lambda: in_flight == 3)
    for _ in range(10):
        await asyncio.sleep(0)
    assert most == 3 and limits.waiting("h0") == 3
    gate.set()
    await asyncio.gather(*tasks)
    assert limits.waiting("h0") == 0  # the table keeps only targets in use


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CallLimits(total=0)


async def test_call_metrics_name_the_transport_kind_and_have_no_created_series() -> None:
    from controller import metrics
    from controller.handlers.protocol import HandlerRequest

    class Transport:
        target = "python demo.Handler"

        async def call(self, request: HandlerRequest) -> str:
            return "ok"

    request = cast(HandlerRequest, SimpleNamespace(operation="sync"))  # all a call reads
    assert await CallLimits().call(Transport(), request) == "ok"  # type: ignore[arg-type]
    text = metrics.render()[0].decode()
    assert 'blockflow_handler_call_seconds_count{operation="sync",transport="python"}' in text
    assert "_created" not in text
