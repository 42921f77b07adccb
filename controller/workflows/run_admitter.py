"""Admitting a new run: which version it runs, whether its input fits, and `concurrency`.

The decision itself is pure (:mod:`controller.workflows.admission`); this room gathers
what it needs — the workflow's activated spec, the other active runs (those with the same
`concurrency.key` value when the workflow has one) — renders what the run keeps from its
input (its concurrency key, its `cancelOn` events), and carries out a Replace.
"""

from __future__ import annotations

import json
from datetime import datetime

from controller import metrics
from controller.api.workflow import WorkflowSpec
from controller.api.workflowrun import EventWait, RunError, RunState, WorkflowRunStatus
from controller.kube.api import KubeApi
from controller.kube.objects import Body, Key, spec_of, status_of, workflow_ref
from controller.runtime.store import Cache
from controller.workflows import admission, executor
from controller.workflows.admission import Admission, Verdict
from controller.workflows.run_context import cel_context
from controller.workflows.run_index import NOT_ADMITTED, Indexes
from controller.workflows.templating import TemplateError, render
from controller.workflows.triggers import refused_input

#: A concurrency key longer than this is cut (it is kept in the run's status).
MAX_KEY = 253


class RunAdmitter:
    def __init__(self, api: KubeApi, workflows: Cache, index: Indexes) -> None:
        self.api = api
        self.workflows = workflows
        self.index = index

    async def admit(
        self, key: Key, body: Body, status: WorkflowRunStatus, now: datetime
    ) -> WorkflowRunStatus | None:
        """The run's new status (running with its snapshot, queued, or ended), or None when
        it stays queued as it is."""
        name = workflow_ref(body)
        workflow = self.workflows.get(Key("Workflow", key.namespace, name))
        spec: WorkflowSpec | None = None
        if workflow is not None and (status_of(workflow).get("activation") or {}).get("spec"):
            spec = WorkflowSpec.model_validate(admission.activated_spec(workflow)[0])
        concurrency = spec.concurrency if spec is not None else None
        try:
            ckey = self._concurrency_key(body, status, spec)
            cancel_on = self._cancel_on(body, status, spec)
        except TemplateError as exc:
            return executor.finish(status, RunState.FAILED, now, RunError(message=str(exc)))
        others = [k for k in self.index.active(key.namespace, name) if k != key]
        if ckey is not None:
            others = [k for k in others if self._key_of(k) == ckey]
        verdict = admission.admit(
            workflow, name, key.namespace, spec_of(body).get("workflowVersion"), concurrency, others
        )
        if verdict.verdict is Verdict.RUN and workflow is not None:
            refused = refused_input(workflow, spec_of(body).get("input"))
            if refused is not None:
                metrics.RUN_INPUT_REFUSED.labels("run").inc()
                verdict = Admission(Verdict.REFUSE, f"spec.input: {refused}")
        if verdict.verdict is Verdict.REFUSE:
            return executor.finish(status, RunState.FAILED, now, RunError(message=verdict.message))
        if verdict.verdict is Verdict.SKIP:
            error = RunError(message=verdict.message)
            return executor.finish(status, RunState.TERMINATED, now, error)
        if verdict.verdict is Verdict.QUEUE:
            if status.state is RunState.QUEUED:
                return None
            return status.model_copy(
                update={"state": RunState.QUEUED, "concurrency_key": ckey, "cancel_on": cancel_on}
            )
        for victim in verdict.cancel:
            await self.api.patch_spec(
                "WorkflowRun", victim.namespace, victim.name, {"spec": {"cancel": True}}
            )
        assert workflow is not None
        snapshot, version = admission.activated_spec(workflow)
        return status.model_copy(
            update={
                "state": RunState.RUNNING,
                "workflow_version": version,
                "workflow_spec": snapshot,
                "started_at": now,
                "concurrency_key": ckey,
                "cancel_on": cancel_on,
            }
        )

    def next_queued(self, namespace: str, workflow: str, concurrency_key: str | None) -> Key | None:
        """The queued run to look at when a run of this key ended: the oldest with the same
        key (or the oldest of all when the workflow has no key)."""
        queued = self.index.in_states(namespace, workflow, *NOT_ADMITTED)
        same = [k for k in queued if self._key_of(k) == concurrency_key]
        found = same or queued
        return found[0] if found else None

    def _key_of(self, key: Key) -> str | None:
        entry = self.index.runs.get(key)
        return None if entry is None else entry.concurrency_key

    @staticmethod
    def _concurrency_key(
        body: Body, status: WorkflowRunStatus, spec: WorkflowSpec | None
    ) -> str | None:
        if status.concurrency_key is not None:
            return status.concurrency_key
        if spec is None or spec.concurrency is None or spec.concurrency.key is None:
            return None
        value = render(spec.concurrency.key, cel_context(body, status), "spec.concurrency.key")
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return text[:MAX_KEY]

    @staticmethod
    def _cancel_on(
        body: Body, status: WorkflowRunStatus, spec: WorkflowSpec | None
    ) -> list[EventWait]:
        if status.cancel_on or spec is None:
            return status.cancel_on
        context = cel_context(body, status)
        return [
            EventWait(
                type=c.event,
                match=render(c.match, context, f"spec.cancelOn[{i}].match"),
            )
            for i, c in enumerate(spec.cancel_on)
        ]
