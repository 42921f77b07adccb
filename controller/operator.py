"""The composition root: builds every room of the controller, wires them, and runs kopf.

kopf watches the four Blockflow kinds and logs in; its on.event handlers only hand
each event over (they write nothing, so each reconcile costs exactly the writes the
engines decide). Apps, Blocks and Workflows go to the lifecycle runtime; Workflows also
to the workflow engine's trigger index; WorkflowRuns to the run runtime. This module
also runs the HTTP server, the admission webhook and leader election; it decides
nothing itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import kopf
from aiohttp import web
from pydantic import ValidationError

from controller.admission.webhook import build_admission_app, tls_context
from controller.api.kinds import ALL_KINDS, GROUP, VERSION, KindInfo
from controller.handlers.transport import Transport
from controller.kube.api import KubeApi
from controller.kube.connection import connection_info
from controller.kube.decoding import install_into_kopf
from controller.kube.leader import LeaderElector, LostLeadership, PodLabel
from controller.kube.rest import KubeApiError, RestClient
from controller.listing import list_into, resync_every
from controller.logs import get_logger
from controller.runtime.calls import CallLimits
from controller.runtime.events import EventPoster
from controller.runtime.lifecycle import LifecycleRuntime
from controller.runtime.memory import trim_when_idle
from controller.runtime.transitions import Transitions
from controller.server.app import bound_port, build_app, serve
from controller.settings import Settings
from controller.ui import ChangeFeed, ui_routes
from controller.workflows.activator import TokenKeys
from controller.workflows.runtime import WorkflowRuntime

log = get_logger("blockflow.operator")

EventHandler = Callable[..., Coroutine[Any, Any, None]]


def _observer(info: KindInfo) -> EventHandler:
    async def observe(
        event: kopf.RawEvent, name: str | None, namespace: str | None, **_: Any
    ) -> None:
        body = event["object"]
        event_type = event.get("type") or "LISTED"
        fields = {
            "kind": info.kind,
            "namespace": namespace,
            "name": name,
            "watch_event": event_type,
            "generation": body.get("metadata", {}).get("generation"),
        }
        if event_type == "DELETED":
            log.info("object gone", **fields)
            return
        try:
            info.model.model_validate(body)
        except ValidationError as exc:
            log.warning("object does not match its model", errors=exc.error_count(), **fields)
            return
        log.info("object seen", **fields)

    observe.__name__ = f"observe_{info.singular}"
    return observe


def _configure(settings: kopf.OperatorSettings, config: Settings) -> None:
    settings.peering.standalone = config.standalone
    settings.posting.level = 30  # WARNING and above become Kubernetes Events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # kopf keeps a worker task per object until it has been idle this long; the runtime
    # queues its own work, so kopf's workers only hand events over: let them go quickly.
    settings.batching.idle_timeout = 1.0
    # Blockflow formats logs itself (structlog); keep kopf's own prefixes out.
    settings.process.ultimate_exiting_timeout = 10


def _feeder(
    runtime: LifecycleRuntime, workflows: WorkflowRuntime | None, kind: str
) -> EventHandler:
    async def feed(event: kopf.RawEvent, **_: Any) -> None:
        body, event_type = dict(event["object"]), event.get("type")
        if kind == "WorkflowRun":
            if workflows is not None:
                workflows.observe_run(body, event_type)
            return
        runtime.observe(body, event_type)
        if kind == "Workflow" and workflows is not None:
            workflows.observe_workflow(body, event_type)

    return feed


def _notifying(
    handler: EventHandler, kind: str, on_change: Callable[[str, dict[str, Any], str | None], None]
) -> EventHandler:
    """The handler, then ``on_change`` (the web page's live updates) with the same event."""

    async def notify(**kwargs: Any) -> None:
        try:
            await handler(**kwargs)
        finally:
            event = kwargs["event"]
            on_change(kind, event["object"], event.get("type"))

    return notify


LIFECYCLE_KINDS = ("App", "Block")
STANDBY_NOTICE = (
    "This replica is standing by: another one holds the leader lease and watches the objects, "
    "so run lists here are empty and pages do not update live. The chart's Service sends you "
    "to the leader; a port-forward to a Pod may reach this one."
)


def build_registry(
    config: Settings,
    runtime: LifecycleRuntime | None = None,
    stop_flag: asyncio.Event | threading.Event | None = None,
    workflows: WorkflowRuntime | None = None,
    on_cleanup: Callable[[], Coroutine[Any, Any, None]] | None = None,
    on_change: Callable[[str, dict[str, Any], str | None], None] | None = None,
) -> kopf.OperatorRegistry:
    """A registry with Blockflow's handlers, independent of kopf's global default registry."""
    registry = kopf.OperatorRegistry()
    fed = LIFECYCLE_KINDS if workflows is None else (*LIFECYCLE_KINDS, "Workflow", "WorkflowRun")
    for info in ALL_KINDS:
        handler = (
            _feeder(runtime, workflows, info.kind)
            if runtime is not None and info.kind in fed
            else _observer(info)
        )
        if on_change is not None:
            handler = _notifying(handler, info.kind, on_change)
        kopf.on.event(GROUP, VERSION, info.plural, registry=registry, id=f"watch-{info.singular}")(
            handler
        )

    @kopf.on.login(registry=registry, id="login")
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await connection_info()

    @kopf.on.startup(registry=registry, id="configure")
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        _configure(settings, config)
        log.info(
            "blockflow operator starting",
            namespaces=config.namespaces or "all",
            kinds=[i.kind for i in ALL_KINDS],
        )

    @kopf.on.cleanup(registry=registry, id="goodbye")
    async def goodbye(**_: Any) -> None:
        # Stop our tasks inside kopf's shutdown, or kopf waits for them as if they hung.
        if on_cleanup is not None:
            await on_cleanup()
        if stop_flag is not None:
            # kopf waits on our flag too; once its own signal handlers took over, nobody
            # else sets it, and kopf would wait out its hung-task timeout at every exit.
            stop_flag.set()
        log.info("blockflow operator stopped")

    return registry


async def run_operator(
    config: Settings,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    on_run_write: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run until stopped (SIGINT/SIGTERM or ``stop_flag``). ``on_run_write`` is called after
    every status write of a run (a seam for tests that inject faults)."""
    # The operator stops when this is set: by the caller, or on the loss of the lease.
    flag: asyncio.Event | threading.Event = stop_flag or asyncio.Event()
    install_into_kopf()  # no object nested too deep can stop a watch
    client = RestClient(connection_info, limit=max(config.workers, 8) + 8)
    async with aiohttp.ClientSession() as http_session:
        api = KubeApi(client)
        base_url = config.public_url or f"http://{config.http_host}:{config.http_port}"
        events = EventPoster(api)
        transitions = Transitions()
        runtime = LifecycleRuntime(
            api,
            calls=CallLimits(config.calls, config.calls_per_handler),
            workers=config.workers,
            http_transport_factory=http_transport_factory(http_session),
            public_url=base_url,
            events=events,
            transitions=transitions,
        )
        key = await token_key(api, config)
        workflows = WorkflowRuntime(
            api,
            cache=runtime.store,
            resolver=runtime.resolver,
            events=events,
            transitions=transitions,
            tokens=TokenKeys(key, base_url),
            http=http_session,
            kube=client,
            request_sync=runtime.request,
            app_endpoint=runtime.writer.app_http,
            events_namespace=config.events_namespace,
            workers=config.workers,
            on_run_write=on_run_write,
            api_reachable=client.reachable,
        )
        feed = ChangeFeed()  # the web page's live updates, fed by the watches below
        admission = await _serve_admission(config, runtime)
        server = await serve(
            build_app(
                workflows.backend,
                max_body_bytes=config.max_body_bytes,
                extra=ui_routes(
                    client,
                    key=key,
                    feed=feed,
                    workflows=workflows,
                    namespaces=config.namespaces,
                    public_url=config.public_url,
                ),
            ),
            config.http_host,
            config.http_port,
        )
        # The URL handed out (the public one), else where it listens (with the port it bound).
        url = config.public_url or f"http://{config.http_host}:{bound_port(server)}"
        log.info("http server listening", url=url, port=bound_port(server), page=f"{url}/ui/")
        keeper: asyncio.Task[None] | None = None
        elector: LeaderElector | None = None
        if config.leader_election:
            elector = LeaderElector(
                client,
                config.controller_namespace,
                config.lease_name,
                f"{socket.gethostname()}-{os.getpid()}",
                lease_seconds=config.lease_seconds,
            )
            pod = (
                PodLabel(client, config.controller_namespace, config.pod_name)
                if config.pod_name
                else None
            )
            workflows.not_ready_because = "standing by: another replica holds the lease"
            feed.notice = STANDBY_NOTICE
            if pod is not None:
                await pod.set(False)  # a restarted leader's Pod still has the mark
                workflows.standby_ready = True
            if not await _until_stopped(elector.acquire(), flag):
                await server.cleanup()
                if admission is not None:
                    await admission.cleanup()
                await client.close()
                return
            workflows.standby_ready = False
            workflows.not_ready_because = "listing workflows and runs"
            feed.notice = None
            if pod is not None:
                await pod.set(True)
        serving = asyncio.create_task(_serve(api, config, events, runtime, workflows))
        lost: list[LostLeadership] = []
        if elector is not None:

            def step_down(exc: LostLeadership) -> None:
                # Crash-only: no write may follow the loss of the lease, so every work queue
                # stops now; kopf stops next, and the process exits with 70 (its Pod
                # restarts as a standby).
                lost.append(exc)
                serving.cancel()
                flag.set()

            keeper = asyncio.create_task(_keep_leading(elector, step_down), name="leader-lease")

        async def cleanup() -> None:
            if keeper is not None:
                keeper.cancel()
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await serving
            await workflows.stop()
            await server.cleanup()
            if admission is not None:
                await admission.cleanup()

        try:
            await kopf.operator(
                registry=build_registry(
                    config, runtime, flag, workflows, cleanup, on_change=feed.notify
                ),
                clusterwide=not config.namespaces,
                namespaces=config.namespaces,
                standalone=config.standalone,
                stop_flag=flag,
                ready_flag=ready_flag,
            )
        finally:
            await cleanup()  # normally already done by the cleanup handler
            if keeper is not None and elector is not None and not lost:
                await elector.release()  # all work stopped: a standby may take over now
            await client.close()
        if lost:
            raise SystemExit(70)


async def _serve(
    api: KubeApi,
    config: Settings,
    events: EventPoster,
    runtime: LifecycleRuntime,
    workflows: WorkflowRuntime,
) -> None:
    """List every object once, then serve the work queues, Events, the memory trimmer and
    the periodic resync."""
    serving = [
        asyncio.create_task(runtime.run(), name="lifecycle"),
        asyncio.create_task(events.run(), name="events"),
    ]
    try:
        await list_into(api, config.namespaces, runtime, workflows)
        workflows.start()
        serving.append(
            asyncio.create_task(
                trim_when_idle(lambda: runtime.reconciles + workflows.processed()),
                name="memory-trim",
            )
        )
        serving.append(
            asyncio.create_task(
                resync_every(config.resync_seconds, api, config.namespaces, runtime, workflows),
                name="resync",
            )
        )
        await asyncio.gather(*serving)
    finally:
        for task in serving:
            task.cancel()
        for task in serving:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _serve_admission(config: Settings, runtime: LifecycleRuntime) -> web.AppRunner | None:
    """The HTTPS validating webhook, when configured (``admission_port``)."""
    if config.admission_port is None or config.admission_cert_dir is None:
        return None
    runner = await serve(
        build_admission_app(runtime.resolver.block_types),
        config.http_host,
        config.admission_port,
        ssl_context=tls_context(config.admission_cert_dir),
    )
    log.info("admission webhook listening", port=bound_port(runner), path="/validate")
    return runner


async def _until_stopped(
    work: Coroutine[Any, Any, None], stop_flag: asyncio.Event | threading.Event | None
) -> bool:
    """Run `work` unless the operator is stopped first (SIGTERM while standing by)."""
    task = asyncio.ensure_future(work)
    if not isinstance(stop_flag, asyncio.Event):
        await task
        return True
    stopped = asyncio.ensure_future(stop_flag.wait())
    done, _ = await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for pending in (task, stopped):
        if pending not in done:
            pending.cancel()
    return task in done


async def _keep_leading(
    elector: LeaderElector, step_down: Callable[[LostLeadership], None]
) -> None:
    """Renew the lease while leading; step down the moment it is lost."""
    try:
        await elector.keep()
    except LostLeadership as exc:
        log.error("lost the leader lease; stopping", error=str(exc))
        step_down(exc)


TOKEN_KEY_SECRET = "blockflow-token-key"


async def token_key(api: KubeApi, config: Settings) -> bytes:
    """The key every URL token is derived from: from the settings, or from the controller's
    Secret (created with 256 random bits on first start, so tokens survive restarts)."""
    if config.token_key is not None:
        return config.token_key.get_secret_value().encode()
    namespace = config.controller_namespace
    for _ in range(3):
        found = await api.read_secret(namespace, TOKEN_KEY_SECRET)
        if found is not None and found[0].get("key"):
            return found[0]["key"].encode()
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": TOKEN_KEY_SECRET,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "blockflow"},
            },
            "type": "Opaque",
            "data": {"key": base64.b64encode(secrets.token_urlsafe(32).encode()).decode()},
        }
        try:
            await api.client.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body=secret)
        except KubeApiError as exc:
            if exc.code != 409:
                raise
    raise RuntimeError(f"could not read or create Secret {namespace}/{TOKEN_KEY_SECRET}")


def http_transport_factory(
    session: aiohttp.ClientSession,
) -> Callable[[dict[str, Any], bytes | None], Transport]:
    """HTTP transports share one connection pool."""

    def make(http: dict[str, Any], key: bytes | None) -> Transport:
        from controller.handlers.http_transport import HttpTransport

        return HttpTransport(
            http["url"],
            timeout_seconds=float(http.get("timeoutSeconds", 10)),
            signing_key=key,
            session=session,
        )

    return make
