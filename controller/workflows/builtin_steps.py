"""Built-in steps (`uses: {type: …}` without an app): http, sleep, hook, approval, emit,
kubernetes.job.

Each built-in answers like a step block — an outcome, an exit, an error — or with a
:class:`Wait`: "come back at this time" (a sleep, a Job being polled) or "wait for a
POST to /hooks/<token>" (a hook, an approval). A wait is written to the run's status;
nothing waits in memory.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from controller.api.workflow import Step
from controller.api.workflowrun import StepRecord
from controller.handlers.protocol import ErrorReply, ExitReply, OutcomeReply
from controller.kube.rest import KubeApiError, Requester
from controller.server.tokens import token_hash
from controller.workflows.templating import TemplateError, evaluate

#: Hook payloads kept per step (a hook waiting for several events).
MAX_RECEIVED = 50
HTTP_RESPONSE_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Wait:
    """Come back at `at` (resume the same attempt), or wait for a hook (`at` None)."""

    at: datetime | None
    hook_token_hash: str | None = None


BuiltinReply = OutcomeReply | ExitReply | ErrorReply | Wait


@dataclass(frozen=True)
class StepCall:
    """One call of a built-in step."""

    namespace: str
    run_name: str
    run_uid: str
    step: Step
    record: StepRecord
    with_: dict[str, Any]
    now: datetime

    @property
    def execution_id(self) -> str:
        return self.record.unique_execution_id or ""


#: (namespace, type, source, id, data) → runs started.
Publish = Callable[[str, str, str, str, Any], Awaitable[int]]


class HookRejected(ValueError):
    """A hook payload the step does not accept (answered 400, nothing changes)."""


def _bad(call: StepCall, field: str, fix: str) -> ErrorReply:
    return ErrorReply(message=f"step {call.step.name}: with.{field}: {fix}", retryable=False)


class Builtins:
    def __init__(self, kube: Requester, http: aiohttp.ClientSession, publish: Publish) -> None:
        self.kube = kube
        self.http = http
        self.publish = publish

    async def execute(self, call: StepCall) -> BuiltinReply:
        kind = call.step.uses.type
        run: Callable[[StepCall], Awaitable[BuiltinReply]] = {
            "http": self._http,
            "sleep": self._sleep,
            "hook": self._hook,
            "approval": self._approval,
            "emit": self._emit,
            "kubernetes.job": self._job,
        }[kind]
        return await run(call)

    # -- sleep ---------------------------------------------------------------------------

    async def _sleep(self, call: StepCall) -> BuiltinReply:
        started = call.record.started_at or call.now
        if "seconds" in call.with_:
            seconds = call.with_["seconds"]
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
                return _bad(call, "seconds", "must be a number of seconds ≥ 0")
            until = started + timedelta(seconds=float(seconds))
        elif "until" in call.with_:
            try:
                until = datetime.fromisoformat(str(call.with_["until"]))
            except ValueError:
                return _bad(call, "until", "must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z")
            if until.tzinfo is None:
                return _bad(call, "until", "needs a time zone offset, e.g. Z or +01:00")
        else:
            return _bad(call, "seconds", "set seconds or until")
        if call.now >= until:
            return OutcomeReply(id="done", data={"sleptUntil": until.isoformat()})
        return Wait(at=until)

    # -- hook and approval ---------------------------------------------------------------

    async def _hook(self, call: StepCall) -> BuiltinReply:
        token = call.with_.get("token")
        if not isinstance(token, str) or not token:
            return _bad(call, "token", 'set a token, e.g. ${{ "approval:" + event.data.id }}')
        return Wait(at=None, hook_token_hash=token_hash(token))

    async def _approval(self, call: StepCall) -> BuiltinReply:
        token = call.with_.get("token") or approval_token(
            call.namespace, call.run_name, call.step.name
        )
        return Wait(at=None, hook_token_hash=token_hash(str(token)))

    # -- emit ----------------------------------------------------------------------------

    async def _emit(self, call: StepCall) -> BuiltinReply:
        event_type = call.with_.get("type")
        if not isinstance(event_type, str) or not event_type:
            return _bad(call, "type", "set the event type, e.g. Customer.onboarded")
        source = str(
            call.with_.get("source")
            or f"blockflow.dev/namespaces/{call.namespace}/workflowruns/{call.run_name}"
        )
        # The execution id is the event id: a re-issued emit is deduplicated downstream.
        started = await self.publish(
            call.namespace, event_type, source, call.execution_id, call.with_.get("data")
        )
        return OutcomeReply(
            id="emitted", data={"type": event_type, "id": call.execution_id, "runs": started}
        )

    # -- http ----------------------------------------------------------------------------

    async def _http(self, call: StepCall) -> BuiltinReply:
        url = call.with_.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _bad(call, "url", "set an http:// or https:// URL")
        method = str(call.with_.get("method", "GET")).upper()
        headers = {str(k): str(v) for k, v in (call.with_.get("headers") or {}).items()}
        headers.setdefault("Idempotency-Key", call.execution_id)
        timeout = float(call.with_.get("timeoutSeconds", 30))
        body = call.with_.get("body")
        data: bytes | None = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            headers.setdefault(
                "Content-Type", "text/plain" if isinstance(body, str) else "application/json"
            )
        try:
            async with self.http.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                raw = await response.content.read(HTTP_RESPONSE_LIMIT + 1)
                status = response.status
                content_type = response.headers.get("Content-Type", "")
        except TimeoutError:
            return ErrorReply(
                message=f"step {call.step.name}: {method} {_safe(url)} timed out after {timeout}s",
                retryable=True,
            )
        except aiohttp.ClientError as exc:
            failure = type(exc).__name__
            return ErrorReply(
                message=f"step {call.step.name}: {method} {_safe(url)} failed: {failure}",
                retryable=True,
            )
        if len(raw) > HTTP_RESPONSE_LIMIT:
            return ErrorReply(
                message=f"step {call.step.name}: response over {HTTP_RESPONSE_LIMIT} bytes",
                retryable=False,
            )
        payload: Any = raw.decode(errors="replace")
        if "json" in content_type:
            with contextlib.suppress(json.JSONDecodeError):
                payload = json.loads(raw) if raw else None
        if status >= 500 or status == 429:
            retryable = bool(call.with_.get("retryOnServerError", True))
            return ErrorReply(
                message=f"step {call.step.name}: {method} {_safe(url)} answered {status}",
                retryable=retryable,
            )
        if status >= 400:
            return ErrorReply(
                message=f"step {call.step.name}: {method} {_safe(url)} answered {status}",
                retryable=False,
            )
        return OutcomeReply(id="success", data={"status": status, "body": payload})

    # -- kubernetes.job ------------------------------------------------------------------

    async def _job(self, call: StepCall) -> BuiltinReply:
        template = call.with_.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
            return _bad(call, "template", "set a Job template: {metadata?, spec: {template: …}}")
        poll = float(call.with_.get("pollSeconds", 5))
        name = job_name(call.run_name, call.step.name, call.execution_id)
        path = f"/apis/batch/v1/namespaces/{call.namespace}/jobs"
        meta = dict(template.get("metadata") or {})
        labels = {
            **(meta.get("labels") or {}),
            "app.kubernetes.io/managed-by": "blockflow",
            "blockflow.dev/execution-id": call.execution_id,
        }
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                **meta,
                "name": name,
                "namespace": call.namespace,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "blockflow.dev/v1alpha1",
                        "kind": "WorkflowRun",
                        "name": call.run_name,
                        "uid": call.run_uid,
                    }
                ],
            },
            "spec": template["spec"],
        }
        try:
            found = await self.kube.request("GET", f"{path}/{name}")
        except KubeApiError as exc:
            if exc.code != 404:
                return ErrorReply(message=f"reading Job {name}: {exc.message}", retryable=True)
            try:
                found = await self.kube.request("POST", path, body=job)
            except KubeApiError as create_error:
                retryable = create_error.code >= 500 or create_error.code == 409
                return ErrorReply(
                    message=f"step {call.step.name}: creating Job {name}: {create_error.message}",
                    retryable=retryable,
                )
        status = found.get("status") or {}
        for condition in status.get("conditions") or []:
            if condition.get("status") != "True":
                continue
            if condition.get("type") == "Complete":
                return OutcomeReply(
                    id="succeeded", data={"job": name, "succeeded": status.get("succeeded", 0)}
                )
            if condition.get("type") == "Failed":
                reason = condition.get("message") or condition.get("reason") or "failed"
                return ErrorReply(
                    message=f"step {call.step.name}: Job {name} failed: {reason}", retryable=False
                )
        return Wait(at=call.now + timedelta(seconds=max(0.2, poll)))


def approval_token(namespace: str, run: str, step: str) -> str:
    """The default hook token of an approval step (resumed with the workflow's hookKey)."""
    return f"approval:{namespace}:{run}:{step}"


def job_name(run: str, step: str, execution_id: str) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", f"{run[:40]}-{step[:12]}".lower()).strip("-")
    return f"{base}-{execution_id[:8]}"


def _safe(url: str) -> str:
    """A URL for messages: no query string or credentials (they may hold secrets)."""
    head = url.split("?", 1)[0]
    if "@" in head.split("//", 1)[-1].split("/", 1)[0]:
        scheme, rest = head.split("//", 1)
        head = scheme + "//" + rest.split("@", 1)[1]
    return head


# -- hook delivery (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class HookDelivery:
    """What a hook POST does to a waiting step: its new received list, and the reply
    (an outcome when the step is done, None while it keeps waiting)."""

    received: list[Any]
    reply: OutcomeReply | None


def deliver_hook(
    step: Step, record: StepRecord, payload: Any, now: datetime, who: str | None = None
) -> HookDelivery:
    """A payload for a waiting hook or approval step. Raises HookRejected (→ 400)."""
    if step.uses.type == "approval":
        return _approval_decision(payload, now, who)
    schema = step.with_.get("schema")
    if isinstance(schema, dict):
        import jsonschema  # on first use: see controller/lifecycle/validation.py

        try:
            jsonschema.validate(payload, schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise HookRejected(
                f"payload does not match the schema of step {step.name} at {where}: "
                f"{exc.validator} {exc.validator_value!r} failed"
            ) from None
    received = [*record.received, payload][-MAX_RECEIVED:]
    until = step.with_.get("until")
    if isinstance(until, str) and until.strip():
        try:
            done = evaluate(
                until, {"events": received, "event": payload}, f"step {step.name}: with.until"
            )
        except TemplateError as exc:
            raise HookRejected(str(exc)) from None
        if done is not True:
            return HookDelivery(received=received, reply=None)
    return HookDelivery(
        received=received,
        reply=OutcomeReply(id="received", data={"payload": payload, "events": received}),
    )


def _approval_decision(payload: Any, now: datetime, who: str | None) -> HookDelivery:
    if not isinstance(payload, dict) or payload.get("decision") not in ("approve", "reject"):
        raise HookRejected('an approval needs {"decision": "approve" | "reject", "by"?: name}')
    by = who or payload.get("by")
    data = {
        "decision": payload["decision"],
        "by": str(by) if by is not None else None,
        "comment": payload.get("comment"),
        "at": now.isoformat(),
    }
    outcome = "approved" if payload["decision"] == "approve" else "rejected"
    return HookDelivery(received=[], reply=OutcomeReply(id=outcome, data=data))


__all__ = [
    "BuiltinReply",
    "Builtins",
    "HookDelivery",
    "HookRejected",
    "StepCall",
    "Wait",
    "approval_token",
    "deliver_hook",
    "job_name",
]
