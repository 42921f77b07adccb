"""The object store: stale watch events never replace newer objects; the reference index."""

from __future__ import annotations

from typing import Any

from controller.runtime.store import Key, Store


def block(name: str, rv: str, uid: str = "u1", config: Any = None) -> dict[str, Any]:
    return {
        "kind": "Block",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv},
        "spec": {"app": "demo", "type": "t", "config": config or {}},
    }


def test_an_older_event_does_not_replace_a_newer_object() -> None:
    store = Store()
    newer = block("a", "20")
    store.upsert(newer)
    store.upsert(block("a", "19"))
    assert store.get(Key("Block", "ns", "a")) is newer


def test_a_recreated_object_replaces_the_old_one_whatever_its_version() -> None:
    store = Store()
    store.upsert(block("a", "20", uid="u1"))
    recreated = block("a", "5", uid="u2")
    store.upsert(recreated)
    assert store.get(Key("Block", "ns", "a")) is recreated


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
