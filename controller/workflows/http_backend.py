"""The workflow engine's HTTP surface: what the controller's server routes to.

Webhooks and trigger blocks (``/triggers/<token>``), CloudEvents (``/events``), hook
payloads (``/hooks/<token>``), deferred steps' finish callbacks (``/callbacks/<token>``),
signed sync requests for an App's entities and requests to an App's own endpoint. Each
request is authenticated here (a token in the URL whose hash is indexed, a bearer
token, an HMAC signature) and handed to the room that acts on it.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from controller import metrics, safe_json
from controller.api.workflow import WorkflowSpec
from controller.handlers.protocol import (
    CallMetadata,
    EntityInput,
    HttpReply,
    HttpRequestData,
    NoOpReply,
    TriggerRequest,
)
from controller.handlers.transport import HandlerError
from controller.kube.api import KubeApi
from controller.kube.objects import Body, Key, spec_of, status_of
from controller.logs import get_logger
from controller.runtime.store import Cache
from controller.server.backend import IncomingRequest, Reply, problem
from controller.server.cloudevents import EventError
from controller.server.cloudevents import parse as parse_event
from controller.server.tokens import same, token_hash
from controller.workflows.activator import Apps, TokenKeys
from controller.workflows.deliveries import delivery_id
from controller.workflows.naming import event_key
from controller.workflows.run_index import Indexes
from controller.workflows.run_resume import RunResumer
from controller.workflows.steps import HookRejected, deliver_hook
from controller.workflows.triggers import InputRefused, Triggers, is_active

log = get_logger("blockflow.workflows")

EVENTS_SECRET = "blockflow-events"
_HIDDEN_HEADERS = ("authorization", "cookie", "proxy-authorization")
#: The App endpoint's handler authenticates its own callers, so it sees Authorization; never
#: the cookies of the controller's web page.
_APP_HIDDEN_HEADERS = ("cookie", "proxy-authorization")


class HttpBackend:
    """Implements the HTTP server's Backend for the workflow engine and the App endpoint."""

    def __init__(
        self,
        api: KubeApi,
        cache: Cache,
        index: Indexes,
        triggers: Triggers,
        resumer: RunResumer,
        apps: Apps,
        tokens: TokenKeys,
        *,
        request_sync: Callable[[Key], None],
        app_endpoint: Callable[[str, str, HttpRequestData], Awaitable[HttpReply]],
        readiness: Callable[[], Awaitable[tuple[bool, str]]],
        listed: Callable[[], bool] = lambda: True,
        now: Callable[[], Any],
        events_namespace: str = "default",
    ) -> None:
        self.api = api
        self.cache = cache
        self.index = index
        self.triggers = triggers
        self.resumer = resumer
        self.apps = apps
        self.tokens = tokens
        self.request_sync = request_sync
        self.app_endpoint = app_endpoint
        self._readiness = readiness
        self.listed = listed
        self.now = now
        self.events_namespace = events_namespace

    async def readiness(self) -> tuple[bool, str]:
        return await self._readiness()

    async def callback(self, token: str, request: IncomingRequest) -> Reply:
        status, body = await self.resumer.finish_callback(token, _request_data(request))
        return Reply(status, body)

    def _starting(self) -> Reply | None:
        """A 503 until every run has been listed once: before that, a re-delivered webhook
        or event would not be known as one, and would start a second run."""
        if self.listed():
            return None
        reply = problem(503, "the controller is starting (listing workflows and runs)")
        reply.headers["Retry-After"] = "2"
        return reply

    async def trigger(self, token: str, request: IncomingRequest) -> Reply:
        if (starting := self._starting()) is not None:
            return starting
        route = self.triggers.route(token)
        if route is None:
            return problem(404, "unknown trigger URL")
        workflow, version = route
        key = Key.of(workflow)
        if not is_active(workflow):
            metrics.EVENTS_RECEIVED.labels("ignored").inc()
            await self.triggers.count_ignored(key)
            phase = status_of(workflow).get("phase") or "Draft"
            return Reply(202, {"ignored": True, "reason": f"workflow {key.name} is {phase}"})
        activation = status_of(workflow).get("activation") or {}
        spec = WorkflowSpec.model_validate(spec_of(activation))
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
        delivery = delivery_id(event, webhook.delivery_id)
        uid = workflow["metadata"]["uid"]
        dedupe = None if delivery is None else event_key(f"webhook:{uid}", delivery)
        try:
            name = await self.triggers.start_run(workflow, event, trigger="webhook", dedupe=dedupe)
        except InputRefused as exc:
            return problem(400, str(exc))
        if name is None:
            metrics.EVENTS_RECEIVED.labels("duplicate").inc()
        if webhook.response is not None:
            return Reply(webhook.response.status, webhook.response.body, webhook.response.headers)
        if name is None:  # a re-delivery: its run was started before
            return Reply(200, {"duplicate": True, "delivery": delivery})
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
        if not same(given.strip(), expected):
            return problem(401, f"the {signature.header} signature does not match the body")
        return None

    async def _block_trigger(
        self, workflow: Body, request: IncomingRequest, version: int | None, activation: Body
    ) -> Reply:
        spec = WorkflowSpec.model_validate(spec_of(activation))
        assert spec.trigger is not None and spec.trigger.block is not None
        block = spec.trigger.block
        meta = workflow["metadata"]
        try:
            app = await self.apps.app_handle(meta["namespace"], block.app)
            reply = await app.call(
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
        if reply.data is not None and not isinstance(reply.data, dict):
            return problem(
                502,
                "the trigger block's handler replied data that is not a JSON object "
                "(a run's input is an object)",
            )
        try:
            name = await self.triggers.start_run(
                workflow,
                reply.data,
                dedupe=event_key(f"trigger:{meta['uid']}", reply.id),
                version=version,
                trigger="block",
            )
        except InputRefused as exc:
            return problem(400, f"the trigger block's event: {exc}")
        return Reply(202, {"run": name, "duplicate": name is None})

    async def hook(self, token: str, request: IncomingRequest) -> Reply:
        digest = token_hash(token)
        waiting = sorted(self.index.hooks.get(digest, set()))  # runs whose step has the hook
        if not waiting:
            return problem(404, "no step is waiting for this hook token")
        bearer = request.bearer()
        if bearer is None:
            return problem(
                401,
                "Authorization: Bearer <hookKey> is required (the workflow's hookKey signal)",
            )
        try:
            payload = safe_json.loads(request.body) if request.body else None
        except safe_json.JsonError as exc:
            return problem(400, f"the hook payload is not valid JSON: {exc}")
        allowed = [
            k
            for k in waiting
            if (uid := self.resumer.workflow_uid(k)) and same(bearer, self.tokens.hook_key(uid))
        ]
        if not allowed:
            return problem(401, "the bearer token is not the hookKey of the waiting workflow")
        now = self.now()
        resumed: dict[str, str] = {}
        for key in allowed:
            try:
                state = await self.resumer.resume_hook(
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
        if (starting := self._starting()) is not None:
            return starting
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
        if not expected or not same(bearer, expected.strip()):
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
        started = await self.triggers.publish(
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
        body = self.cache.get(key)
        if body is None:
            return problem(404, f"{entity_kind} {namespace}/{name} not found")
        app_name = name if entity_kind == "App" else str(spec_of(body).get("app"))
        app = self.cache.get(Key("App", namespace, app_name))
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
        if not same(given.strip(), expected):
            return problem(
                401,
                "X-Blockflow-Signature does not match the body (HMAC-SHA256 with the "
                "App's handler secret)",
            )
        self.request_sync(key)
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
            reply = await self.app_endpoint(namespace, app, data)
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
            body = safe_json.loads(request.body)
        except safe_json.JsonError as exc:
            raise ValueError(f"the request body is not valid JSON: {exc}") from None
    elif content_type == "application/x-www-form-urlencoded":
        body = dict(urllib.parse.parse_qsl(request.body.decode(errors="replace")))
    else:
        body = request.body.decode(errors="replace")
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in hidden}
    return {"method": request.method, "headers": headers, "query": request.query, "body": body}
