"""The latest body of every App, Block and Workflow, and who references whom (an in-memory index).

Fed by watch events; read by the reconciler to resolve signal references and
to find the dependents to re-sync when a signal changes, without polling.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

from controller.kube.objects import Body, Key, spec_of
from controller.lifecycle.signals import SignalRefError, find_refs


class Cache(Protocol):
    """Read-only access to the latest observed body of an object (what other rooms get)."""

    def get(self, key: Key) -> Body | None: ...


class Store:
    def __init__(self) -> None:
        self._bodies: dict[Key, Body] = {}
        self._references: dict[Key, set[Key]] = {}  # block → what its config references
        self._referrers: dict[Key, set[Key]] = defaultdict(set)  # target → blocks referencing it
        self._blocks_of_app: dict[tuple[str, str], set[Key]] = defaultdict(set)

    def get(self, key: Key) -> Body | None:
        return self._bodies.get(key)

    def __len__(self) -> int:
        return len(self._bodies)

    def stale(self, body: Body) -> bool:
        """Is this an older version of the object than the one held?"""
        previous = self._bodies.get(Key.of(body))
        return previous is not None and _older(body, previous)

    def upsert(self, body: Body) -> Body | None:
        """Store the body unless it is older than the stored one; returns the previous one.

        Watch events can arrive after the controller stored a newer version of the same
        object from its own write's response; taking the stale one would re-run a sync.
        """
        key = Key.of(body)
        previous = self._bodies.get(key)
        if previous is not None and _older(body, previous):
            return previous
        body = _slim(body)
        self._bodies[key] = body
        if key.kind == "Block":
            self._index_block(key, body, previous)
        return previous

    def remove(self, key: Key) -> Body | None:
        previous = self._bodies.pop(key, None)
        if key.kind == "Block":
            self._unindex_block(key, previous)
        return previous

    # -- index ---------------------------------------------------------------------------------

    def references_of(self, key: Key) -> set[Key]:
        return set(self._references.get(key, ()))

    def referrers_of(self, key: Key) -> set[Key]:
        return set(self._referrers.get(key, ()))

    def blocks_of_app(self, namespace: str, app: str) -> set[Key]:
        return set(self._blocks_of_app.get((namespace, app), ()))

    def _index_block(self, key: Key, body: Body, previous: Body | None) -> None:
        self._unindex_block(key, previous)
        spec = spec_of(body)
        try:
            refs = find_refs(spec.get("config") or {}, key.namespace)
        except SignalRefError:
            refs = []  # reported by the reconciler, which re-parses with the error
        targets = {Key(ref.kind, key.namespace, ref.name) for _, ref in refs}
        self._references[key] = targets
        for target in targets:
            self._referrers[target].add(key)
        if spec.get("app"):
            self._blocks_of_app[(key.namespace, spec["app"])].add(key)

    def _unindex_block(self, key: Key, previous: Body | None) -> None:
        for target in self._references.pop(key, set()):
            self._referrers[target].discard(key)
            if not self._referrers[target]:
                del self._referrers[target]
        if previous is not None:
            app = spec_of(previous).get("app")
            if app:
                self._blocks_of_app[(key.namespace, app)].discard(key)


_HEAVY_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _slim(body: Body) -> Body:
    """Drop what the runtime never reads but every object carries (managedFields, kubectl's
    copy of the last applied manifest): often most of an object's size, times every object."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if "managedFields" not in meta and not any(a in annotations for a in _HEAVY_ANNOTATIONS):
        return body
    slim_meta = {k: v for k, v in meta.items() if k != "managedFields"}
    if annotations:
        slim_meta["annotations"] = {
            k: v for k, v in annotations.items() if k not in _HEAVY_ANNOTATIONS
        }
    return {**body, "metadata": slim_meta}


def _older(body: Body, than: Body) -> bool:
    """Same object (uid) with a lower resourceVersion (etcd revisions are integers)."""
    new_meta, old_meta = body["metadata"], than["metadata"]
    if new_meta.get("uid") != old_meta.get("uid"):
        return False
    try:
        return int(new_meta.get("resourceVersion", "")) < int(old_meta.get("resourceVersion", ""))
    except ValueError:
        return False
