"""Live updates: which namespaces changed, from the controller's own watches.

The controller already watches every Blockflow kind (kopf); each watch event is handed to
:meth:`ChangeFeed.notify` as well, which wakes the page's Server-Sent Event streams of that
namespace. A stream only ever says "changed" — the page then re-fetches its view through
the same authorized path as any page load — so nothing flows to a browser that its person
could not read anyway. The feed also keeps the names of the objects it has seen per
namespace (for the namespace list and its counts): a few strings per object, and a summary of
each run (:mod:`controller.ui.run_index`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from controller.logs import get_logger
from controller.ui.run_index import RunIndex

log = get_logger("blockflow.ui")


class Subscription:
    """One stream's wake-up: set when its namespace (or, for None, the namespace list)
    changed; ``closed`` once the server shuts down."""

    def __init__(self, namespace: str | None) -> None:
        self.namespace = namespace
        self.changed = asyncio.Event()
        self.closed = False


class ChangeFeed:
    def __init__(self) -> None:
        self._objects: dict[str, set[tuple[str, str]]] = {}
        self._subscribers: dict[str | None, set[Subscription]] = {}
        self._revisions: dict[str | None, int] = {}
        self.events = 0
        #: Every watched run, summarized: what the run lists page through.
        self.runs = RunIndex()
        #: Why this replica's lists are empty, shown on every page (a standby: the leader has
        #: the watches); None while it serves.
        self.notice: str | None = None

    # -- fed by the watches ------------------------------------------------------------------

    def notify(self, kind: str, body: dict[str, Any], event_type: str | None) -> None:
        """A watch event of a Blockflow object (``event_type`` None: listed at start)."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return
        self.events += 1
        if kind == "WorkflowRun":
            try:
                self.runs.observe(body, event_type)
            except Exception as exc:  # the page's summary never stops a watch
                log.warning("ui: a run could not be summarized", run=name, error=str(exc))
        key = (kind, name)
        objects = self._objects.setdefault(namespace, set())
        if event_type == "DELETED":
            membership = key in objects
            objects.discard(key)
            if not objects:
                del self._objects[namespace]
        else:
            membership = key not in objects
            objects.add(key)
        self._wake(namespace)
        if membership:
            self._wake(None)

    def _wake(self, namespace: str | None) -> None:
        self._revisions[namespace] = self._revisions.get(namespace, 0) + 1
        for subscription in self._subscribers.get(namespace, ()):
            subscription.changed.set()

    # -- read by the page --------------------------------------------------------------------

    def revision(self, namespace: str | None) -> int:
        """How many changes ``namespace`` (None: the namespace list) has seen: a page
        rendered at revision r whose stream opens later learns at once that it missed some."""
        return self._revisions.get(namespace, 0)

    def namespaces(self) -> list[str]:
        """Namespaces holding Blockflow objects the controller watches."""
        return sorted(self._objects)

    def counts(self, namespace: str) -> dict[str, int]:
        """Objects per kind in ``namespace``."""
        out: dict[str, int] = {}
        for kind, _ in self._objects.get(namespace, ()):
            out[kind] = out.get(kind, 0) + 1
        return out

    @contextmanager
    def subscribe(self, namespace: str | None) -> Iterator[Subscription]:
        subscription = Subscription(namespace)
        self._subscribers.setdefault(namespace, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(namespace)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[namespace]

    def subscribers(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def close(self) -> None:
        """End every stream (the server is shutting down)."""
        for subscriptions in self._subscribers.values():
            for subscription in subscriptions:
                subscription.closed = True
                subscription.changed.set()
