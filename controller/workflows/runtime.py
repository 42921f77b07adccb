"""The workflow engine's runtime: triggers in, runs out, and the HTTP surface's backend.

- **Workflows** are reconciled by the lifecycle runtime (their trigger is their
  "handler", see :mod:`controller.workflows.activator`); this runtime supplies the
  activator, the Workflow-only status fields, and indexes each Workflow's trigger:
  event subscriptions, trigger-URL token hashes, schedules.
- **Triggers** create WorkflowRuns: events (CloudEvents at ``/events`` and Blockflow's
  own), webhooks and trigger blocks (``/triggers/<token>``), schedules (one timer per
  scheduled workflow), the CLI and ``kubectl create``.
- **Runs** are driven by :class:`controller.workflows.runs.RunRuntime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from controller import metrics
from controller.api.workflow import ConcurrencyPolicy, WorkflowSpec, WorkflowState
from controller.api.workflowrun import RunState
from controller.handlers.protocol import (
    CallMetadata,
    EntityInput,
    HttpRequestData,
    NoOpReply,
    TriggerRequest,
)
from controller.handlers.transport import HandlerError, Transport
from controller.kube.api import KubeApi
from controller.kube.rest import KubeApiError, RestClient
from controller.logs import get_logger
from controller.runtime.calls import timed_call
from controller.runtime.memory import trim_when_idle
from controller.runtime.queue import WorkQueue
from controller.runtime.reconciler import LifecycleRuntime
from controller.runtime.store import Body, Key
from controller.server.backend import IncomingRequest, Reply, problem
from controller.server.cloudevents import EventError
from controller.server.cloudevents import parse as parse_event
from controller.server.tokens import token_hash
from controller.workflows.activator import (
    TokenKeys,
    WorkflowActivator,
    drain_request,
    wanted_state,
)
from controller.workflows.builtin_steps import Builtins, HookRejected, deliver_hook
from controller.workflows.naming import event_key, new_run_body, run_name
from controller.workflows.runs import ACTIVE_STATES, RunRuntime
from controller.workflows.schedule import CronError, due_slots, next_wake, parse_cron

log = get_logger("blockflow.workflows")

EVENTS_SECRET = "blockflow-events"
_HIDDEN_HEADERS = ("authorization", "cookie", "proxy-authorization")
#: The App endpoint's handler authenticates its own callers, so it sees Authorization; never
#: the cookies of the controller's web page.
_APP_HIDDEN_HEADERS = ("cookie", "proxy-authorization")


class WorkflowRuntime:
    """Implements the lifecycle runtime's WorkflowHooks and the HTTP server's Backend."""

    def __init__(
        self,
        api: KubeApi,
        lifecycle: LifecycleRuntime,
        tokens: TokenKeys,
        http: aiohttp.ClientSession,
        kube: RestClient,
        *,
        events_namespace: str = "default",
        workers: int = 16,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        crash_after_run_writes: int | None = None,
    ) -> None:
        self.api = api
        self.lifecycle = lifecycle
        self.tokens = tokens
        self.now = now
        self.events_namespace = events_namespace
        self.runs = RunRuntime(
            api,
            apps=lifecycle,
            workflows=lifecycle.store.get,
            remember_workflow=self._remember,
            tokens=tokens,
            builtins=Builtins(kube, http, self.publish),
            publish=self.publish,
            post_event=lifecycle.events.post,
            workers=workers,
            now=now,
            rng=rng,
            crash_after_writes=crash_after_run_writes,
        )
        self.subscribers: dict[tuple[str, str], set[Key]] = {}
        self.routes: dict[str, tuple[Key, int | None]] = {}
        self._workflow_index: dict[Key, tuple[tuple[str, str] | None, tuple[str, ...]]] = {}
        self.schedules: WorkQueue[Key] = WorkQueue(self._schedule, workers=2)
        self._wf_locks: dict[Key, asyncio.Lock] = {}
        self._ready = False
        self.not_ready_because = "listing workflows and runs"
        # A standby whose Pod the Service does not select (leader label) is Ready: healthy and
        # able to take over.
        self.standby_ready = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- life ------------------------------------------------------------------------------

    async def start(self, namespaces: list[str]) -> None:
        """List Workflows and runs once (indexes, dedupe keys), then serve."""
        for namespace in namespaces or [None]:  # type: ignore[list-item]
            # Apps first: a run resumed at startup calls its steps' Apps at once.
            for kind in ("App", "Block"):
                for body in await self.api.list_all(kind, namespace):
                    self.lifecycle.observe(body, None)
            for body in await self.api.list_all("Workflow", namespace):
                self.lifecycle.observe(body, None)
                self.observe_workflow(body, None)
            for body in await self.api.list_all("WorkflowRun", namespace):
                self.runs.observe(body, None)
        self._tasks = [
            asyncio.create_task(self.runs.queue.run(), name="workflow-runs"),
            asyncio.create_task(self.schedules.run(), name="workflow-schedules"),
            asyncio.create_task(
                trim_when_idle(lambda: self.lifecycle.reconciles + self.runs.processed),
                name="memory-trim",
            ),
        ]
        self._ready = True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def readiness(self) -> tuple[bool, str]:
        if self._ready or self.standby_ready:
            return True, ""
        return False, self.not_ready_because

    # -- WorkflowHooks (asked by the lifecycle runtime) ------------------------------------

    def activator(self, body: Body) -> Transport:
        return WorkflowActivator(
            body,
            tokens=self.tokens,
            apps=self.lifecycle,
            now=self.now,
            on_activated=self._activated,
        )

    def drain_request(self, body: Body) -> str | None:
        return drain_request(body)

    def status_extra(self, key: Key, body: Body, transport: Transport | None) -> dict[str, Any]:
        extra: dict[str, Any] = dict(getattr(transport, "status_extra", {}) or {})
        merged = {**body, "status": {**(body.get("status") or {}), **extra}}
        extra["version"] = body["metadata"].get("generation", 1)
        extra["phase"] = self.runs.phase(merged)
        return extra

    def lifecycle_changed(self, key: Key, before: Body, after: Body) -> None:
        """Block.ready / Block.failed (and App.*) as events other workflows can trigger on;
        a Workflow's new status re-indexes its trigger."""
        if key.kind == "Workflow":
            self.observe_workflow(after, "MODIFIED")
            return
        old = ((before.get("status") or {}).get("lifecycle") or {}).get("status")
        lifecycle = (after.get("status") or {}).get("lifecycle") or {}
        new = lifecycle.get("status")
        if new == old or new not in ("ready", "failed"):
            return
        meta = after["metadata"]
        source = f"blockflow.dev/namespaces/{meta['namespace']}/{key.kind.lower()}s/{meta['name']}"
        event_id = f"{meta['uid']}/{new}/{lifecycle.get('lastSyncTime')}"
        data = {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "status": new,
            "description": lifecycle.get("description"),
        }
        task = asyncio.create_task(
            self.publish(meta["namespace"], f"{key.kind}.{new}", source, event_id, data)
        )
        task.add_done_callback(_log_failure)

    async def _activated(self, body: Body, version: int) -> None:
        meta = body["metadata"]
        await self.publish(
            meta["namespace"],
            "Workflow.activated",
            f"blockflow.dev/namespaces/{meta['namespace']}/workflows/{meta['name']}",
            f"{meta['uid']}/activated/{version}",
            {"workflow": meta["name"], "version": version},
        )

    def _remember(self, body: Body) -> None:
        self.lifecycle.store.upsert(body)
        self.observe_workflow(body, "MODIFIED")

    # -- the Workflow index ------------------------------------------------------------------

    def observe_workflow(self, body: Body, event_type: str | None) -> None:
        key = Key.of(body)
        self._unindex(key)
        if event_type == "DELETED":
            self.schedules.forget(key)
            return
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        trigger = spec.get("trigger") or {}
        subscription: tuple[str, str] | None = None
        if trigger.get("event"):
            subscription = (key.namespace, str(trigger["event"]))
            self.subscribers.setdefault(subscription, set()).add(key)
        hashes: list[str] = []
        if trigger.get("webhook") is not None and body["metadata"].get("uid"):
            digest = token_hash(self.tokens.webhook(body["metadata"]["uid"]))
            self.routes[digest] = (key, None)
            hashes.append(digest)
        activation = status.get("activation") or {}
        activated_trigger = (activation.get("spec") or {}).get("trigger") or {}
        if activation.get("tokenHash") and activated_trigger.get("block") is not None:
            self.routes[activation["tokenHash"]] = (key, activation.get("version"))
            hashes.append(activation["tokenHash"])
        self._workflow_index[key] = (subscription, tuple(hashes))
        active_spec = activation.get("spec") or {}
        if (active_spec.get("trigger") or {}).get("schedule") and _is_active(body):
            self.schedules.add(key)
        else:
            self.schedules.forget(key)

    def _unindex(self, key: Key) -> None:
        subscription, hashes = self._workflow_index.pop(key, (None, ()))
        if subscription is not None:
            members = self.subscribers.get(subscription)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.subscribers[subscription]
        for digest in hashes:
            if self.routes.get(digest, (None,))[0] == key:
                del self.routes[digest]

    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._wf_locks.get(key)
        if lock is None:
            lock = self._wf_locks[key] = asyncio.Lock()
        return lock

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
        for key in sorted(self.subscribers.get((namespace, type_), set())):
            body = self.lifecycle.store.get(key)
            if body is None:
                continue
            if not _is_active(body):
                metrics.EVENTS_RECEIVED.labels("ignored").inc()
                await self._count_ignored(key)
                continue
            created = await self._start_run(body, document, dedupe=dedupe, trigger="event")
            metrics.EVENTS_RECEIVED.labels("started" if created else "duplicate").inc()
            started += int(created is not None)
        return started

    async def _start_run(
        self,
        workflow: Body,
        input_: Any,
        *,
        dedupe: str | None = None,
        version: int | None = None,
        trigger: str,
        name: str | None = None,
    ) -> str | None:
        """Create one run (None when the dedupe key already started one)."""
        meta = workflow["metadata"]
        key = Key.of(workflow)
        activation = (workflow.get("status") or {}).get("activation") or {}
        async with self._lock(key):
            if dedupe is not None:
                seen = self.runs.index.event_keys.get((key.namespace, key.name), set())
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
            )
            try:
                created = await self.api.create(body)
            except KubeApiError as exc:
                if exc.code == 409:
                    return None
                raise
            self.runs.observe(created, "ADDED")
            metrics.RUNS_STARTED.labels(trigger).inc()
            return str(created["metadata"]["name"])

    async def _count_ignored(self, key: Key) -> None:
        await self.runs.count_ignored(key)

    # -- schedules ---------------------------------------------------------------------------

    async def _schedule(self, key: Key) -> None:
        body = self.lifecycle.store.get(key)
        if body is None or not _is_active(body):
            return
        status = body.get("status") or {}
        activation = status.get("activation") or {}
        spec = WorkflowSpec.model_validate(activation.get("spec") or {})
        if spec.trigger is None or spec.trigger.schedule is None:
            return
        schedule = spec.trigger.schedule
        try:
            cron, zone = parse_cron(schedule.cron), ZoneInfo(schedule.timezone)
        except (CronError, ValueError) as exc:
            log.warning("schedule cannot run", workflow=str(key), error=str(exc))
            return
        now = self.now()
        raw_last = status.get("lastScheduleTime") or activation.get("activatedAt")
        last = datetime.fromisoformat(raw_last) if raw_last else now
        for slot in due_slots(cron, zone, last, now, schedule.max_catch_up):
            await self._scheduled_run(body, slot, schedule.concurrency_policy)
        if status.get("lastScheduleTime") != now.isoformat():
            # A plain merge patch: this runtime is the field's only writer (the slots up to
            # `now` were just handled), so another writer's concurrent change is no conflict.
            updated = await self.api.patch_status(
                "Workflow", key.namespace, key.name, {"lastScheduleTime": now.isoformat()}
            )
            self.lifecycle.store.upsert(updated)
        try:
            wake = next_wake(cron, zone, now, now)
        except CronError as exc:
            log.warning("schedule never fires", workflow=str(key), error=str(exc))
            return
        self.schedules.add_after(key, max(0.5, (wake - self.now()).total_seconds()))

    async def _scheduled_run(
        self, workflow: Body, slot: datetime, policy: ConcurrencyPolicy
    ) -> None:
        key = Key.of(workflow)
        # One name per slot: a slot started before (a crash, a retried pass) is not
        # started again, and its policy is not applied again either.
        suffix = hashlib.sha256(f"{workflow['metadata']['uid']}/{slot}".encode()).hexdigest()[:5]
        name = run_name(key.name, slot, suffix)
        if Key("WorkflowRun", key.namespace, name) in self.runs.index.runs:
            return
        # Runs not admitted yet (just created, queued) count as active too.
        active = self.runs.index.in_states(
            key.namespace, key.name, None, RunState.QUEUED, *ACTIVE_STATES
        )
        if active and policy is ConcurrencyPolicy.FORBID:
            await self._count_ignored(key)
            return
        created = await self._start_run(
            workflow,
            {"type": "schedule", "scheduledTime": slot.isoformat()},
            trigger="schedule",
            name=name,
        )
        if created is not None and policy is ConcurrencyPolicy.REPLACE:
            for run in active:
                await self.api.patch_spec(
                    "WorkflowRun", run.namespace, run.name, {"spec": {"cancel": True}}
                )

    # -- Backend (the HTTP surface) ----------------------------------------------------------

    async def callback(self, token: str, request: IncomingRequest) -> Reply:
        status, body = await self.runs.finish_callback(token, _request_data(request))
        return Reply(status, body)

    async def trigger(self, token: str, request: IncomingRequest) -> Reply:
        route = self.routes.get(token_hash(token))
        if route is None:
            return problem(404, "unknown trigger URL")
        key, version = route
        workflow = self.lifecycle.store.get(key)
        if workflow is None:
            return problem(404, "unknown trigger URL")
        if not _is_active(workflow):
            metrics.EVENTS_RECEIVED.labels("ignored").inc()
            await self._count_ignored(key)
            phase = (workflow.get("status") or {}).get("phase") or "Draft"
            return Reply(202, {"ignored": True, "reason": f"workflow {key.name} is {phase}"})
        activation = (workflow.get("status") or {}).get("activation") or {}
        spec = WorkflowSpec.model_validate(activation.get("spec") or {})
        assert spec.trigger is not None
        if spec.trigger.webhook is not None and version is None:
            return await self._webhook(workflow, spec, request)
        if spec.trigger.block is not None or version is not None:
            return await self._block_trigger(workflow, request, version, activation)
        return problem(404, "unknown trigger URL")

    async def _webhook(self, workflow: Body, spec: WorkflowSpec, request: IncomingRequest) -> Reply:
        assert spec.trigger is not None and spec.trigger.webhook is not None
        webhook = spec.trigger.webhook
        if webhook.signature is not None:
            refused = await self._check_signature(workflow, webhook.signature, request)
            if refused is not None:
                return refused
        try:
            event = _webhook_event(request)
        except ValueError as exc:
            return problem(400, str(exc))
        name = await self._start_run(workflow, event, trigger="webhook")
        if webhook.response is not None:
            return Reply(webhook.response.status, webhook.response.body, webhook.response.headers)
        return Reply(202, {"run": name})

    async def _check_signature(
        self, workflow: Body, signature: Any, request: IncomingRequest
    ) -> Reply | None:
        ref = signature.secret_ref
        found = await self.api.read_secret(workflow["metadata"]["namespace"], ref.name)
        if found is None or ref.key not in found[0]:
            log.warning("webhook secret missing", workflow=workflow["metadata"]["name"])
            return problem(500, "the webhook's signature secret is missing; see the workflow")
        expected = (
            "sha256="
            + hmac.new(found[0][ref.key].encode(), request.body, hashlib.sha256).hexdigest()
        )
        given = next(
            (v for k, v in request.headers.items() if k.lower() == signature.header.lower()), ""
        )
        if not given:
            return problem(401, f"missing signature header {signature.header}")
        if not hmac.compare_digest(given.strip(), expected):
            return problem(401, f"the {signature.header} signature does not match the body")
        return None

    async def _block_trigger(
        self, workflow: Body, request: IncomingRequest, version: int | None, activation: Body
    ) -> Reply:
        spec = WorkflowSpec.model_validate(activation.get("spec") or {})
        assert spec.trigger is not None and spec.trigger.block is not None
        block = spec.trigger.block
        meta = workflow["metadata"]
        try:
            app = await self.lifecycle.app_handle(meta["namespace"], block.app)
            reply = await timed_call(
                app.transport,
                TriggerRequest(
                    entity=EntityInput(
                        kind="Workflow",
                        name=meta["name"],
                        namespace=meta["namespace"],
                        uid=meta["uid"],
                        generation=int(activation.get("version") or 1),
                        type=block.type,
                        config=block.config,
                    ),
                    app=app.input,
                    request=_request_data(request),
                    metadata=CallMetadata(
                        unique_activation_id=activation.get("uniqueActivationId"),
                        trigger_callback_url=self.tokens.url(
                            "triggers",
                            self.tokens.trigger(str(activation.get("uniqueActivationId"))),
                        ),
                    ),
                ),
            )
        except HandlerError as exc:
            return problem(502, f"the trigger block's handler failed: {exc.message}")
        if isinstance(reply, NoOpReply):
            return Reply(200, {"ignored": True})
        name = await self._start_run(
            workflow,
            reply.data,
            dedupe=event_key(f"trigger:{meta['uid']}", reply.id),
            version=version,
            trigger="block",
        )
        return Reply(202, {"run": name, "duplicate": name is None})

    async def hook(self, token: str, request: IncomingRequest) -> Reply:
        digest = token_hash(token)
        waiting = sorted(self.runs.index.hooks.get(digest, set()))
        if not waiting:
            return problem(404, "no step is waiting for this hook token")
        bearer = request.bearer()
        if bearer is None:
            return problem(
                401,
                "Authorization: Bearer <hookKey> is required (the workflow's hookKey signal)",
            )
        try:
            payload = json.loads(request.body) if request.body else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return problem(400, f"the hook payload is not valid JSON: {exc}")
        allowed = [
            k
            for k in waiting
            if (uid := self.runs.workflow_uid(k))
            and hmac.compare_digest(self.tokens.hook_key(uid), bearer)
        ]
        if not allowed:
            return problem(401, "the bearer token is not the hookKey of the waiting workflow")
        now = self.now()
        resumed: dict[str, str] = {}
        for key in allowed:
            try:
                state = await self.runs.resume_hook(
                    key,
                    digest,
                    lambda step, record: deliver_hook(step, record, payload, now),
                )
            except HookRejected as exc:
                return problem(400, str(exc))
            if state is not None:
                resumed[key.name] = state
        if not resumed:
            return problem(410, "the steps waiting for this hook token have finished")
        return Reply(200, {"runs": resumed})

    async def events(self, namespace: str | None, request: IncomingRequest) -> Reply:
        namespace = namespace or self.events_namespace
        bearer = request.bearer()
        if bearer is None:
            return problem(
                401,
                f"Authorization: Bearer <token> is required (Secret {EVENTS_SECRET}, "
                f"key token, in namespace {namespace})",
            )
        found = await self.api.read_secret(namespace, EVENTS_SECRET)
        expected = (found or ({}, ""))[0].get("token")
        if not expected or not hmac.compare_digest(expected.strip(), bearer):
            metrics.EVENTS_RECEIVED.labels("rejected").inc()
            return problem(
                401,
                f"the bearer token does not match Secret {EVENTS_SECRET} in namespace {namespace}",
            )
        try:
            event = parse_event(request.headers, request.body)
        except EventError as exc:
            metrics.EVENTS_RECEIVED.labels("rejected").inc()
            return problem(exc.status, exc.message)
        document = event.as_input()
        started = await self.publish(
            namespace, event.type, event.source, event.id, event.data, event=document
        )
        return Reply(202, {"runs": started})

    async def entity_sync(
        self, namespace: str, kind: str, name: str, request: IncomingRequest
    ) -> Reply:
        kinds = {"apps": "App", "app": "App", "blocks": "Block", "block": "Block"}
        entity_kind = kinds.get(kind.lower())
        if entity_kind is None:
            return problem(404, f"unknown kind {kind!r}; use apps or blocks")
        key = Key(entity_kind, namespace, name)
        body = self.lifecycle.store.get(key)
        if body is None:
            return problem(404, f"{entity_kind} {namespace}/{name} not found")
        app_name = name if entity_kind == "App" else str((body.get("spec") or {}).get("app"))
        app = self.lifecycle.store.get(Key("App", namespace, app_name))
        http = (((app or {}).get("spec") or {}).get("handler") or {}).get("http") or {}
        ref = http.get("secretRef")
        if not ref:
            return problem(403, f"App {app_name} has no HTTP handler secret to sign requests with")
        found = await self.api.read_secret(namespace, ref["name"])
        secret = (found or ({}, ""))[0].get(ref.get("key", "key"))
        if not secret:
            return problem(403, f"the handler secret of App {app_name} is missing")
        expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        given = next(
            (v for k, v in request.headers.items() if k.lower() == "x-blockflow-signature"), ""
        )
        if not hmac.compare_digest(given.strip(), expected):
            return problem(
                401,
                "X-Blockflow-Signature does not match the body (HMAC-SHA256 with the "
                "App's handler secret)",
            )
        self.lifecycle.handler_requested.add(key)
        self.lifecycle.queue.add(key)
        return Reply(202, {"sync": "requested"})

    async def app_http(
        self, namespace: str, app: str, path: str, request: IncomingRequest
    ) -> Reply:
        try:  # a JSON body that does not parse is refused, not passed on as text
            event = _webhook_event(request, _APP_HIDDEN_HEADERS)
        except ValueError as exc:
            return problem(400, str(exc))
        data = HttpRequestData(
            method=request.method,
            path=f"/{path}",
            headers=event["headers"],
            query=request.query,
            body=event["body"],
        )
        try:
            reply = await self.lifecycle.app_http(namespace, app, data)
        except LookupError as exc:
            return problem(404, str(exc))
        except HandlerError as exc:
            log.warning("App http handler failed", app=app, namespace=namespace, error=exc.message)
            return problem(502, f"the handler of App {app} failed: {exc.message}")
        response = reply.response
        return Reply(response.status, _response_body(response.body), dict(response.headers))


# -- helpers --------------------------------------------------------------------------------


def _response_body(body: Any) -> Any:
    """A string goes out as text (bytes), anything else as JSON."""
    return body.encode() if isinstance(body, str) else body


def _is_active(body: Body) -> bool:
    status = body.get("status") or {}
    return wanted_state(body) is WorkflowState.ACTIVE and bool(
        (status.get("activation") or {}).get("spec")
    )


def _request_data(request: IncomingRequest) -> HttpRequestData:
    try:
        event = _webhook_event(request)
    except ValueError:
        event = {"body": request.body.decode(errors="replace"), "headers": {}, "query": {}}
    return HttpRequestData(
        method=request.method,
        path=request.path,
        headers=event["headers"],
        query=request.query,
        body=event["body"],
    )


def _webhook_event(
    request: IncomingRequest, hidden: tuple[str, ...] = _HIDDEN_HEADERS
) -> dict[str, Any]:
    """What a webhook run sees as `event`: method, headers, query, body (JSON, form or text)."""
    content_type = request.content_type.lower()
    body: Any
    if not request.body:
        body = None
    elif "json" in content_type:
        try:
            body = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"the request body is not valid JSON: {exc}") from None
    elif content_type == "application/x-www-form-urlencoded":
        body = dict(urllib.parse.parse_qsl(request.body.decode(errors="replace")))
    else:
        body = request.body.decode(errors="replace")
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in hidden}
    return {"method": request.method, "headers": headers, "query": request.query, "body": body}


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("publishing an event failed", error=str(task.exception()))


__all__ = ["WorkflowRuntime"]
