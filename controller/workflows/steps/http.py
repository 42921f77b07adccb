"""`http`: one HTTP request with the step's execution id as Idempotency-Key; 5xx and 429 are
retried (unless `retryOnServerError: false`), other 4xx fail; the reply is `{status, body}`.

Messages name the method and the URL without its query string or credentials.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiohttp

from controller import safe_json
from controller.handlers.protocol import ErrorReply, OutcomeReply
from controller.workflows.steps.base import BuiltinReply, StepCall, StepTools, bad

HTTP_RESPONSE_LIMIT = 1024 * 1024


async def run(call: StepCall, tools: StepTools) -> BuiltinReply:
    url = call.with_.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return bad(call, "url", "set an http:// or https:// URL")
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
        async with tools.http.request(
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
        with contextlib.suppress(safe_json.JsonError):  # not JSON we accept: kept as text
            payload = safe_json.loads(raw) if raw else None
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


def _safe(url: str) -> str:
    """A URL for messages: no query string or credentials (they may hold secrets)."""
    head = url.split("?", 1)[0]
    if "@" in head.split("//", 1)[-1].split("/", 1)[0]:
        scheme, rest = head.split("//", 1)
        head = scheme + "//" + rest.split("@", 1)[1]
    return head
