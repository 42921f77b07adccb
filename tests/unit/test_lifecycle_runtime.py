"""The lifecycle runtime against the in-memory API: what it writes, when it calls the handler.

The `scripted` handler replies what each Block's config says and counts its syncs in the
signal `syncCount`, so "the handler was (not) called" is visible in status.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from controller.kube.api import FINALIZER
from tests.support.fake_kube import FakeKube
from tests.support.runtimes import Runtimes, running

APP = {"handler": {"python": "scripted"}}


def lifecycle(body: dict[str, Any]) -> dict[str, Any]:
    return dict((body.get("status") or {}).get("lifecycle") or {})


def signals(body: dict[str, Any]) -> dict[str, Any]:
    return dict((body.get("status") or {}).get("signals") or {})


async def app_and_block(rt: Runtimes, config: dict[str, Any], type_: str = "scripted") -> None:
    await rt.apply("App", "a", APP)
    await rt.apply("Block", "b", {"app": "a", "type": type_, "config": config})
    await rt.settle()


async def test_a_block_is_synced_once_with_one_status_write_and_one_event() -> None:
    async with running() as rt:
        await app_and_block(rt, {})
        block = await rt.get("Block", "b")
        assert lifecycle(block)["status"] == "ready"
        assert signals(block)["syncCount"] == 1
        assert block["metadata"]["finalizers"] == [FINALIZER]
        assert rt.kube.writes("PATCH", "/blocks/b/status") == 1
        # Settled: nothing more happens when the watch echoes our own write.
        rt.observe(block, "MODIFIED")
        await rt.settle()
        assert rt.kube.writes("PATCH", "/blocks/b/status") == 1


async def test_an_unknown_block_type_fails_without_calling_the_handler() -> None:
    async with running() as rt:
        await app_and_block(rt, {}, type_="nope")
        block = await rt.get("Block", "b")
        assert lifecycle(block)["status"] == "failed"
        assert "block type 'nope' is not offered by the handler of App a" in str(
            lifecycle(block).get("description") or lifecycle(block).get("lastError")
        )
        assert "syncCount" not in signals(block)


async def test_a_block_waits_for_a_signal_then_syncs_when_it_appears() -> None:
    async with running() as rt:
        ref = {"signalRef": {"block": "db", "signal": "syncCount"}}
        await app_and_block(rt, {"signals": {"dependsOn": ref}})
        waiting = await rt.get("Block", "b")
        assert lifecycle(waiting)["status"] == "in_progress"
        assert "syncCount" not in signals(waiting)
        await rt.apply("Block", "db", {"app": "a", "type": "scripted", "config": {}})
        await rt.settle()
        assert lifecycle(await rt.get("Block", "b"))["status"] == "ready"


async def test_a_changed_fixed_field_fails_and_names_the_field() -> None:
    async with running() as rt:
        await app_and_block(rt, {"fixedName": "one"})
        block = await rt.get("Block", "b")
        changed = await rt.api.patch_spec(
            "Block", "ns", "b", {"spec": {"config": {"fixedName": "two"}}}
        )
        rt.observe(changed, "MODIFIED")
        await rt.settle()
        block = await rt.get("Block", "b")
        assert lifecycle(block)["status"] == "failed"
        assert "spec.config.fixedName is fixed" in str(block["status"])
        assert signals(block)["syncCount"] == 1  # not called again


async def test_an_app_waits_for_its_blocks_to_go_before_it_drains() -> None:
    async with running() as rt:
        await app_and_block(rt, {})
        await rt.delete("App", "a")
        await rt.settle()
        app = await rt.get("App", "a")
        assert lifecycle(app)["status"] == "draining"
        assert "Waiting for dependents to go: Block b" in str(app["status"])
        await rt.delete("Block", "b")
        await rt.settle()
        assert await rt.api.get("Block", "ns", "b") is None
        assert await rt.api.get("App", "ns", "a") is None


async def test_a_connection_reset_on_the_status_write_is_retried_until_it_lands() -> None:
    kube = FakeKube()
    kube.fail("PATCH", "/blocks/b/status", aiohttp.ClientOSError(104, "reset"), times=3)
    async with running(kube) as rt:
        await app_and_block(rt, {})
        assert lifecycle(await rt.get("Block", "b"))["status"] == "ready"
        assert rt.lifecycle.controller.backoff_of(rt.key("Block", "b")) == 0


async def test_a_sensitive_signal_goes_to_a_secret_once_and_never_to_status() -> None:
    async with running() as rt:
        await app_and_block(rt, {"secret": "hunter2"})
        block = await rt.get("Block", "b")
        assert "hunter2" not in str(block["status"])
        listed = block["status"]["sensitiveSignals"]
        assert listed["names"] == ["secret"]
        assert await rt.api.read_secret("ns", listed["secretName"]) is not None
        secret_writes = rt.kube.writes(path_contains="/secrets")
        # Another sync returning the same secret writes no Secret.
        rt.lifecycle.request(rt.key("Block", "b"))
        await rt.settle()
        assert signals(await rt.get("Block", "b"))["syncCount"] == 2
        assert rt.kube.writes(path_contains="/secrets") == secret_writes
