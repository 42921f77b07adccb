"""A Workflow's trigger, seen by the lifecycle engine as the Workflow's handler.

The same engine that syncs and drains Apps and Blocks reconciles Workflows: its
`sync` is "activate the trigger for the current version", its `drain` is "deactivate
it" (on pause, archive, delete). So `status.lifecycle`, the kstatus conditions,
retries with backoff and Events mean exactly what they mean for a Block. This module
is the adapter: a :class:`Transport` whose `call` performs activation and answers with
a `SyncReply` / `DrainReply`, plus the status fields only a Workflow has.

Tokens are derived from the controller's token key (:func:`derived_token`): a block
trigger's URL is stable across retries of one activation, a webhook's URL is stable
for the life of the workflow (a sender configured with it keeps working after edits),
and only their hashes are ever written to the Workflow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import Field

from controller.api.workflow import (
    ManualTrigger,
    Trigger,
    WorkflowPhase,
    WorkflowSpec,
    WorkflowState,
)
from controller.handlers.protocol import (
    ActivateRequest,
    BlockTypeSpec,
    CallMetadata,
    CompleteReply,
    DeactivateRequest,
    DrainReply,
    EntityInput,
    HandlerInfo,
    HandlerRequest,
    SyncReply,
)
from controller.handlers.transport import HandlerError, Transport
from controller.kube.objects import Body, spec_of, status_of
from controller.runtime.calls import CallLimits
from controller.runtime.handlers import AppHandle
from controller.server.tokens import derived_token, token_hash
from controller.workflows.activation import activation_errors, state_change_error
from controller.workflows.naming import HOOK_KEY_SIGNAL, TRIGGER_URL_SIGNAL, WORKFLOW_SIGNALS
from controller.workflows.templating import TemplateError, render

VERSION = "blockflow-workflow/1"


class Apps(Protocol):
    """How workflows reach Apps (implemented by the lifecycle runtime)."""

    async def block_types(self, namespace: str, app: str) -> dict[str, BlockTypeSpec] | None: ...

    async def app_handle(self, namespace: str, app: str) -> AppHandle: ...

    #: The limits every handler and outside call is made within.
    calls: CallLimits


@dataclass(frozen=True)
class TokenKeys:
    """Derives every URL token and the hook key from the controller's token key."""

    key: bytes
    base_url: str

    def webhook(self, workflow_uid: str) -> str:
        return derived_token(self.key, f"webhook:{workflow_uid}")

    def trigger(self, activation_id: str) -> str:
        return derived_token(self.key, f"trigger:{activation_id}")

    def callback(self, execution_id: str) -> str:
        return derived_token(self.key, f"callback:{execution_id}")

    def hook_key(self, workflow_uid: str) -> str:
        return derived_token(self.key, f"hookkey:{workflow_uid}")

    def url(self, route: str, token: str) -> str:
        return f"{self.base_url.rstrip('/')}/{route}/{token}"


def activation_id(workflow_uid: str, version: int) -> str:
    """Stable across retries of one activation; new for every version."""
    return hashlib.sha256(f"{workflow_uid}/{version}".encode()).hexdigest()[:32]


def wanted_state(body: Body) -> WorkflowState:
    return WorkflowState(spec_of(body).get("state") or WorkflowState.DRAFT)


def drain_request(body: Body) -> str | None:
    """A Workflow that should not be active asks the engine for a drain (deactivation),
    once per state and version; None while it should be active."""
    state = wanted_state(body)
    if state is WorkflowState.ACTIVE:
        return None
    return f"{state.value}@{body['metadata'].get('generation', 1)}"


def drained_reason(body: Body) -> str | None:
    """The Ready reason of a Workflow whose trigger is deactivated on purpose: its
    `spec.state` (Draft, Paused or Archived), None while it should be active."""
    state = wanted_state(body)
    return None if state is WorkflowState.ACTIVE else state.value


_KEEP: Any = object()


class ActivationSyncReply(SyncReply):
    """A sync reply that also carries the Workflow's activation (written with it)."""

    status_fields: dict[str, Any] = Field(default_factory=dict, exclude=True)


class ActivationDrainReply(DrainReply):
    """A drain reply that also carries the Workflow's (cleared) activation."""

    status_fields: dict[str, Any] = Field(default_factory=dict, exclude=True)


class WorkflowActivator:
    """The lifecycle engine's "handler" for one Workflow (built per reconcile)."""

    def __init__(
        self,
        body: Body,
        *,
        tokens: TokenKeys,
        apps: Apps,
        now: Callable[[], datetime],
        on_activated: Callable[[Body, int], Awaitable[None]],
    ) -> None:
        self.body = body
        self.tokens = tokens
        self.apps = apps
        self.now = now
        self.on_activated = on_activated

    async def info(self) -> HandlerInfo:
        return HandlerInfo(version=VERSION)

    async def close(self) -> None:
        return None

    async def call(self, request: HandlerRequest) -> Any:
        if request.operation == "sync":
            return await self._sync(request.entity.signals)
        return await self._drain()

    # -- sync: activate --------------------------------------------------------------------

    async def _sync(self, current_signals: dict[str, Any]) -> ActivationSyncReply:
        meta, status = self.body["metadata"], status_of(self.body)
        namespace, uid = meta["namespace"], meta["uid"]
        version = int(meta.get("generation", 1))
        wanted = wanted_state(self.body)
        phase = WorkflowPhase(status["phase"]) if status.get("phase") else None
        refused = state_change_error(phase, wanted)
        if refused:
            return self._sync_reply(new_status="failed", custom_status_description=refused)
        spec = WorkflowSpec.model_validate(spec_of(self.body))
        errors = await self._activation_errors(namespace, spec)
        if errors:
            text = "; ".join(errors)
            return self._sync_reply(
                new_status="failed", custom_status_description=_clip(f"not activated: {text}")
            )
        signals: dict[str, Any] = {HOOK_KEY_SIGNAL: self.tokens.hook_key(uid)}
        activation = status.get("activation") or {}
        if activation.get("version") == version:
            signals[TRIGGER_URL_SIGNAL] = current_signals.get(TRIGGER_URL_SIGNAL)
            return self._sync_reply(
                new_status="ready",
                custom_status_description=f"Active: version {version}",
                signal_updates=signals,
            )
        if activation.get("version") is not None:
            failure = await self._deactivate(activation)
            if failure:
                return self._sync_reply(new_status="failed", custom_status_description=failure)
        new_id = activation_id(uid, version)
        trigger = spec.trigger or Trigger(manual=ManualTrigger())
        token: str | None = None
        if trigger.webhook is not None:
            token = self.tokens.webhook(uid)
        elif trigger.block is not None:
            token = self.tokens.trigger(new_id)
        url = self.tokens.url("triggers", token) if token else None
        if trigger.block is not None:
            assert url is not None
            earlier = status.get("activationAttempts") or {}
            attempt = (
                int(earlier.get("attempts") or 0) + 1 if earlier.get("version") == version else 1
            )
            failure = await self._activate(spec, version, new_id, url, attempt)
            if failure:
                # Not enabled: nothing of this version routes, nothing will deactivate it.
                return self._sync_reply(
                    new_status="failed",
                    custom_status_description=failure,
                    activation=None,
                    attempts={"version": version, "attempts": attempt},
                )
        activated = {
            "uniqueActivationId": new_id,
            "version": version,
            "activatedAt": self.now().isoformat(),
            "tokenHash": token_hash(token) if token else None,
            "spec": spec_of(self.body),
        }
        signals[TRIGGER_URL_SIGNAL] = url
        await self.on_activated(self.body, version)
        return self._sync_reply(
            new_status="ready",
            custom_status_description=f"Active: version {version} activated",
            signal_updates=signals,
            activation=activated,
            attempts=None if status.get("activationAttempts") else _KEEP,
        )

    def _version(self) -> int:
        return int(self.body["metadata"].get("generation", 1))

    def _sync_reply(
        self, *, activation: Any = _KEEP, attempts: Any = _KEEP, **reply: Any
    ) -> ActivationSyncReply:
        """A sync reply with the status fields it decides: the version, and the activation
        and its attempts when they change (``_KEEP``: unchanged, not written)."""
        fields: dict[str, Any] = {"version": self._version()}
        if activation is not _KEEP:
            fields["activation"] = activation
        if attempts is not _KEEP:
            fields["activationAttempts"] = attempts
        return ActivationSyncReply(**reply, status_fields=fields)

    async def _activation_errors(self, namespace: str, spec: WorkflowSpec) -> list[str]:
        apps = {s.uses.app for s in [*spec.steps, *spec.fallback] if s.uses.app}
        if spec.trigger is not None and spec.trigger.block is not None:
            apps.add(spec.trigger.block.app)
        offered: dict[str, dict[str, BlockTypeSpec] | None] = {}
        for app in sorted(apps):
            try:
                offered[app] = await self.apps.block_types(namespace, app)
            except HandlerError as exc:
                return [f"App {app}: its handler cannot be reached: {exc.message}"]
        return activation_errors(spec, lambda app: offered.get(app))

    async def _activate(
        self, spec: WorkflowSpec, version: int, new_id: str, url: str, attempt: int
    ) -> str:
        assert spec.trigger is not None and spec.trigger.block is not None
        block = spec.trigger.block
        try:
            app = await self.apps.app_handle(self.body["metadata"]["namespace"], block.app)
            request = ActivateRequest(
                entity=self._entity(block.type, block.config, version),
                app=app.input,
                metadata=CallMetadata(
                    unique_activation_id=new_id, trigger_callback_url=url, attempt=attempt
                ),
            )
            reply = await app.call(request)
        except (HandlerError, TemplateError) as exc:
            return _clip(f"activating trigger block {block.type} of App {block.app} failed: {exc}")
        if isinstance(reply, CompleteReply):
            return ""
        return _clip(
            f"trigger block {block.type} of App {block.app} refused to activate: {reply.message}"
        )

    # -- drain: deactivate -------------------------------------------------------------------

    async def _drain(self) -> ActivationDrainReply:
        status = status_of(self.body)
        activation = status.get("activation") or {}
        reason = "deleted" if self.body["metadata"].get("deletionTimestamp") else None
        if activation.get("version") is not None:
            failure = await self._deactivate(activation)
            if failure:
                return ActivationDrainReply(
                    new_status="draining_failed",
                    custom_status_description=failure,
                    status_fields={"version": self._version()},
                )
        state = reason or wanted_state(self.body).value
        return ActivationDrainReply(
            new_status="drained",
            custom_status_description=f"{state}: trigger not active",
            status_fields={"activation": None, "version": self._version()},
        )

    async def _deactivate(self, activation: Body) -> str:
        """Deactivate an activated version (only trigger blocks have anything to undo)."""
        old = WorkflowSpec.model_validate(spec_of(activation))
        if old.trigger is None or old.trigger.block is None:
            return ""
        block = old.trigger.block
        version = int(activation.get("version") or 1)
        try:
            app = await self.apps.app_handle(self.body["metadata"]["namespace"], block.app)
            request = DeactivateRequest(
                entity=self._entity(block.type, block.config, version),
                app=app.input,
                metadata=CallMetadata(
                    unique_activation_id=activation.get("uniqueActivationId"),
                    trigger_callback_url=self.tokens.url(
                        "triggers", self.tokens.trigger(str(activation.get("uniqueActivationId")))
                    ),
                ),
            )
            reply = await app.call(request)
        except (HandlerError, TemplateError) as exc:
            return _clip(f"deactivating version {version} failed: {exc}")
        if isinstance(reply, CompleteReply):
            return ""
        return _clip(f"deactivating version {version} failed: {reply.message}")

    def _entity(self, block_type: str, config: dict[str, Any], version: int) -> EntityInput:
        meta = self.body["metadata"]
        context = {"workflow": {"name": meta["name"], "namespace": meta["namespace"]}}
        rendered = render(config, context, "spec.trigger.block.config")
        return EntityInput(
            kind="Workflow",
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=version,
            type=block_type,
            config=rendered if isinstance(rendered, dict) else {},
        )


def _clip(text: str) -> str:
    return text if len(text) <= 1024 else text[:1021] + "..."


class WorkflowHandlers:
    """The handler source of the Workflow kind: its activator, built per reconcile."""

    def __init__(
        self,
        tokens: TokenKeys,
        apps: Apps,
        now: Callable[[], datetime],
        on_activated: Callable[[Body, int], Awaitable[None]],
    ) -> None:
        self.tokens = tokens
        self.apps = apps
        self.now = now
        self.on_activated = on_activated
        self.sensitive = frozenset(WORKFLOW_SIGNALS)

    def transport(self, body: Body) -> Transport:
        return WorkflowActivator(
            body, tokens=self.tokens, apps=self.apps, now=self.now, on_activated=self.on_activated
        )

    def drain_request(self, body: Body) -> str | None:
        return drain_request(body)

    def drained_reason(self, body: Body) -> str | None:
        return drained_reason(body)
