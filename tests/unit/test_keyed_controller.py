"""The keyed controller: outcomes, retries for any exception, backoff, per-key locks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from controller.kube.rest import KubeApiError
from controller.runtime.controller import DONE, Backoff, KeyedController, Outcome
from tests.support.background import running

FAST = Backoff(base=0.01, conflict=0.002, cap=0.04)


def recorder(
    steps: list[Callable[[], Outcome]], done: asyncio.Event
) -> tuple[list[str], Callable[[str], Awaitable[Outcome]]]:
    """A reconcile that plays ``steps`` in turn (each returns or raises), then sets done."""
    calls: list[str] = []

    async def reconcile(key: str) -> Outcome:
        calls.append(key)
        step = steps[min(len(calls), len(steps)) - 1]
        if len(calls) >= len(steps):
            done.set()
        return step()

    return calls, reconcile


def raise_(exc: BaseException) -> Callable[[], Outcome]:
    def step() -> Outcome:
        raise exc

    return step


@pytest.mark.parametrize(
    ("failures", "conflict", "delay"),
    [
        (1, False, 5.0),
        (2, False, 10.0),
        (4, False, 40.0),
        (5, False, 60.0),
        (30, False, 60.0),
        (1, True, 1.0),
        (9, True, 1.0),
    ],
)
def test_backoff(failures: int, conflict: bool, delay: float) -> None:
    assert Backoff().delay(failures, conflict=conflict) == delay


def test_the_sooner_outcome_wins() -> None:
    assert Outcome.after(5).sooner(Outcome.after(2)) == Outcome(2.0)
    assert Outcome.after(5).sooner(DONE) == Outcome(5.0)
    assert DONE.sooner(Outcome.after(3)) == Outcome(3.0)
    assert Outcome.after(-4) == Outcome(0.0)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug in a reconcile"),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        KubeApiError(500, "InternalError", "etcdserver: request timed out"),
        KubeApiError(409, "Conflict", "the object has been modified"),
        TimeoutError(),
    ],
    ids=["bug", "connection-reset", "api-500", "conflict", "timeout"],
)
async def test_any_exception_is_retried_until_the_key_converges(error: Exception) -> None:
    done = asyncio.Event()
    calls, reconcile = recorder([raise_(error), raise_(error), lambda: DONE], done)
    controller: KeyedController[str] = KeyedController("t", reconcile, backoff=FAST)
    async with running(controller):
        controller.add("k")
        await asyncio.wait_for(done.wait(), 5)
        await controller.wait_idle()
    assert calls == ["k", "k", "k"]
    assert controller.backoff_of("k") == 0  # a success resets the backoff


class SlowAfterThree(Backoff):
    def delay(self, failures: int, *, conflict: bool) -> float:
        return 0.001 if failures < 3 else 60.0


async def test_failures_are_counted_per_key_while_they_last() -> None:
    done = asyncio.Event()
    _, reconcile = recorder([raise_(RuntimeError("x"))] * 3, done)
    controller: KeyedController[str] = KeyedController("t", reconcile, backoff=SlowAfterThree())
    async with running(controller):
        controller.add("k")
        await asyncio.wait_for(done.wait(), 5)
        await controller.wait_idle()
        assert controller.backoff_of("k") == 3
        assert controller.queue.pending_delays() == 1  # and it is still going to be retried
        controller.forget("k")
        assert controller.queue.pending_delays() == 0


async def test_a_404_ends_the_key() -> None:
    done = asyncio.Event()
    calls, reconcile = recorder([raise_(KubeApiError(404, "NotFound", "not found"))], done)
    controller: KeyedController[str] = KeyedController("t", reconcile, backoff=FAST)
    async with running(controller):
        controller.add("k")
        await asyncio.wait_for(done.wait(), 5)
        await controller.wait_idle()
    assert calls == ["k"]
    assert controller.queue.pending_delays() == 0


async def test_an_outcome_requeues_the_key_after_its_delay() -> None:
    done = asyncio.Event()
    calls, reconcile = recorder([lambda: Outcome.after(0.01), lambda: DONE], done)
    controller: KeyedController[str] = KeyedController("t", reconcile)
    async with running(controller):
        controller.add("k")
        await asyncio.wait_for(done.wait(), 5)
    assert calls == ["k", "k"]


async def test_locked_excludes_reconciles_of_the_same_key_and_leaves_no_lock_behind() -> None:
    inside = 0
    most = 0
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def reconcile(key: str) -> Outcome:
        nonlocal inside, most
        entered.set()
        inside += 1
        most = max(most, inside)
        await gate.wait()
        inside -= 1
        return DONE

    controller: KeyedController[str] = KeyedController("t", reconcile)

    async def writer() -> None:
        nonlocal inside, most
        async with controller.locked("k"):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0)
            inside -= 1

    async with running(controller):
        controller.add("k")
        await entered.wait()
        outside = asyncio.create_task(writer())
        await asyncio.sleep(0)
        gate.set()
        await outside
        await controller.wait_idle()
    assert most == 1
    assert controller._locks == {}
