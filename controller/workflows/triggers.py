"""Triggers in, runs out: the index of every Workflow's trigger, and starting runs.

Each Workflow's trigger is indexed from its observed body: the event type it subscribes
to (per namespace), the hashes of its trigger URLs (a webhook's, a trigger block's).
:meth:`Triggers.publish` starts one run of each active workflow subscribed to an event's
type — at most one per (source, id) and workflow, by the event's dedupe key — and
:meth:`Triggers.start_run` creates one run for any trigger (a webhook, a schedule slot).
Lifecycle transitions of Apps and Blocks become events here (`Block.ready`, …).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from controller import metrics
from controller.api.events import EntityChanged, WorkflowActivated, event_data
from controller.api.workflow import WorkflowState
from controller.kube.api import KubeApi
from controller.kube.objects import Body, Key, spec_of, status_of
from controller.kube.rest import KubeApiError
from controller.logs import get_logger
from controller.runtime.store import Cache
from controller.runtime.transitions import Transition
from controller.server.tokens import token_hash
from controller.workflows.activator import TokenKeys, wanted_state
from controller.workflows.counters import IGNORED
from controller.workflows.input_schema import input_errors
from controller.workflows.naming import PARENT_LABEL, event_key, label_value, new_run_body
from controller.workflows.run_index import Indexes
from controller.workflows.steps.base import ChildRefused, ChildRun
from controller.workflows.workflow_status import WorkflowStatusWriter

log = get_logger("blockflow.workflows")


class InputRefused(ValueError):
    """The input does not match the workflow's spec.inputSchema: no run is started."""


def refused_input(workflow: Body, input_: Any) -> str | None:
    """Why the activated version's inputSchema refuses this input (None: it matches)."""
    schema = spec_of(status_of(workflow).get("activation") or {}).get("inputSchema")
    if not isinstance(schema, dict):
        return None
    errors = input_errors(schema, input_)
    if not errors:
        return None
    return "the input does not match spec.inputSchema: " + "; ".join(errors)


def is_active(body: Body) -> bool:
    """Is the workflow meant to be active, and is a version of it activated?"""
    status = status_of(body)
    return wanted_state(body) is WorkflowState.ACTIVE and bool(
        (status.get("activation") or {}).get("spec")
    )


class Triggers:
    def __init__(
        self,
        api: KubeApi,
        cache: Cache,
        index: Indexes,
        status: WorkflowStatusWriter,
        tokens: TokenKeys,
        *,
        on_run_created: Callable[[Body], None],
        now: Callable[[], datetime],
    ) -> None:
        self.api = api
        self.cache = cache
        self.index = index
        self.status = status
        self.tokens = tokens
        self.on_run_created = on_run_created
        #: Hands each event to the runs waiting for it (waitForEvent, cancelOn).
        self.deliver: Callable[[str, dict[str, Any]], Awaitable[int]] | None = None
        self.now = now
        self.subscribers: dict[tuple[str, str], set[Key]] = {}
        self.routes: dict[str, tuple[Key, int | None]] = {}
        self._indexed: dict[Key, tuple[tuple[str, str] | None, tuple[str, ...]]] = {}
        #: One run creation at a time per workflow (dedupe keys are checked, then written).
        self._locks: dict[Key, asyncio.Lock] = {}
        #: Events of lifecycle transitions being published in the background.
        self.publishing: set[asyncio.Task[int]] = set()

    # -- the index ---------------------------------------------------------------------------

    def observe(self, body: Body, event_type: str | None) -> None:
        """Index (or, for DELETED, forget) one Workflow's trigger."""
        key = Key.of(body)
        self._unindex(key)
        if event_type == "DELETED":
            self._locks.pop(key, None)
            return
        trigger = spec_of(body).get("trigger") or {}
        subscription: tuple[str, str] | None = None
        if trigger.get("event"):
            subscription = (key.namespace, str(trigger["event"]))
            self.subscribers.setdefault(subscription, set()).add(key)
        hashes: list[str] = []
        if trigger.get("webhook") is not None and body["metadata"].get("uid"):
            digest = token_hash(self.tokens.webhook(body["metadata"]["uid"]))
            self.routes[digest] = (key, None)
            hashes.append(digest)
        activation = status_of(body).get("activation") or {}
        activated_trigger = spec_of(activation).get("trigger") or {}
        if activation.get("tokenHash") and activated_trigger.get("block") is not None:
            self.routes[activation["tokenHash"]] = (key, activation.get("version"))
            hashes.append(activation["tokenHash"])
        self._indexed[key] = (subscription, tuple(hashes))

    def _unindex(self, key: Key) -> None:
        subscription, hashes = self._indexed.pop(key, (None, ()))
        if subscription is not None:
            members = self.subscribers.get(subscription)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.subscribers[subscription]
        for digest in hashes:
            if self.routes.get(digest, (None,))[0] == key:
                del self.routes[digest]

    def route(self, token: str) -> tuple[Body, int | None] | None:
        """The workflow a trigger URL token belongs to (and the version, for a trigger
        block's URL), or None for an unknown token."""
        found = self.routes.get(token_hash(token))
        if found is None:
            return None
        body = self.cache.get(found[0])
        return None if body is None else (body, found[1])

    # -- lifecycle transitions as events -------------------------------------------------------

    def lifecycle_changed(self, transition: Transition) -> None:
        """Block.ready / Block.failed (and App.*) as events other workflows can trigger on."""
        key, before, after = transition.key, transition.before, transition.after
        old = (status_of(before).get("lifecycle") or {}).get("status")
        lifecycle = status_of(after).get("lifecycle") or {}
        new = lifecycle.get("status")
        if key.kind not in ("App", "Block") or new == old or new not in ("ready", "failed"):
            return
        meta = after["metadata"]
        source = f"blockflow.dev/namespaces/{meta['namespace']}/{key.kind.lower()}s/{meta['name']}"
        event_id = f"{meta['uid']}/{new}/{lifecycle.get('lastSyncTime')}"
        data = event_data(
            EntityChanged(
                name=meta["name"],
                namespace=meta["namespace"],
                status=new,
                description=lifecycle.get("description"),
            )
        )
        task = asyncio.create_task(
            self.publish(meta["namespace"], f"{key.kind}.{new}", source, event_id, data)
        )
        self.publishing.add(task)
        task.add_done_callback(self._published)

    async def activated(self, body: Body, version: int) -> None:
        meta = body["metadata"]
        await self.publish(
            meta["namespace"],
            "Workflow.activated",
            f"blockflow.dev/namespaces/{meta['namespace']}/workflows/{meta['name']}",
            f"{meta['uid']}/activated/{version}",
            event_data(WorkflowActivated(workflow=meta["name"], version=version)),
        )

    # -- starting runs -----------------------------------------------------------------------

    async def publish(
        self,
        namespace: str,
        type_: str,
        source: str,
        id_: str,
        data: Any,
        *,
        event: dict[str, Any] | None = None,
    ) -> int:
        """An event: start one run of each active workflow of the namespace subscribed to
        its type (at most one per (source, id) and workflow). Returns the runs started,
        once they exist in the API server."""
        document = event or {
            "specversion": "1.0",
            "id": id_,
            "source": source,
            "type": type_,
            "time": self.now().isoformat(),
            "data": data,
        }
        dedupe = event_key(source, id_)
        started = 0
        if self.deliver is not None:  # runs waiting for it first: they were there before
            await self.deliver(namespace, document)
        for key in sorted(self.subscribers.get((namespace, type_), set())):
            body = self.cache.get(key)
            if body is None:
                continue
            if not is_active(body):
                metrics.EVENTS_RECEIVED.labels("ignored").inc()
                await self.count_ignored(key)
                continue
            try:
                created = await self.start_run(body, document, dedupe=dedupe, trigger="event")
            except InputRefused as exc:
                metrics.EVENTS_RECEIVED.labels("rejected").inc()
                self.status.events.post(body, "Warning", "InputRefused", f"{type_}: {exc}")
                continue
            metrics.EVENTS_RECEIVED.labels("started" if created else "duplicate").inc()
            started += int(created is not None)
        return started

    async def count_ignored(self, key: Key) -> None:
        """An event (or schedule slot) the workflow ignored, counted on the workflow."""
        await self.status.count(key, IGNORED)

    async def start_child(self, child: ChildRun) -> None:
        """A run of another workflow for a `workflow` step (nothing when it exists already)."""
        workflow = self.cache.get(Key("Workflow", child.namespace, child.workflow))
        if workflow is None:
            raise ChildRefused(f"Workflow {child.workflow} not found in this namespace")
        if not is_active(workflow):
            phase = status_of(workflow).get("phase") or "Draft"
            raise ChildRefused(
                f"Workflow {child.workflow} is {phase}: activate it (spec.state: Active)"
            )
        try:
            await self.start_run(
                workflow, child.input, trigger="workflow", name=child.name, parent=child
            )
        except InputRefused as exc:
            raise ChildRefused(f"with.input: {exc}") from None

    async def start_run(
        self,
        workflow: Body,
        input_: Any,
        *,
        dedupe: str | None = None,
        version: int | None = None,
        trigger: str,
        name: str | None = None,
        parent: ChildRun | None = None,
    ) -> str | None:
        """Create one run (None when the dedupe key already started one). Raises
        InputRefused, creating nothing, when the input does not match the inputSchema."""
        refused = refused_input(workflow, input_)
        if refused is not None:
            metrics.RUN_INPUT_REFUSED.labels(trigger).inc()
            raise InputRefused(refused)
        meta = workflow["metadata"]
        key = Key.of(workflow)
        activation = status_of(workflow).get("activation") or {}
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if dedupe is not None:
                seen = self.index.event_keys.get((key.namespace, key.name), set())
                if dedupe in seen:
                    return None
            body = new_run_body(
                key.namespace,
                key.name,
                meta["uid"],
                self.now(),
                input_=input_,
                workflow_version=version or activation.get("version"),
                event_key_=dedupe,
                name=name,
                trigger=trigger,
            )
            if parent is not None:
                body["metadata"]["labels"][PARENT_LABEL] = label_value(parent.parent_name)
                body["metadata"]["annotations"] = {
                    PARENT_LABEL: parent.parent_name,
                    "blockflow.dev/parent-step": parent.parent_step,
                }
                body["metadata"]["ownerReferences"].append(
                    {
                        "apiVersion": "blockflow.dev/v1alpha1",
                        "kind": "WorkflowRun",
                        "name": parent.parent_name,
                        "uid": parent.parent_uid,
                        "blockOwnerDeletion": False,
                    }
                )
            try:
                created = await self.api.create(body)
            except KubeApiError as exc:
                if exc.code == 409:
                    return None
                raise
            self.on_run_created(created)
            metrics.RUNS_STARTED.labels(trigger).inc()
            return str(created["metadata"]["name"])

    def _published(self, task: asyncio.Task[int]) -> None:
        self.publishing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("publishing an event failed", error=str(task.exception()))
