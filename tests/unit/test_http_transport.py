"""The HTTP transport, against the example handler service running for real on loopback.

Every test starts ``examples/http-handler/server.py``'s app on 127.0.0.1 with a
free port and talks to it through :class:`HttpTransport`, so signatures, headers,
timeouts and error mapping are exercised over real sockets, not mocks.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from controller.handlers.http_transport import (
    MAX_REPLY_BYTES,
    MAX_RETRY_AFTER,
    HttpTransport,
    parse_retry_after,
    sign,
    verify,
)
from controller.handlers.protocol import (
    DrainReply,
    DrainRequest,
    EntityInput,
    HandlerRequest,
    SyncReply,
    SyncRequest,
)
from controller.handlers.transport import HandlerError

SERVER_PATH = Path(__file__).resolve().parents[2] / "examples" / "http-handler" / "server.py"
KEY = b"test-hmac-key-0123456789abcdef"
SECRET = "s3cr3t-db-password-do-not-leak"
#: A secret with characters JSON escapes, so it appears escaped (once or twice) in replies.
TRICKY_SECRET = 'tok "quoted" \\ back\\slash é'
UID = "0f9c2a7e-1111-2222-3333-444455556666"


def _load_server() -> ModuleType:
    """Import the example by path (its directory name is not a package name)."""
    spec = importlib.util.spec_from_file_location("blockflow_example_http_handler", SERVER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


server = _load_server()

Serve = Callable[..., Awaitable[str]]
Connect = Callable[..., HttpTransport]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start the example service (``serve(key=..., faults=...)``) and return its base URL."""
    runners: list[web.AppRunner] = []

    async def start(*, key: bytes | None = KEY, faults: Any = None) -> str:
        # handler_cancellation: a delayed handler stops when the client gives up, so
        # teardown does not wait for the delay to run out.
        runner = web.AppRunner(
            server.make_app(key, faults=faults), shutdown_timeout=1, handler_cancellation=True
        )
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Make transports (``connect(url, key=..., timeout=...)``), closed after the test."""
    transports: list[HttpTransport] = []

    def make(url: str, *, key: bytes | None = KEY, timeout: float = 5.0) -> HttpTransport:
        transport = HttpTransport(url, timeout_seconds=timeout, signing_key=key)
        transports.append(transport)
        return transport

    yield make
    for transport in transports:
        await transport.close()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def bucket_request(
    operation: str = "sync", *, state: dict[str, Any] | None = None
) -> HandlerRequest:
    """A request about the Block `assets` (type bucket), whose config holds a secret."""
    entity = EntityInput(
        kind="Block",
        name="assets",
        namespace="team-a",
        uid=UID,
        generation=1,
        type="bucket",
        config={"name": "assets", "password": SECRET, "token": TRICKY_SECRET},
    )
    app = EntityInput(kind="App", name="storage", namespace="team-a", uid="app-uid", generation=1)
    model = SyncRequest if operation == "sync" else DrainRequest
    return model(entity=entity, app=app, state=state or {})


def app_request() -> SyncRequest:
    entity = EntityInput(kind="App", name="storage", namespace="team-a", uid="u", generation=2)
    return SyncRequest(entity=entity)


async def call_error(transport: HttpTransport, request: HandlerRequest) -> HandlerError:
    with pytest.raises(HandlerError) as caught:
        await transport.call(request)
    return caught.value


# -- signatures ------------------------------------------------------------------------------


def test_sign_is_the_hex_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"operation":"sync"}'
    expected = hmac.new(KEY, body, hashlib.sha256).hexdigest()
    assert sign(body, KEY) == f"sha256={expected}"
    assert sign(body + b" ", KEY) != sign(body, KEY)


@pytest.mark.parametrize(
    "header",
    [None, "", "sha256=", "deadbeef", "sha256=é", "sha1=0000"],
)
def test_verify_refuses_missing_or_malformed_signatures(header: str | None) -> None:
    assert not verify(b"{}", KEY, header)


def test_verify_accepts_only_the_same_body_and_key() -> None:
    body = b'{"a":1}'
    assert verify(body, KEY, sign(body, KEY))
    assert verify(body, KEY, f" {sign(body, KEY)}\t")
    assert not verify(body, b"another-key", sign(body, KEY))
    assert not verify(b'{"a":2}', KEY, sign(body, KEY))


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120.0
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    delay = parse_retry_after(in_a_minute)
    assert delay is not None and 55 <= delay <= 61
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    # A thousand days, or a year ahead, is a mistake: honoured for a day at most.
    assert parse_retry_after("86400000") == MAX_RETRY_AFTER == 86_400.0
    assert parse_retry_after("9" * 5000) == MAX_RETRY_AFTER
    next_year = format_datetime(datetime.now(UTC) + timedelta(days=365), usegmt=True)
    assert parse_retry_after(next_year) == MAX_RETRY_AFTER
    for unusable in (None, "", "soon", "-5", "1.5e3"):
        assert parse_retry_after(unusable) is None


def test_constructor_refuses_an_empty_key_and_repr_hides_the_key() -> None:
    with pytest.raises(ValueError, match="empty"):
        HttpTransport("http://h", signing_key=b"")
    transport = HttpTransport("http://user:pw@h:1/x?token=t", signing_key=KEY)
    assert KEY.decode() not in repr(transport)
    assert "pw" not in repr(transport) and "token" not in repr(transport)


# -- the protocol over HTTP ------------------------------------------------------------------


async def test_bucket_sync_is_in_progress_then_ready_with_its_signal(
    serve: Serve, connect: Connect
) -> None:
    """Signed, camelCase, with the protocol header (the server checks all three), and the
    handler's progress travels in `state` from one reply to the next request."""
    transport = connect(await serve())
    first = await transport.call(bucket_request())
    assert isinstance(first, SyncReply)
    assert first.new_status == "in_progress"
    assert first.next_schedule_delay == 1
    assert first.custom_status_description == "Creating bucket…"
    assert first.state

    second = await transport.call(bucket_request(state=first.state))
    assert isinstance(second, SyncReply)
    assert second.new_status == "ready"
    assert second.signal_updates == {"bucketId": f"bkt-{UID[:8]}"}


async def test_bucket_drain_is_drained(serve: Serve, connect: Connect) -> None:
    reply = await connect(await serve()).call(bucket_request("drain"))
    assert isinstance(reply, DrainReply) and reply.new_status == "drained"


async def test_app_sync_is_ready_and_a_trailing_slash_is_harmless(
    serve: Serve, connect: Connect
) -> None:
    transport = connect(await serve() + "/")
    reply = await transport.call(app_request())
    assert isinstance(reply, SyncReply) and reply.new_status == "ready"


async def test_info_declares_the_block_types_and_their_signals(
    serve: Serve, connect: Connect
) -> None:
    info = await connect(await serve()).info()
    assert info.version == "1.0.0"
    assert list(info.block_types) == ["bucket", "kms-key", "export"]
    assert [t.kind for t in info.block_types.values()] == ["lifecycle", "lifecycle", "step"]
    assert [s.name for s in info.block_types["bucket"].signals] == ["bucketId"]
    assert [s.name for s in info.block_types["kms-key"].signals] == ["keyId"]


async def test_kms_key_sync_is_ready_at_once_and_drain_is_drained(
    serve: Serve, connect: Connect
) -> None:
    """The type `storage.yaml` uses for the bucket's `kmsKey` signalRef."""
    transport = connect(await serve())
    entity = EntityInput(
        kind="Block",
        name="key",
        namespace="team-a",
        uid=UID,
        generation=1,
        type="kms-key",
        config={"alias": "assets"},
    )
    reply = await transport.call(SyncRequest(entity=entity))
    assert isinstance(reply, SyncReply) and reply.new_status == "ready"
    assert reply.signal_updates == {"keyId": f"key-{UID[:8]}"}
    drained = await transport.call(DrainRequest(entity=entity))
    assert isinstance(drained, DrainReply) and drained.new_status == "drained"


async def test_a_shared_session_is_left_open_and_an_owned_one_closed(serve: Serve) -> None:
    url = await serve()
    async with aiohttp.ClientSession() as shared:
        borrowed = HttpTransport(url, signing_key=KEY, session=shared)
        await borrowed.call(app_request())
        await borrowed.close()
        assert not shared.closed
    owner = HttpTransport(url, signing_key=KEY)
    await owner.call(app_request())
    session = owner._session
    await owner.close()
    assert session is not None and session.closed


# -- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"the-wrong-key", None])
async def test_the_server_refuses_a_wrong_or_missing_signature(
    serve: Serve, connect: Connect, key: bytes | None
) -> None:
    error = await call_error(connect(await serve(), key=key), bucket_request())
    assert error.reason == "HandlerHTTPError"
    assert "401" in error.message


async def test_no_reply_within_the_timeout_is_a_handler_timeout(
    serve: Serve, connect: Connect
) -> None:
    transport = connect(await serve(faults=server.Faults(delay_seconds=30)), timeout=0.3)
    started = time.monotonic()
    error = await call_error(transport, bucket_request())
    assert time.monotonic() - started < 2.5
    assert error.reason == "HandlerTimeout"
    assert "no reply" in error.message and "within 0.3s" in error.message

    with pytest.raises(HandlerError) as caught:
        await transport.info()
    assert caught.value.reason == "HandlerTimeout"


async def test_a_server_error_is_a_handler_http_error(serve: Serve, connect: Connect) -> None:
    transport = connect(await serve(faults=server.Faults(status=500)))
    error = await call_error(transport, bucket_request())
    assert error.reason == "HandlerHTTPError"
    assert "HTTP 500" in error.message and "injected failure" in error.message


async def test_a_long_error_body_is_quoted_short_on_one_line(
    serve: Serve, connect: Connect
) -> None:
    page = "<html>\n  <h1>Bad Gateway</h1>\n" + "<p>upstream exploded</p>\n" * 500
    transport = connect(await serve(faults=server.Faults(status=502, error_page=page)))
    error = await call_error(transport, bucket_request())
    assert error.reason == "HandlerHTTPError"
    assert "HTTP 502: <html> <h1>Bad Gateway</h1>" in error.message
    assert "\n" not in error.message
    assert error.message.endswith("…") and len(error.message) < 300


async def test_a_reply_that_is_not_json_is_an_invalid_reply(serve: Serve, connect: Connect) -> None:
    transport = connect(await serve(faults=server.Faults(invalid_json=True)))
    error = await call_error(transport, bucket_request())
    assert error.reason == "InvalidReply"
    assert "reply to sync" in error.message and "not JSON" in error.message


async def test_429_is_rate_limited_with_the_retry_after(serve: Serve, connect: Connect) -> None:
    transport = connect(await serve(faults=server.Faults(status=429, retry_after="7")))
    error = await call_error(transport, bucket_request())
    assert error.reason == "RateLimited"
    assert error.retry_after == 7.0


async def test_429_without_a_usable_retry_after(serve: Serve, connect: Connect) -> None:
    transport = connect(await serve(faults=server.Faults(status=429, retry_after="later")))
    error = await call_error(transport, bucket_request())
    assert error.reason == "RateLimited" and error.retry_after is None


async def test_a_reply_that_fails_validation_names_the_field(
    serve: Serve, connect: Connect
) -> None:
    transport = connect(await serve(faults=server.Faults(reply={"newStatus": "bogus"})))
    error = await call_error(transport, bucket_request())
    assert error.reason == "InvalidReply"
    assert "newStatus" in error.message


async def test_an_oversized_reply_is_refused(serve: Serve, connect: Connect) -> None:
    huge = {"newStatus": "ready", "customStatusDescription": "x" * (MAX_REPLY_BYTES + 1)}
    transport = connect(await serve(faults=server.Faults(reply=huge)))
    error = await call_error(transport, bucket_request())
    assert error.reason == "InvalidReply" and "larger than" in error.message


async def test_redirects_are_not_followed(serve: Serve, connect: Connect, refused_url: str) -> None:
    """Following one would re-send the signed body, secrets included, elsewhere."""
    transport = connect(await serve(faults=server.Faults(redirect_to=refused_url + "/sync")))
    error = await call_error(transport, bucket_request())
    assert error.reason == "HandlerHTTPError" and "HTTP 307" in error.message


async def test_connection_refused_is_handler_unavailable(
    connect: Connect, refused_url: str
) -> None:
    transport = connect(refused_url)
    error = await call_error(transport, bucket_request())
    assert error.reason == "HandlerUnavailable"
    assert "127.0.0.1" in error.message
    assert "Error" not in error.message  # plain words, no Python class name
    with pytest.raises(HandlerError) as caught:
        await transport.info()
    assert caught.value.reason == "HandlerUnavailable"


@pytest.mark.parametrize(
    "url", ["http://user:pw@127.0.0.1:99999/x?token=tk", "ftp://user:pw@h/x?token=tk"]
)
async def test_unusable_urls_are_unavailable_without_quoting_credentials(
    connect: Connect, url: str
) -> None:
    error = await call_error(connect(url), app_request())
    assert error.reason == "HandlerUnavailable"
    assert "pw" not in error.message and "tk" not in error.message


#: fault → whether the handler's error text quotes the request's config.
SECRET_LEAK_FAULTS: dict[str, tuple[dict[str, Any], bool]] = {
    "quoted in an error": ({"status": 422, "echo_request": True}, True),
    "quoted as a reply field": ({"reply": {"newStatus": "ready", SECRET: True}}, False),
    "server error": ({"status": 500}, False),
    "rate limited": ({"status": 429, "retry_after": "1"}, False),
    "not json": ({"invalid_json": True}, False),
    "timeout": ({"delay_seconds": 30}, False),
}


@pytest.mark.parametrize(
    ("faults", "quotes"), SECRET_LEAK_FAULTS.values(), ids=SECRET_LEAK_FAULTS.keys()
)
async def test_error_messages_never_contain_the_key_the_signature_or_secrets(
    serve: Serve, connect: Connect, faults: dict[str, Any], quotes: bool
) -> None:
    """The transport never puts the request into a message; when the handler quotes it,
    the request's string values are redacted, even escaped twice (JSON in a JSON string)."""
    transport = connect(await serve(faults=server.Faults(**faults)), timeout=0.3)
    error = await call_error(transport, bucket_request())
    for text in (error.message, str(error), repr(error)):
        assert SECRET not in text
        assert "quoted" not in text and "slash" not in text  # no form of TRICKY_SECRET
        assert KEY.decode() not in text
        assert "sha256=" not in text
        assert "protocolVersion" not in text  # no part of the request body
    if quotes:  # the quote is there, its values are not
        assert '"password": "***"' in error.message
        assert '\\"password\\": \\"***\\"' in error.message


async def test_a_wrong_key_error_does_not_reveal_either_key(serve: Serve, connect: Connect) -> None:
    wrong = b"the-callers-wrong-key"
    error = await call_error(connect(await serve(), key=wrong), bucket_request())
    assert KEY.decode() not in error.message and wrong.decode() not in error.message
    assert SECRET not in error.message and "sha256=" not in error.message
