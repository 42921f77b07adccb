"""An example HTTP handler service for Blockflow: block types ``bucket`` and ``kms-key``, and
the App itself.

Run it::

    .venv/bin/python examples/http-handler/server.py --port 8080 --key-file /etc/blockflow/hmac/key
    BLOCKFLOW_HMAC_KEY=... .venv/bin/python examples/http-handler/server.py --port 8080

It speaks the wire protocol directly (camelCase JSON dicts, not the pydantic
models) so that it reads as a template for a handler in any language:

- ``GET /`` returns the handler info (version, block types, signals).
- ``POST /<operation>`` receives a request signed with HMAC-SHA256 of the exact
  body bytes (header ``X-Blockflow-Signature: sha256=<hex>``); a missing or wrong
  signature gets 401 with a JSON error body, before anything else is looked at.
- ``bucket`` sync is a two-step creation: the first call answers ``in_progress``
  ("Creating bucket…", ``nextScheduleDelay: 1``) and records that in the reply's
  ``state``; the controller hands that state back on the next call, which answers
  ``ready`` with the signal ``bucketId``.  Keeping progress in ``state`` rather
  than in this process's memory lets the service restart or run several replicas.
- ``kms-key`` sync answers ``ready`` at once with the signal ``keyId``; a bucket
  can consume it (``kmsKey: {signalRef: {block: key, signal: keyId}}``, as in
  ``storage.yaml``) and receives the resolved value in its config.
- drain answers ``drained``; the App's own sync answers ``ready``.

Fault injection (tests only, never from the network): ``make_app(key,
faults=Faults(...))`` makes every ``POST`` misbehave in one way — a delay before
answering, a fixed HTTP status (optionally with ``Retry-After``, with an HTML
error page, or quoting the request's config in the error body as some
frameworks' validation errors do), a body that is not JSON, a fixed JSON reply
(e.g. ``{"newStatus": "bogus"}``), or a redirect.  ``delay_seconds`` also
applies to ``GET /``.  Signatures are checked before any fault.  The faults and the
version ``GET /`` reports live in the app's :class:`Controls`
(``app[CONTROLS]``), which a test may change while the service runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, web

from controller.handlers.http_transport import PROTOCOL_HEADER, SIGNATURE_HEADER, verify
from controller.handlers.protocol import PROTOCOL_VERSION

VERSION = "1.0.0"
BLOCK_TYPE = "bucket"
KMS_KEY_TYPE = "kms-key"
EXPORT_TYPE = "export"
OPERATIONS = (
    "sync", "drain", "execute", "finish", "activate", "deactivate", "trigger", "http", "timer"
)  # fmt: skip

INFO: dict[str, Any] = {
    "version": VERSION,
    "protocolVersion": PROTOCOL_VERSION,
    "blockTypes": {
        BLOCK_TYPE: {
            "kind": "lifecycle",
            "description": "An object-storage bucket (simulated).",
            "configSchema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "kmsKey": {"type": "string"}},
            },
            "signals": [{"name": "bucketId", "description": "The bucket's id."}],
            "fixed": ["name"],
        },
        KMS_KEY_TYPE: {
            "kind": "lifecycle",
            "description": "An encryption key for buckets (simulated).",
            "configSchema": {"type": "object", "properties": {"alias": {"type": "string"}}},
            "signals": [{"name": "keyId", "description": "The key's id."}],
        },
        EXPORT_TYPE: {
            "kind": "step",
            "description": (
                "Exports a bucket in the background (simulated): the step defers, and the "
                "service POSTs to the step's finishCallbackUrl when the export is done."
            ),
            "configSchema": {
                "type": "object",
                "properties": {"bucket": {"type": "string"}, "seconds": {"type": "number"}},
            },
        },
    },
}


@dataclass(frozen=True)
class Faults:
    """Ways to misbehave, for tests of the controller's HTTP transport.

    Checked in this order: ``delay_seconds`` (then carry on), ``redirect_to``,
    ``status``, ``invalid_json``, ``reply``.
    """

    delay_seconds: float = 0.0
    status: int | None = None  # answer every POST with this status and a JSON error
    retry_after: str | None = None  # Retry-After header sent with ``status``
    echo_request: bool = False  # quote the request's config in the ``status`` error body
    error_page: str | None = None  # this text/html body with ``status``, instead of JSON
    invalid_json: bool = False  # 200 with a body that is not JSON
    reply: Any = None  # 200 with exactly this JSON (when not None)
    redirect_to: str | None = None  # 307 to this URL


@dataclass
class Controls:
    """What may change while the service runs: the faults to inject and the version that
    ``GET /`` reports (a real deployment changes its version by shipping new code; a test
    sets it to see the controller re-sync)."""

    faults: Faults = field(default_factory=Faults)
    version: str = VERSION


KEY: web.AppKey[bytes | None] = web.AppKey("key")
CONTROLS: web.AppKey[Controls] = web.AppKey("controls", Controls)
BACKGROUND: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("background", set)


def make_app(key: bytes | None, *, faults: Faults | None = None) -> web.Application:
    """The handler service; ``key=None`` accepts unsigned requests (local play only)."""
    app = web.Application()
    app[KEY] = key
    app[CONTROLS] = Controls(faults=faults or Faults())
    app[BACKGROUND] = set()
    app.router.add_get("/", get_info)
    app.router.add_post("/{operation}", post_operation)
    return app


# -- HTTP ------------------------------------------------------------------------------------


async def get_info(request: web.Request) -> web.Response:
    controls = request.app[CONTROLS]
    if controls.faults.delay_seconds:
        await asyncio.sleep(controls.faults.delay_seconds)
    return web.json_response({**INFO, "version": controls.version})


async def post_operation(request: web.Request) -> web.Response:
    """Check the signature and the protocol, then (faults aside) dispatch the operation."""
    body = await request.read()
    key = request.app[KEY]
    if key is not None and not verify(body, key, request.headers.get(SIGNATURE_HEADER)):
        return _error(401, f"missing or invalid {SIGNATURE_HEADER}")
    faulty = await _inject_fault(request.app[CONTROLS].faults, body)
    if faulty is not None:
        return faulty
    operation = request.match_info["operation"]
    if operation not in OPERATIONS:
        return _error(404, f"unknown operation {operation!r}")
    if request.headers.get(PROTOCOL_HEADER) != PROTOCOL_VERSION:
        return _error(400, f"{PROTOCOL_HEADER} must be {PROTOCOL_VERSION}")
    if request.content_type != "application/json":
        return _error(415, "Content-Type must be application/json")
    try:
        payload = json.loads(body)
    except ValueError:
        return _error(400, "request body is not JSON")
    if not isinstance(payload, dict) or payload.get("operation") != operation:
        return _error(400, "request body does not match the operation in the path")
    try:
        reply = handle(payload)
    except LookupError as exc:
        return _error(422, str(exc))
    callback = (payload.get("metadata") or {}).get("finishCallbackUrl")
    if reply.get("type") == "defer" and callback:
        config = payload.get("with") or {}
        work = asyncio.create_task(_finish_later(callback, config))
        request.app[BACKGROUND].add(work)
        work.add_done_callback(request.app[BACKGROUND].discard)
    return web.json_response(reply)


async def _finish_later(url: str, config: dict[str, Any]) -> None:
    """The background half of a deferred export: when it is done, POST the result to the
    step's callback URL (the URL is the credential; retried a few times if unreachable)."""
    await asyncio.sleep(float(config.get("seconds", 1)))
    result = {"exported": config.get("bucket"), "objects": 3}
    async with ClientSession() as session:
        for attempt in range(5):
            try:
                async with session.post(url, json=result) as response:
                    if response.status < 500:
                        return
            except ClientError:
                pass
            await asyncio.sleep(2**attempt)


async def _inject_fault(faults: Faults, body: bytes) -> web.Response | None:
    if faults.delay_seconds:
        await asyncio.sleep(faults.delay_seconds)
    if faults.redirect_to is not None:
        return web.Response(status=307, headers={"Location": faults.redirect_to})
    if faults.status is not None:
        response = _status_fault(faults, body)
        if faults.retry_after is not None:
            response.headers["Retry-After"] = faults.retry_after
        return response
    if faults.invalid_json:
        return web.Response(text="<html>certainly not JSON</html>", content_type="text/html")
    if faults.reply is not None:
        return web.json_response(faults.reply)
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _status_fault(faults: Faults, body: bytes) -> web.Response:
    """The ``status`` fault's reply: a JSON error, an HTML page, or an error quoting the
    config it was given (as a string and as JSON, the way many frameworks' validation
    errors do; the controller must redact it)."""
    status = faults.status or 500
    if faults.error_page is not None:
        return web.Response(status=status, text=faults.error_page, content_type="text/html")
    if not faults.echo_request:
        return _error(status, "injected failure")
    config = json.loads(body)["entity"]["config"]
    text = f"invalid config: {json.dumps(config)}"
    return web.json_response({"error": text, "input": config}, status=status)


# -- the handler -----------------------------------------------------------------------------


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """One protocol request (wire dict) → its reply (wire dict)."""
    entity = request["entity"]
    operation = request["operation"]
    if entity["kind"] == "App":
        return handle_app(request)
    block_type = entity.get("type")
    if block_type not in INFO["blockTypes"]:
        offered = ", ".join(INFO["blockTypes"])
        raise LookupError(f"block type {block_type!r} is not offered (offered: {offered})")
    if operation == "sync":
        if block_type == KMS_KEY_TYPE:
            return sync_kms_key(entity)
        return sync_bucket(entity, request.get("state") or {})
    if operation == "drain":
        what = "Key" if block_type == KMS_KEY_TYPE else "Bucket"
        return {"newStatus": "drained", "customStatusDescription": f"{what} deleted"}
    if block_type == EXPORT_TYPE:
        if operation == "execute":
            return {"type": "defer"}
        if operation == "finish":
            return {"type": "outcome", "id": "exported", "data": request["request"]["body"]}
        return {"type": "error", "message": f"{block_type} is a step block; no {operation}"}
    if operation in ("finish", "trigger"):
        return {"type": "no-op"}
    return {"type": "error", "message": f"{block_type} is a lifecycle block; no {operation}"}


def handle_app(request: dict[str, Any]) -> dict[str, Any]:
    """The App's own operations: its HTTP endpoint and timers.

    - ``GET <http.url>/hello`` answers with a visit count kept in the App's KV state.
    - ``POST <http.url>/remind?seconds=N`` shows a prompt and sets a timer tied to it; when
      the timer fires, the prompt goes, the state says so and the App syncs again.
    """
    operation, state = request["operation"], dict(request.get("state") or {})
    if operation == "sync":
        reminded = state.get("reminded")
        return {
            "newStatus": "ready",
            **({"customStatusDescription": "Reminded"} if reminded else {}),
        }
    if operation == "drain":
        return {"newStatus": "drained"}
    if operation == "timer":
        timer = request["timer"]
        if timer.get("prompt") is None:
            return {}  # its prompt was answered already
        return {
            "promptDeletes": [timer["prompt"]["key"]],
            "state": {**state, "reminded": timer["payload"]["note"]},
            "requestSync": True,
        }
    if operation != "http":
        raise LookupError(f"an App has no {operation} operation")
    http = request["request"]
    if http["path"] == "/hello" and http["method"] == "GET":
        visits = int(state.get("visits", 0)) + 1
        return {
            "response": {
                "status": 200,
                "body": {"hello": http["query"].get("name"), "visits": visits},
            },
            "state": {**state, "visits": visits},
        }
    if http["path"] == "/remind" and http["method"] == "POST":
        seconds = float(http["query"].get("seconds", "60"))
        page = request["entity"]["installationUrl"]
        return {
            "response": {"status": 303, "headers": {"Location": page}},
            "prompts": [
                {"key": "reminder", "description": "A reminder", "redirect": {"url": page}}
            ],
            "timers": [
                {
                    "key": "remind",
                    "delaySeconds": seconds,
                    "promptKey": "reminder",
                    "payload": {"note": "done"},
                }
            ],
        }
    return {"response": {"status": 404, "body": f"no route {http['method']} {http['path']}"}}


def sync_bucket(entity: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Create the bucket in two steps, keeping progress in the state the controller stores."""
    bucket_id = state.get("bucketId") or f"bkt-{entity['uid'][:8]}"
    if not state.get("creating") and "bucketId" not in state:
        return {
            "newStatus": "in_progress",
            "customStatusDescription": "Creating bucket…",
            "nextScheduleDelay": 1,
            "state": {"creating": True},
        }
    return {
        "newStatus": "ready",
        "customStatusDescription": f"Bucket {bucket_id} is ready",
        "signalUpdates": {"bucketId": bucket_id},
        "state": {"bucketId": bucket_id},
    }


def sync_kms_key(entity: dict[str, Any]) -> dict[str, Any]:
    """A key is created at once; its id is derived from the Block's uid (stable, idempotent)."""
    key_id = f"key-{entity['uid'][:8]}"
    return {
        "newStatus": "ready",
        "customStatusDescription": f"Key {key_id} is ready",
        "signalUpdates": {"keyId": key_id},
    }


# -- command line ----------------------------------------------------------------------------


def _key(args: argparse.Namespace) -> bytes | None:
    """The HMAC key: the file's exact bytes (as a mounted Secret), else $BLOCKFLOW_HMAC_KEY."""
    if args.key_file:
        return Path(args.key_file).read_bytes()
    env = os.environ.get("BLOCKFLOW_HMAC_KEY")
    return env.encode() if env else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--key-file", help="file holding the HMAC key (else $BLOCKFLOW_HMAC_KEY)")
    parser.add_argument(
        "--allow-unsigned", action="store_true", help="run without a key (local play only)"
    )
    args = parser.parse_args(argv)
    key = _key(args)
    if not key and not args.allow_unsigned:
        sys.exit("no HMAC key: pass --key-file or set BLOCKFLOW_HMAC_KEY (or --allow-unsigned)")
    web.run_app(make_app(key or None), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
