"""The page on the controller's aiohttp server (``/ui/``): its routes, authorization, views.

Sessions (sign-in, cookies, CSRF) are :mod:`controller.ui.sessions`.

Authentication: ``Authorization: Bearer <token>``, or the HttpOnly, SameSite=Lax cookie
set by the sign-in form (or by ``?token=`` once, which redirects to the same URL without
it). Either way the token goes through a TokenReview; no token, or a refused one, gets the
401 sign-in page and no data.

Authorization: every read is a SubjectAccessReview for the person's own identity —
``list`` of a kind in the namespace for lists, ``get`` of the run for a run's page, and
``update`` of the run for Approve / Reject. A namespace where they may list none of the four
kinds is ``403`` whatever is in it. The controller reads with its own credentials only what
the person was allowed, and never a Secret.

Actions (POST) need the session's CSRF token (derived from the controller's key and the
bearer token) and, for cookie sessions, an ``Origin`` (or ``Referer``) of this site.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from controller.api.kinds import GROUP, VERSION
from controller.kube.objects import Body
from controller.kube.rest import KubeApiError
from controller.ui import frame as layout
from controller.ui import pages, run_page, views
from controller.ui.approvals import ApprovalError
from controller.ui.auth import (
    Access,
    ReviewUnavailable,
)
from controller.ui.html import Safe
from controller.ui.sessions import (
    _NAMESPACE,
    _NOT_FOUND,
    _OBJECT,
    _STEP,
    COALESCE_SECONDS,
    FRAGMENT_HEADER,
    KEEPALIVE_SECONDS,
    KIND_OF,
    LISTABLE,
    MAX_RUN_REVIEWS,
    STREAM_SECONDS,
    Kinds,
    Session,
    SessionPages,
    _csrf_refused,
    _forbidden,
    _safe_next,
    _Stop,
    log,
)


class Page(SessionPages):
    """The web page: install its routes on an aiohttp application with :meth:`install`."""

    def install(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/ui", self._to_root)
        router.add_get("/ui/", self._view(self._namespaces))
        router.add_get("/ui/login", self._login_page)
        router.add_post("/ui/login", self._login)
        router.add_post("/ui/logout", self._logout)
        router.add_get("/ui/events", self._events)
        ns = "/ui/namespaces/{namespace}"
        router.add_get(ns, self._to_namespace)
        router.add_get(ns + "/", self._to_namespace)
        router.add_get(ns + "/apps", self._view(self._apps))
        router.add_get(ns + "/apps/{app}", self._view(self._app))
        router.add_get(ns + "/workflows", self._view(self._workflows))
        router.add_get(ns + "/approvals", self._view(self._approvals))
        router.add_get(ns + "/runs/{run}", self._view(self._run))
        router.add_post(ns + "/runs/{run}/{decision:approve|reject}", self._decide)
        app.on_shutdown.append(self._shutdown)

    # -- authorization -------------------------------------------------------------------------

    async def _may(self, session: Session, access: Access) -> bool:
        return await self.reviewer.allowed(session.identity, access)

    async def _kinds(self, session: Session, namespace: str) -> Kinds:
        answers = await asyncio.gather(
            *(self._may(session, Access("list", plural, namespace)) for plural in LISTABLE)
        )
        return dict(zip(LISTABLE, answers, strict=True))

    async def _namespace(self, session: Session, namespace: str) -> Kinds:
        """What the person may list in ``namespace``; 403 when nothing, 404 when the name is
        not a namespace name or the controller does not watch it."""
        if not _NAMESPACE.match(namespace):
            raise _NOT_FOUND
        kinds = await self._kinds(session, namespace)
        if not any(kinds.values()):
            raise _forbidden(f"list Blockflow objects in namespace {namespace}")
        if self.watched and namespace not in self.watched:
            raise _Stop(404, "Not watched", f"This controller does not watch {namespace}.")
        return kinds

    async def _may_decide(
        self, session: Session, namespace: str, runs: list[str]
    ) -> dict[str, bool]:
        if await self._may(session, Access("update", "workflowruns", namespace)):
            return dict.fromkeys(runs, True)
        names = sorted(set(runs))[:MAX_RUN_REVIEWS]
        answers = await asyncio.gather(
            *(self._may(session, Access("update", "workflowruns", namespace, n)) for n in names)
        )
        return dict(zip(names, answers, strict=True))

    # -- reads (with the controller's credentials, after the person's access was checked) -----

    async def _list(self, plural: str, namespace: str) -> list[Body]:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
        answer = await self.client.request("GET", path)
        items = [i for i in answer.get("items") or [] if isinstance(i, dict)]
        for item in items:
            item.setdefault("kind", KIND_OF[plural])
        return items

    async def _list_if(self, kinds: Kinds, plural: str, namespace: str) -> list[Body] | None:
        return await self._list(plural, namespace) if kinds.get(plural) else None

    async def _read(self, plural: str, namespace: str, name: str) -> Body | None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}"
        try:
            body = await self.client.request("GET", path)
        except KubeApiError as exc:
            if exc.code == 404:
                return None
            raise
        body.setdefault("kind", KIND_OF[plural])
        return body

    # -- views -----------------------------------------------------------------------------

    def _view(
        self, render: Callable[[web.Request, Session], Awaitable[tuple[layout.Frame, Safe]]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if "token" in request.query:
                return await self._token_in_url(request)
            session = await self._session(request)
            if not isinstance(session, Session):
                return session
            try:
                frame, view = await render(request, session)
            except _Stop as stop:
                return self._error(request, stop, session)
            except ReviewUnavailable as exc:
                return self._unavailable(request, exc)
            except KubeApiError as exc:
                log.warning("ui: a read failed", code=exc.code, reason=exc.reason)
                failed = _Stop(502, "The API server did not answer", f"{exc.code} {exc.reason}")
                return self._error(request, failed, session)
            return self._html(request, frame, view)

        return handle

    def _frame(
        self,
        session: Session,
        title: str,
        namespace: str | None = None,
        *extra: tuple[str, str | None],
    ) -> layout.Frame:
        crumbs: tuple[tuple[str, str | None], ...] = ()
        # `since`: what the page shows; changes between rendering it and its stream opening
        # are then not lost (the stream says "changed" at once).
        live = f"/ui/events?since={self.feed.revision(namespace)}"
        if namespace is not None:
            crumbs = ((namespace, layout.ns_path(namespace, "apps")), *extra)
            live = f"/ui/events?ns={namespace}&since={self.feed.revision(namespace)}"
        return layout.Frame(
            title=title,
            user=session.identity.username,
            csrf=session.csrf,
            crumbs=crumbs,
            live=live,
        )

    async def _pending(self, kinds: Kinds, namespace: str) -> tuple[list[Body] | None, int | None]:
        runs = await self._list_if(kinds, "workflowruns", namespace)
        return runs, None if runs is None else len(views.pending_approvals(runs))

    async def _namespaces(
        self, request: web.Request, session: Session
    ) -> tuple[layout.Frame, Safe]:
        candidates = sorted(set(self.feed.namespaces()) | set(self.watched))
        cluster = await self._kinds(session, "")
        gate = asyncio.Semaphore(16)

        async def kinds_in(namespace: str) -> Kinds:
            # Only what is not allowed cluster-wide is asked per namespace.
            asked = [plural for plural in LISTABLE if not cluster[plural]]
            async with gate:
                answers = await asyncio.gather(
                    *(self._may(session, Access("list", p, namespace)) for p in asked)
                )
            return {**cluster, **dict(zip(asked, answers, strict=True))}

        found = await asyncio.gather(*(kinds_in(ns) for ns in candidates))
        entries = []
        for namespace, kinds in zip(candidates, found, strict=True):
            if not any(kinds.values()):
                continue
            counts = self.feed.counts(namespace)
            shown = {
                KIND_OF[p]: counts[KIND_OF[p]]
                for p in LISTABLE
                if kinds[p] and KIND_OF[p] in counts
            }
            entries.append((namespace, shown))
        return self._frame(session, "Namespaces"), pages.namespaces_view(entries)

    async def _apps(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        namespace = request.match_info["namespace"]
        kinds = await self._namespace(session, namespace)
        apps, blocks, (_, pending) = await asyncio.gather(
            self._list_if(kinds, "apps", namespace),
            self._list_if(kinds, "blocks", namespace),
            self._pending(kinds, namespace),
        )
        view = views.apps_view(apps, blocks)
        return (
            self._frame(session, f"Apps · {namespace}", namespace),
            pages.apps_view(namespace, view, pending),
        )

    async def _app(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        """One App and its Blocks (the ``installationUrl`` its handler hands out)."""
        namespace, name = request.match_info["namespace"], request.match_info["app"]
        if not _NAMESPACE.match(namespace) or not _OBJECT.match(name):
            raise _NOT_FOUND
        kinds, may_get = await asyncio.gather(
            self._kinds(session, namespace),
            self._may(session, Access("get", "apps", namespace, name)),
        )
        if not may_get:
            raise _forbidden(f"get app {name} in namespace {namespace}")
        app, blocks, (_, pending) = await asyncio.gather(
            self._read("apps", namespace, name),
            self._list_if(kinds, "blocks", namespace),
            self._pending(kinds, namespace),
        )
        if app is None:
            raise _Stop(404, "Not found", f"There is no app {name} in {namespace}.")
        mine = None if blocks is None else [b for b in blocks if _app_of(b) == name]
        view = views.apps_view([app], mine)
        return (
            self._frame(session, f"App {name} · {namespace}", namespace, (f"app {name}", None)),
            pages.apps_view(namespace, view, pending, single=True),
        )

    async def _workflows(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        namespace = request.match_info["namespace"]
        kinds = await self._namespace(session, namespace)
        workflows, (runs, pending) = await asyncio.gather(
            self._list_if(kinds, "workflows", namespace), self._pending(kinds, namespace)
        )
        now = self.now()
        view = pages.workflows_view(
            namespace,
            None if workflows is None else views.workflow_views(workflows, runs),
            None if runs is None else views.recent_runs(runs, now),
            pending,
            now,
        )
        return self._frame(session, f"Workflows · {namespace}", namespace), view

    async def _approvals(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        namespace = request.match_info["namespace"]
        kinds = await self._namespace(session, namespace)
        if not kinds["workflowruns"]:
            raise _forbidden(f"list workflowruns in namespace {namespace}")
        runs = await self._list("workflowruns", namespace)
        waiting = views.pending_approvals(runs)
        may = await self._may_decide(session, namespace, [a.run for a in waiting])
        view = pages.approvals_view(namespace, waiting, may, session.csrf, self.now())
        return self._frame(session, f"Approvals · {namespace}", namespace), view

    async def _run(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        namespace, name = request.match_info["namespace"], request.match_info["run"]
        if not _NAMESPACE.match(namespace) or not _OBJECT.match(name):
            raise _NOT_FOUND
        kinds, may_get, may_decide = await asyncio.gather(
            self._kinds(session, namespace),
            self._may(session, Access("get", "workflowruns", namespace, name)),
            self._may(session, Access("update", "workflowruns", namespace, name)),
        )
        if not may_get:
            raise _forbidden(f"get workflowrun {name} in namespace {namespace}")
        body, (_, pending) = await asyncio.gather(
            self._read("workflowruns", namespace, name), self._pending(kinds, namespace)
        )
        if body is None:
            raise _Stop(404, "Not found", f"There is no workflowrun {name} in {namespace}.")
        now = self.now()
        run = views.run_view(body, now)
        view = run_page.run_view(
            namespace, run, now, csrf=session.csrf, may_decide=may_decide, approvals=pending
        )
        return self._frame(
            session, f"Run {name} · {namespace}", namespace, (f"run {name}", None)
        ), view

    # -- Approve / Reject ----------------------------------------------------------------------

    async def _decide(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        if not isinstance(session, Session):
            return session
        fragment = request.headers.get(FRAGMENT_HEADER) == "1"

        def answer(stop: _Stop) -> web.StreamResponse:
            if fragment:
                response = web.Response(status=stop.status, text=stop.message)
                return self._harden(response)
            return self._error(request, stop, session)

        form = await request.post()
        if not self._csrf_passes(request, session, form.get("csrf")):
            return answer(_csrf_refused())
        namespace, run = request.match_info["namespace"], request.match_info["run"]
        decision = request.match_info["decision"]
        step = form.get("step")
        if not _NAMESPACE.match(namespace) or not _OBJECT.match(run):
            return answer(_NOT_FOUND)
        if not isinstance(step, str) or not _STEP.match(step):
            return answer(_Stop(400, "Which step?", "The form names no valid step."))
        try:
            allowed = await self._may(session, Access("update", "workflowruns", namespace, run))
        except ReviewUnavailable as exc:
            return self._unavailable(request, exc)
        if not allowed:
            return answer(_forbidden(f"update workflowrun {run} in namespace {namespace}"))
        if self.approvals is None:
            return answer(_Stop(503, "Unavailable", "This controller runs no workflows."))
        who = session.identity.username
        try:
            state = await self.approvals.decide(namespace, run, step, decision, who)
        except ApprovalError as exc:
            return answer(_Stop(exc.status, "Not recorded", exc.message))
        except KubeApiError as exc:
            return answer(_Stop(502, "The API server did not answer", f"{exc.code} {exc.reason}"))
        done = "Approved" if decision == "approve" else "Rejected"
        log.info("ui: approval decided", namespace=namespace, run=run, step=step, user=who)
        if fragment:
            text = f"{done}: step {step} of run {run} (recorded as {who})."
            return self._harden(
                web.Response(status=200, text=text, headers={"X-Step-State": state})
            )
        return self._redirect(_safe_next(form.get("next"), layout.run_path(namespace, run)))

    # -- live updates ----------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        session = await self._session(request)
        if not isinstance(session, Session):
            return session
        namespace = request.query.get("ns") or None
        if namespace is not None:
            try:
                await self._namespace(session, namespace)
            except _Stop as stop:
                return self._error(request, stop, session)
            except ReviewUnavailable as exc:
                return self._unavailable(request, exc)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        self._harden(response)
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAM_SECONDS
        since = request.query.get("since", "")
        with self.feed.subscribe(namespace) as subscription:
            if since.isdigit() and self.feed.revision(namespace) > int(since):
                subscription.changed.set()  # it changed after the page was rendered
            try:
                await response.write(b"retry: 2000\n: connected\n\n")
                while not subscription.closed:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(
                            subscription.changed.wait(), min(KEEPALIVE_SECONDS, remaining)
                        )
                    except TimeoutError:
                        await response.write(b": keepalive\n\n")
                        continue
                    if subscription.closed:
                        break
                    subscription.changed.clear()
                    await response.write(b"event: changed\ndata: {}\n\n")
                    await asyncio.sleep(COALESCE_SECONDS)  # throttle: coalesce bursts
            except ConnectionResetError:
                return response
        return response


def _app_of(block: Body) -> str | None:
    spec = block.get("spec")
    return str(spec.get("app")) if isinstance(spec, dict) and spec.get("app") else None
