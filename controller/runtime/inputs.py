"""An entity's inputs: its config with signal references resolved, and what a handler sees.

Resolution happens in two stages so that secrets are read only when needed:

1. for planning, references are resolved far enough to fingerprint them — a sensitive
   signal stands in as :class:`Sensitive` (its Secret's name and version), so a changed
   secret changes the fingerprint without its value ever being read;
2. for a handler call, :meth:`EntityInputs.reveal` replaces the stand-ins with the
   values, reading each Secret once.

Also here: the App's config with its `configFrom` Secrets merged in, the handler's KV
state, and the :class:`EntityInput` a request carries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.handlers.protocol import AppHttp, BlockTypeSpec, EntityInput, HandlerInfo
from controller.handlers.transport import HandlerError, Transport
from controller.kube.api import KubeApi
from controller.kube.objects import Body, Key, spec_of, status_of
from controller.lifecycle.gates import Gate
from controller.lifecycle.signals import SignalRef
from controller.runtime.store import Store
from controller.server.urls import app_http_url, app_page_url


@dataclass(frozen=True)
class Sensitive:
    """Stands in for a sensitive signal value until the handler is actually called."""

    ref: SignalRef
    secret: str
    version: str


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
    #: The handler must not be called now (a gate said why).
    blocked: Gate | None = None
    #: The handler (or what it needs) could not be reached: a failure, retried with backoff.
    error: HandlerError | None = None


class EntityInputs:
    """Reads what a handler call needs: Secrets, referenced signals, state."""

    def __init__(self, api: KubeApi, store: Store, public_url: str) -> None:
        self.api = api
        self.store = store
        self.public_url = public_url.rstrip("/")

    def lookup(self, key: Key) -> Callable[[SignalRef], tuple[bool, Any]]:
        """Resolves a signal reference of ``key`` from the observed objects."""

        def lookup(ref: SignalRef) -> tuple[bool, Any]:
            target = self.store.get(Key(ref.kind, key.namespace, ref.name))
            if target is None or (target["metadata"].get("deletionTimestamp")):
                return False, None
            status = status_of(target)
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

    async def app_config(self, app: Body) -> tuple[dict[str, Any], list[str]]:
        """The App's config with its configFrom Secrets merged in, and their versions."""
        spec = spec_of(app)
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

    async def entity_input(
        self, key: Key, body: Body, config: Any, ctx: Context | None = None
    ) -> EntityInput:
        """The entity as a request carries it, with its sensitive signals' current values
        (remembered in ``ctx``, so an unchanged value is not written back)."""
        meta, status = body["metadata"], status_of(body)
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
            type=spec_of(body).get("type"),
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

    async def reveal(
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
            return {k: await self.reveal(namespace, v, read) for k, v in value.items()}
        if isinstance(value, list):
            return [await self.reveal(namespace, v, read) for v in value]
        return value

    async def read_state(self, key: Key, body: Body) -> dict[str, Any]:
        """The handler's KV state, kept whole in the entity's own Secret."""
        name = status_of(body).get("stateSecretName")
        if not name:
            return {}
        found = await self.api.read_secret(key.namespace, name)
        if not found or "state.json" not in found[0]:
            return {}
        loaded = json.loads(found[0]["state.json"])
        return loaded if isinstance(loaded, dict) else {}


def hashable(value: Any) -> Any:
    """The config as it is fingerprinted: a sensitive value by its Secret's version."""
    if isinstance(value, Sensitive):
        return f"sensitive:{value.secret}@{value.version}:{value.ref.signal}"
    if isinstance(value, dict):
        return {k: hashable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hashable(v) for v in value]
    return value
