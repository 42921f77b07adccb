"""Runs waiting for an event — a `waitForEvent` step, a workflow's `cancelOn` — found by
index, never by scanning every waiting run.

What a run waits for is an :class:`EventMatch`: an event type and the values some fields
of the event must have (`match: {data.orderId: "${{ event.data.orderId }}"}`, rendered
when the wait starts, so it is plain data in the run's status). The index keys each wait
by (namespace, type, the match's field paths, a digest of their values). An arriving
event is looked up once per distinct set of field paths waited on for its type — a
handful, whatever the number of waiting runs — by reading those paths from the event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from controller.kube.objects import Key

#: (namespace, event type) → field paths → digest of values → waiters (run, step or None).
Waiter = tuple[Key, str | None]  # step None: the run's cancelOn


@dataclass(frozen=True, slots=True)
class EventMatch:
    type: str
    match: dict[str, Any]

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(sorted(self.match))

    def digest(self) -> str:
        return digest_of([self.match[p] for p in self.paths])


def digest_of(values: list[Any]) -> str:
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


_MISSING = object()


def read_path(document: Any, path: str) -> Any:
    """The value at a dotted path of an event (`data.orderId`), or a marker when absent."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


@dataclass
class EventWaits:
    by_type: dict[tuple[str, str], dict[tuple[str, ...], dict[str, set[Waiter]]]] = field(
        default_factory=dict
    )
    #: What each run is indexed under (to unindex it).
    of_run: dict[Key, list[tuple[tuple[str, str], tuple[str, ...], str, Waiter]]] = field(
        default_factory=dict
    )

    def put(self, key: Key, waits: list[tuple[str | None, EventMatch]]) -> None:
        """Index the run's waits (replacing what it had)."""
        self.drop(key)
        entries = []
        for step, wanted in waits:
            where = (key.namespace, wanted.type)
            paths, digest, waiter = wanted.paths, wanted.digest(), (key, step)
            self.by_type.setdefault(where, {}).setdefault(paths, {}).setdefault(digest, set()).add(
                waiter
            )
            entries.append((where, paths, digest, waiter))
        if entries:
            self.of_run[key] = entries

    def drop(self, key: Key) -> None:
        for where, paths, digest, waiter in self.of_run.pop(key, []):
            shapes = self.by_type.get(where, {})
            waiters = shapes.get(paths, {}).get(digest)
            if waiters is None:
                continue
            waiters.discard(waiter)
            if not waiters:
                del shapes[paths][digest]
                if not shapes[paths]:
                    del shapes[paths]
                if not shapes:
                    del self.by_type[where]

    def matching(self, namespace: str, event: dict[str, Any]) -> list[Waiter]:
        """The waits an event satisfies: one lookup per set of paths waited on for its type."""
        found: list[Waiter] = []
        for paths, digests in self.by_type.get((namespace, str(event.get("type"))), {}).items():
            values = [read_path(event, p) for p in paths]
            if any(v is _MISSING for v in values):
                continue
            found += digests.get(digest_of(values), ())
        return sorted(found, key=_order)

    def __len__(self) -> int:
        return sum(len(v) for v in self.of_run.values())


def _order(waiter: Waiter) -> tuple[str, str, str]:
    return (waiter[0].namespace, waiter[0].name, waiter[1] or "")
