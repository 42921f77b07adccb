"""A workflow's page and its actions: Trigger (``create`` of workflowruns, with an input),
Activate / Pause / Archive (``patch`` of the workflow's ``spec.state``, as ``blockflow
workflow activate|pause|archive``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from aiohttp import web

from controller.kube.rest import MERGE_PATCH, KubeApiError
from controller.ui import frame as layout
from controller.ui import workflow_page
from controller.ui.actions import Actions, Form, _api_failed, _path
from controller.ui.auth import Access, ReviewUnavailable
from controller.ui.html import Safe
from controller.ui.run_index import TRIGGERED_BY, RunFilter
from controller.ui.sessions import Session, _csrf_refused, _forbidden, _Stop, log
from controller.ui.workflow_views import workflow_page_view

#: verb → (the spec.state it sets, what the flash says)
STATES = {
    "activate": ("Active", "activated"),
    "pause": ("Paused", "paused"),
    "archive": ("Archived", "archived"),
}
#: Runs shown on a workflow's page (the run list has the rest).
RECENT = 10
INPUT_MAX = 256 * 1024


class WorkflowRoutes(Actions):
    async def _workflow(self, request: web.Request, session: Session) -> tuple[layout.Frame, Safe]:
        return await self._workflow_page(request, session, "{}", None)

    async def _workflow_page(
        self, request: web.Request, session: Session, input_text: str, error: str | None
    ) -> tuple[layout.Frame, Safe]:
        namespace, name = self._names(request, "workflow")
        kinds, may_get, may_trigger, may_patch = await asyncio.gather(
            self._kinds(session, namespace),
            self._may(session, Access("get", "workflows", namespace, name)),
            self._may(session, Access("create", "workflowruns", namespace)),
            self._may(session, Access("patch", "workflows", namespace, name)),
        )
        if not may_get:
            raise _forbidden(f"get workflow {name} in namespace {namespace}")
        body = await self._read("workflows", namespace, name)
        if body is None:
            raise _Stop(404, "Not found", f"There is no workflow {name} in {namespace}.")
        runs = None
        active = None
        if kinds["workflowruns"]:
            index = self.feed.runs
            runs = index.page(namespace, RunFilter(workflow=name), limit=RECENT).runs
            active = index.active_by_workflow(namespace)
        view = workflow_page_view(body, active)
        controls = workflow_page.WorkflowControls(
            csrf=session.csrf,
            may_trigger=may_trigger,
            may_patch=may_patch,
            input_text=input_text,
            trigger_error=error,
        )
        now = self.now()
        page = workflow_page.workflow_view(
            namespace, view, runs, self._pending(kinds, namespace), now, controls
        )
        crumbs = (("workflows", layout.ns_path(namespace, "workflows")), (name, None))
        return self._frame(session, f"Workflow {name} · {namespace}", namespace, *crumbs), page

    # -- Trigger ---------------------------------------------------------------------------------

    async def _trigger(self, request: web.Request) -> web.StreamResponse:
        """Start a run now with the form's input: to the run's page; a refused input shows the
        workflow's page again with the reason and what was typed."""
        session = await self._session(request)
        if not isinstance(session, Session):
            return session
        try:
            namespace, name = self._names(request, "workflow")
            form = await request.post()
            if not self._csrf_passes(request, session, form.get("csrf")):
                raise _csrf_refused()
            if not await self._may(session, Access("create", "workflowruns", namespace)):
                raise _forbidden(f"create workflowruns in namespace {namespace}")
            text = form.get("input")
            text = text.strip() if isinstance(text, str) else ""
            try:
                run = await self._start(session, namespace, name, text)
            except ValueError as refused:
                frame, view = await self._workflow_page(request, session, text, str(refused))
                # Shown at the form's address: static (what was typed stays), and an action
                # taken from it re-fetches the workflow's own page.
                here = layout.workflow_path(namespace, name)
                frame = dataclasses.replace(frame, live=None, canonical=here)
                return self._html(request, frame, view, 400)
        except _Stop as stop:
            return self._error(request, stop, session)
        except ReviewUnavailable as exc:
            return self._unavailable(request, exc)
        except KubeApiError as exc:
            return self._error(request, _api_failed(exc, f"workflow {name}"), session)
        return self._redirect(layout.run_path(namespace, run))

    async def _start(self, session: Session, namespace: str, name: str, text: str) -> str:
        """Create the run; ValueError says why it cannot start (shown on the form)."""
        from datetime import UTC, datetime

        from controller.workflows.admission import refusal
        from controller.workflows.naming import new_run_body
        from controller.workflows.triggers import refused_input

        if len(text) > INPUT_MAX:
            raise ValueError(f"the input is larger than {INPUT_MAX // 1024} KiB")
        try:
            input_ = json.loads(text) if text else None
        except json.JSONDecodeError as exc:
            raise ValueError(f"the input is not valid JSON: {exc}") from None
        if input_ is not None and not isinstance(input_, dict):
            raise ValueError('the input must be a JSON object, e.g. {"orderId": 42}')
        workflow = await self._read("workflows", namespace, name)
        if workflow is None:
            raise _Stop(404, "Not found", f"There is no workflow {name} in {namespace}.")
        why = refusal(workflow, name, namespace, None) or refused_input(workflow, input_)
        if why is not None:
            raise ValueError(f"cannot trigger: {why}")
        body = new_run_body(
            namespace,
            name,
            workflow["metadata"]["uid"],
            datetime.now(UTC),
            input_=input_,
            trigger="manual",
        )
        body["metadata"]["annotations"] = {TRIGGERED_BY: session.identity.username}
        created = await self.client.request(
            "POST", f"/apis/blockflow.dev/v1alpha1/namespaces/{namespace}/workflowruns", body=body
        )
        run = str(created["metadata"]["name"])
        log.info("ui: run triggered", namespace=namespace, workflow=name, run=run)
        return run

    # -- Activate / Pause / Archive ------------------------------------------------------------

    async def _set_state(self, request: web.Request) -> web.StreamResponse:
        verb = request.match_info["verb"]
        target, done = STATES[verb]
        try:
            namespace, name = self._names(request, "workflow")
        except _Stop as stop:
            return self._error(request, stop)

        async def change(session: Session, form: Form) -> str:
            if verb == "archive" and form.get("confirm") != "yes":
                raise _Stop(400, "Not archived", "Archiving is final: tick the box to confirm.")
            path = _path("workflows", namespace, name)
            try:
                workflow = await self.client.request("GET", path)
                if (workflow.get("spec") or {}).get("state") == "Archived":
                    raise _Stop(
                        409,
                        "Archived",
                        f"Workflow {name} is Archived, which is final: it cannot be {done}.",
                    )
                # The resourceVersion makes the check above and the patch one edit.
                version = workflow["metadata"]["resourceVersion"]
                body = {"metadata": {"resourceVersion": version}, "spec": {"state": target}}
                await self.client.request("PATCH", path, body=body, content_type=MERGE_PATCH)
            except KubeApiError as exc:
                raise _api_failed(exc, f"workflow {name} in {namespace}") from None
            log.info("ui: workflow state set", namespace=namespace, workflow=name, state=target)
            return f"Workflow {name}: state set to {target}."

        back = layout.workflow_path(namespace, name)
        return await self._act(request, Access("patch", "workflows", namespace, name), change, back)
