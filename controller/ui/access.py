"""What every view and action of the page stands on: may this person do it (a
SubjectAccessReview for their identity), and the reads that follow (with the controller's
credentials, only once the person was allowed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from controller.api.kinds import GROUP, VERSION
from controller.kube.objects import Body
from controller.kube.rest import KubeApiError
from controller.ui import frame as layout
from controller.ui.auth import Access, ReviewUnavailable
from controller.ui.html import Safe
from controller.ui.sessions import (
    _NAMESPACE,
    _NOT_FOUND,
    KIND_OF,
    LISTABLE,
    MAX_RUN_REVIEWS,
    Kinds,
    Session,
    SessionPages,
    _forbidden,
    _Stop,
    log,
)

Render = Callable[[web.Request, Session], Awaitable[tuple[layout.Frame, Safe]]]


class Reads(SessionPages):
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

    async def _may_each(
        self, session: Session, verb: str, plural: str, namespace: str, names: list[str]
    ) -> dict[str, bool]:
        """``verb`` on each object: namespace-wide at once, else one review per object (the
        first MAX_RUN_REVIEWS)."""
        if await self._may(session, Access(verb, plural, namespace)):
            return dict.fromkeys(names, True)
        chosen = sorted(set(names))[:MAX_RUN_REVIEWS]
        answers = await asyncio.gather(
            *(self._may(session, Access(verb, plural, namespace, n)) for n in chosen)
        )
        return dict(zip(chosen, answers, strict=True))

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

    async def _events_about(
        self, session: Session, namespace: str, kind: str, name: str
    ) -> list[Body] | str:
        """The Kubernetes Events about one object, or why they are not shown."""
        if not await self._may(session, Access("list", "events", namespace, group="")):
            return "You may not list Events in this namespace."
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        try:
            answer = await self.client.request(
                "GET",
                f"/api/v1/namespaces/{namespace}/events",
                params={"fieldSelector": selector, "limit": "500"},
            )
        except KubeApiError as exc:
            log.warning("ui: events could not be read", code=exc.code, reason=exc.reason)
            return f"The Events could not be read ({exc.code} {exc.reason})."
        return [i for i in answer.get("items") or [] if isinstance(i, dict)]

    def _pending(self, kinds: Kinds, namespace: str) -> int | None:
        """Approvals waiting in ``namespace`` (None: the person may not list runs)."""
        if not kinds.get("workflowruns"):
            return None
        return sum(len(r.approvals) for r in self.feed.runs.pending(namespace))

    # -- views -----------------------------------------------------------------------------

    def _view(self, render: Render) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
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
            notice=self.feed.notice,
        )
