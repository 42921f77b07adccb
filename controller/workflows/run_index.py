"""What the controller keeps about every WorkflowRun between events: a small entry, no body.

Lookups from the outside world to runs — a finish-callback token, a hook token, an
event's dedupe key — and the counts admission, queues and history limits ask for
(a workflow's runs by state), all answered without scanning every run. Rebuilt from
the watch (and from the controller's own writes) at every start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller import metrics
from controller.api.workflowrun import RunState
from controller.kube.objects import Body, Key, status_of, workflow_ref
from controller.workflows.event_waits import EventMatch, EventWaits

ACTIVE_STATES = (RunState.RUNNING, RunState.WAITING, RunState.PAUSED)
FINAL_STATES = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED, RunState.TERMINATED)
#: A run not admitted yet: just created (no state), or waiting for a concurrency slot.
NOT_ADMITTED = (None, RunState.QUEUED)


@dataclass(slots=True)
class RunEntry:
    """All the controller keeps about a run between events (no body, no task)."""

    workflow: str
    state: str | None
    event_key: str | None
    callbacks: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()
    #: The resourceVersion indexed (an older body of the run is never indexed over it).
    version: int = 0
    #: The run whose `workflow` step started this one.
    parent: str | None = None
    #: Runs this one's `workflow` steps started.
    children: tuple[str, ...] = ()
    #: Its concurrency.key value.
    concurrency_key: str | None = None


@dataclass
class Indexes:
    """Lookups from the outside world (tokens, events) to runs; rebuilt from watch events."""

    runs: dict[Key, RunEntry] = field(default_factory=dict)
    #: (namespace, workflow) → run state → runs: what admission, queues and history
    #: limits ask, answered without scanning every run.
    groups: dict[tuple[str, str], dict[str | None, set[Key]]] = field(default_factory=dict)
    callbacks: dict[str, tuple[Key, str]] = field(default_factory=dict)
    hooks: dict[str, set[Key]] = field(default_factory=dict)
    event_keys: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    #: Runs waiting for events (waitForEvent steps, cancelOn), by type and matched values.
    waits: EventWaits = field(default_factory=EventWaits)

    def put(self, key: Key, body: Body) -> RunEntry:
        self.drop(key)
        status = status_of(body)
        labels = body["metadata"].get("labels") or {}
        workflow = workflow_ref(body)
        callbacks, hooks = [], []
        for record in status.get("steps") or []:
            if record.get("callbackTokenHash"):
                callbacks.append(record["callbackTokenHash"])
                self.callbacks[record["callbackTokenHash"]] = (key, record["name"])
            if record.get("hookTokenHash"):
                # Waiting or not: a hook re-sent after its answer was lost learns that its
                # step has finished (410), not that no step ever waited for it (404).
                hooks.append(record["hookTokenHash"])
                self.hooks.setdefault(record["hookTokenHash"], set()).add(key)
        event_key = labels.get("blockflow.dev/event-key")
        if event_key:
            self.event_keys.setdefault((key.namespace, workflow), set()).add(event_key)
        annotations = body["metadata"].get("annotations") or {}
        entry = RunEntry(
            workflow,
            status.get("state"),
            event_key,
            tuple(callbacks),
            tuple(hooks),
            resource_version(body),
            annotations.get("blockflow.dev/parent-run"),
            tuple(r["child"] for r in status.get("steps") or [] if r.get("child")),
            status.get("concurrencyKey"),
        )
        self.runs[key] = entry
        self.waits.put(key, _waits(status))
        group = self.groups.setdefault((key.namespace, workflow), {})
        group.setdefault(entry.state, set()).add(key)
        metrics.RUNS.labels(entry.state or "new").inc()
        return entry

    def drop(self, key: Key) -> RunEntry | None:
        entry = self.runs.pop(key, None)
        if entry is None:
            return None
        metrics.RUNS.labels(entry.state or "new").dec()
        group = self.groups.get((key.namespace, entry.workflow))
        if group is not None:
            members = group.get(entry.state)
            if members is not None:
                members.discard(key)
                if not members:
                    del group[entry.state]
            if not group:
                del self.groups[(key.namespace, entry.workflow)]
        self.waits.drop(key)
        for digest in entry.callbacks:
            self.callbacks.pop(digest, None)
        for digest in entry.hooks:
            waiting = self.hooks.get(digest)
            if waiting is not None:
                waiting.discard(key)
                if not waiting:
                    del self.hooks[digest]
        return entry

    def in_states(self, namespace: str, workflow: str, *states: str | None) -> list[Key]:
        """A workflow's runs in these states, oldest first (names sort by start time)."""
        group = self.groups.get((namespace, workflow)) or {}
        return sorted(k for state in states for k in group.get(state, ()))

    def count(self, namespace: str, workflow: str, *states: str | None) -> int:
        group = self.groups.get((namespace, workflow)) or {}
        return sum(len(group.get(state, ())) for state in states)

    def active(self, namespace: str, workflow: str) -> list[Key]:
        return self.in_states(namespace, workflow, *ACTIVE_STATES)

    def workflow_of(self, key: Key) -> str | None:
        """Which workflow a run belongs to, by name (None for a run not indexed)."""
        entry = self.runs.get(key)
        return None if entry is None else entry.workflow

    def is_older(self, key: Key, body: Body) -> bool:
        """Is this body of the run older than the one indexed (a watch event that arrives
        after the controller's own, newer write)?"""
        entry = self.runs.get(key)
        return entry is not None and 0 < resource_version(body) < entry.version


def resource_version(body: Body) -> int:
    """An object's resourceVersion as the integer etcd made it (0 when not one)."""
    try:
        return int(body["metadata"].get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


def _waits(status: dict[str, Any]) -> list[tuple[str | None, EventMatch]]:
    """What an unfinished run waits for: its waitForEvent steps' events and its cancelOn."""
    if status.get("state") in FINAL_STATES:
        return []
    found: list[tuple[str | None, EventMatch]] = []
    for record in status.get("steps") or []:
        wanted = record.get("awaits")
        if record.get("state") == "waiting" and isinstance(wanted, dict):
            found.append(
                (record["name"], EventMatch(str(wanted["type"]), wanted.get("match") or {}))
            )
    for wanted in status.get("cancelOn") or []:
        found.append((None, EventMatch(str(wanted["type"]), wanted.get("match") or {})))
    return found
