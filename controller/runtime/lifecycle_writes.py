"""The one writer of lifecycle status: decisions, handler side effects, timers, finalizers.

Every write of an App's, a Block's or a Workflow's lifecycle status goes through
:class:`Writer`, whether it comes from a reconcile's decision, a timer's reply or the
reply to a request on the App's HTTP endpoint. A write that would change nothing is
skipped; a sensitive value is written to the entity's own Secret, never to status; each
write is published as a transition and wakes the entities that depend on it.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from controller.api.common import TimerStatus
from controller.handlers.protocol import (
    AppHttpRequest,
    HttpReply,
    HttpRequestData,
    SideEffects,
    TimerInput,
    TimerRequest,
)
from controller.handlers.transport import HandlerError
from controller.kube.objects import Body, Key, deleting, status_of
from controller.lifecycle import effects, gates
from controller.lifecycle.engine import Decision
from controller.logs import get_logger
from controller.runtime.controller import DONE, NOW, Outcome
from controller.runtime.inputs import Context

if TYPE_CHECKING:
    from controller.runtime.lifecycle import LifecycleRuntime

log = get_logger("blockflow.lifecycle")

MANAGED = {"app.kubernetes.io/managed-by": "blockflow"}
#: Due but not fired (its App is unreachable now): look again in this many seconds.
TIMER_RETRY = 5.0


def secret_name(key: Key, purpose: str) -> str:
    """Name of a Secret the controller owns for an entity (fits the 253-character limit)."""
    name = f"{key.name}-{key.kind.lower()}-{purpose}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: 253 - 11]}-{digest}"


class Writer:
    def __init__(self, runtime: LifecycleRuntime) -> None:
        self.rt = runtime

    # -- a reconcile's decision ----------------------------------------------------------------

    async def apply(
        self, key: Key, body: Body, decision: Decision, ctx: Context, fields: dict[str, Any]
    ) -> Outcome:
        """Write a decision (Secrets first, then one status patch, then Events and the
        finalizer); returns when to look again."""
        rt = self.rt
        patch = dict(decision.status_patch)
        status = status_of(body)
        listed = (status.get("sensitiveSignals") or {}).get("names") or []
        writes = gates.sensitive_writes(
            decision.sensitive_signal_updates, listed, ctx.own_sensitive
        )
        public_changed = any(
            (status.get("signals") or {}).get(k) != v
            for k, v in (patch.get("signals") or {}).items()
        )
        if writes:
            name = secret_name(key, "signals")
            version = await rt.api.merge_secret(key.namespace, name, writes, body, MANAGED)
            patch["sensitiveSignals"] = {
                "secretName": name,
                "names": gates.sensitive_names(listed, writes),
                "resourceVersion": version,
            }
        patch.update(fields)
        if decision.state_update is not None:
            patch["stateSecretName"] = await self.write_state(key, body, decision.state_update)
        if decision.effects is not None:
            patch.update(effects.effects_patch(status, decision.effects, rt.now()))
        if gates.changes(status, patch):
            body = await self._patch(key, body, patch)
        for event in decision.events:
            rt.events.post(body, event.type, event.reason, event.message)
        if decision.release_finalizer:
            await self.release(key, body, "Drained")
            return DONE
        outcome = DONE
        if decision.requeue_at is not None:
            outcome = Outcome.after((decision.requeue_at - rt.now()).total_seconds())
        if decision.effects is not None and decision.effects.request_sync:
            rt.handler_requested.add(key)
            outcome = NOW
        if writes or public_changed:
            for referrer in rt.store.referrers_of(key):
                rt.controller.add(referrer)
        return outcome

    async def _patch(self, key: Key, body: Body, patch: dict[str, Any]) -> Body:
        rt = self.rt
        updated = await rt.api.patch_status(key.kind, key.namespace, key.name, patch)
        rt.store.upsert(updated)
        rt.wake_dependents(key, body, updated)
        rt.transitions.publish(key, body, updated)
        return updated

    async def write_state(self, key: Key, body: Body, state: dict[str, Any]) -> str:
        """The handler's KV state, whole, into the entity's owned Secret; its name."""
        name = secret_name(key, "state")
        await self.rt.api.merge_secret(
            key.namespace, name, {"state.json": json.dumps(state)}, body, MANAGED
        )
        return name

    async def release(self, key: Key, body: Body, reason: str) -> None:
        rt = self.rt
        updated = await rt.api.remove_finalizer(key.kind, body)
        log.info("finalizer released", entity=str(key), reason=reason)
        meta = (updated or {}).get("metadata") or {}
        gone = updated is None or (
            bool(meta.get("deletionTimestamp")) and not meta.get("finalizers")
        )
        if not gone:
            rt.store.upsert(updated or body)
        # Wake waiters before dropping it: removal also drops its references from the index.
        rt.enqueue_related(key, body)
        if gone:
            # The API server deleted it; its DELETED event may already have been handled
            # while our PATCH was in flight, so never put it back (a ghost would block its
            # App and the Blocks it referenced forever).
            rt.store.remove(key)

    # -- timers ------------------------------------------------------------------------------

    def timers_due(self, key: Key) -> Outcome:
        """When the entity's earliest timer falls due (timers live in its status, so the
        initial listing after a restart schedules them again)."""
        body = self.rt.store.get(key)
        if body is None or deleting(body):
            return DONE
        due = effects.next_due(status_of(body))
        if due is None:
            return DONE
        delay = (due - self.rt.now()).total_seconds()
        return Outcome.after(delay if delay > 0 else TIMER_RETRY)

    async def fire_timers(self, key: Key, body: Body, ctx: Context) -> Body:
        """Call the handler's `timer` for every timer due, one at a time, each followed by
        one status write (the timer removed, the reply's effects applied)."""
        rt = self.rt
        assert ctx.transport is not None
        now = rt.now()
        for timer in effects.due_timers(status_of(body), now):
            status = status_of(body)
            request = await rt.request_for(
                TimerRequest, key, body, ctx, timer=_timer_input(status, timer)
            )
            try:
                reply = await rt.calls.call(ctx.transport, request)
            except HandlerError as exc:
                timers, dropped = effects.timer_failed(status, timer, now, rt.rng)
                then = "dropped" if dropped else "will retry"
                rt.events.post(
                    body, "Warning", "TimerFailed", f"timer {timer.key}: {exc.message} ({then})"
                )
                body = await self.write_effects(key, body, None, {"timers": timers})
                continue
            body = await self.write_effects(
                key, body, reply, {"timers": effects.timer_done(status, timer)}
            )
        return body

    async def write_effects(
        self, key: Key, body: Body, reply: SideEffects | None, base: dict[str, Any]
    ) -> Body:
        """One status write for a reply's side effects (on top of ``base``); the new body."""
        rt = self.rt
        status = status_of(body)
        patch = dict(base)
        if reply is not None:
            patch.update(effects.effects_patch({**status, **base}, reply, rt.now()))
            if reply.state is not None:
                patch["stateSecretName"] = await self.write_state(key, body, reply.state)
            if reply.request_sync:
                patch.update(effects.sync_request_patch(status, rt.now()))
        if gates.changes(status, patch):
            body = await self._patch(key, body, patch)
        if reply is not None and reply.request_sync:
            rt.request(key)
        return body

    # -- the App's HTTP endpoint ---------------------------------------------------------------

    async def app_http(self, namespace: str, app: str, request: HttpRequestData) -> HttpReply:
        """A request to the App's HTTP endpoint: the handler's `http` reply, its side effects
        (prompts, timers, state, sync request) written before it is returned.

        Raises LookupError for an App that does not exist, HandlerError when its handler
        cannot be reached or fails."""
        rt = self.rt
        key = Key("App", namespace, app)
        body = rt.store.get(key)
        if body is None or deleting(body):
            raise LookupError(f"App {app} not found in namespace {namespace}")
        ctx = await rt.context(key, body, gone=False)
        if ctx.error is not None:
            raise ctx.error
        if ctx.transport is None:
            raise HandlerError(f"App {app} has no handler to call", reason="UnknownHandler")
        call = await rt.request_for(AppHttpRequest, key, body, ctx, request=request)
        reply: HttpReply = await rt.calls.call(ctx.transport, call)
        async with rt.controller.locked(key):
            current = rt.store.get(key) or body
            await self.write_effects(key, current, reply, {})
            due = self.timers_due(key)
        if due.requeue_after is not None:
            rt.controller.add_after(key, due.requeue_after)
        return reply


def _timer_input(status: Body, timer: TimerStatus) -> TimerInput:
    return TimerInput(
        key=timer.key, payload=timer.payload, prompt=effects.prompt_for(status, timer)
    )
