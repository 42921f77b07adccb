"""The object store: stale watch events never replace newer objects; the reference index."""

from __future__ import annotations

from typing import Any

from controller.kube.objects import Key
from controller.runtime.store import Store


def block(name: str, rv: str, uid: str = "u1", config: Any = None) -> dict[str, Any]:
    return {
        "kind": "Block",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv},
        "spec": {"app": "demo", "type": "t", "config": config or {}},
    }


def test_an_older_event_does_not_replace_a_newer_object() -> None:
    store = Store()
    store.upsert(block("a", "20"))
    store.upsert(block("a", "19"))
    kept = store.get(Key("Block", "ns", "a"))
    assert kept is not None and kept["metadata"]["resourceVersion"] == "20"


def test_stale_events_are_recognised_and_heavy_metadata_is_not_kept() -> None:
    store = Store()
    body = block("a", "20")
    body["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        "blockflow.dev/requested-sync-at": "t1",
    }
    store.upsert(body)
    kept = store.get(Key("Block", "ns", "a"))
    assert kept is not None and "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"blockflow.dev/requested-sync-at": "t1"}
    assert store.stale(block("a", "19")) and not store.stale(block("a", "21"))


def test_a_recreated_object_replaces_the_old_one_whatever_its_version() -> None:
    store = Store()
    store.upsert(block("a", "20", uid="u1"))
    store.upsert(block("a", "5", uid="u2"))
    kept = store.get(Key("Block", "ns", "a"))
    assert kept is not None and kept["metadata"]["uid"] == "u2"


def test_references_are_indexed_both_ways_and_dropped_on_removal() -> None:
    store = Store()
    ref = {"signalRef": {"block": "base", "signal": "id"}}
    store.upsert(block("top", "1", config={"x": ref}))
    top, base = Key("Block", "ns", "top"), Key("Block", "ns", "base")
    assert store.references_of(top) == {base}
    assert store.referrers_of(base) == {top}
    assert store.blocks_of_app("ns", "demo") == {top}
    store.remove(top)
    assert store.referrers_of(base) == set()
    assert store.blocks_of_app("ns", "demo") == set()
