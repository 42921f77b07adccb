"""The WorkflowRun runtime: drives each run through the pure executor, durably.

How a run moves (all of it read from and written to the run's status):

1. **admit** — pick the workflow version (the activated spec, snapshotted into the
   run), apply `concurrency` (:mod:`controller.workflows.admission`), count the run as
   started;
2. **call** — :func:`executor.begin_attempt` is written *before* the step is called,
   with its deterministic `uniqueExecutionId` (and the hash of its finish-callback
   token), so a controller killed mid-call re-issues the same call with the same key;
3. **record** — the reply (or a wait: a sleep, a hook, a deferred step, a retry
   backoff) is written; the loop goes on while there is something to call;
4. **finish** — the run's final state, the Workflow's counters (through the one writer
   of a Workflow's counters), history limits, events (`WorkflowRun.completed` /
   `.failed`) for other workflows.

Nothing waits in memory. A waiting run is a small index entry (its workflow, state,
token hashes) and, when it has a wake-up time, one entry in the queue's heap. Every
status write carries the resourceVersion it was computed from: a concurrent writer
(another replica, a user's `spec.cancel`) makes it fail with 409, and the run is
re-read and re-planned. A reconcile returns when to look again; the keyed controller
owns the queue, the per-run lock and retries.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from controller.api.common import Condition
from controller.api.workflow import Step, WorkflowSpec
from controller.api.workflowrun import (
    RunError,
    RunState,
    StepRecord,
    WorkflowRunStatus,
)
from controller.handlers.protocol import CallMetadata, EntityInput
from controller.kube.api import KubeApi
from controller.kube.decoding import undecodable
from controller.kube.objects import Body, Key, generation, spec_of, status_of, workflow_ref
from controller.kube.rest import KubeApiError
from controller.logs import get_logger
from controller.runtime.controller import DONE, NOW, KeyedController, Outcome
from controller.runtime.events import EventPoster
from controller.runtime.store import Cache
from controller.workflows import counters, executor, run_control
from controller.workflows.activator import Apps, TokenKeys
from controller.workflows.executor import Kind
from controller.workflows.run_admitter import RunAdmitter
from controller.workflows.run_calls import StepCaller
from controller.workflows.run_children import ChildRuns
from controller.workflows.run_context import (
    run_conditions,
    run_ended_data,
    unobserved,
)
from controller.workflows.run_index import (
    ACTIVE_STATES,
    FINAL_STATES,
    NOT_ADMITTED,
    Indexes,
)
from controller.workflows.steps import Builtins
from controller.workflows.workflow_status import WorkflowStatusWriter

log = get_logger("blockflow.runs")

MAX_LOOP = 10_000
#: How long a reconcile that started calls waits for their answers before it lets the run
#: go (holding its lock): steps that answer at once go on in the same reconcile.
LINGER_SECONDS = 0.02
#: The annotation a client sets, with spec.retry, to say who retries a run.
RETRIED_BY = "blockflow.dev/retried-by"


def _retried_message(status: WorkflowRunStatus) -> str:
    last = status.retries[-1]
    steps = ", ".join(last.steps) or "none"
    who = f" by {last.by}" if last.by else ""
    n, was = len(status.retries), last.previous_state.value
    return f"retry {n}{who} from {was}: steps again: {steps}"


class Conflict(Exception):
    """The run changed under us (409): re-read and re-plan."""


class Publish(Protocol):
    def __call__(
        self, namespace: str, type_: str, source: str, id_: str, data: Any
    ) -> Awaitable[int]: ...


class RunRuntime:
    def __init__(
        self,
        api: KubeApi,
        *,
        apps: Apps,
        workflows: Cache,
        status: WorkflowStatusWriter,
        index: Indexes,
        tokens: TokenKeys,
        builtins: Builtins,
        publish: Publish,
        events: EventPoster,
        workers: int = 16,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        on_write: Callable[[Body], None] | None = None,
    ) -> None:
        self.api = api
        self.apps = apps
        self.workflows = workflows
        self.status = status
        self.index = index
        self.tokens = tokens
        self.builtins = builtins
        self.publish = publish
        self.events = events
        self.now = now
        self.rng = rng or random.Random()
        self.controller: KeyedController[Key] = KeyedController(
            "runs", self.reconcile, workers=workers
        )
        #: Calls in flight, and their answers until they are recorded.
        self.caller = StepCaller(
            apps=apps,
            builtins=builtins,
            tokens=tokens,
            workflows=workflows,
            now=now,
            answered=self.controller.add,
        )
        self.admitter = RunAdmitter(api, workflows, index)
        #: Runs started by `workflow` steps, and the parents waiting for them.
        self.children = ChildRuns(api, index, self.controller.add)
        #: Called after each status write of a run (a seam for fault-injection tests).
        self.on_write = on_write
        self._own_writes: dict[Key, list[str]] = {}
        #: Runs with calls in flight: the body last written (dropped on any other change).
        self._latest: dict[Key, Body] = {}

    @property
    def processed(self) -> int:
        return self.controller.processed

    # -- intake --------------------------------------------------------------------------

    def observe(self, body: Body, event_type: str | None) -> None:
        key = Key.of(body)
        if event_type == "DELETED":
            entry = self.index.drop(key)
            self.controller.forget(key)
            self.caller.forget(key)
            self._own_writes.pop(key, None)
            self._latest.pop(key, None)
            if entry is not None:
                self._wake_queued(key.namespace, entry.workflow, entry.concurrency_key)
            return
        rv = body["metadata"].get("resourceVersion")
        own = self._own_writes.get(key)
        if own is not None and rv in own:
            # The echo of our own write: already indexed and planned. The watch delivers an
            # object's versions in order but may skip some (events batched): our writes
            # before this one will never echo, those after it still may.
            later = own[own.index(rv) + 1 :]
            if later:
                self._own_writes[key] = later
            else:
                del self._own_writes[key]
            return
        self._latest.pop(key, None)  # changed by someone else: not what we last wrote
        if self.index.is_older(key, body):
            # Older than our own write, already indexed and planned (its echo is skipped
            # above): indexing it would put back a state the run has left, for good.
            return
        entry = self.index.put(key, body)
        self.children.wake_parent(key, entry)
        outcome = self._plan(body)
        if outcome.requeue_after is not None:
            self.controller.add_after(key, outcome.requeue_after)

    def _plan(self, body: Body) -> Outcome:
        """When to process the run — now, later, or not at all — from its status alone."""
        status = status_of(body)
        state = status.get("state")
        if undecodable(body) and state not in FINAL_STATES:
            return NOW  # to be failed with the reason
        if state in FINAL_STATES:
            accounted = status.get("accounted") or []
            mark = "finished" if not status.get("retries") else f"finished-{len(status['retries'])}"
            retry = int(spec_of(body).get("retry") or 0) > len(status.get("retries") or [])
            if mark not in accounted or unobserved(body) or retry:
                return NOW
            return DONE
        if state in NOT_ADMITTED or spec_of(body).get("cancel") or unobserved(body):
            return NOW  # a spec change (pause, resume, …) is acted on at once
        try:
            spec = WorkflowSpec.model_validate(status.get("workflowSpec") or {})
            run_status = WorkflowRunStatus.model_validate(status)
        except ValidationError:
            return NOW  # let the reconcile fail it with a clear message
        action = executor.next_action(spec, run_status, self.now())
        if action.kind in (Kind.CALL, Kind.FINISH):
            return NOW
        if action.kind is Kind.WAIT and action.at is not None:
            return Outcome.after((action.at - self.now()).total_seconds())
        return DONE

    # -- one reconcile -------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Outcome:
        # The run as last written before its calls started, if nothing newer was seen: a
        # call's answer is recorded without reading the run again (a stale copy is a 409).
        body = self._latest.pop(key, None)
        if body is not None and self.index.is_older(key, body):
            # Kept before a write of ours that is newer: never act on it (a step it shows
            # running would be called again).
            body = None
        if body is None:
            body = await self.api.get("WorkflowRun", key.namespace, key.name)
        for _ in range(MAX_LOOP):
            if body is None or body.get("_gone"):
                self.index.drop(key)
                return DONE
            try:
                body, outcome = await self._advance(key, body)
            except Conflict:
                body = await self.api.get("WorkflowRun", key.namespace, key.name)
                continue
            if outcome is not None:
                return outcome
        return NOW

    async def _advance(self, key: Key, body: Body) -> tuple[Body, Outcome | None]:
        """Carry the run as far as it goes now. Transitions happen in memory; the status is
        written once before steps are called (so a call is durable before it is made), and
        once when the run waits or ends. Returns the body and when to look again (None:
        re-read it and go on)."""
        now = self.now()
        reason = undecodable(body)
        if reason is not None and status_of(body).get("state") not in FINAL_STATES:
            # Quarantined: never started with a part of its input; failed, saying why.
            message = f"this run cannot be handled: its spec is {reason}; start a new one"
            status = WorkflowRunStatus.model_validate(
                {k: v for k, v in status_of(body).items() if k in ("accounted", "startedAt")}
            )
            failed = executor.finish(status, RunState.FAILED, now, RunError(message=message))
            return await self._end(key, body, failed), DONE
        status = WorkflowRunStatus.model_validate(status_of(body))
        requested = int(spec_of(body).get("retry") or 0)
        if status.state in FINAL_STATES:
            mark = run_control.finished_mark(status)
            if mark not in status.accounted:
                body = await self._end(key, body, status)
            elif run_control.wants_retry(requested, status):
                by = (body["metadata"].get("annotations") or {}).get(RETRIED_BY)
                retried = run_control.retry(status, now, by)
                body = await self._write(body, retried)
                self.events.post(body, "Normal", "Retried", _retried_message(retried))
                return body, NOW
            elif unobserved(body):
                # The spec changed after the end (e.g. a late cancel): nothing to do but to
                # say so, or kstatus would see the run in progress for ever.
                body = await self._write(body, status)
            return body, DONE
        if spec_of(body).get("cancel"):
            return await self._end(key, body, executor.cancel(status, now)), DONE
        snapshot = False
        if status.state in NOT_ADMITTED:
            admitted = await self.admitter.admit(key, body, status, now)
            if admitted is None:
                return body, DONE
            if admitted.state in FINAL_STATES:
                return await self._end(key, body, admitted), DONE
            if admitted.state is RunState.QUEUED:
                return await self._write(body, admitted), DONE
            status, snapshot = admitted, True
        try:
            spec = WorkflowSpec.model_validate(status.workflow_spec or {})
        except ValidationError as exc:
            error = RunError(message=f"invalid workflow snapshot: {exc.errors()[0]['msg']}")
            ended = executor.finish(status, RunState.FAILED, now, error)
            return await self._end(key, body, ended), DONE
        dirty = snapshot
        if "started" not in status.accounted:
            await self._count(body, status, "started")
            status = status.model_copy(update={"accounted": [*status.accounted, "started"]})
            dirty = True
        for _ in range(MAX_LOOP):
            now = self.now()
            recorded = self.caller.record(key, spec, status, self.rng)  # answers of calls
            recorded = await self.children.ended(key, spec, recorded, self.now(), self.rng)
            dirty, status = dirty or recorded != status, recorded
            if status.state in FINAL_STATES:  # a reply ended it (exit, error with Stop, …)
                return await self._end(key, body, status, snapshot=snapshot), DONE
            if spec_of(body).get("cancel"):  # seen in our last write's answer
                cancelled = executor.cancel(status, now)
                return await self._end(key, body, cancelled, snapshot=snapshot), DONE
            paused = bool(spec_of(body).get("paused"))
            if paused != (status.state is RunState.PAUSED):
                change = run_control.pause if paused else run_control.resume
                status, dirty = change(status, now), True
            action = executor.next_action(spec, status, now, self.caller.busy(key))
            if action.kind is Kind.FINISH:
                assert action.state is not None
                status = executor.finish(status, action.state, now, action.error, spec=spec)
                dirty = True
                continue  # ended, or its finally steps are next
            if action.kind is Kind.NONE:
                return body, DONE
            if action.kind is Kind.WAIT:
                if dirty:
                    body = await self._write(body, status, snapshot=snapshot)
                if self.caller.busy(key):  # the next look, when a call answers, starts here
                    self._latest[key] = body
                if action.at is None:
                    return body, DONE
                return body, Outcome.after((action.at - now).total_seconds())
            begun, calls = self.caller.begin(body, spec, status, action.steps, now, self.rng)
            if not calls:  # only skips and timeouts: plan again
                status, dirty = begun, True
                continue
            if dirty or begun != status:
                # Durable before the calls: a crash from here on re-issues the same calls.
                # (A call re-issued after a crash is already recorded as running.)
                body = await self._write(body, begun, snapshot=snapshot)
                snapshot = False
            dirty, status = False, begun
            for name in calls:
                self.caller.start(key, body, spec, begun, name)
            await self.caller.linger(key, LINGER_SECONDS)  # answers that come at once
        return body, None

    def entity(
        self, body: Body, status: WorkflowRunStatus, step: Step, with_: dict[str, Any]
    ) -> EntityInput:
        return self.caller.entity(body, status, step, with_)

    def metadata(self, record: StepRecord) -> CallMetadata:
        return self.caller.metadata(record)

    # -- admission -----------------------------------------------------------------------

    # -- writes --------------------------------------------------------------------------

    async def write(self, body: Body, status: WorkflowRunStatus) -> Body:
        """A status write from outside a reconcile (a callback, a hook), under the run's lock."""
        return await self._write(body, status)

    async def _write(
        self, body: Body, status: WorkflowRunStatus, *, snapshot: bool = False
    ) -> Body:
        """One resourceVersion-checked status write; indexes and plans from its result."""
        # The generation acted on: the write is checked against this body's resourceVersion.
        status = status.model_copy(update={"observed_generation": generation(body)})
        if status.state is not None:
            # From the conditions last written (the in-memory ones may be older).
            previous = [
                Condition.model_validate(c) for c in status_of(body).get("conditions") or []
            ]
            status = status.model_copy(
                update={"conditions": run_conditions(status, body, self.now(), previous)}
            )
        patch = status.model_dump(by_alias=True, mode="json", exclude={"workflow_spec"})
        if snapshot:
            patch["workflowSpec"] = status.workflow_spec
        key = Key.of(body)
        try:
            updated = await self.api.patch_status_checked(body, patch)
        except KubeApiError as exc:
            if exc.code == 409:
                raise Conflict from None
            if exc.code == 404:
                return body | {"_gone": True}
            raise
        own = self._own_writes.setdefault(key, [])
        if len(own) >= 8:  # echoes that never came (a watch restarted): forget them
            del own[:-1]
        own.append(updated["metadata"]["resourceVersion"])
        self._latest.pop(key, None)  # whatever was kept is older than this write
        entry = self.index.put(key, updated)
        self.caller.written(key, status)
        self.children.wake_parent(key, entry)
        if entry.children:
            await self.children.stop(key, status)
        if self.on_write is not None:
            self.on_write(updated)
        return updated

    # -- after the end -------------------------------------------------------------------

    async def _count(self, run: Body, status: WorkflowRunStatus, what: str) -> None:
        """Add one run's start or end to its Workflow's counters, exactly once."""
        workflow = Key("Workflow", run["metadata"]["namespace"], workflow_ref(run))
        count = counters.run_count(run["metadata"]["uid"], what, status.state)
        await self.status.count(workflow, count)

    async def _end(
        self, key: Key, body: Body, status: WorkflowRunStatus, *, snapshot: bool = False
    ) -> Body:
        """The end of a run, in an order that survives a crash at any point: count it on the
        Workflow (idempotent), tell the world (events deduplicated by id), then write the
        final status with the mark that all of this is done."""
        name = workflow_ref(body)
        mark = run_control.finished_mark(status)
        if "started" in status.accounted:
            await self._count(body, status, mark)
        status = status.model_copy(update={"accounted": [*status.accounted, mark]})
        state = status.state
        assert state is not None
        reason, kind = {
            RunState.COMPLETED: ("Completed", "Normal"),
            RunState.FAILED: ("Failed", "Warning"),
            RunState.TERMINATED: ("Terminated", "Warning"),
        }.get(state, (state.value.capitalize(), "Normal"))
        message = f"run {state.value}" + (f": {status.error.message}" if status.error else "")
        if state in (RunState.COMPLETED, RunState.FAILED):
            await self.publish(
                key.namespace,
                f"WorkflowRun.{state.value}",
                f"blockflow.dev/namespaces/{key.namespace}/workflowruns/{key.name}",
                f"{body['metadata']['uid']}/{state.value}"
                + (f"/retry-{len(status.retries)}" if status.retries else ""),
                run_ended_data(name, key.name, status),
            )
        body = await self._write(body, status, snapshot=snapshot)
        self.caller.forget(key)
        self._latest.pop(key, None)
        if kind == "Warning":
            # Failures are Events for people; a completed run says so in `kubectl get wfr`
            # (an Event per successful run would double the API writes at volume).
            self.events.post(body, kind, reason, message)
        await self.status.refresh_phase(Key("Workflow", key.namespace, name))
        self._wake_queued(key.namespace, name, status.concurrency_key)
        await self._trim_history(key.namespace, name)
        return body

    def _wake_queued(
        self, namespace: str, workflow: str, concurrency_key: str | None = None
    ) -> None:
        queued = self.admitter.next_queued(namespace, workflow, concurrency_key)
        if queued is not None:
            self.controller.add(queued)

    async def _trim_history(self, namespace: str, workflow: str) -> None:
        body = self.workflows.get(Key("Workflow", namespace, workflow))
        if body is None:
            return
        spec = WorkflowSpec.model_validate(spec_of(body))
        doomed: list[Key] = []
        for states, limit in (
            ((RunState.COMPLETED,), spec.successful_runs_limit),
            ((RunState.FAILED, RunState.TERMINATED), spec.failed_runs_limit),
        ):
            if self.index.count(namespace, workflow, *states) > limit:
                ended = self.index.in_states(namespace, workflow, *states)
                doomed += ended[: len(ended) - limit]
        for key in doomed:
            await self.api.delete("WorkflowRun", key.namespace, key.name)
            self.index.drop(key)


__all__ = ["ACTIVE_STATES", "FINAL_STATES", "RunRuntime"]
