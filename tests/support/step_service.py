"""A real HTTP service on 127.0.0.1 for workflow tests: an App handler offering step and
trigger blocks, and a plain endpoint with side effects for the built-in `http` step.

It runs on its own event loop in a thread (tests stay synchronous) and records what it
received, so tests can assert on calls, idempotency keys and effects.

Handler block types:

- step ``charge`` — `execute` answers from ``with.mode``: ``outcome`` (default; id
  ``ok``), ``defer``, ``exit``, ``error`` (not retryable) or ``flaky`` (retryable
  error for the first ``with.failures`` attempts of an execution, then ``ok``);
  `finish` answers from the callback body: ``{"noop": true}`` → no-op, else the
  outcome ``{"id": body.outcome}`` with the body as data.
- trigger ``ticket`` — `activate` / `deactivate` are recorded and answer complete
  (or an error while ``controls.activate_error`` is set); `trigger` starts a run
  with the request body unless it says ``{"ignore": true}``.

Plain endpoints: ``POST /effects`` applies an effect once per ``Idempotency-Key`` (a
repeated key returns the first result, as a real idempotent API does) and counts every
request; ``/slow-effects`` applies it at once but answers ``controls.effect_delay`` seconds later.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from controller.handlers.protocol import PROTOCOL_VERSION
from tests.support.threaded_server import ThreadedServer

INFO = {
    "version": "1.0.0",
    "protocolVersion": PROTOCOL_VERSION,
    "blockTypes": {
        "charge": {"kind": "step", "description": "A payment that may defer."},
        "ticket": {"kind": "trigger", "description": "A ticket system's events."},
    },
}


@dataclass
class Controls:
    activate_error: str | None = None
    effect_delay: float = 0.0
    deactivate_delay: float = 0.0
    #: While set, /effects answers with this status and applies nothing (a service down).
    effects_down: int | None = None
    #: Seconds `execute` takes to answer (a slow step block).
    execute_delay: float = 0.0


@dataclass
class StepService:
    port: int = 0
    controls: Controls = field(default_factory=Controls)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    effects: dict[str, int] = field(default_factory=dict)  # key → effect number
    bodies: dict[str, Any] = field(default_factory=dict)  # key → the request's body
    effect_requests: Counter[str] = field(default_factory=Counter)
    arrivals: Counter[str] = field(default_factory=Counter)  # slow requests, on arrival
    _attempts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadedServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app_manifest(self, name: str = "svc") -> dict[str, Any]:
        return {
            "apiVersion": "blockflow.dev/v1alpha1",
            "kind": "App",
            "metadata": {"name": name},
            "spec": {"handler": {"http": {"url": self.url, "timeoutSeconds": 10}}},
        }

    def start(self) -> StepService:
        self._server = ThreadedServer(self._make_app, port=self.port, shutdown_timeout=1).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def received(self, operation: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for op, body in self.calls if op == operation]

    def wait_for(self, operation: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.received(operation)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} {operation} call(s) within {timeout}s")
            time.sleep(0.05)

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._info)
        app.router.add_post("/effects", self._effect)
        app.router.add_post("/slow-effects", self._slow_effect)
        app.router.add_post("/{operation}", self._operation)
        return app

    async def _info(self, _: web.Request) -> web.Response:
        return web.json_response(INFO)

    async def _effect(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        body = await request.json() if request.can_read_body else None
        if self.controls.effects_down is not None:
            return web.json_response({"error": "down"}, status=self.controls.effects_down)
        with self._lock:
            self.bodies[key] = body
            self.effect_requests[key] += 1
            if key not in self.effects:
                self.effects[key] = len(self.effects) + 1
            number = self.effects[key]
        return web.json_response({"effect": number, "key": key, "echo": body}, status=201)

    async def _slow_effect(self, request: web.Request) -> web.Response:
        """The worst case for a caller: the effect is applied at once, the answer comes late
        (a caller that dies meanwhile never learns that it happened)."""
        with self._lock:
            self.arrivals[request.headers.get("Idempotency-Key", "")] += 1
        response = await self._effect(request)
        await asyncio.sleep(self.controls.effect_delay)
        return response

    async def _operation(self, request: web.Request) -> web.Response:
        operation = request.match_info["operation"]
        body = await request.json()
        with self._lock:
            self.calls.append((operation, body))
        if operation == "deactivate":
            await asyncio.sleep(self.controls.deactivate_delay)
        if operation == "execute":
            await asyncio.sleep(self.controls.execute_delay)
        return web.json_response(self._reply(operation, body))

    def _reply(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        if operation in ("activate", "deactivate"):
            if operation == "activate" and self.controls.activate_error:
                return {"type": "error", "message": self.controls.activate_error}
            return {"type": "complete"}
        if operation == "trigger":
            payload = body["request"].get("body") or {}
            if payload.get("ignore"):
                return {"type": "no-op"}
            return {"type": "outcome", "id": str(payload.get("id", "t")), "data": payload}
        if operation == "finish":
            payload = body["request"].get("body") or {}
            if payload.get("noop"):
                return {"type": "no-op"}
            return {"type": "outcome", "id": str(payload.get("outcome", "done")), "data": payload}
        config = body.get("with") or {}
        mode = config.get("mode", "outcome")
        if mode == "flaky":
            key = body["metadata"]["uniqueExecutionId"]
            with self._lock:
                self._attempts[key] += 1
                attempt = self._attempts[key]
            if attempt <= int(config.get("failures", 1)):
                return {"type": "error", "message": f"flaky {attempt}", "retryable": True}
            return {"type": "outcome", "id": "ok", "data": {"attempt": attempt}}
        if mode == "error":
            return {"type": "error", "message": config.get("message", "card declined")}
        if mode in ("defer", "exit"):
            return {"type": mode}
        return {"type": "outcome", "id": "ok", "data": {"echo": config}}


def as_json(value: Any) -> str:
    return json.dumps(value)
