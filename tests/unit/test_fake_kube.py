"""The in-memory API server behaves as the real one does where the runtimes rely on it."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from controller.kube.api import FINALIZER, KubeApi
from controller.kube.rest import KubeApiError
from tests.support.fake_kube import FakeKube

BLOCKS = "/apis/blockflow.dev/v1alpha1/namespaces/ns/blocks"


def block(name: str = "b", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "Block",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"app": "a", "type": "noop"},
        **extra,
    }


async def test_create_get_and_conflicting_create() -> None:
    kube = FakeKube()
    api = KubeApi(kube)
    created = await api.create(block(status={"ignored": True}))
    assert created["metadata"]["uid"] and created["metadata"]["generation"] == 1
    assert "status" not in created  # the status subresource is not written by a create
    assert await api.get("Block", "ns", "b") == created
    assert await api.get("Block", "ns", "missing") is None
    with pytest.raises(KubeApiError) as caught:
        await api.create(block())
    assert caught.value.code == 409


async def test_status_and_spec_writes_stay_in_their_lanes() -> None:
    api = KubeApi(FakeKube())
    created = await api.create(block())
    after_status = await api.patch_status("Block", "ns", "b", {"state": "ready"})
    assert after_status["status"] == {"state": "ready"}
    assert after_status["metadata"]["generation"] == 1
    assert int(after_status["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    after_spec = await api.patch_spec(
        "Block", "ns", "b", {"spec": {"type": "other"}, "status": {"state": "x"}}
    )
    assert after_spec["metadata"]["generation"] == 2
    assert after_spec["status"] == {"state": "ready"}  # not through the object


async def test_a_checked_status_write_on_a_stale_version_is_a_conflict() -> None:
    api = KubeApi(FakeKube())
    stale = await api.create(block())
    await api.patch_status("Block", "ns", "b", {"a": 1})
    with pytest.raises(KubeApiError) as caught:
        await api.patch_status_checked(stale, {"a": 2})
    assert caught.value.code == 409
    fresh = await api.get("Block", "ns", "b")
    assert fresh is not None
    assert (await api.patch_status_checked(fresh, {"a": 2}))["status"] == {"a": 2}


async def test_merge_patch_null_removes() -> None:
    api = KubeApi(FakeKube())
    await api.create(block())
    await api.patch_status("Block", "ns", "b", {"a": {"x": 1, "y": 2}})
    updated = await api.patch_status("Block", "ns", "b", {"a": {"x": None}})
    assert updated["status"] == {"a": {"y": 2}}


async def test_finalizers_hold_a_deleted_object_until_the_last_goes() -> None:
    kube = FakeKube()
    api = KubeApi(kube)
    body = await api.add_finalizer("Block", await api.create(block()))
    assert body["metadata"]["finalizers"] == [FINALIZER]
    await api.delete("Block", "ns", "b")
    held = await api.get("Block", "ns", "b")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    assert await api.remove_finalizer("Block", held) is not None
    assert await api.get("Block", "ns", "b") is None


async def test_a_json_patch_test_op_guards_the_write() -> None:
    api = KubeApi(FakeKube())
    body = await api.add_finalizer("Block", await api.create(block()))
    # A stale copy that believes our finalizer is second: the test op fails, nothing changes.
    stale = {**body, "metadata": {**body["metadata"], "finalizers": ["other", FINALIZER]}}
    with pytest.raises(KubeApiError) as caught:
        await api.remove_finalizer("Block", stale)
    assert caught.value.code == 422
    kept = await api.get("Block", "ns", "b")
    assert kept is not None and kept["metadata"]["finalizers"] == [FINALIZER]


async def test_secrets_round_trip_and_lists_filter_by_label() -> None:
    kube = FakeKube()
    api = KubeApi(kube)
    owner = await api.create(block())
    version = await api.merge_secret("ns", "s", {"k": "v"}, owner, {"team": "a"})
    assert await api.read_secret("ns", "s") == ({"k": "v"}, version)
    await api.merge_secret("ns", "s", {"k": None, "j": "w"}, owner, {"team": "a"})
    assert (await api.read_secret("ns", "s") or ({}, ""))[0] == {"j": "w"}
    listed = await kube.request(
        "GET", "/api/v1/namespaces/ns/secrets", params={"labelSelector": "team=a"}
    )
    assert [s["metadata"]["name"] for s in listed["items"]] == ["s"]
    none = await kube.request(
        "GET", "/api/v1/namespaces/ns/secrets", params={"labelSelector": "team=b"}
    )
    assert none["items"] == []


async def test_injected_failures_happen_then_stop_and_requests_are_recorded() -> None:
    kube = FakeKube()
    api = KubeApi(kube)
    await api.create(block())
    kube.fail("PATCH", "/status", aiohttp.ClientOSError(104, "Connection reset by peer"))
    with pytest.raises(aiohttp.ClientOSError):
        await api.patch_status("Block", "ns", "b", {"a": 1})
    await api.patch_status("Block", "ns", "b", {"a": 1})
    assert kube.writes("PATCH", "/status") == 2
    assert kube.writes("POST", BLOCKS) == 1


async def test_the_same_event_again_is_counted_on_the_first_not_posted_twice() -> None:
    kube = FakeKube()
    api = KubeApi(kube)
    body = await api.create(block())
    for _ in range(3):
        await api.post_event(body, "Warning", "SyncFailed", "POST http://x/ answered 503")
    await api.post_event(body, "Warning", "SyncFailed", "something else")
    listed = await kube.request("GET", "/api/v1/namespaces/ns/events")
    counts = sorted((e["message"], e["count"]) for e in listed["items"])
    assert counts == [("POST http://x/ answered 503", 3), ("something else", 1)]
