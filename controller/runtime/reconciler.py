"""The lifecycle runtime: feeds watch events to the pure engine and carries out its decisions.

One reconcile of an App or Block:

1. make sure our finalizer is on it (once in its life);
2. work out its context: the App and its handler (transport and declarations);
3. resolve its inputs (signal references, the App's secret config) far enough to
   fingerprint them — secret values are only read when the handler is called;
4. ``engine.plan`` → call `sync` / `drain`, wait, release, or nothing;
5. write the decision: Secrets (only when they change), one status patch (only
   when it changes something), Events, the finalizer, and the next wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from controller import metrics
from controller.api.common import Condition, LifecycleState, LifecycleStatus, TimerStatus
from controller.handlers.protocol import (
    AppHttp,
    AppHttpRequest,
    BlockTypeSpec,
    DrainRequest,
    EntityInput,
    HandlerInfo,
    HandlerRequest,
    HttpReply,
    HttpRequestData,
    SideEffects,
    SignalSpec,
    SyncRequest,
    TimerInput,
    TimerRequest,
)
from controller.handlers.python_transport import PythonTransport, load_handler
from controller.handlers.sdk import EntityKey
from controller.handlers.transport import HandlerError, Transport
from controller.kube.api import FINALIZER, KubeApi
from controller.kube.rest import KubeApiError
from controller.lifecycle import effects, engine
from controller.lifecycle.engine import Action, Decision, Observed
from controller.lifecycle.signals import (
    SignalRef,
    SignalRefError,
    cycle_message,
    find_cycle,
    fingerprint,
    resolve,
    waiting_message,
)
from controller.lifecycle.validation import config_error
from controller.logs import get_logger
from controller.runtime.calls import timed_call
from controller.runtime.queue import WorkQueue
from controller.runtime.store import Body, Key, Store
from controller.server.urls import app_http_url, app_page_url
from controller.workflows.activator import AppHandle, drained_reason
from controller.workflows.naming import WORKFLOW_SIGNALS

log = get_logger("blockflow.lifecycle")

SYNC_ANNOTATION = "blockflow.dev/requested-sync-at"
DRAIN_ANNOTATION = "blockflow.dev/requested-drain-at"
INFO_TTL = 30.0


def secret_name(key: Key, purpose: str) -> str:
    """Name of a Secret the controller owns for an entity (fits the 253-character limit)."""
    name = f"{key.name}-{key.kind.lower()}-{purpose}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: 253 - 11]}-{digest}"


@dataclass(frozen=True)
class Sensitive:
    """Stands in for a sensitive signal value until the handler is actually called."""

    ref: SignalRef
    secret: str
    version: str


class Blocked(Exception):
    """The handler must not be called now; the engine records why."""

    def __init__(self, state: LifecycleState, reason: str, message: str, warn: bool = False):
        super().__init__(message)
        self.state, self.reason, self.message, self.warn = state, reason, message, warn


@dataclass
class Context:
    """What a reconcile needs besides the entity itself."""

    app: Body | None = None
    transport: Transport | None = None
    info: HandlerInfo | None = None
    type_spec: BlockTypeSpec | None = None
    sensitive: frozenset[str] = frozenset()
    config: Any = None  # resolved, with Sensitive placeholders
    app_config: dict[str, Any] = field(default_factory=dict)  # with secret values
    inputs_hash: str | None = None
    own_sensitive: dict[str, str] = field(default_factory=dict)  # current values, when read
    blocked: Blocked | None = None
    #: The handler (or what it needs) could not be reached: a failure, retried with backoff.
    error: HandlerError | None = None


class WorkflowHooks(Protocol):
    """What the lifecycle runtime asks the workflow engine about Workflows (whose trigger
    is their "handler") and tells it about lifecycle transitions (Block.ready, …)."""

    def activator(self, body: Body) -> Transport: ...

    def drain_request(self, body: Body) -> str | None: ...

    def status_extra(self, key: Key, body: Body, transport: Transport | None) -> dict[str, Any]: ...

    def lifecycle_changed(self, key: Key, before: Body, after: Body) -> None: ...


class LifecycleRuntime:
    def __init__(
        self,
        api: KubeApi,
        *,
        workers: int = 16,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        http_transport_factory: Callable[[dict[str, Any], bytes | None], Transport] | None = None,
        workflows: WorkflowHooks | None = None,
        public_url: str = "http://127.0.0.1:8080",
    ) -> None:
        self.api = api
        self.public_url = public_url.rstrip("/")
        #: One writer per entity: a reconcile, or the side effects of an `http` reply.
        self._locks: dict[Key, asyncio.Lock] = {}
        self.workflows = workflows
        self.store = Store()
        self.queue: WorkQueue[Key] = WorkQueue(self.reconcile, workers=workers)
        self.now = now
        self.rng = rng or random.Random()
        self.handler_requested: set[Key] = set()
        self.events = EventPoster(api)
        self._task: asyncio.Task[None] | None = None
        self._infos: dict[Key, tuple[float, str, HandlerInfo]] = {}
        self._http_factory = http_transport_factory
        self.reconciles = 0

    async def run(self) -> None:
        """Serve the work queue and post events until cancelled."""
        await asyncio.gather(self.queue.run(), self.events.run())

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="lifecycle-runtime")

    async def stop(self) -> None:
        """Cancel the workers (in-flight handler calls are abandoned, never half-written:
        each reconcile writes its status in one request, and re-plans from it after)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- intake --------------------------------------------------------------------------------

    def observe(self, body: Body, event_type: str | None) -> None:
        """A watch event: remember the body and enqueue what it affects."""
        key = Key.of(body)
        log.debug("watch event", entity=str(key), type=event_type)
        if event_type == "DELETED":
            # Wake what waited for it first: removal also drops its references from the index.
            self._enqueue_related(key, self.store.get(key) or body)
            self.store.remove(key)
            self.queue.forget(key)
            lock = self._locks.get(key)
            if lock is not None and not lock.locked():
                del self._locks[key]
            return
        if self.store.stale(body):
            return  # an event older than what we already hold (e.g. our own write's result)
        previous = self.store.upsert(body)
        self.queue.add(key)
        self._wake_dependents(key, previous, body)
        if body["metadata"].get("deletionTimestamp"):
            self._enqueue_related(key, body)

    def _wake_dependents(self, key: Key, before: Body | None, after: Body) -> None:
        """Enqueue whoever may act differently now: referrers of changed signals, and the
        Blocks of an App whose inputs, handler version or spec changed. Called for watch
        events and for our own writes alike (the watch event of our own write compares
        equal to what we stored, so it would never wake anyone)."""
        if before is None or _signals_view(before) != _signals_view(after):
            for referrer in self.store.referrers_of(key):
                self.queue.add(referrer)
        if key.kind == "App" and (before is None or _app_view(before) != _app_view(after)):
            for block in self.store.blocks_of_app(key.namespace, key.name):
                self.queue.add(block)

    def _enqueue_related(self, key: Key, body: Body | None) -> None:
        """Whatever waits for this entity to go: referenced blocks, the App, referrers."""
        for target in self.store.references_of(key):
            self.queue.add(target)
        if body is not None and key.kind == "Block":
            app = (body.get("spec") or {}).get("app")
            if app:
                self.queue.add(Key("App", key.namespace, app))
        for referrer in self.store.referrers_of(key):
            self.queue.add(referrer)

    async def request_sync(self, entity: EntityKey) -> None:
        """``lifecycle.sync()`` from a Python handler."""
        key = Key(entity.kind, entity.namespace, entity.name)
        self.handler_requested.add(key)
        self.queue.add(key)

    # -- one reconcile -------------------------------------------------------------------------

    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def reconcile(self, key: Key) -> None:
        if self.store.get(key) is None:
            return
        self.reconciles += 1
        try:
            async with self._lock(key):
                body = self.store.get(key)
                if body is None:
                    return
                await self._reconcile(key, body)
                self._schedule_timers(key)
            metrics.RECONCILES.labels(key.kind, "ok").inc()
        except KubeApiError as exc:
            metrics.RECONCILES.labels(key.kind, "api-error").inc()
            code = exc.code
            if code == 404:
                return
            log.warning("API error; retrying", entity=str(key), code=code, error=exc.message)
            self.queue.add_after(key, 1.0 if code == 409 else 5.0)

    async def _reconcile(self, key: Key, body: Body) -> None:
        meta = body["metadata"]
        deleting = bool(meta.get("deletionTimestamp"))
        finalizers = meta.get("finalizers") or []
        if deleting and FINALIZER not in finalizers:
            return  # not ours (or already released)
        if not deleting and FINALIZER not in finalizers:
            body = await self.api.add_finalizer(key.kind, body)
            self.store.upsert(body)
        ctx = await self._context(key, body, deleting)
        if key.kind != "Workflow" and not deleting and ctx.transport is not None:
            body = await self._fire_timers(key, body, ctx)
        if key.kind == "App" and not deleting and _is_http(body):
            # An HTTP handler cannot tell us its version changed: ask again every INFO_TTL
            # (one GET per App, not per entity); a new version re-syncs the App's entities.
            self.queue.add_after(key, INFO_TTL)
        obs = self._observed(key, body, ctx, deleting)
        now = self.now()
        decided = engine.plan(obs, now)
        if decided.action is Action.NONE:
            return
        if decided.action is Action.WAIT:
            assert decided.at is not None
            self.queue.add_after(key, (decided.at - now).total_seconds())
            return
        if decided.action is Action.RELEASE:
            await self._release(key, body, decided.reason)
            return
        if decided.action is Action.REFRESH:
            await self._apply(key, body, obs, engine.refreshed(obs, now), ctx)
            return
        if decided.action is Action.SYNC:
            decision = await self._sync(key, body, ctx, obs, now)
        else:
            decision = await self._drain(key, body, ctx, obs, now)
        await self._apply(key, body, obs, decision, ctx)

    # -- context -------------------------------------------------------------------------------

    async def _context(self, key: Key, body: Body, deleting: bool) -> Context:
        ctx = Context()
        try:
            await self._load_handler(key, body, ctx)
            if not deleting:
                await self._resolve_inputs(key, body, ctx)
        except Blocked as blocked:
            ctx.blocked = blocked
        except HandlerError as exc:
            ctx.error = exc
        return ctx

    async def _load_handler(self, key: Key, body: Body, ctx: Context) -> None:
        spec = body.get("spec") or {}
        if key.kind == "Workflow":
            if self.workflows is None:
                raise HandlerError("workflows are not enabled", reason="UnknownHandler")
            ctx.transport = self.workflows.activator(body)
            ctx.info = await ctx.transport.info()
            ctx.sensitive = frozenset(WORKFLOW_SIGNALS)
            return
        if key.kind == "App":
            ctx.app = body
        else:
            app_name = str(spec.get("app"))
            ctx.app = self.store.get(Key("App", key.namespace, app_name))
            if ctx.app is None:
                raise Blocked(
                    LifecycleState.IN_PROGRESS, "DependencyNotReady", f"Waiting for App {app_name}"
                )
        app_key = Key.of(ctx.app)
        ctx.transport = await self._transport(app_key, ctx.app)
        ctx.info = await self._info(app_key, ctx.app, ctx.transport)
        if key.kind == "App":
            ctx.sensitive = _sensitive(ctx.info.app_signals)
            return
        block_type = str(spec.get("type"))
        ctx.type_spec = ctx.info.block_types.get(block_type)
        if ctx.type_spec is None:
            offered = ", ".join(sorted(ctx.info.block_types)) or "none"
            raise Blocked(
                LifecycleState.FAILED,
                "UnknownBlockType",
                f"spec.type: block type {block_type!r} is not offered by the handler of App "
                f"{app_key.name} (offered: {offered})",
                warn=True,
            )
        ctx.sensitive = _sensitive(ctx.type_spec.signals)

    async def _transport(self, app_key: Key, app: Body) -> Transport:
        handler = (app.get("spec") or {}).get("handler") or {}
        if handler.get("python"):
            return PythonTransport(load_handler(handler["python"]), self.request_sync)
        http = handler.get("http") or {}
        if self._http_factory is None:
            raise HandlerError("HTTP handlers are not available", reason="UnknownHandler")
        key: bytes | None = None
        ref = http.get("secretRef")
        if ref:
            found = await self.api.read_secret(app_key.namespace, ref["name"])
            secret_key = ref.get("key", "key")
            if found is None or secret_key not in found[0]:
                raise HandlerError(
                    f"spec.handler.http.secretRef: Secret {ref['name']} with key {secret_key!r} "
                    f"not found in namespace {app_key.namespace}; create it",
                    reason="SecretNotFound",
                )
            key = found[0][secret_key].encode()
        return self._http_factory(http, key)

    async def _info(self, app_key: Key, app: Body, transport: Transport) -> HandlerInfo:
        """The handler's declarations, cached briefly (HTTP handlers are asked over the wire)."""
        handler_id = fingerprint((app.get("spec") or {}).get("handler"))
        cached = self._infos.get(app_key)
        clock = self.now().timestamp()
        if cached and cached[1] == handler_id and clock - cached[0] < INFO_TTL:
            return cached[2]
        info = await transport.info()
        self._infos[app_key] = (clock, handler_id, info)
        return info

    async def _resolve_inputs(self, key: Key, body: Body, ctx: Context) -> None:
        if key.kind == "Workflow":
            return  # a Workflow's inputs are its spec (its generation says when they change)
        assert ctx.app is not None
        app_config, app_versions = await self._app_config(ctx.app)
        ctx.app_config = app_config
        spec = body.get("spec") or {}
        if key.kind == "App":
            ctx.config = app_config
            ctx.inputs_hash = fingerprint(spec.get("config"), app_versions)
            return
        # The App's own inputs (not its status, which changes when the App is written).
        app_inputs = fingerprint((ctx.app.get("spec") or {}).get("config"), app_versions)
        try:
            resolution = resolve(spec.get("config") or {}, key.namespace, self._lookup(key))
        except SignalRefError as exc:
            raise Blocked(LifecycleState.FAILED, "InvalidSignalRef", str(exc), warn=True) from None
        ctx.config = resolution.config
        ctx.inputs_hash = fingerprint(
            _hashable(resolution.config), [r.describe() for r in resolution.missing], app_inputs
        )
        cycle = find_cycle(
            (key.kind, key.name),
            lambda node: [
                (k.kind, k.name)
                for k in self.store.references_of(Key(node[0], key.namespace, node[1]))
            ],
        )
        if cycle:
            raise Blocked(LifecycleState.FAILED, "DependencyCycle", cycle_message(cycle), warn=True)
        if resolution.missing:
            raise Blocked(
                LifecycleState.IN_PROGRESS,
                "DependencyNotReady",
                waiting_message(resolution.missing),
            )

    def _lookup(self, key: Key) -> Callable[[SignalRef], tuple[bool, Any]]:
        def lookup(ref: SignalRef) -> tuple[bool, Any]:
            target = self.store.get(Key(ref.kind, key.namespace, ref.name))
            if target is None or (target["metadata"].get("deletionTimestamp")):
                return False, None
            status = target.get("status") or {}
            signals = status.get("signals") or {}
            if ref.signal in signals:
                return True, signals[ref.signal]
            sensitive = status.get("sensitiveSignals") or {}
            if ref.signal in (sensitive.get("names") or []):
                return True, Sensitive(
                    ref, sensitive["secretName"], sensitive.get("resourceVersion", "")
                )
            return False, None

        return lookup

    async def _app_config(self, app: Body) -> tuple[dict[str, Any], list[str]]:
        """The App's config with its configFrom Secrets merged in, and their versions."""
        spec = app.get("spec") or {}
        config = dict(spec.get("config") or {})
        versions = []
        namespace = app["metadata"]["namespace"]
        for index, source in enumerate(spec.get("configFrom") or []):
            name = source["secretRef"]["name"]
            found = await self.api.read_secret(namespace, name)
            if found is None:
                raise HandlerError(
                    f"spec.configFrom[{index}].secretRef: Secret {name} not found in namespace "
                    f"{namespace}; create it",
                    reason="SecretNotFound",
                )
            config.update(found[0])
            versions.append(f"{name}@{found[1]}")
        return config, versions

    # -- Apps as the workflow engine reaches them ------------------------------------------------

    async def block_types(self, namespace: str, app: str) -> dict[str, BlockTypeSpec] | None:
        """The block types an App's handler offers (None when there is no such App)."""
        body = self.store.get(Key("App", namespace, app))
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        key = Key.of(body)
        info = await self._info(key, body, await self._transport(key, body))
        return info.block_types

    async def app_handle(self, namespace: str, app: str) -> AppHandle:
        """An App's transport, declarations and input (with its secret config) for a call."""
        body = self.store.get(Key("App", namespace, app))
        if body is None or body["metadata"].get("deletionTimestamp"):
            raise HandlerError(
                f"App {app} not found in namespace {namespace}", reason="AppNotFound"
            )
        key = Key.of(body)
        transport = await self._transport(key, body)
        info = await self._info(key, body, transport)
        config = (await self._app_config(body))[0]
        return AppHandle(body, transport, info, await self._entity_input(key, body, config))

    # -- observed state ------------------------------------------------------------------------

    def _observed(self, key: Key, body: Body, ctx: Context, deleting: bool) -> Observed:
        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        annotations = meta.get("annotations") or {}
        raw_lifecycle = status.get("lifecycle")
        return Observed(
            generation=meta.get("generation", 1),
            lifecycle=LifecycleStatus.model_validate(raw_lifecycle) if raw_lifecycle else None,
            observed_generation=status.get("observedGeneration"),
            conditions=[Condition.model_validate(c) for c in status.get("conditions") or []],
            signals=status.get("signals") or {},
            deleting=deleting,
            orphan=spec.get("deletionPolicy") == "Orphan",
            requested_sync_at=annotations.get(SYNC_ANNOTATION),
            requested_drain_at=(
                self.workflows.drain_request(body)
                if key.kind == "Workflow" and self.workflows is not None
                else annotations.get(DRAIN_ANNOTATION)
            ),
            handler_version=ctx.info.version if ctx.info else None,
            sensitive_signal_names=ctx.sensitive,
            inputs_hash=ctx.inputs_hash,
            sync_requested_by_handler=key in self.handler_requested,
            drained_reason=drained_reason(body) if key.kind == "Workflow" else None,
        )

    # -- calls ---------------------------------------------------------------------------------

    async def _sync(
        self, key: Key, body: Body, ctx: Context, obs: Observed, now: datetime
    ) -> Decision:
        self.handler_requested.discard(key)
        if ctx.error is not None:
            return engine.after_sync(obs, ctx.error, now, self.rng)
        if ctx.blocked is not None:
            b = ctx.blocked
            return engine.blocked(
                obs, now, state=b.state, reason=b.reason, message=b.message, warn=b.warn
            )
        fixed = _fixed_values(body, ctx.type_spec)
        recorded = (body.get("status") or {}).get("fixedConfig")
        if recorded is not None and fixed is not None:
            changed = [f for f in fixed if f in recorded and recorded[f] != fixed[f]]
            if changed:
                field_name = changed[0]
                return engine.blocked(
                    obs,
                    now,
                    state=LifecycleState.FAILED,
                    reason="FixedFieldChanged",
                    warn=True,
                    message=(
                        f"spec.config.{field_name} is fixed: it was {recorded[field_name]!r} when "
                        f"created and is now {fixed[field_name]!r}; change it back, or delete and "
                        f"recreate the {key.kind}"
                    ),
                )
        schema = ctx.info.app_config_schema if key.kind == "App" and ctx.info else None
        if ctx.type_spec is not None:
            schema = ctx.type_spec.config_schema
        invalid = config_error(_hashable(ctx.config), schema)
        if invalid is not None:
            return engine.blocked(
                obs,
                now,
                state=LifecycleState.FAILED,
                reason="InvalidConfig",
                message=invalid,
                warn=True,
            )
        request = await self._request(SyncRequest, key, body, ctx)
        assert ctx.transport is not None
        try:
            reply = await timed_call(ctx.transport, request)
        except HandlerError as exc:
            return engine.after_sync(obs, exc, now, self.rng)
        return engine.after_sync(
            obs, reply, now, self.rng, fixed_config=fixed if recorded is None else None
        )

    async def _drain(
        self, key: Key, body: Body, ctx: Context, obs: Observed, now: datetime
    ) -> Decision:
        waiting_for = self._alive_dependents(key)
        if waiting_for:
            names = ", ".join(str(k.kind) + " " + k.name for k in sorted(waiting_for))
            return engine.blocked(
                obs,
                now,
                state=LifecycleState.DRAINING,
                reason="DependentsExist",
                message=f"Waiting for dependents to go: {names}",
            )
        if ctx.error is not None:
            return engine.after_drain(obs, ctx.error, now, self.rng)
        if ctx.blocked is not None or ctx.transport is None:
            b = ctx.blocked
            assert b is not None
            error = HandlerError(b.message, reason=b.reason)
            return engine.after_drain(obs, error, now, self.rng)
        try:
            ctx.app_config = (await self._app_config(ctx.app))[0] if ctx.app else {}
        except HandlerError as exc:
            return engine.after_drain(obs, exc, now, self.rng)
        ctx.config = (body.get("spec") or {}).get("config") or {}
        if key.kind == "App":
            ctx.config = ctx.app_config
        request = await self._request(DrainRequest, key, body, ctx)
        try:
            reply = await timed_call(ctx.transport, request)
        except HandlerError as exc:
            return engine.after_drain(obs, exc, now, self.rng)
        return engine.after_drain(obs, reply, now, self.rng)

    def _alive_dependents(self, key: Key) -> set[Key]:
        if key.kind == "App":
            candidates = self.store.blocks_of_app(key.namespace, key.name)
        else:
            candidates = self.store.referrers_of(key)
        return {k for k in candidates if self.store.get(k) is not None}

    async def _request(
        self, model: type[HandlerRequest], key: Key, body: Body, ctx: Context, **extra: Any
    ) -> HandlerRequest:
        config = await self._reveal(key.namespace, ctx.config)
        own = await self._entity_input(key, body, config, ctx)
        app_input = None
        if key.kind != "App" and ctx.app is not None:
            app_input = await self._entity_input(Key.of(ctx.app), ctx.app, ctx.app_config)
        state = await self._read_state(key, body)
        return model(entity=own, app=app_input, state=state, **extra)

    async def _entity_input(
        self, key: Key, body: Body, config: Any, ctx: Context | None = None
    ) -> EntityInput:
        meta, status = body["metadata"], body.get("status") or {}
        signals = dict(status.get("signals") or {})
        sensitive = status.get("sensitiveSignals") or {}
        if sensitive.get("names"):
            found = await self.api.read_secret(key.namespace, sensitive["secretName"])
            if found:
                current = {k: v for k, v in found[0].items() if k in sensitive["names"]}
                signals.update(current)
                if ctx is not None:
                    ctx.own_sensitive = current
        lifecycle = status.get("lifecycle") or {}
        is_app = key.kind == "App"
        return EntityInput(
            kind=key.kind,
            name=key.name,
            namespace=key.namespace,
            uid=meta.get("uid", ""),
            generation=meta.get("generation", 1),
            type=(body.get("spec") or {}).get("type"),
            config=config if isinstance(config, dict) else {},
            status=lifecycle.get("status"),
            signals=signals,
            http=AppHttp(url=app_http_url(self.public_url, key.namespace, key.name))
            if is_app
            else None,
            installation_url=app_page_url(self.public_url, key.namespace, key.name)
            if is_app
            else None,
        )

    async def _reveal(
        self, namespace: str, value: Any, read: dict[str, dict[str, str]] | None = None
    ) -> Any:
        """Replace Sensitive placeholders with the secret values (only for a handler call),
        reading each Secret once however many references point into it."""
        read = {} if read is None else read
        if isinstance(value, Sensitive):
            if value.secret not in read:
                found = await self.api.read_secret(namespace, value.secret)
                read[value.secret] = found[0] if found else {}
            return read[value.secret].get(value.ref.signal)
        if isinstance(value, dict):
            return {k: await self._reveal(namespace, v, read) for k, v in value.items()}
        if isinstance(value, list):
            return [await self._reveal(namespace, v, read) for v in value]
        return value

    async def _read_state(self, key: Key, body: Body) -> dict[str, Any]:
        name = (body.get("status") or {}).get("stateSecretName")
        if not name:
            return {}
        found = await self.api.read_secret(key.namespace, name)
        if not found or "state.json" not in found[0]:
            return {}
        loaded = json.loads(found[0]["state.json"])
        return loaded if isinstance(loaded, dict) else {}

    # -- writes --------------------------------------------------------------------------------

    async def _apply(
        self, key: Key, body: Body, obs: Observed, decision: Decision, ctx: Context
    ) -> None:
        patch = dict(decision.status_patch)
        status = body.get("status") or {}
        labels = {"app.kubernetes.io/managed-by": "blockflow"}
        updates = {
            k: (None if v is None else v if isinstance(v, str) else json.dumps(v))
            for k, v in decision.sensitive_signal_updates.items()
        }
        # Handlers often return the same secret each time (e.g. a password kept once):
        # write the Secret only when a value really changes.
        listed = set((status.get("sensitiveSignals") or {}).get("names") or [])
        updates = {
            k: v for k, v in updates.items() if k not in listed or ctx.own_sensitive.get(k) != v
        }
        public_changed = any(
            (status.get("signals") or {}).get(k) != v
            for k, v in (patch.get("signals") or {}).items()
        )
        if updates:
            name = secret_name(key, "signals")
            version = await self.api.merge_secret(key.namespace, name, updates, body, labels)
            names = sorted(
                (set((status.get("sensitiveSignals") or {}).get("names") or []) | set(updates))
                - {k for k, v in updates.items() if v is None}
            )
            patch["sensitiveSignals"] = {
                "secretName": name,
                "names": names,
                "resourceVersion": version,
            }
        if key.kind == "Workflow" and self.workflows is not None:
            patch.update(self.workflows.status_extra(key, body, ctx.transport))
        if decision.state_update is not None:
            patch["stateSecretName"] = await self._write_state(key, body, decision.state_update)
        if decision.effects is not None:
            patch.update(effects.effects_patch(status, decision.effects, self.now()))
        if _changes(status, patch):
            updated = await self.api.patch_status(key.kind, key.namespace, key.name, patch)
            self.store.upsert(updated)
            self._wake_dependents(key, body, updated)
            if self.workflows is not None:
                self.workflows.lifecycle_changed(key, body, updated)
            body = updated
        for event in decision.events:
            self.events.post(body, event.type, event.reason, event.message)
        if decision.release_finalizer:
            await self._release(key, body, "Drained")
            return
        if decision.requeue_at is not None:
            delay = (decision.requeue_at - self.now()).total_seconds()
            self.queue.add_after(key, delay)
        if decision.effects is not None and decision.effects.request_sync:
            self.handler_requested.add(key)
            self.queue.add(key)
        if updates or public_changed:
            for referrer in self.store.referrers_of(key):
                self.queue.add(referrer)

    async def _write_state(self, key: Key, body: Body, state: dict[str, Any]) -> str:
        """The handler's KV state, whole, into the entity's owned Secret; its name."""
        name = secret_name(key, "state")
        labels = {"app.kubernetes.io/managed-by": "blockflow"}
        await self.api.merge_secret(
            key.namespace, name, {"state.json": json.dumps(state)}, body, labels
        )
        return name

    # -- timers and the App's HTTP endpoint ----------------------------------------------------

    def _schedule_timers(self, key: Key) -> None:
        """Wake the entity when its earliest timer falls due (timers live in its status, so
        the initial listing after a restart schedules them again)."""
        body = self.store.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        due = effects.next_due(body.get("status") or {})
        if due is not None:
            delay = (due - self.now()).total_seconds()
            # Due but not fired (its App is unreachable now): look again in a while.
            self.queue.add_after(key, delay if delay > 0 else 5.0)

    async def _fire_timers(self, key: Key, body: Body, ctx: Context) -> Body:
        """Call the handler's `timer` for every timer due, one at a time, each followed by
        one status write (the timer removed, the reply's effects applied)."""
        assert ctx.transport is not None
        now = self.now()
        for timer in effects.due_timers(body.get("status") or {}, now):
            status = body.get("status") or {}
            request = await self._request(
                TimerRequest, key, body, ctx, timer=_timer_input(status, timer)
            )
            try:
                reply = await timed_call(ctx.transport, request)
            except HandlerError as exc:
                timers, dropped = effects.timer_failed(status, timer, now, self.rng)
                then = "dropped" if dropped else "will retry"
                self.events.post(
                    body, "Warning", "TimerFailed", f"timer {timer.key}: {exc.message} ({then})"
                )
                body = await self._write_effects(key, body, None, {"timers": timers})
                continue
            body = await self._write_effects(
                key, body, reply, {"timers": effects.timer_done(status, timer)}
            )
        return body

    async def _write_effects(
        self, key: Key, body: Body, reply: SideEffects | None, base: dict[str, Any]
    ) -> Body:
        """One status write for a reply's side effects (on top of ``base``); the new body."""
        status = body.get("status") or {}
        patch = dict(base)
        if reply is not None:
            patch.update(effects.effects_patch({**status, **base}, reply, self.now()))
            if reply.state is not None:
                patch["stateSecretName"] = await self._write_state(key, body, reply.state)
            if reply.request_sync:
                patch.update(effects.sync_request_patch(status, self.now()))
        if _changes(status, patch):
            updated = await self.api.patch_status(key.kind, key.namespace, key.name, patch)
            self.store.upsert(updated)
            self._wake_dependents(key, body, updated)
            body = updated
        if reply is not None and reply.request_sync:
            self.handler_requested.add(key)
            self.queue.add(key)
        return body

    async def app_http(self, namespace: str, app: str, request: HttpRequestData) -> HttpReply:
        """A request to the App's HTTP endpoint: the handler's `http` reply, its side effects
        (prompts, timers, state, sync request) written before it is returned.

        Raises LookupError for an App that does not exist, HandlerError when its handler
        cannot be reached or fails."""
        key = Key("App", namespace, app)
        body = self.store.get(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            raise LookupError(f"App {app} not found in namespace {namespace}")
        ctx = await self._context(key, body, deleting=False)
        if ctx.error is not None:
            raise ctx.error
        if ctx.transport is None:
            raise HandlerError(f"App {app} has no handler to call", reason="UnknownHandler")
        call = await self._request(AppHttpRequest, key, body, ctx, request=request)
        reply: HttpReply = await timed_call(ctx.transport, call)
        async with self._lock(key):
            current = self.store.get(key) or body
            await self._write_effects(key, current, reply, {})
            self._schedule_timers(key)
        return reply

    async def _release(self, key: Key, body: Body, reason: str) -> None:
        updated = await self.api.remove_finalizer(key.kind, body)
        log.info("finalizer released", entity=str(key), reason=reason)
        meta = (updated or {}).get("metadata") or {}
        gone = updated is None or (
            bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")
        )
        if not gone:
            self.store.upsert(updated or body)
        # Wake waiters before dropping it: removal also drops its references from the index.
        self._enqueue_related(key, body)
        if gone:
            # The API server deleted it; its DELETED event may already have been handled
            # while our PATCH was in flight, so never put it back (a ghost would block its
            # App and the Blocks it referenced forever).
            self.store.remove(key)


# -- helpers ---------------------------------------------------------------------------------


def _timer_input(status: Body, timer: TimerStatus) -> TimerInput:
    return TimerInput(
        key=timer.key, payload=timer.payload, prompt=effects.prompt_for(status, timer)
    )


def _is_http(app: Body) -> bool:
    return bool(((app.get("spec") or {}).get("handler") or {}).get("http"))


def _sensitive(signals: list[SignalSpec]) -> frozenset[str]:
    return frozenset(s.name for s in signals if s.sensitive)


def _signals_view(body: Body) -> Any:
    status = body.get("status") or {}
    return (
        status.get("signals"),
        (status.get("sensitiveSignals") or {}).get("resourceVersion"),
        bool(body["metadata"].get("deletionTimestamp")),
    )


def _app_view(body: Body) -> Any:
    lifecycle = (body.get("status") or {}).get("lifecycle") or {}
    return (lifecycle.get("inputsHash"), lifecycle.get("handlerVersion"), body.get("spec"))


def _hashable(value: Any) -> Any:
    if isinstance(value, Sensitive):
        return f"sensitive:{value.secret}@{value.version}:{value.ref.signal}"
    if isinstance(value, dict):
        return {k: _hashable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hashable(v) for v in value]
    return value


def _fixed_values(body: Body, type_spec: BlockTypeSpec | None) -> dict[str, Any] | None:
    if type_spec is None or not type_spec.fixed:
        return None
    config = (body.get("spec") or {}).get("config") or {}
    return {name: config.get(name) for name in type_spec.fixed}


def _changes(status: Body, patch: Body) -> bool:
    """Would this merge patch change the status? (Skip writes that change nothing.)"""
    for key, value in patch.items():
        current = status.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            if any(
                current.get(k) != v
                for k, v in value.items()
                if not (v is None and k not in current)
            ):
                return True
        elif current != value:
            return True
    return False


class EventPoster:
    """Posts Kubernetes Events in the background, off the reconcile's critical path.

    Events are for people; a reconcile must not wait for them. The queue is bounded:
    when the API server cannot keep up, the oldest-first backlog is kept and new events
    are dropped and counted, never blocking a worker.
    """

    def __init__(self, api: KubeApi, *, limit: int = 1000) -> None:
        self.api = api
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[Body, str, str, str]] = asyncio.Queue(maxsize=limit)

    def post(self, body: Body, type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait((body, type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        while True:
            body, type_, reason, message = await self._queue.get()
            try:
                await self.api.post_event(body, type_, reason, message)
            except Exception as exc:  # an Event is never worth stopping the poster for
                log.warning("could not post event", reason=reason, error=str(exc))
