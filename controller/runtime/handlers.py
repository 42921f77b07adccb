"""The handler resolver: which handler serves an entity, and how to call it.

Both runtimes depend on this seam. An App names its handler (a Python module, or an
HTTP endpoint with a signing Secret); a Block is served by its App's handler; a kind
whose "handler" is not an App — a Workflow, whose trigger is activated like a Block is
synced — registers a :class:`HandlerSource` for its kind. Handler declarations
(`info`) are cached briefly, since HTTP handlers are asked over the wire.

The workflow engine calls Apps through :meth:`HandlerResolver.app_handle` (a step, a
trigger block), never through the lifecycle runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from controller.handlers.protocol import BlockTypeSpec, EntityInput, HandlerInfo, HandlerRequest
from controller.handlers.python_transport import PythonTransport, load_handler
from controller.handlers.sdk import EntityKey
from controller.handlers.transport import HandlerError, Transport
from controller.kube.api import KubeApi
from controller.kube.objects import Body, Key, deleting, spec_of
from controller.lifecycle.signals import fingerprint
from controller.runtime.calls import CallLimits, target_of
from controller.runtime.inputs import EntityInputs
from controller.runtime.store import Store

#: How long a handler's declarations are trusted before it is asked again (seconds).
INFO_TTL = 30.0

HttpTransportFactory = Callable[[dict[str, Any], bytes | None], Transport]


@dataclass(frozen=True)
class AppHandle:
    """An App's handler as the workflow engine calls it."""

    body: Body
    transport: Transport
    info: HandlerInfo
    input: EntityInput
    calls: CallLimits

    async def call(self, request: HandlerRequest) -> Any:
        """One call to the App's handler, within its concurrency limits."""
        return await self.calls.call(self.transport, request)


class HandlerSource(Protocol):
    """The handler of a kind that is not served by an App (a Workflow's activator)."""

    #: Signals of this kind that are written to a Secret, never to status.
    sensitive: frozenset[str]

    def transport(self, body: Body) -> Transport:
        """The "handler" for one reconcile of this object."""
        ...

    def drain_request(self, body: Body) -> str | None:
        """A drain the object asks for by its spec (None: none wanted)."""
        ...

    def drained_reason(self, body: Body) -> str | None:
        """The Ready reason of an object drained on purpose (None: not drained on purpose)."""
        ...


@runtime_checkable
class StatusFields(Protocol):
    """A reply that also decides fields of the object's status only its kind has (a
    Workflow's activation): written in the same patch as the lifecycle."""

    status_fields: dict[str, Any]


class HandlerResolver:
    def __init__(
        self,
        api: KubeApi,
        store: Store,
        inputs: EntityInputs,
        *,
        http_transport_factory: HttpTransportFactory | None = None,
        request_sync: Callable[[EntityKey], Awaitable[None]] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        calls: CallLimits | None = None,
    ) -> None:
        self.api = api
        self.calls = calls or CallLimits()
        self.store = store
        self.inputs = inputs
        self._http_factory = http_transport_factory
        self._request_sync = request_sync
        self.now = now
        self._sources: dict[str, HandlerSource] = {}
        self._infos: dict[Key, tuple[float, str, HandlerInfo]] = {}

    def register(self, kind: str, source: HandlerSource) -> None:
        self._sources[kind] = source

    def source(self, kind: str) -> HandlerSource | None:
        return self._sources.get(kind)

    async def transport(self, app_key: Key, app: Body) -> Transport:
        """The transport of an App's handler (an HTTP one signs with the App's Secret)."""
        handler = spec_of(app).get("handler") or {}
        if handler.get("python"):
            loaded = load_handler(handler["python"])
            if self._request_sync is None:
                return PythonTransport(loaded)
            return PythonTransport(loaded, self._request_sync)
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

    async def info(self, app_key: Key, app: Body, transport: Transport) -> HandlerInfo:
        """The handler's declarations, cached briefly (HTTP handlers are asked over the wire)."""
        handler_id = fingerprint(spec_of(app).get("handler"))
        cached = self._infos.get(app_key)
        clock = self.now().timestamp()
        if cached and cached[1] == handler_id and clock - cached[0] < INFO_TTL:
            return cached[2]
        async with self.calls.slot(target_of(transport)):
            info = await transport.info()
        self._infos[app_key] = (clock, handler_id, info)
        return info

    def forget(self, app_key: Key) -> None:
        self._infos.pop(app_key, None)

    def _app(self, namespace: str, app: str) -> Body | None:
        body = self.store.get(Key("App", namespace, app))
        return None if body is None or deleting(body) else body

    async def block_types(self, namespace: str, app: str) -> dict[str, BlockTypeSpec] | None:
        """The block types an App's handler offers (None when there is no such App)."""
        body = self._app(namespace, app)
        if body is None:
            return None
        key = Key.of(body)
        info = await self.info(key, body, await self.transport(key, body))
        return info.block_types

    async def app_handle(self, namespace: str, app: str) -> AppHandle:
        """An App's transport, declarations and input (with its secret config) for a call."""
        body = self._app(namespace, app)
        if body is None:
            raise HandlerError(
                f"App {app} not found in namespace {namespace}", reason="AppNotFound"
            )
        key = Key.of(body)
        transport = await self.transport(key, body)
        info = await self.info(key, body, transport)
        config = (await self.inputs.app_config(body))[0]
        entity = await self.inputs.entity_input(key, body, config)
        return AppHandle(body, transport, info, entity, self.calls)
