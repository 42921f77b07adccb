"""Resuming a waiting run from outside: a deferred step's finish callback, a hook payload,
an event a `waitForEvent` step (or a cancelOn) waits for.

Both arrive over HTTP, find the run through the run index (by the hash of the token in
the URL), and write the step's new state under the run's lock — the same lock its
reconciles take — with the same resourceVersion-checked write. Then the run is queued
to go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from controller.api.workflow import Step, WorkflowSpec
from controller.api.workflowrun import StepRecord, StepState, WorkflowRunStatus
from controller.handlers.protocol import FinishRequest, HttpRequestData, NoOpReply, OutcomeReply
from controller.handlers.transport import HandlerError
from controller.kube.objects import Key, status_of
from controller.kube.rest import KubeApiError
from controller.server.tokens import token_hash
from controller.workflows import executor
from controller.workflows.run_context import cel_context, find_record, find_step
from controller.workflows.run_index import FINAL_STATES
from controller.workflows.runs import Conflict, RunRuntime
from controller.workflows.steps import HookDelivery
from controller.workflows.templating import TemplateError, render


class RunResumer:
    def __init__(self, runs: RunRuntime) -> None:
        self.runs = runs

    async def finish_callback(
        self, token: str, request: HttpRequestData
    ) -> tuple[int, dict[str, Any]]:
        """A POST to a deferred step's finishCallbackUrl: the handler's `finish` decides."""
        found = self.runs.index.callbacks.get(token_hash(token))
        if found is None:
            return 404, {"error": "unknown callback URL"}
        key, name = found
        async with self.runs.controller.locked(key):
            return await self._finish_callback(key, name, request)

    async def _finish_callback(
        self, key: Key, name: str, request: HttpRequestData
    ) -> tuple[int, dict[str, Any]]:
        runs = self.runs
        body = await runs.api.get("WorkflowRun", key.namespace, key.name)
        if body is None:
            runs.index.drop(key)
            return 404, {"error": "unknown callback URL"}
        status = WorkflowRunStatus.model_validate(status_of(body))
        record = find_record(status, name)
        if record.state is not StepState.WAITING or status.state in FINAL_STATES:
            return 410, {
                "error": f"step {name} of run {key.name} is {record.state.value}; "
                "it no longer takes callbacks"
            }
        spec = WorkflowSpec.model_validate(status.workflow_spec or {})
        step = find_step(spec, name)
        assert step.uses.app is not None
        try:
            with_ = render(step.with_, cel_context(body, status), f"step {step.name}: with")
            app = await runs.apps.app_handle(key.namespace, step.uses.app)
            reply = await app.call(
                FinishRequest(
                    entity=runs.entity(body, status, step, with_),
                    app=app.input,
                    with_=with_ if isinstance(with_, dict) else {},
                    request=request,
                    metadata=runs.metadata(record),
                ),
            )
        except (HandlerError, TemplateError) as exc:
            return 502, {"error": f"the step's handler could not finish it: {exc}"}
        if isinstance(reply, NoOpReply):
            return 202, {"run": key.name, "step": name, "state": "waiting"}
        recorded = executor.record_reply(spec, status, name, reply, runs.now(), runs.rng)
        try:
            await runs.write(body, recorded)
        except Conflict:
            return 409, {"error": "the run changed while the callback was handled; retry"}
        runs.controller.add(key)
        after = find_record(recorded, name)
        return 200, {"run": key.name, "step": name, "state": after.state.value}

    async def resume_hook(
        self, key: Key, digest: str, deliver: Callable[[Step, StepRecord], HookDelivery]
    ) -> str | None:
        """Hand a hook payload to the waiting step of one run (under its lock). Returns the
        step's new state, or None when that run no longer waits for this token.
        `deliver` raises HookRejected (nothing is written) for a payload it refuses."""
        runs = self.runs
        async with runs.controller.locked(key):
            body = await runs.api.get("WorkflowRun", key.namespace, key.name)
            if body is None:
                runs.index.drop(key)
                return None
            status = WorkflowRunStatus.model_validate(status_of(body))
            record = next(
                (
                    r
                    for r in status.steps
                    if r.hook_token_hash == digest and r.state is StepState.WAITING
                ),
                None,
            )
            if record is None or status.state in FINAL_STATES:
                return None
            spec = WorkflowSpec.model_validate(status.workflow_spec or {})
            delivery = deliver(find_step(spec, record.name), record)
            updated = status.model_copy(
                update={
                    "steps": [
                        r.model_copy(update={"received": delivery.received})
                        if r.name == record.name
                        else r
                        for r in status.steps
                    ]
                }
            )
            if delivery.reply is not None:
                updated = executor.record_reply(
                    spec, updated, record.name, delivery.reply, runs.now(), runs.rng
                )
            await runs.write(body, updated)
            runs.controller.add(key)
            return find_record(updated, record.name).state.value

    async def deliver_event(self, namespace: str, event: dict[str, Any]) -> int:
        """An event to the runs waiting for it (found by index): a waiting `waitForEvent`
        step takes it as its outcome `received`; a run whose cancelOn it matches is
        cancelled. Returns how many runs it reached."""
        reached = 0
        for key, step in self.runs.index.waits.matching(namespace, event):
            if step is None:
                with contextlib.suppress(KubeApiError):
                    await self.runs.api.patch_spec(
                        "WorkflowRun", key.namespace, key.name, {"spec": {"cancel": True}}
                    )
                    reached += 1
                continue
            async with self.runs.controller.locked(key):
                reached += await self._deliver(key, step, event)
        return reached

    async def _deliver(self, key: Key, name: str, event: dict[str, Any]) -> int:
        runs = self.runs
        body = await runs.api.get("WorkflowRun", key.namespace, key.name)
        if body is None:
            runs.index.drop(key)
            return 0
        status = WorkflowRunStatus.model_validate(status_of(body))
        record = next((r for r in status.steps if r.name == name), None)
        if (
            record is None
            or record.state is not StepState.WAITING
            or record.awaits is None
            or status.state in FINAL_STATES
        ):
            return 0
        spec = WorkflowSpec.model_validate(status.workflow_spec or {})
        reply = OutcomeReply(id="received", data=event)
        updated = executor.record_reply(spec, status, name, reply, runs.now(), runs.rng)
        try:
            await runs.write(body, updated)
        except Conflict:  # changed meanwhile (a pause, a cancel): the next event may reach it
            return 0
        runs.controller.add(key)
        return 1

    def workflow_uid(self, key: Key) -> str | None:
        """The uid of the workflow a waiting run belongs to (its hook key derives from it)."""
        name = self.runs.index.workflow_of(key)
        if name is None:
            return None
        body = self.runs.workflows.get(Key("Workflow", key.namespace, name))
        return None if body is None else str(body["metadata"].get("uid"))
