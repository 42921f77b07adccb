"""The page on the controller's aiohttp server (``/ui/``): its routes, authorization, views.

Sessions (sign-in, cookies, CSRF) are :mod:`controller.ui.sessions`.

Authentication: ``Authorization: Bearer <token>``, or the HttpOnly, SameSite=Lax cookie
set by the sign-in form (or by ``?token=`` once, which redirects to the same URL without
it). Either way the token goes through a TokenReview; no token, or a refused one, gets the
401 sign-in page and no data.

Authorization: every read is a SubjectAccessReview for the person's own identity —
``list`` of a kind in the namespace for lists, ``get`` of the run (or workflow, or App) for
its page, ``list`` of events for a run's Events — and so is every action
(:mod:`controller.ui.actions`, :mod:`controller.ui.workflow_routes`). A namespace where they
may list none of the four kinds is ``403`` whatever is in it. The controller reads with its
own credentials only what the person was allowed, and never a Secret. Run lists page through
the controller's summary of every watched run (:mod:`controller.ui.run_index`).

Actions (POST) need the session's CSRF token (derived from the controller's key and the
bearer token) and, for cookie sessions, an ``Origin`` (or ``Referer``) of this site.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aiohttp import web

from controller.kube.objects import Body
from controller.ui import frame as layout
from controller.ui import pages, run_page, run_views, runs_page, views
from controller.ui.auth import Access, ReviewUnavailable
from controller.ui.html import Safe
from controller.ui.run_index import PAGE_SIZES, SINCE, STATES, RunFilter, parse_position
from controller.ui.sessions import (
    _NAMESPACE,
    _NOT_FOUND,
    _OBJECT,
    COALESCE_SECONDS,
    KEEPALIVE_SECONDS,
    KIND_OF,
    LISTABLE,
    STREAM_SECONDS,
    Session,
    _forbidden,
    _Stop,
)
from controller.ui.workflow_routes import WorkflowRoutes

#: Runs on the Workflows page (the run list has the rest).
RECENT_RUNS = 25


class Page(WorkflowRoutes):
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
        router.add_post(ns + "/{plural:apps|blocks}/{name}/{verb:sync|drain}", self._request)
        router.add_get(ns + "/workflows", self._view(self._workflows))
        router.add_get(ns + "/workflows/{workflow}", self._view(self._workflow))
        router.add_post(ns + "/workflows/{workflow}/trigger", self._trigger)
        router.add_post(ns + "/workflows/{workflow}/{verb:activate|pause|archive}", self._set_state)
        router.add_get(ns + "/approvals", self._view(self._approvals))
        router.add_get(ns + "/runs", self._view(self._runs))
        router.add_get(ns + "/runs/{run}", self._view(self._run))
        router.add_post(ns + "/runs/{run}/{decision:approve|reject}", self._decide)
        router.add_post(ns + "/runs/{run}/{verb:stop|pause|resume|retry}", self._run_verb)
        router.add_post(ns + "/runs/{run}/delete", self._run_delete)
        app.on_shutdown.append(self._shutdown)

    # -- views -----------------------------------------------------------------------------

    async def _namespaces(
        self, request: web.Request, session: Session
    ) -> tuple[layout.Frame, Safe]:
        candidates = sorted(set(self.feed.namespaces()) | set(self.watched))
        cluster = await self._kinds(session, "")
        gate = asyncio.Semaphore(16)

        async def kinds_in(namespace: str) -> dict[str, bool]:
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

    async def _controls(
        self, session: Session, namespace: str, entities: list[tuple[str, str]]
    ) -> pages.Controls:
        """Who may sync which App or Block of the page."""
        may: dict[str, bool] = {}
        for plural in ("apps", "blocks"):
            names = [n for p, n in entities if p == plural]
            if names:
                each = await self._may_each(session, "patch", plural, namespace, names)
                may.update({f"{plural}/{n}": ok for n, ok in each.items()})
        return pages.Controls(session.csrf, "", may)

    async def _apps(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        namespace = request.match_info["namespace"]
        kinds = await self._namespace(session, namespace)
        apps, blocks = await asyncio.gather(
            self._list_if(kinds, "apps", namespace), self._list_if(kinds, "blocks", namespace)
        )
        view = views.apps_view(apps, blocks)
        controls = await self._controls(session, namespace, _entities(apps, blocks))
        controls = pages.Controls(controls.csrf, layout.ns_path(namespace, "apps"), controls.may)
        return (
            self._frame(session, f"Apps · {namespace}", namespace),
            pages.apps_view(namespace, view, self._pending(kinds, namespace), controls=controls),
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
        app, blocks = await asyncio.gather(
            self._read("apps", namespace, name), self._list_if(kinds, "blocks", namespace)
        )
        if app is None:
            raise _Stop(404, "Not found", f"There is no app {name} in {namespace}.")
        mine = None if blocks is None else [b for b in blocks if _app_of(b) == name]
        view = views.apps_view([app], mine)
        controls = await self._controls(session, namespace, _entities([app], mine))
        back = layout.app_path(namespace, name)
        controls = pages.Controls(controls.csrf, back, controls.may)
        pending = self._pending(kinds, namespace)
        return (
            self._frame(session, f"App {name} · {namespace}", namespace, (f"app {name}", None)),
            pages.apps_view(namespace, view, pending, single=True, controls=controls),
        )

    async def _workflows(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        namespace = request.match_info["namespace"]
        kinds = await self._namespace(session, namespace)
        workflows = await self._list_if(kinds, "workflows", namespace)
        index = self.feed.runs
        runs = active = None
        if kinds["workflowruns"]:
            runs = index.page(namespace, RunFilter(), limit=RECENT_RUNS).runs
            active = index.active_by_workflow(namespace)
        now = self.now()
        view = pages.workflows_view(
            namespace,
            None if workflows is None else views.workflow_views(workflows, active),
            runs,
            self._pending(kinds, namespace),
            now,
        )
        return self._frame(session, f"Workflows · {namespace}", namespace), view

    async def _runs(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        """Every run of the namespace, filtered and paged (from the controller's summary)."""
        namespace = request.match_info["namespace"]
        kinds = await self._namespace(session, namespace)
        if not kinds["workflowruns"]:
            raise _forbidden(f"list workflowruns in namespace {namespace}")
        query = _run_query(request)
        now = self.now()
        wanted = RunFilter(
            state=query.state or None,
            workflow=query.workflow or None,
            since=now - SINCE[query.since] if query.since else None,
            search=query.q,
        )
        before = parse_position(request.query.get("before"))
        after = parse_position(request.query.get("after"))
        index = self.feed.runs
        page = index.page(namespace, wanted, limit=query.limit, before=before, after=after)
        workflows = index.workflows(namespace)
        if kinds["workflows"]:
            listed = await self._list("workflows", namespace)
            workflows = sorted({*workflows, *(str(w["metadata"]["name"]) for w in listed)})
        view = runs_page.runs_view(
            namespace,
            query,
            page,
            workflows,
            self._pending(kinds, namespace),
            now,
            first=before is None and after is None,
        )
        return self._frame(session, f"Runs · {namespace}", namespace, ("runs", None)), view

    async def _approvals(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        namespace = request.match_info["namespace"]
        kinds = await self._namespace(session, namespace)
        if not kinds["workflowruns"]:
            raise _forbidden(f"list workflowruns in namespace {namespace}")
        waiting = [(r, a) for r in self.feed.runs.pending(namespace) for a in r.approvals]
        waiting.sort(key=lambda pair: (pair[1].since or _FAR, pair[0].name, pair[1].step))
        names = [r.name for r, _ in waiting]
        may = await self._may_each(session, "update", "workflowruns", namespace, names)
        view = pages.approvals_view(namespace, waiting, may, session.csrf, self.now())
        return self._frame(session, f"Approvals · {namespace}", namespace), view

    async def _run(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        namespace, name = self._names(request, "run")
        kinds, may_get, may_decide, may_stop, may_delete = await asyncio.gather(
            self._kinds(session, namespace),
            self._may(session, Access("get", "workflowruns", namespace, name)),
            self._may(session, Access("update", "workflowruns", namespace, name)),
            self._may(session, Access("patch", "workflowruns", namespace, name)),
            self._may(session, Access("delete", "workflowruns", namespace, name)),
        )
        if not may_get:
            raise _forbidden(f"get workflowrun {name} in namespace {namespace}")
        body, events = await asyncio.gather(
            self._read("workflowruns", namespace, name),
            self._events_about(session, namespace, "WorkflowRun", name),
        )
        if body is None:
            raise _Stop(404, "Not found", f"There is no workflowrun {name} in {namespace}.")
        now = self.now()
        run = run_views.run_view(body, now)
        related = None
        summary = self.feed.runs.get(namespace, name)
        if kinds["workflowruns"] and summary is not None:
            related = self.feed.runs.related(namespace, summary)
        view = run_page.run_view(
            namespace,
            run,
            now,
            controls=run_page.RunControls(session.csrf, may_decide, may_stop, may_delete),
            approvals=self._pending(kinds, namespace),
            related=related,
            events=events if isinstance(events, str) else run_views.event_views(events),
        )
        crumbs = (("runs", layout.ns_path(namespace, "runs")), (name, None))
        return self._frame(session, f"Run {name} · {namespace}", namespace, *crumbs), view

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


_FAR = datetime.max.replace(tzinfo=UTC)


def _run_query(request: web.Request) -> runs_page.RunQuery:
    """The run list's query, each value checked (anything else is ignored)."""
    query = request.query
    state = query.get("state", "")
    since = query.get("since", "")
    workflow = query.get("workflow", "")
    limit = query.get("limit", "")
    return runs_page.RunQuery(
        state=state if state in STATES or state == "active" else "",
        workflow=workflow if _OBJECT.match(workflow) else "",
        since=since if since in SINCE else "",
        q=query.get("q", "").strip()[:100],
        limit=int(limit) if limit.isdigit() and int(limit) in PAGE_SIZES else 50,
    )


def _entities(apps: list[Body] | None, blocks: list[Body] | None) -> list[tuple[str, str]]:
    return [("apps", views.name_of(a)) for a in apps or ()] + [
        ("blocks", views.name_of(b)) for b in blocks or ()
    ]
