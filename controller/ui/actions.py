"""The page's actions on runs, Apps and Blocks: Approve / Reject, Stop, Sync, Drain.

Each is a POST with the session's CSRF token (and, for cookie sessions, this site's Origin),
allowed only when a SubjectAccessReview says the person may do the same with kubectl:
``update`` of the run to decide an approval, ``patch`` of the run to stop it (``spec.cancel:
true``, as ``blockflow run stop``), ``patch`` of the App or Block to sync or drain it (the
request annotations ``blockflow sync|drain`` set). The controller then makes the change with its own
credentials. With JavaScript the page posts without leaving (``X-Blockflow-Fragment: 1``:
a line of text to flash); without it the browser follows a redirect back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from controller.api.kinds import GROUP, VERSION
from controller.kube.rest import MERGE_PATCH, KubeApiError
from controller.ui import frame as layout
from controller.ui.access import Reads
from controller.ui.approvals import ApprovalError
from controller.ui.auth import Access, ReviewUnavailable
from controller.ui.run_index import FINAL
from controller.ui.sessions import (
    _NAMESPACE,
    _NOT_FOUND,
    _OBJECT,
    _STEP,
    FRAGMENT_HEADER,
    Session,
    _csrf_refused,
    _forbidden,
    _safe_next,
    _Stop,
    log,
)

#: The annotations `blockflow sync|drain` set (the lifecycle engine acts when they change).
SYNC_ANNOTATION = "blockflow.dev/requested-sync-at"
DRAIN_ANNOTATION = "blockflow.dev/requested-drain-at"

Form = MultiDictProxy[Any]
#: What an action does once allowed: the message to flash, or raises _Stop.
Change = Callable[[Session, Form], Awaitable[str]]


def _path(plural: str, namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}"


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _api_failed(exc: KubeApiError, what: str) -> _Stop:
    if exc.code == 404:
        return _Stop(404, "Not found", f"There is no {what}.")
    if exc.code == 409:
        return _Stop(409, "Changed meanwhile", f"{what} changed meanwhile; try again.")
    return _Stop(502, "The API server did not answer", f"{exc.code} {exc.reason}: {exc.message}")


class Actions(Reads):
    async def _act(
        self,
        request: web.Request,
        access: Access,
        change: Change,
        back: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        """The frame of every action: session, CSRF and origin, the person's review, the
        change, and the answer (a line of text for the script, or a redirect)."""
        session = await self._session(request)
        if not isinstance(session, Session):
            return session
        fragment = request.headers.get(FRAGMENT_HEADER) == "1"

        def refuse(stop: _Stop) -> web.StreamResponse:
            if fragment:
                return self._harden(web.Response(status=stop.status, text=stop.message))
            return self._error(request, stop, session)

        form = await request.post()
        if not self._csrf_passes(request, session, form.get("csrf")):
            return refuse(_csrf_refused())
        try:
            if not await self._may(session, access):
                what = f"{access.verb} {access.resource.rstrip('s')} {access.name}".strip()
                return refuse(_forbidden(f"{what} in namespace {access.namespace}"))
            done = await change(session, form)
        except _Stop as stop:
            return refuse(stop)
        except ReviewUnavailable as exc:
            return self._unavailable(request, exc)
        if fragment:
            return self._harden(web.Response(status=200, text=done, headers=headers))
        return self._redirect(_safe_next(form.get("next"), back))

    @staticmethod
    def _names(request: web.Request, key: str) -> tuple[str, str]:
        namespace, name = request.match_info["namespace"], request.match_info[key]
        if not _NAMESPACE.match(namespace) or not _OBJECT.match(name):
            raise _NOT_FOUND
        return namespace, name

    # -- Approve / Reject ----------------------------------------------------------------------

    async def _decide(self, request: web.Request) -> web.StreamResponse:
        try:
            namespace, run = self._names(request, "run")
        except _Stop as stop:
            return self._error(request, stop)
        decision = request.match_info["decision"]
        state: dict[str, str] = {}

        async def change(session: Session, form: Form) -> str:
            step = form.get("step")
            if not isinstance(step, str) or not _STEP.match(step):
                raise _Stop(400, "Which step?", "The form names no valid step.")
            if self.approvals is None:
                raise _Stop(503, "Unavailable", "This controller runs no workflows.")
            who = session.identity.username
            try:
                state["X-Step-State"] = await self.approvals.decide(
                    namespace, run, step, decision, who
                )
            except ApprovalError as exc:
                raise _Stop(exc.status, "Not recorded", exc.message) from None
            except KubeApiError as exc:
                raise _api_failed(exc, f"workflowrun {run}") from None
            log.info("ui: approval decided", namespace=namespace, run=run, step=step, user=who)
            done = "Approved" if decision == "approve" else "Rejected"
            return f"{done}: step {step} of run {run} (recorded as {who})."

        access = Access("update", "workflowruns", namespace, run)
        return await self._act(
            request, access, change, layout.run_path(namespace, run), headers=state
        )

    # -- Stop, Pause, Resume, Retry ------------------------------------------------------------

    async def _run_verb(self, request: web.Request) -> web.StreamResponse:
        """Stop (spec.cancel), pause and resume (spec.paused), retry (spec.retry raised by
        one, who asked in blockflow.dev/retried-by): edits of the run, as the CLI makes them."""
        verb = request.match_info["verb"]
        try:
            namespace, run = self._names(request, "run")
        except _Stop as stop:
            return self._error(request, stop)
        path = _path("workflowruns", namespace, run)
        what = f"workflowrun {run} in {namespace}"

        async def change(session: Session, form: Form) -> str:
            try:
                patch = await self._run_patch(verb, path, what, session)
                await self.client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
            except KubeApiError as exc:
                raise _api_failed(exc, what) from None
            log.info(
                "ui: run change requested",
                verb=verb,
                namespace=namespace,
                run=run,
                user=_who(session),
            )
            return {
                "stop": f"Stop requested: run {run} is being cancelled.",
                "pause": f"Pause requested: run {run} starts no new step.",
                "resume": f"Resume requested: run {run} goes on.",
                "retry": f"Retry requested: run {run} runs its unfinished steps again.",
            }[verb]

        access = Access("patch", "workflowruns", namespace, run)
        return await self._act(request, access, change, layout.run_path(namespace, run))

    async def _run_delete(self, request: web.Request) -> web.StreamResponse:
        """Delete an ended run (as `blockflow run delete`), once confirmed; a run that has not
        ended is refused: stop it first."""
        try:
            namespace, run = self._names(request, "run")
        except _Stop as stop:
            return self._error(request, stop)
        path = _path("workflowruns", namespace, run)
        what = f"workflowrun {run} in {namespace}"

        async def change(session: Session, form: Form) -> str:
            if form.get("confirm") != "yes":
                raise _Stop(400, "Not deleted", "Deleting drops the run's history: tick the box.")
            try:
                body = await self.client.request("GET", path)
                state = (body.get("status") or {}).get("state")
                if state not in FINAL:
                    raise _Stop(
                        409,
                        "Not deleted",
                        f"{what} is {state or 'not started'}: stop it first, then delete it.",
                    )
                await self.client.request(
                    "DELETE",
                    path,
                    body={"preconditions": {"uid": body["metadata"]["uid"]}},
                )
            except KubeApiError as exc:
                raise _api_failed(exc, what) from None
            log.info("ui: run deleted", namespace=namespace, run=run, user=_who(session))
            return f"Deleted: run {run}."

        access = Access("delete", "workflowruns", namespace, run)
        return await self._act(request, access, change, layout.ns_path(namespace, "runs"))

    async def _run_patch(
        self, verb: str, path: str, what: str, session: Session
    ) -> dict[str, object]:
        if verb == "stop":
            return {"spec": {"cancel": True}}
        if verb in ("pause", "resume"):
            return {"spec": {"paused": verb == "pause"}}
        run = await self.client.request("GET", path)
        status = run.get("status") or {}
        state = status.get("state")
        if state not in ("failed", "terminated", "cancelled"):
            raise _Stop(
                409,
                "Not retried",
                f"{what} is {state or 'not started'}: only a failed, terminated or cancelled "
                "run can be retried.",
            )
        return {
            "metadata": {
                "annotations": {"blockflow.dev/retried-by": _who(session)},
                "resourceVersion": run["metadata"]["resourceVersion"],
            },
            # A cancelled run retried must not be cancelled again at once.
            "spec": {"retry": len(status.get("retries") or []) + 1, "cancel": False},
        }

    # -- Sync and Drain ----------------------------------------------------------------------------

    async def _request(self, request: web.Request) -> web.StreamResponse:
        """Sync or drain an App or Block: the request annotation the lifecycle engine acts on,
        as ``blockflow sync|drain`` sets it (a drain only once confirmed: it deprovisions)."""
        plural, verb = request.match_info["plural"], request.match_info["verb"]
        try:
            namespace, name = self._names(request, "name")
        except _Stop as stop:
            return self._error(request, stop)
        kind = "app" if plural == "apps" else "block"
        annotation = SYNC_ANNOTATION if verb == "sync" else DRAIN_ANNOTATION

        async def change(session: Session, form: Form) -> str:
            if verb == "drain" and form.get("confirm") != "yes":
                raise _Stop(400, "Not drained", "Draining deprovisions: tick the box to confirm.")
            body = {"metadata": {"annotations": {annotation: _stamp()}}}
            try:
                await self.client.request(
                    "PATCH", _path(plural, namespace, name), body=body, content_type=MERGE_PATCH
                )
            except KubeApiError as exc:
                raise _api_failed(exc, f"{kind} {name} in {namespace}") from None
            log.info("ui: request annotated", verb=verb, namespace=namespace, kind=kind, name=name)
            return f"{verb.capitalize()} requested: {kind} {name}."

        back = layout.ns_path(namespace, "apps")
        return await self._act(request, Access("patch", plural, namespace, name), change, back)


def _who(session: Session) -> str:
    return session.identity.username
