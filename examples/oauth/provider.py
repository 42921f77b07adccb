"""A fake OAuth 2.0 provider on loopback, for the `oauth-example` App (and its tests).

    .venv/bin/python examples/oauth/provider.py --port 8091

- ``GET /authorize?client_id&redirect_uri&state`` shows a consent page with an Allow button;
- ``POST /authorize`` (Allow) redirects to ``redirect_uri?code=...&state=...``;
- ``POST /token`` exchanges a code (once) for an access token, checking client id and secret;
- ``GET /user`` answers ``{"login": ...}`` for a valid bearer token.

Client id ``blockflow``, secret ``example-secret``, user ``ada``: demo values only.
"""

from __future__ import annotations

import argparse
import html
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode

from aiohttp import web

CLIENT_ID = "blockflow"
CLIENT_SECRET = "example-secret"
USER = "ada"


@dataclass
class Provider:
    codes: dict[str, str] = field(default_factory=dict)  # code → redirect_uri
    tokens: set[str] = field(default_factory=set)
    exchanged: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/authorize", self.consent)
        app.router.add_post("/authorize", self.allow)
        app.router.add_post("/token", self.token)
        app.router.add_get("/user", self.user)
        return app

    async def consent(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("client_id") != CLIENT_ID or not query.get("redirect_uri"):
            return web.Response(status=400, text="unknown client or no redirect_uri")
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(query.get(name, ""))}">'
            for name in ("redirect_uri", "state")
        )
        page = (
            "<!doctype html><title>Example provider</title>"
            '<body style="font-family: sans-serif; margin: 3em">'
            f"<h1>Example provider</h1><p>Blockflow asks to use the account <b>{USER}</b>.</p>"
            f'<form method="post" action="/authorize">{hidden}'
            '<button type="submit">Allow</button></form></body>'
        )
        return web.Response(text=page, content_type="text/html")

    async def allow(self, request: web.Request) -> web.Response:
        form = await request.post()
        redirect_uri, state = str(form.get("redirect_uri", "")), str(form.get("state", ""))
        code = secrets.token_urlsafe(16)
        self.codes[code] = redirect_uri
        raise web.HTTPFound(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "invalid_client"}, status=401)
        code = str(form.get("code", ""))
        if self.codes.pop(code, None) != form.get("redirect_uri"):
            return web.json_response({"error": "invalid_grant"}, status=400)
        self.exchanged += 1
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "bearer"})

    async def user(self, request: web.Request) -> web.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self.tokens:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"login": USER})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    web.run_app(Provider().app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
