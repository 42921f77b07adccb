"""The lifecycle runtime: feeds watch events to the pure engine and carries out its decisions.

One reconcile of an App, Block or Workflow:

1. make sure our finalizer is on it (once in its life);
2. work out its context: its handler (through the :class:`HandlerResolver`) and, for a
   Block, its App;
3. resolve its inputs (signal references, the App's secret config) far enough to
   fingerprint them — secret values are only read when the handler is called — and ask
   the gates whether the handler may be called at all;
4. ``engine.plan`` → call `sync` / `drain`, wait, release, or nothing;
5. write the decision (:mod:`controller.runtime.lifecycle_writes`) and return when to look
   again. The keyed controller owns the queue, locks and retries.

This runtime knows nothing of workflows: a Workflow is reconciled through the handler
source its kind registered, and what other rooms want to know about a status write is
published as a :class:`~controller.runtime.transitions.Transition`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from controller import metrics
from controller.api.common import Condition, LifecycleStatus
from controller.handlers.protocol import DrainRequest, HandlerRequest, SignalSpec, SyncRequest
from controller.handlers.sdk import EntityKey
from controller.handlers.transport import HandlerError
from controller.kube.api import FINALIZER, KubeApi
from controller.kube.decoding import undecodable
from controller.kube.objects import Body, Key, deleting, spec_of, status_of
from controller.lifecycle import engine, gates
from controller.lifecycle.engine import Action, Decision, Observed
from controller.lifecycle.gates import Gate
from controller.lifecycle.signals import SignalRefError, find_cycle, fingerprint, resolve
from controller.logs import get_logger
from controller.runtime.calls import CallLimits
from controller.runtime.controller import DONE, NOW, KeyedController, Outcome
from controller.runtime.events import EventPoster
from controller.runtime.handlers import (
    INFO_TTL,
    HandlerResolver,
    HttpTransportFactory,
    StatusFields,
)
from controller.runtime.inputs import Context, EntityInputs, hashable
from controller.runtime.lifecycle_writes import Writer
from controller.runtime.store import Store
from controller.runtime.transitions import Transitions

log = get_logger("blockflow.lifecycle")

SYNC_ANNOTATION = "blockflow.dev/requested-sync-at"
DRAIN_ANNOTATION = "blockflow.dev/requested-drain-at"


class Blocked(Exception):
    """Raised while gathering the context: a gate closed."""

    def __init__(self, gate: Gate) -> None:
        super().__init__(gate.message)
        self.gate = gate


class LifecycleRuntime:
    def __init__(
        self,
        api: KubeApi,
        *,
        workers: int = 16,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        http_transport_factory: HttpTransportFactory | None = None,
        public_url: str = "http://127.0.0.1:8080",
        events: EventPoster | None = None,
        transitions: Transitions | None = None,
        calls: CallLimits | None = None,
    ) -> None:
        self.api = api
        self.calls = calls or CallLimits()
        self.now = now
        self.rng = rng or random.Random()
        self.store = Store()
        self.events = events or EventPoster(api)
        self.transitions = transitions or Transitions()
        self.inputs = EntityInputs(api, self.store, public_url)
        self.resolver = HandlerResolver(
            api,
            self.store,
            self.inputs,
            http_transport_factory=http_transport_factory,
            request_sync=self.request_sync,
            now=now,
            calls=self.calls,
        )
        self.controller: KeyedController[Key] = KeyedController(
            "lifecycle", self.reconcile, workers=workers
        )
        #: Entities whose handler asked for a sync (served by their next sync).
        self.handler_requested: set[Key] = set()
        self.writer = Writer(self)

    @property
    def reconciles(self) -> int:
        return self.controller.processed

    async def run(self) -> None:
        """Serve the work queue until cancelled."""
        await self.controller.run()

    # -- intake --------------------------------------------------------------------------------

    def observe(self, body: Body, event_type: str | None) -> None:
        """A watch event: remember the body and enqueue what it affects."""
        key = Key.of(body)
        log.debug("watch event", entity=str(key), type=event_type)
        if event_type == "DELETED":
            # Wake what waited for it first: removal also drops its references from the index.
            self.enqueue_related(key, self.store.get(key) or body)
            self.store.remove(key)
            self.controller.forget(key)
            return
        if self.store.stale(body):
            return  # an event older than what we already hold (e.g. our own write's result)
        previous = self.store.upsert(body)
        self.controller.add(key)
        self.wake_dependents(key, previous, body)
        if deleting(body):
            self.enqueue_related(key, body)

    def wake_dependents(self, key: Key, before: Body | None, after: Body) -> None:
        """Enqueue whoever may act differently now: referrers of changed signals, and the
        Blocks of an App whose inputs, handler version or spec changed. Called for watch
        events and for our own writes alike (the watch event of our own write compares
        equal to what we stored, so it would never wake anyone)."""
        if before is None or _signals_view(before) != _signals_view(after):
            for referrer in self.store.referrers_of(key):
                self.controller.add(referrer)
        if key.kind == "App" and (before is None or _app_view(before) != _app_view(after)):
            for block in self.store.blocks_of_app(key.namespace, key.name):
                self.controller.add(block)

    def enqueue_related(self, key: Key, body: Body | None) -> None:
        """Whatever waits for this entity to go: referenced blocks, the App, referrers."""
        for target in self.store.references_of(key):
            self.controller.add(target)
        if body is not None and key.kind == "Block":
            app = spec_of(body).get("app")
            if app:
                self.controller.add(Key("App", key.namespace, app))
        for referrer in self.store.referrers_of(key):
            self.controller.add(referrer)

    def request(self, key: Key) -> None:
        """A sync asked for by the entity's handler (or signed on its behalf)."""
        self.handler_requested.add(key)
        self.controller.add(key)

    async def request_sync(self, entity: EntityKey) -> None:
        """``lifecycle.sync()`` from a Python handler."""
        self.request(Key(entity.kind, entity.namespace, entity.name))

    # -- one reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Outcome:
        body = self.store.get(key)
        if body is None:
            return DONE
        outcome = await self._reconcile(key, body)
        return outcome.sooner(self.writer.timers_due(key))

    async def _reconcile(self, key: Key, body: Body) -> Outcome:
        meta = body["metadata"]
        gone = deleting(body)
        finalizers = meta.get("finalizers") or []
        if gone and FINALIZER not in finalizers:
            return DONE  # not ours (or already released)
        if not gone and FINALIZER not in finalizers:
            body = await self.api.add_finalizer(key.kind, body)
            self.store.upsert(body)
        ctx = await self.context(key, body, gone)
        outcome = DONE
        if self.resolver.source(key.kind) is None and not gone and ctx.transport is not None:
            body = await self.writer.fire_timers(key, body, ctx)
        if key.kind == "App" and not gone and _is_http(body):
            # An HTTP handler cannot tell us its version changed: ask again every INFO_TTL
            # (one GET per App, not per entity); a new version re-syncs the App's entities.
            outcome = Outcome.after(INFO_TTL)
        obs = self._observed(key, body, ctx, gone)
        now = self.now()
        decided = engine.plan(obs, now)
        if decided.action is Action.NONE:
            return outcome
        if decided.action is Action.WAIT:
            assert decided.at is not None
            return outcome.sooner(Outcome.after((decided.at - now).total_seconds()))
        if decided.action is Action.RELEASE:
            await self.writer.release(key, body, decided.reason)
            return DONE
        if decided.action is Action.REFRESH:
            return outcome.sooner(
                await self.writer.apply(key, body, engine.refreshed(obs, now), ctx, {})
            )
        if decided.action is Action.SYNC:
            decision, fields = await self._sync(key, body, ctx, obs, now)
        else:
            if gone and await self._drain_abandoned(key, body, ctx):
                return DONE
            decision, fields = await self._drain(key, body, ctx, obs, now)
        return outcome.sooner(await self.writer.apply(key, body, decision, ctx, fields))

    # -- context -------------------------------------------------------------------------------

    async def context(self, key: Key, body: Body, gone: bool) -> Context:
        ctx = Context()
        reason = undecodable(body)
        if reason is not None:  # quarantined: no handler is called with a part of it
            ctx.blocked = gates.undecodable(key.kind, reason)
            return ctx
        try:
            await self._load_handler(key, body, ctx)
            if not gone and self.resolver.source(key.kind) is None:
                await self._resolve_inputs(key, body, ctx)
        except Blocked as blocked:
            ctx.blocked = blocked.gate
        except HandlerError as exc:
            ctx.error = exc
        return ctx

    async def _load_handler(self, key: Key, body: Body, ctx: Context) -> None:
        source = self.resolver.source(key.kind)
        if source is not None:
            ctx.transport = source.transport(body)
            ctx.info = await ctx.transport.info()
            ctx.sensitive = source.sensitive
            return
        spec = spec_of(body)
        if key.kind == "App":
            ctx.app = body
        else:
            app_name = str(spec.get("app"))
            ctx.app = self.store.get(Key("App", key.namespace, app_name))
            if ctx.app is None:
                raise Blocked(gates.app_missing(app_name))
            if undecodable(ctx.app) is not None:
                raise Blocked(gates.app_undecodable(app_name))
        app_key = Key.of(ctx.app)
        ctx.transport = await self.resolver.transport(app_key, ctx.app)
        ctx.info = await self.resolver.info(app_key, ctx.app, ctx.transport)
        if key.kind == "App":
            ctx.sensitive = _sensitive(ctx.info.app_signals)
            return
        block_type = str(spec.get("type"))
        unknown = gates.unknown_block_type(block_type, ctx.info.block_types, app_key.name)
        if unknown is not None:
            raise Blocked(unknown)
        ctx.type_spec = ctx.info.block_types[block_type]
        ctx.sensitive = _sensitive(ctx.type_spec.signals)

    async def _resolve_inputs(self, key: Key, body: Body, ctx: Context) -> None:
        assert ctx.app is not None
        app_config, app_versions = await self.inputs.app_config(ctx.app)
        ctx.app_config = app_config
        spec = spec_of(body)
        if key.kind == "App":
            ctx.config = app_config
            ctx.inputs_hash = fingerprint(spec.get("config"), app_versions)
            return
        # The App's own inputs (not its status, which changes when the App is written).
        app_inputs = fingerprint(spec_of(ctx.app).get("config"), app_versions)
        try:
            resolution = resolve(spec.get("config") or {}, key.namespace, self.inputs.lookup(key))
        except SignalRefError as exc:
            raise Blocked(gates.invalid_reference(str(exc))) from None
        ctx.config = resolution.config
        ctx.inputs_hash = fingerprint(
            hashable(resolution.config), [r.describe() for r in resolution.missing], app_inputs
        )
        cycle = find_cycle(
            (key.kind, key.name),
            lambda node: [
                (k.kind, k.name)
                for k in self.store.references_of(Key(node[0], key.namespace, node[1]))
            ],
        )
        closed = gates.dependencies(cycle, resolution.missing)
        if closed is not None:
            raise Blocked(closed)

    # -- observed state ------------------------------------------------------------------------

    def _observed(self, key: Key, body: Body, ctx: Context, gone: bool) -> Observed:
        meta, spec, status = body["metadata"], spec_of(body), status_of(body)
        annotations = meta.get("annotations") or {}
        raw_lifecycle = status.get("lifecycle")
        source = self.resolver.source(key.kind)
        return Observed(
            generation=meta.get("generation", 1),
            lifecycle=LifecycleStatus.model_validate(raw_lifecycle) if raw_lifecycle else None,
            observed_generation=status.get("observedGeneration"),
            conditions=[Condition.model_validate(c) for c in status.get("conditions") or []],
            signals=status.get("signals") or {},
            deleting=gone,
            orphan=spec.get("deletionPolicy") == "Orphan",
            requested_sync_at=annotations.get(SYNC_ANNOTATION),
            requested_drain_at=(
                source.drain_request(body)
                if source is not None
                else annotations.get(DRAIN_ANNOTATION)
            ),
            handler_version=ctx.info.version if ctx.info else None,
            sensitive_signal_names=ctx.sensitive,
            inputs_hash=ctx.inputs_hash,
            sync_requested_by_handler=key in self.handler_requested,
            drained_reason=source.drained_reason(body) if source is not None else None,
        )

    # -- calls ---------------------------------------------------------------------------------

    async def _sync(
        self, key: Key, body: Body, ctx: Context, obs: Observed, now: datetime
    ) -> tuple[Decision, dict[str, Any]]:
        self.handler_requested.discard(key)
        if ctx.error is not None:
            return engine.after_sync(obs, ctx.error, now, self.rng), {}
        if ctx.blocked is not None:
            return _blocked(obs, now, ctx.blocked), {}
        config = spec_of(body).get("config") or {}
        fixed = gates.fixed_values(config, ctx.type_spec.fixed if ctx.type_spec else [])
        recorded = status_of(body).get("fixedConfig")
        changed = gates.fixed_field_changed(key.kind, fixed, recorded)
        if changed is not None:
            return _blocked(obs, now, changed), {}
        schema = ctx.info.app_config_schema if key.kind == "App" and ctx.info else None
        if ctx.type_spec is not None:
            schema = ctx.type_spec.config_schema
        invalid = gates.invalid_config(hashable(ctx.config), schema)
        if invalid is not None:
            return _blocked(obs, now, invalid), {}
        request = await self.request_for(SyncRequest, key, body, ctx)
        assert ctx.transport is not None
        try:
            reply = await self.calls.call(ctx.transport, request)
        except HandlerError as exc:
            return engine.after_sync(obs, exc, now, self.rng), {}
        decision = engine.after_sync(
            obs, reply, now, self.rng, fixed_config=fixed if recorded is None else None
        )
        return decision, _status_fields(reply)

    async def _drain(
        self, key: Key, body: Body, ctx: Context, obs: Observed, now: datetime
    ) -> tuple[Decision, dict[str, Any]]:
        waiting = gates.dependents_exist((k.kind, k.name) for k in self._alive_dependents(key))
        if waiting is not None:
            return _blocked(obs, now, waiting), {}
        if ctx.error is not None:
            return engine.after_drain(obs, ctx.error, now, self.rng), {}
        if ctx.blocked is not None or ctx.transport is None:
            gate = ctx.blocked
            assert gate is not None
            error = HandlerError(gate.message, reason=gate.reason)
            return engine.after_drain(obs, error, now, self.rng), {}
        try:
            ctx.app_config = (await self.inputs.app_config(ctx.app))[0] if ctx.app else {}
        except HandlerError as exc:
            return engine.after_drain(obs, exc, now, self.rng), {}
        ctx.config = spec_of(body).get("config") or {}
        if key.kind == "App":
            ctx.config = ctx.app_config
        request = await self.request_for(DrainRequest, key, body, ctx)
        try:
            reply = await self.calls.call(ctx.transport, request)
        except HandlerError as exc:
            return engine.after_drain(obs, exc, now, self.rng), {}
        return engine.after_drain(obs, reply, now, self.rng), _status_fields(reply)

    async def _drain_abandoned(self, key: Key, body: Body, ctx: Context) -> bool:
        """Releases a deleted entity whose drain can never be called (gates.drain_abandoned):
        logged and counted, as its namespace takes no Event any more."""
        if self._alive_dependents(key):
            return False  # they go first (each released the same way if it must be)
        error: HandlerError | None = ctx.error
        if error is None and ctx.blocked is not None:
            error = HandlerError(ctx.blocked.message, reason=ctx.blocked.reason)
        if error is None and ctx.app is not None:
            try:
                await self.inputs.app_config(ctx.app)
            except HandlerError as exc:
                error = exc
        if error is None or error.reason not in gates.INPUTS_GONE:
            return False
        namespace_deleting = await self.api.namespace_deleting(key.namespace)
        if not gates.drain_abandoned(error.reason, namespace_deleting):
            return False
        log.warning(
            "released without drain",
            entity=str(key),
            why="its namespace is being deleted and what the drain needs is gone; what the "
            "handler manages for it is left as it is",
            missing=str(error),
        )
        metrics.DRAINS_ABANDONED.labels(key.kind).inc()
        await self.writer.release(key, body, "NamespaceDeleted")
        return True

    def _alive_dependents(self, key: Key) -> set[Key]:
        if key.kind == "App":
            candidates = self.store.blocks_of_app(key.namespace, key.name)
        else:
            candidates = self.store.referrers_of(key)
        return {k for k in candidates if self.store.get(k) is not None}

    async def request_for(
        self, model: type[HandlerRequest], key: Key, body: Body, ctx: Context, **extra: Any
    ) -> HandlerRequest:
        config = await self.inputs.reveal(key.namespace, ctx.config)
        own = await self.inputs.entity_input(key, body, config, ctx)
        app_input = None
        if key.kind != "App" and ctx.app is not None:
            app_input = await self.inputs.entity_input(Key.of(ctx.app), ctx.app, ctx.app_config)
        state = await self.inputs.read_state(key, body)
        return model(entity=own, app=app_input, state=state, **extra)


# -- helpers ---------------------------------------------------------------------------------


def _blocked(obs: Observed, now: datetime, gate: Gate) -> Decision:
    return engine.blocked(
        obs, now, state=gate.state, reason=gate.reason, message=gate.message, warn=gate.warn
    )


def _status_fields(reply: Any) -> dict[str, Any]:
    return dict(reply.status_fields) if isinstance(reply, StatusFields) else {}


def _is_http(app: Body) -> bool:
    return bool((spec_of(app).get("handler") or {}).get("http"))


def _sensitive(signals: list[SignalSpec]) -> frozenset[str]:
    return frozenset(s.name for s in signals if s.sensitive)


def _signals_view(body: Body) -> Any:
    status = status_of(body)
    return (
        status.get("signals"),
        (status.get("sensitiveSignals") or {}).get("resourceVersion"),
        deleting(body),
    )


def _app_view(body: Body) -> Any:
    lifecycle = status_of(body).get("lifecycle") or {}
    return (lifecycle.get("inputsHash"), lifecycle.get("handlerVersion"), body.get("spec"))


__all__ = ["NOW", "LifecycleRuntime"]
