"""The work queue: dedupe, one worker per key, re-run after a change, one timer for delays."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from controller.runtime.queue import WorkQueue
from tests.support.background import running as serving


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.changed = asyncio.Event()

    async def wait_for_calls(self, count: int) -> None:
        async with asyncio.timeout(3):
            while len(self.calls) < count:
                self.changed.clear()
                await self.changed.wait()

    async def __call__(self, key: str) -> None:
        if key in self.running:
            self.overlaps += 1
        self.running.add(key)
        self.started.set()
        await self.gate.wait()
        self.calls.append(key)
        self.changed.set()
        self.running.discard(key)


async def test_keys_added_twice_before_processing_run_once() -> None:
    recorder = Recorder()
    queue: WorkQueue[str] = WorkQueue(recorder, workers=4)
    for key in ("a", "a", "b", "a"):
        queue.add(key)
    async with serving(queue):
        await asyncio.wait_for(queue.wait_idle(), 2)
    assert sorted(recorder.calls) == ["a", "b"]


async def test_a_key_added_while_processing_runs_again_never_in_parallel() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    queue: WorkQueue[str] = WorkQueue(recorder, workers=4)
    async with serving(queue):
        queue.add("a")
        await asyncio.wait_for(recorder.started.wait(), 2)
        queue.add("a")  # arrives while "a" is being processed
        recorder.gate.set()
        await recorder.wait_for_calls(2)
    assert recorder.calls == ["a", "a"] and recorder.overlaps == 0


async def test_delays_fire_in_order_and_the_earliest_request_wins() -> None:
    recorder = Recorder()
    queue: WorkQueue[str] = WorkQueue(recorder, workers=1)
    async with serving(queue):
        queue.add_after("late", 0.2)
        queue.add_after("soon", 0.05)
        queue.add_after("late", 0.1)  # earlier than the pending 0.2: wins
        queue.add_after("soon", 5)  # later than the pending 0.05: ignored
        assert queue.pending_delays() == 2
        await recorder.wait_for_calls(2)
    assert recorder.calls == ["soon", "late"]
    assert queue.pending_delays() == 0


async def test_an_immediate_add_supersedes_a_pending_delay() -> None:
    recorder = Recorder()
    queue: WorkQueue[str] = WorkQueue(recorder, workers=1)
    async with serving(queue):
        queue.add_after("a", 60)
        queue.add("a")
        await asyncio.wait_for(queue.wait_idle(), 2)
        assert queue.pending_delays() == 0
    assert recorder.calls == ["a"]


@pytest.mark.parametrize("delay", [0, -1])
async def test_non_positive_delay_runs_now(delay: float) -> None:
    recorder = Recorder()
    queue: WorkQueue[str] = WorkQueue(recorder, workers=1)
    queue.add_after("a", delay)
    async with serving(queue):
        await asyncio.wait_for(queue.wait_idle(), 2)
    assert recorder.calls == ["a"]


async def test_a_task_started_without_the_worker_slot_cannot_leak_it() -> None:
    """A step call outlives the reconcile that started it. Started in the reconcile's own
    context it would give back the reconcile's worker slot and take one again after the
    reconcile ended: a slot held by nobody, for good, until no key is processed at all."""
    from controller.runtime.queue import off_worker, without_worker

    processed: list[str] = []
    calls: list[asyncio.Task[None]] = []

    async def call() -> None:
        async with off_worker():
            await asyncio.sleep(0.01)

    async def process(key: str) -> None:
        processed.append(key)
        if key == "starts-a-call":
            calls.append(asyncio.create_task(call(), context=without_worker()))
            await asyncio.sleep(0)  # the call begins while this key holds its slot

    queue: WorkQueue[str] = WorkQueue(process, workers=1)
    runner = asyncio.create_task(queue.run())
    try:
        queue.add("starts-a-call")
        await asyncio.wait_for(queue.wait_idle(), 2)
        await asyncio.gather(*calls)
        queue.add("next")
        await asyncio.wait_for(queue.wait_idle(), 2)  # its one slot is free again
        assert processed == ["starts-a-call", "next"]
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
