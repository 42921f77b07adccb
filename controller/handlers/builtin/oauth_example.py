"""The `oauth-example` handler: an App that needs a person to authorize it (OAuth 2.0
authorization code flow), the way a GitHub or Slack integration does.

App config: ``authorizeUrl``, ``tokenUrl``, ``userUrl`` (the provider's endpoints),
``clientId``, ``clientSecret`` (put it in a Secret and use ``configFrom``), and
``timeoutSeconds`` (default 300: how long the prompt stays before the App gives up).

1. `sync` without a token shows the prompt "Authorize ..." (its redirect is the provider's
   consent page, with ``redirect_uri=<input.app.http.url>/callback`` and a random ``state``)
   and sets a timer tied to it; the App is ``in_progress``.
2. The provider sends the person to ``<http.url>/callback?code=...&state=...``: the `http`
   operation checks ``state``, exchanges the code for a token, keeps the token in the App's
   KV state (a Secret, never status), deletes the prompt, asks for a sync and redirects the
   person back to the App's page. `sync` then checks the token and is ``ready``.
3. If nobody authorizes in time, the `timer` removes the prompt and the App fails with a
   description that says what happened and how to ask again.
"""

from __future__ import annotations

import secrets
from typing import Any, ClassVar
from urllib.parse import urlencode

import aiohttp

from controller import __version__
from controller.handlers.protocol import (
    AppHttpRequest,
    HttpReply,
    HttpResponse,
    SignalSpec,
    SyncReply,
    SyncRequest,
    TimerReply,
    TimerRequest,
)
from controller.handlers.sdk import Handler, HandlerContext

PROMPT = "authorize"
EXPIRY = "authorize-expiry"
TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=10)


class OAuthExample(Handler):
    app_config_schema: ClassVar[dict[str, Any] | None] = {
        "type": "object",
        "required": ["authorizeUrl", "tokenUrl", "userUrl", "clientId", "clientSecret"],
        "properties": {
            "authorizeUrl": {"type": "string", "minLength": 1},
            "tokenUrl": {"type": "string", "minLength": 1},
            "userUrl": {"type": "string", "minLength": 1},
            "clientId": {"type": "string", "minLength": 1},
            "clientSecret": {"type": "string", "minLength": 1},
            "timeoutSeconds": {"type": "number", "exclusiveMinimum": 0, "default": 300},
        },
    }
    app_signals: ClassVar[list[SignalSpec]] = [
        SignalSpec(name="account", description="Who authorized the App.")
    ]

    async def sync_app(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        config = request.entity.config
        token = ctx.kv.get("token")
        if token:
            account = await _whoami(config["userUrl"], token)
            if account is not None:
                return SyncReply(
                    new_status="ready",
                    custom_status_description=f"Authorized as {account}",
                    signal_updates={"account": account},
                )
            ctx.kv.delete("token")  # revoked or expired: ask again below
        timeout = float(config.get("timeoutSeconds", 300))
        if ctx.kv.get("timedOut"):
            ctx.kv.delete("timedOut")
            return SyncReply(
                new_status="failed",
                custom_status_description=(
                    f"Authorization timed out: nobody completed the prompt within {timeout:g}s. "
                    f"`blockflow sync app/{request.entity.name} -n {request.entity.namespace}` "
                    "asks again."
                ),
                next_schedule_delay=3600,
            )
        if not ctx.kv.get("state"):
            # A new request for consent, unless one is open already (a resync while waiting
            # must not restart its clock).
            state = secrets.token_urlsafe(24)
            ctx.kv.set("state", state)
            assert request.entity.http is not None
            query = urlencode(
                {
                    "client_id": config["clientId"],
                    "redirect_uri": f"{request.entity.http.url}/callback",
                    "state": state,
                    "response_type": "code",
                }
            )
            ctx.lifecycle.prompt.create(
                PROMPT,
                f"Authorize Blockflow to use your account (within {timeout:g}s)",
                url=f"{config['authorizeUrl']}?{query}",
            )
            ctx.timers.set(EXPIRY, timeout, prompt_key=PROMPT)
        return SyncReply(
            new_status="in_progress",
            custom_status_description="Waiting for authorization: open the App's prompt",
        )

    async def http_app(self, request: AppHttpRequest, ctx: HandlerContext) -> HttpReply:
        http = request.request
        if http.path != "/callback" or http.method != "GET":
            return HttpReply(response=HttpResponse(status=404, body="not found"))
        expected = ctx.kv.get("state")
        if not expected or not secrets.compare_digest(str(http.query.get("state", "")), expected):
            return HttpReply(
                response=HttpResponse(
                    status=400, body="this authorization is unknown or expired; start again"
                )
            )
        if http.query.get("error") or not http.query.get("code"):
            reason = http.query.get("error") or "no code"
            return HttpReply(
                response=HttpResponse(status=400, body=f"authorization refused: {reason}")
            )
        config, endpoint = request.entity.config, request.entity.http
        assert endpoint is not None  # every App input carries it
        token = await _exchange(config, http.query["code"], f"{endpoint.url}/callback")
        if token is None:
            return HttpReply(
                response=HttpResponse(status=502, body="the provider refused the code")
            )
        ctx.kv.set("token", token)
        ctx.kv.delete("state")
        ctx.lifecycle.prompt.delete(PROMPT)
        ctx.lifecycle.sync()
        page = request.entity.installation_url or "/"
        return HttpReply(response=HttpResponse(status=302, headers={"Location": page}))

    async def timer_app(self, request: TimerRequest, ctx: HandlerContext) -> TimerReply:
        if request.timer.prompt is None:
            return TimerReply()  # answered in time: the prompt is gone already
        ctx.lifecycle.prompt.delete(request.timer.prompt.key)
        ctx.kv.delete("state")
        ctx.kv.set("timedOut", True)
        ctx.lifecycle.sync()
        return TimerReply()


async def _exchange(config: dict[str, Any], code: str, redirect_uri: str) -> str | None:
    """The authorization code for an access token (None when the provider says no)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": config["clientId"],
        "client_secret": config["clientSecret"],
    }
    async with (
        aiohttp.ClientSession(timeout=TOKEN_TIMEOUT) as session,
        session.post(config["tokenUrl"], data=form) as response,
    ):
        if response.status != 200:
            return None
        answer = await response.json(content_type=None)
    token = answer.get("access_token") if isinstance(answer, dict) else None
    return str(token) if token else None


async def _whoami(user_url: str, token: str) -> str | None:
    """Who the token belongs to (None when it is not valid any more)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(timeout=TOKEN_TIMEOUT) as session,
        session.get(user_url, headers=headers) as response,
    ):
        if response.status != 200:
            return None
        answer = await response.json(content_type=None)
    login = answer.get("login") if isinstance(answer, dict) else None
    return str(login) if login else None


handler = OAuthExample(version=__version__)
