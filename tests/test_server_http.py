"""The controller's HTTP plumbing over a real socket: routing to the backend, body size and
rate limits, health, readiness, metrics, the OpenAPI document, and errors that leak nothing.

The backend is a test double that records what it got and answers canned replies: what a
callback, a trigger or an event does is tested with the engines, not here.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from controller.kube.rest import KubeApiError
from controller.logs import configure_logging
from controller.server.app import ROUTES, bound_port, build_app, serve
from controller.server.backend import IncomingRequest, Reply

TOKEN = "tok-9f8e7d6c5b4a-secret"  # what must never appear in logs or metrics


@dataclass
class Call:
    operation: str
    args: tuple[str | None, ...]
    request: IncomingRequest


@dataclass
class RecordingBackend:
    reply: Reply = field(default_factory=lambda: Reply(202, {"accepted": True}, {"X-Run": "r-1"}))
    ready: tuple[bool, str] = (False, "watches have not listed everything yet")
    error: Exception | None = None
    calls: list[Call] = field(default_factory=list)

    async def _answer(
        self, operation: str, args: tuple[str | None, ...], r: IncomingRequest
    ) -> Reply:
        self.calls.append(Call(operation, args, r))
        if self.error is not None:
            raise self.error
        return self.reply

    async def callback(self, token: str, request: IncomingRequest) -> Reply:
        return await self._answer("callback", (token,), request)

    async def trigger(self, token: str, request: IncomingRequest) -> Reply:
        return await self._answer("trigger", (token,), request)

    async def hook(self, token: str, request: IncomingRequest) -> Reply:
        return await self._answer("hook", (token,), request)

    async def events(self, namespace: str | None, request: IncomingRequest) -> Reply:
        return await self._answer("events", (namespace,), request)

    async def entity_sync(
        self, namespace: str, kind: str, name: str, request: IncomingRequest
    ) -> Reply:
        return await self._answer("entity_sync", (namespace, kind, name), request)

    async def app_http(
        self, namespace: str, app: str, path: str, request: IncomingRequest
    ) -> Reply:
        return await self._answer("app_http", (namespace, app, path), request)

    async def readiness(self) -> tuple[bool, str]:
        return self.ready


@dataclass
class Server:
    backend: RecordingBackend
    url: str
    http: aiohttp.ClientSession


@asynccontextmanager
async def running(backend: RecordingBackend, **limits: Any) -> AsyncIterator[Server]:
    runner = await serve(build_app(backend, **limits), "127.0.0.1", 0)
    try:
        port = bound_port(runner)
        assert port > 0
        async with aiohttp.ClientSession() as http:
            yield Server(backend, f"http://127.0.0.1:{port}", http)
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with running(RecordingBackend()) as srv:
        yield srv


# -- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "operation", "args"),
    [
        ("POST", f"/callbacks/{TOKEN}", "callback", (TOKEN,)),
        ("POST", f"/triggers/{TOKEN}", "trigger", (TOKEN,)),
        ("PUT", f"/triggers/{TOKEN}", "trigger", (TOKEN,)),
        ("POST", f"/hooks/{TOKEN}", "hook", (TOKEN,)),
        ("POST", "/events", "events", (None,)),
        ("POST", "/events/team-a", "events", ("team-a",)),
        ("POST", "/entities/ns/Block/assets/sync", "entity_sync", ("ns", "Block", "assets")),
        ("PATCH", "/apps/ns/gh/http/hooks/push/1", "app_http", ("ns", "gh", "hooks/push/1")),
        ("DELETE", "/apps/ns/gh/http/", "app_http", ("ns", "gh", "")),
    ],
)
async def test_each_route_reaches_the_backend_and_its_reply_is_the_answer(
    server: Server, method: str, path: str, operation: str, args: tuple[str | None, ...]
) -> None:
    body = json.dumps({"deal": {"name": "ACME"}}).encode()
    async with server.http.request(
        method,
        server.url + path + "?a=1&a=2&b=x",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": "Bearer k-1", "X-Tag": "t"},
    ) as resp:
        assert resp.status == 202
        assert resp.headers["X-Run"] == "r-1"
        assert resp.content_type == "application/json"
        assert await resp.json() == {"accepted": True}
    (call,) = server.backend.calls
    assert (call.operation, call.args) == (operation, args)
    got = call.request
    assert (got.method, got.path, got.body) == (method, path, body)
    assert got.query == {"a": "1", "b": "x"}
    assert got.headers["X-Tag"] == "t" and type(got.headers) is dict
    assert got.bearer() == "k-1"
    assert got.content_type == "application/json"
    assert got.remote == "127.0.0.1"


async def test_a_reply_without_a_body_is_an_empty_answer(server: Server) -> None:
    server.backend.reply = Reply(204)
    async with server.http.post(f"{server.url}/callbacks/{TOKEN}") as resp:
        assert resp.status == 204
        assert await resp.read() == b""
    assert server.backend.calls[0].request.body == b""


async def test_error_replies_keep_their_status_and_body(server: Server) -> None:
    server.backend.reply = Reply(410, {"error": "the step is already finished"})
    async with server.http.post(f"{server.url}/callbacks/{TOKEN}", json={}) as resp:
        assert resp.status == 410
        assert await resp.json() == {"error": "the step is already finished"}


async def test_unknown_routes_and_methods_are_json_4xx(server: Server) -> None:
    async with server.http.post(f"{server.url}/nope/{TOKEN}") as resp:
        assert resp.status == 404
        assert await resp.json() == {"error": "not found"}
    async with server.http.get(f"{server.url}/callbacks/{TOKEN}") as resp:
        assert resp.status == 405
        assert "POST" in resp.headers["Allow"]
        assert "error" in await resp.json()
    assert server.backend.calls == []


# -- body size limit -------------------------------------------------------------------------

LIMIT = 1024


async def test_a_declared_body_over_the_limit_is_413_and_never_reaches_the_backend() -> None:
    async with running(RecordingBackend(), max_body_bytes=LIMIT) as srv:
        async with srv.http.post(f"{srv.url}/callbacks/{TOKEN}", data=b"x" * (LIMIT + 1)) as resp:
            assert resp.status == 413
            assert await resp.json() == {
                "error": f"request body is larger than the limit of {LIMIT} bytes"
            }
        async with srv.http.post(f"{srv.url}/callbacks/{TOKEN}", data=b"x" * LIMIT) as resp:
            assert resp.status == 202
        assert [len(c.request.body) for c in srv.backend.calls] == [LIMIT]


async def _chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"y" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


async def test_a_chunked_body_over_the_limit_is_413_and_never_reaches_the_backend() -> None:
    async with running(RecordingBackend(), max_body_bytes=LIMIT) as srv:
        url = f"{srv.url}/events/team-a"
        async with srv.http.post(url, data=_chunks(LIMIT * 8)) as resp:
            assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert resp.status == 413
            assert await resp.json() == {
                "error": f"request body is larger than the limit of {LIMIT} bytes"
            }
        assert srv.backend.calls == []
        async with srv.http.post(url, data=_chunks(LIMIT)) as resp:
            assert resp.status == 202
        assert [c.request.body for c in srv.backend.calls] == [b"y" * LIMIT]


async def test_expect_100_continue_with_a_body_over_the_limit_is_refused_up_front() -> None:
    async with running(RecordingBackend(), max_body_bytes=LIMIT) as srv:
        async with srv.http.post(
            f"{srv.url}/hooks/{TOKEN}", data=b"z" * (LIMIT * 4), expect100=True
        ) as resp:
            assert resp.status == 413
        async with srv.http.post(f"{srv.url}/hooks/{TOKEN}", data=b"z", expect100=True) as resp:
            assert resp.status == 202
        assert [c.request.body for c in srv.backend.calls] == [b"z"]


# -- rate limit ------------------------------------------------------------------------------


async def test_after_the_burst_a_token_gets_429_with_retry_after_others_are_unaffected() -> None:
    async with running(RecordingBackend(), rate_per_second=0.5, burst=3) as srv:
        url = f"{srv.url}/triggers/{TOKEN}"
        for _ in range(3):
            async with srv.http.post(url) as resp:
                assert resp.status == 202
        async with srv.http.post(url, data=b"{}") as resp:
            assert resp.status == 429
            retry_after = resp.headers["Retry-After"]
            assert retry_after.isdigit() and int(retry_after) >= 1
            assert int(retry_after) == 2  # one token per 2 s
            error = (await resp.json())["error"]
            assert "0.5 requests per second" in error and "bursts of 3" in error
        assert len(srv.backend.calls) == 3
        # the same token on another route, another token, another namespace: own buckets
        for path in (f"/callbacks/{TOKEN}", "/triggers/other-token", "/events/team-b"):
            async with srv.http.post(srv.url + path) as resp:
                assert resp.status == 202, path
        # unlimited routes stay reachable
        async with srv.http.get(f"{srv.url}/healthz") as resp:
            assert resp.status == 200


async def test_app_endpoints_are_limited_per_app_and_a_text_reply_is_text() -> None:
    async with running(RecordingBackend(), rate_per_second=0.5, burst=1) as srv:
        statuses = []
        for path in ("/apps/ns/gh/http/a", "/apps/ns/gh/http/b", "/apps/ns/slack/http/a"):
            async with srv.http.get(srv.url + path) as resp:
                statuses.append(resp.status)
        assert statuses == [202, 429, 202]
        srv.backend.reply = Reply(200, b"<p>Authorized</p>", {"Content-Type": "text/html"})
        async with srv.http.get(srv.url + "/apps/ns/other/http/done") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert await resp.text() == "<p>Authorized</p>"


async def test_events_are_limited_per_namespace() -> None:
    async with running(RecordingBackend(), rate_per_second=0.5, burst=1) as srv:
        statuses = []
        for path in ("/events/team-a", "/events/team-a", "/events/team-b", "/events", "/events"):
            async with srv.http.post(srv.url + path) as resp:
                statuses.append(resp.status)
        assert statuses == [202, 429, 202, 202, 429]


# -- operations endpoints --------------------------------------------------------------------


async def test_healthz(server: Server) -> None:
    async with server.http.get(f"{server.url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


async def test_readyz_follows_the_backend(server: Server) -> None:
    async with server.http.get(f"{server.url}/readyz") as resp:
        assert resp.status == 503
        body = await resp.json()
        assert body["reason"] == "watches have not listed everything yet"
    server.backend.ready = (True, "")
    async with server.http.get(f"{server.url}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ready"


async def test_metrics_count_requests_by_route_template_never_by_token(server: Server) -> None:
    async with server.http.post(f"{server.url}/callbacks/{TOKEN}", data=b"{}") as resp:
        assert resp.status == 202
    async with server.http.post(f"{server.url}/nope/{TOKEN}") as resp:
        assert resp.status == 404
    async with server.http.get(f"{server.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = {
        (sample.labels["route"], sample.labels["code"]): sample.value
        for sample in families["blockflow_http_requests"].samples
        if sample.name == "blockflow_http_requests_total"
    }
    assert requests[("/callbacks/{token}", "202")] >= 1
    assert requests[("unmatched", "404")] >= 1
    assert "blockflow_http_requests_total{" in text
    assert {
        "blockflow_reconciles",
        "blockflow_handler_call_seconds",
        "blockflow_runs",
        "blockflow_step_seconds",
        "blockflow_runs_started",
        "blockflow_events_received",
    } <= set(families)
    assert TOKEN not in text


async def test_openapi_describes_every_route(server: Server) -> None:
    async with server.http.get(f"{server.url}/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    served = {
        (route.method, route.resource.canonical)
        for route in build_app(RecordingBackend()).router.routes()
        if route.resource is not None
    }
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == served == {(r.method, r.path) for r in ROUTES}
    assert {
        ("POST", "/callbacks/{token}"),
        ("POST", "/triggers/{token}"),
        ("PUT", "/triggers/{token}"),
        ("POST", "/hooks/{token}"),
        ("POST", "/events"),
        ("POST", "/events/{namespace}"),
        ("POST", "/entities/{namespace}/{kind}/{name}/sync"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        *(
            (method, "/apps/{namespace}/{app}/http/{path}")
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        ),
    } == documented
    operation_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(set(operation_ids)) == len(operation_ids)
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["summary"] and op["responses"]
            names = [p["name"] for p in op.get("parameters", [])]
            assert names == [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
    callback = doc["paths"]["/callbacks/{token}"]["post"]
    assert {"200", "202", "404", "410", "413", "429"} <= set(callback["responses"])
    assert "requestBody" in callback and callback["requestBody"]["description"]
    assert "Retry-After" in callback["responses"]["429"]["headers"]
    assert "401" in doc["paths"]["/hooks/{token}"]["post"]["responses"]
    assert doc["paths"]["/hooks/{token}"]["post"]["security"] == [{"bearer": []}]
    assert "401" in doc["paths"]["/events"]["post"]["responses"]
    assert set(doc["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
    refs = json.dumps(doc).count('"$ref": "#/components/schemas/Error"')
    assert refs > 0 and "Error" in doc["components"]["schemas"]


# -- failures --------------------------------------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    configure_logging("json", "INFO", stream=out)
    yield out
    root.handlers[:], level = saved
    root.setLevel(level)


async def test_a_backend_exception_is_a_500_and_the_log_names_the_route_not_the_token(
    server: Server, log_output: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_body = b'{"password": "hunter2-body-secret"}'
    server.backend.error = RuntimeError(f"cannot resume {TOKEN} with {secret_body!r}")
    async with server.http.post(f"{server.url}/hooks/{TOKEN}", data=secret_body) as resp:
        assert resp.status == 500
        assert await resp.json() == {"error": "internal error"}
    logged = log_output.getvalue()
    records = [json.loads(line) for line in logged.splitlines() if line.strip()]
    failures = [r for r in records if r.get("event") == "request failed"]
    assert len(failures) == 1
    assert failures[0]["route"] == "/hooks/{token}"
    assert failures[0]["error"] == "RuntimeError"
    assert failures[0]["logger"] == "blockflow.server"
    captured = capsys.readouterr()
    for text in (logged, captured.out, captured.err):
        assert TOKEN not in text
        assert "hunter2-body-secret" not in text


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey("k8s", 6443, True, True, None, None, None),
            ConnectionRefusedError(111, "Connection refused"),
        ),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        KubeApiError(500, "InternalError", "etcdserver: request timed out"),
        KubeApiError(503, "ServiceUnavailable", "the server is currently unable to handle it"),
        TimeoutError(),
    ],
    ids=["refused", "reset", "api-500", "api-503", "timeout"],
)
async def test_an_unreachable_api_server_is_a_503_with_retry_after(
    server: Server, error: Exception
) -> None:
    """Nothing happened and the same request will do later: 503, not 500 (which tells a
    webhook sender the request itself was at fault)."""
    server.backend.error = error
    async with server.http.post(f"{server.url}/triggers/{TOKEN}", json={}) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert "cannot be reached" in (await resp.json())["error"]


async def test_a_reply_that_is_not_json_is_a_500(server: Server) -> None:
    server.backend.reply = Reply(200, {"when": object()})
    async with server.http.post(f"{server.url}/triggers/{TOKEN}") as resp:
        assert resp.status == 500
        assert await resp.json() == {"error": "internal error"}


async def test_a_failing_readiness_check_is_not_ready(server: Server) -> None:
    async def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    server.backend.readiness = broken  # type: ignore[method-assign]
    async with server.http.get(f"{server.url}/readyz") as resp:
        assert resp.status == 503


def test_build_app_has_a_typed_application() -> None:
    assert isinstance(build_app(RecordingBackend()), web.Application)
