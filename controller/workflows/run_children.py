"""Runs started by `workflow` steps, and the parents that wait for them.

A `workflow` step creates its child run (:mod:`controller.workflows.steps.workflow`) and
waits holding nothing. The child's end is noticed wherever the controller sees it — its
own final write, or a watch event after a restart — and the parent is queued
(:meth:`ChildRuns.wake_parent`); the parent's reconcile records the child's output or
failure as the step's reply (:meth:`ChildRuns.ended`). A child whose step no longer waits
for it — the parent ended or was cancelled, the step timed out — is cancelled
(:meth:`ChildRuns.stop`).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from datetime import datetime

from controller.api.workflow import WorkflowSpec
from controller.api.workflowrun import StepState, WorkflowRunStatus
from controller.handlers.protocol import ErrorReply
from controller.kube.api import KubeApi
from controller.kube.objects import Key, status_of
from controller.kube.rest import KubeApiError
from controller.workflows import executor
from controller.workflows.executor import StepReply
from controller.workflows.run_context import child_reply
from controller.workflows.run_index import FINAL_STATES, Indexes, RunEntry


class ChildRuns:
    def __init__(self, api: KubeApi, index: Indexes, enqueue: Callable[[Key], None]) -> None:
        self.api = api
        self.index = index
        self.enqueue = enqueue

    async def ended(
        self,
        key: Key,
        spec: WorkflowSpec,
        status: WorkflowRunStatus,
        now: datetime,
        rng: random.Random,
    ) -> WorkflowRunStatus:
        """The status with the ends of child runs its waiting `workflow` steps started."""
        for record in status.steps:
            if record.state is not StepState.WAITING or not record.child or record.error:
                continue
            child = Key("WorkflowRun", key.namespace, record.child)
            entry = self.index.runs.get(child)
            if entry is not None and entry.state not in FINAL_STATES:
                continue
            body = await self.api.get("WorkflowRun", key.namespace, record.child)
            if body is None or body.get("_gone"):
                reply: StepReply = ErrorReply(
                    message=f"step {record.name}: its run {record.child} was deleted",
                    retryable=False,
                )
            else:
                ended = WorkflowRunStatus.model_validate(status_of(body))
                if ended.state not in FINAL_STATES:
                    continue
                reply = child_reply(record.name, record.child, ended)
            status = executor.record_reply(spec, status, record.name, reply, now, rng)
        return status

    def wake_parent(self, key: Key, entry: RunEntry) -> None:
        """A child run that ended: the run whose step waits for it looks again."""
        if entry.parent is None or entry.state not in FINAL_STATES:
            return
        parent = Key("WorkflowRun", key.namespace, entry.parent)
        found = self.index.runs.get(parent)
        if found is not None and found.state not in FINAL_STATES and key.name in found.children:
            self.enqueue(parent)

    async def stop(self, key: Key, status: WorkflowRunStatus) -> None:
        """Children whose step no longer waits for them (the parent ended, was cancelled, or
        the step timed out) are cancelled."""
        for record in status.steps:
            if not record.child or (record.state is StepState.WAITING and not record.error):
                continue
            entry = self.index.runs.get(Key("WorkflowRun", key.namespace, record.child))
            if entry is None or entry.state in FINAL_STATES:
                continue
            with contextlib.suppress(KubeApiError):
                await self.api.patch_spec(
                    "WorkflowRun", key.namespace, record.child, {"spec": {"cancel": True}}
                )
