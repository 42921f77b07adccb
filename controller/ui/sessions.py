"""Sessions of the web page: sign-in and out, the cookie, CSRF and origin checks, responses.

Authentication: ``Authorization: Bearer <token>``, or the HttpOnly, SameSite=Lax cookie
set by the sign-in form (or by ``?token=`` once, which redirects to the same URL without
it). Either way the token goes through a TokenReview; no token, or a refused one, gets the
401 sign-in page and no data. Actions (POST) need the session's CSRF token (derived from the
controller's key and the bearer token) and, for cookie sessions, an ``Origin`` (or
``Referer``) of this site.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from aiohttp import web
from yarl import URL

from controller.kube.rest import Requester
from controller.logs import get_logger
from controller.server.limits import RateLimiter
from controller.server.tokens import same
from controller.ui import frame as layout
from controller.ui.approvals import Approvals
from controller.ui.assets import CSP
from controller.ui.auth import (
    Identity,
    Reviewer,
    ReviewUnavailable,
    csrf_ok,
    csrf_token,
)
from controller.ui.html import Safe
from controller.ui.live import ChangeFeed

log = get_logger("blockflow.ui")

COOKIE = "blockflow_ui"
LOGIN_COOKIE = "blockflow_ui_login"
COOKIE_PATH = "/ui/"
FRAGMENT_HEADER = "X-Blockflow-Fragment"
SESSION_SECONDS = 8 * 3600
#: An event stream ends after this long (the browser reconnects, and is re-authorized).
STREAM_SECONDS = 300.0
KEEPALIVE_SECONDS = 15.0
#: At most one "changed" per stream this often (a busy namespace is not a firehose).
COALESCE_SECONDS = 0.25
#: Runs whose Approve / Reject permission is asked one by one (beyond: namespace-wide only).
MAX_RUN_REVIEWS = 100

LISTABLE = ("apps", "blocks", "workflows", "workflowruns")
KIND_OF = {"apps": "App", "blocks": "Block", "workflows": "Workflow", "workflowruns": "WorkflowRun"}
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_OBJECT = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_STEP = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

Kinds = dict[str, bool]


@dataclass(frozen=True)
class Session:
    identity: Identity
    token: str
    from_cookie: bool
    csrf: str


class _Stop(Exception):
    """Answer with an error page (no data) instead of the view."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def _forbidden(what: str) -> _Stop:
    return _Stop(403, "Forbidden", f"Your Kubernetes identity may not {what}.")


_NOT_FOUND = _Stop(404, "Not found", "There is nothing here that you may see.")


def _safe_next(value: object, default: str = "/ui/") -> str:
    """A redirect target inside the page only (no scheme, no host, no `//`)."""
    if not isinstance(value, str) or not value.startswith("/ui/") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return default
    return value


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class SessionPages:
    """Who is asking, and whether they may: the part of the page every view stands on."""

    def __init__(
        self,
        client: Requester,
        *,
        key: bytes,
        feed: ChangeFeed,
        approvals: Approvals | None = None,
        namespaces: Sequence[str] = (),
        public_url: str | None = None,
        reviewer: Reviewer | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.key = key
        self.feed = feed
        self.approvals = approvals
        self.watched = tuple(namespaces)
        self.public_origin = _origin(public_url) if public_url else None
        self.reviewer = reviewer or Reviewer(client)
        self.now = now
        # Sign-in attempts per client address (behind a port-forward or an ingress, that is
        # everyone: generous for people, tight for guessing).
        self.sign_ins = RateLimiter(2, 30)

    async def _shutdown(self, app: web.Application) -> None:
        self.feed.close()

    # -- responses ---------------------------------------------------------------------------

    @staticmethod
    def _harden(response: web.StreamResponse) -> web.StreamResponse:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: with no-referrer, browsers send `Origin: null` on form
        # POSTs, and the origin check needs the real one. Other sites get no referrer.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    def _html(
        self, request: web.Request, frame: layout.Frame, view: Safe, status: int = 200
    ) -> web.Response:
        fragment = request.headers.get(FRAGMENT_HEADER) == "1"
        text = str(view) if fragment else layout.document(frame, view)
        response = web.Response(status=status, text=text, content_type="text/html")
        self._harden(response)
        return response

    def _error(
        self, request: web.Request, stop: _Stop, session: Session | None = None
    ) -> web.Response:
        frame = layout.Frame(
            title=stop.title,
            user=session.identity.username if session else None,
            csrf=session.csrf if session else None,
        )
        view = layout.error_view(stop.status, stop.title, stop.message)
        return self._html(request, frame, view, stop.status)

    def _sign_in(
        self, request: web.Request, message: str | None, status: int = 401
    ) -> web.Response:
        nonce = secrets.token_urlsafe(24)
        wanted = str(_without_token(request)) if request.method == "GET" else "/ui/"
        if wanted.startswith(("/ui/login", "/ui/events")):
            wanted = "/ui/"
        view = layout.login_view(nonce, _safe_next(wanted), message)
        response = self._html(request, layout.Frame(title="Sign in"), view, status)
        self._set_cookie(request, response, LOGIN_COOKIE, nonce, max_age=3600)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="blockflow"'
        return response

    def _secure(self, request: web.Request) -> bool:
        forwarded = request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        return request.secure or forwarded or (self.public_origin or "").startswith("https:")

    def _set_cookie(
        self,
        request: web.Request,
        response: web.StreamResponse,
        name: str,
        value: str,
        max_age: int,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=COOKIE_PATH,
            httponly=True,
            # Lax, not Strict: the person comes back signed in when an OAuth provider
            # redirects to the App's page. Cross-site POSTs still carry no cookie, and every
            # POST needs the CSRF token and this site's Origin; GETs change nothing.
            samesite="Lax",
            secure=self._secure(request),
        )

    def _redirect(self, location: str) -> web.Response:
        response = web.Response(status=303, headers={"Location": location})
        self._harden(response)
        return response

    # -- sessions ------------------------------------------------------------------------------

    async def _session(self, request: web.Request) -> Session | web.Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token, from_cookie = value.strip(), False
        else:
            token, from_cookie = request.cookies.get(COOKIE, ""), True
        if not token:
            return self._sign_in(request, None)
        try:
            identity = await self.reviewer.authenticate(token)
        except ReviewUnavailable as exc:
            return self._unavailable(request, exc)
        if identity is None:
            response = self._sign_in(
                request, "Your token was not accepted (expired or revoked?): sign in again."
            )
            if from_cookie:
                response.del_cookie(COOKIE, path=COOKIE_PATH)
            return response
        return Session(identity, token, from_cookie, csrf_token(self.key, token))

    def _unavailable(self, request: web.Request, exc: Exception) -> web.Response:
        log.warning("ui: a review failed", error=str(exc))
        stop = _Stop(
            503,
            "Cannot check access",
            "The controller cannot ask the API server who you are or what you may see right "
            "now (it needs create on tokenreviews and subjectaccessreviews). Try again shortly.",
        )
        return self._error(request, stop)

    def _origins(self, request: web.Request) -> set[str]:
        own = {f"{request.scheme}://{request.host}".lower()}
        if self._secure(request):
            own.add(f"https://{request.host}".lower())
        if self.public_origin:
            own.add(self.public_origin)
        return own

    def _same_origin(self, request: web.Request, *, required: bool) -> bool:
        origin = request.headers.get("Origin")
        if origin is None and request.headers.get("Referer"):
            origin = _origin(request.headers["Referer"]) or "null"
        if origin is None:
            return not required
        return origin.lower() in self._origins(request)

    def _token_in_url(self, request: web.Request) -> Awaitable[web.Response]:
        return self._accept_token(
            request,
            request.query.get("token", "").strip(),
            str(_without_token(request)),
        )

    async def _accept_token(self, request: web.Request, token: str, then: str) -> web.Response:
        if self.sign_ins.allow(request.remote or "?") is not None:
            return self._error(
                request, _Stop(429, "Too many attempts", "Wait a few seconds, then try again.")
            )
        try:
            identity = await self.reviewer.authenticate(token)
        except ReviewUnavailable as exc:
            return self._unavailable(request, exc)
        if identity is None:
            return self._sign_in(request, "That token was not accepted by the cluster.")
        response = self._redirect(_safe_next(then))
        self._set_cookie(request, response, COOKIE, token, max_age=SESSION_SECONDS)
        response.del_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        log.info("ui: signed in", user=identity.username)
        return response

    # -- sign in and out -------------------------------------------------------------------------

    async def _to_root(self, request: web.Request) -> web.StreamResponse:
        return self._redirect("/ui/")

    async def _to_namespace(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        if not _NAMESPACE.match(namespace):
            return self._error(request, _NOT_FOUND)
        return self._redirect(layout.ns_path(namespace, "apps"))

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        if "token" in request.query:
            return await self._token_in_url(request)
        return self._sign_in(request, None, status=200)

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        nonce, expected = form.get("nonce"), request.cookies.get(LOGIN_COOKIE)
        fresh = isinstance(nonce, str) and expected and same(nonce, expected)
        if not fresh or not self._same_origin(request, required=False):
            return self._sign_in(request, "The sign-in form expired; please try again.", 403)
        token = form.get("token")
        then = _safe_next(form.get("next"))
        return await self._accept_token(
            request, token.strip() if isinstance(token, str) else "", then
        )

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        if isinstance(session, Session):
            form = await request.post()
            if not self._csrf_passes(request, session, form.get("csrf")):
                return self._error(request, _csrf_refused(), session)
        response = self._redirect("/ui/login")
        response.del_cookie(COOKIE, path=COOKIE_PATH)
        return response

    def _csrf_passes(self, request: web.Request, session: Session, presented: object) -> bool:
        if not isinstance(presented, str) or not csrf_ok(self.key, session.token, presented):
            return False
        return self._same_origin(request, required=session.from_cookie)


def _without_token(request: web.Request) -> URL:
    """The request's path and query, minus a ``token`` parameter (never echoed, kept or
    redirected to)."""
    return request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"])


def _csrf_refused() -> _Stop:
    return _Stop(
        403,
        "Refused",
        "The form's CSRF token is missing or wrong, or the request came from another site. "
        "Reload the page and try again.",
    )
