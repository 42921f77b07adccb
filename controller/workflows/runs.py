"""The WorkflowRun runtime: drives each run through the pure executor, durably.

How a run moves (all of it read from and written to the run's status):

1. **admit** — pick the workflow version (the activated spec, snapshotted into the
   run), apply `concurrency` (Queue / Skip / Replace), count the run as started;
2. **call** — :func:`executor.begin_attempt` is written *before* the step is called,
   with its deterministic `uniqueExecutionId` (and the hash of its finish-callback
   token), so a controller killed mid-call re-issues the same call with the same key;
3. **record** — the reply (or a wait: a sleep, a hook, a deferred step, a retry
   backoff) is written; the loop goes on while there is something to call;
4. **finish** — the run's final state, the Workflow's counters, history limits,
   events (`WorkflowRun.completed` / `.failed`) for other workflows.

Nothing waits in memory. A waiting run is a small index entry (its workflow, state,
token hashes) and, when it has a wake-up time, one entry in the queue's heap. Every
status write carries the resourceVersion it was computed from: a concurrent writer
(another replica, a user's `spec.cancel`) makes it fail with 409, and the run is
re-read and re-planned.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from controller import metrics
from controller.api.common import Condition, LifecycleState
from controller.api.workflow import RunConcurrencyPolicy, Step, WorkflowPhase, WorkflowSpec
from controller.api.workflowrun import RunError, RunState, StepRecord, StepState, WorkflowRunStatus
from controller.handlers.protocol import (
    CallMetadata,
    EntityInput,
    ErrorReply,
    ExecuteRequest,
    FinishRequest,
    HttpRequestData,
    NoOpReply,
)
from controller.handlers.transport import HandlerError
from controller.kube.api import KubeApi
from controller.kube.rest import KubeApiError
from controller.lifecycle.conditions import conditions_for
from controller.logs import get_logger
from controller.runtime.calls import timed_call
from controller.runtime.queue import WorkQueue
from controller.runtime.store import Body, Key
from controller.server.tokens import token_hash
from controller.workflows import executor
from controller.workflows.activation import phase_for
from controller.workflows.activator import Apps, TokenKeys, wanted_state
from controller.workflows.builtin_steps import Builtins, StepCall, Wait
from controller.workflows.executor import Kind, StepReply
from controller.workflows.naming import WORKFLOW_LABEL
from controller.workflows.templating import TemplateError, render

log = get_logger("blockflow.runs")

ACTIVE_STATES = (RunState.RUNNING, RunState.WAITING, RunState.PAUSED)
FINAL_STATES = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED, RunState.TERMINATED)
#: Handler failures that another attempt will not fix.
PERMANENT_REASONS = ("InvalidReply", "UnknownHandler", "AppNotFound", "SecretNotFound")
COUNTED_WINDOW = 256
MAX_LOOP = 10_000


@dataclass(slots=True)
class _Count:
    """A run's start or end waiting to be added to its Workflow's counters."""

    digest: str
    what: str  # started | finished | ignored | phase
    state: RunState | None
    done: asyncio.Future[None] | None = None


class Conflict(Exception):
    """The run changed under us (409): re-read and re-plan."""


@dataclass(slots=True)
class RunEntry:
    """All the controller keeps about a run between events (no body, no task)."""

    workflow: str
    state: str | None
    event_key: str | None
    callbacks: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()


@dataclass
class Indexes:
    """Lookups from the outside world (tokens, events) to runs; rebuilt from watch events."""

    runs: dict[Key, RunEntry] = field(default_factory=dict)
    #: (namespace, workflow) → run state → runs: what admission, queues and history
    #: limits ask, answered without scanning every run.
    groups: dict[tuple[str, str], dict[str | None, set[Key]]] = field(default_factory=dict)
    callbacks: dict[str, tuple[Key, str]] = field(default_factory=dict)
    hooks: dict[str, set[Key]] = field(default_factory=dict)
    event_keys: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def put(self, key: Key, body: Body) -> RunEntry:
        self.drop(key)
        status = body.get("status") or {}
        labels = body["metadata"].get("labels") or {}
        workflow = ((body.get("spec") or {}).get("workflowRef") or {}).get("name", "")
        callbacks, hooks = [], []
        for record in status.get("steps") or []:
            if record.get("callbackTokenHash"):
                callbacks.append(record["callbackTokenHash"])
                self.callbacks[record["callbackTokenHash"]] = (key, record["name"])
            if record.get("hookTokenHash") and record.get("state") == StepState.WAITING:
                hooks.append(record["hookTokenHash"])
                self.hooks.setdefault(record["hookTokenHash"], set()).add(key)
        event_key = labels.get("blockflow.dev/event-key")
        if event_key:
            self.event_keys.setdefault((key.namespace, workflow), set()).add(event_key)
        entry = RunEntry(workflow, status.get("state"), event_key, tuple(callbacks), tuple(hooks))
        self.runs[key] = entry
        group = self.groups.setdefault((key.namespace, workflow), {})
        group.setdefault(entry.state, set()).add(key)
        metrics.RUNS.labels(entry.state or "new").inc()
        return entry

    def drop(self, key: Key) -> RunEntry | None:
        entry = self.runs.pop(key, None)
        if entry is None:
            return None
        metrics.RUNS.labels(entry.state or "new").dec()
        group = self.groups.get((key.namespace, entry.workflow))
        if group is not None:
            members = group.get(entry.state)
            if members is not None:
                members.discard(key)
                if not members:
                    del group[entry.state]
            if not group:
                del self.groups[(key.namespace, entry.workflow)]
        for digest in entry.callbacks:
            self.callbacks.pop(digest, None)
        for digest in entry.hooks:
            waiting = self.hooks.get(digest)
            if waiting is not None:
                waiting.discard(key)
                if not waiting:
                    del self.hooks[digest]
        return entry

    def in_states(self, namespace: str, workflow: str, *states: str | None) -> list[Key]:
        """A workflow's runs in these states, oldest first (names sort by start time)."""
        group = self.groups.get((namespace, workflow)) or {}
        return sorted(k for state in states for k in group.get(state, ()))

    def count(self, namespace: str, workflow: str, *states: str | None) -> int:
        group = self.groups.get((namespace, workflow)) or {}
        return sum(len(group.get(state, ())) for state in states)

    def active(self, namespace: str, workflow: str) -> list[Key]:
        return self.in_states(namespace, workflow, *ACTIVE_STATES)


Publish = Callable[[str, str, str, str, Any], Awaitable[int]]
PostEvent = Callable[[Body, str, str, str], None]


class RunRuntime:
    def __init__(
        self,
        api: KubeApi,
        *,
        apps: Apps,
        workflows: Callable[[Key], Body | None],
        remember_workflow: Callable[[Body], None],
        tokens: TokenKeys,
        builtins: Builtins,
        publish: Publish,
        post_event: PostEvent,
        workers: int = 16,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        crash_after_writes: int | None = None,
    ) -> None:
        self.api = api
        self.apps = apps
        self.crash_after_writes = crash_after_writes
        self.writes = 0
        self.processed = 0
        self.workflow_body = workflows
        self.remember_workflow = remember_workflow
        self.tokens = tokens
        self.builtins = builtins
        self.publish = publish
        self.post_event = post_event
        self.now = now
        self.rng = rng or random.Random()
        self.index = Indexes()
        self.queue: WorkQueue[Key] = WorkQueue(self.process, workers=workers)
        self._locks: dict[Key, asyncio.Lock] = {}
        self._own_writes: dict[Key, list[str]] = {}
        self._counts: dict[Key, list[_Count]] = {}
        self._flushing: set[Key] = set()
        self._background: set[asyncio.Task[None]] = set()

    # -- intake --------------------------------------------------------------------------

    def observe(self, body: Body, event_type: str | None) -> None:
        key = Key.of(body)
        if event_type == "DELETED":
            entry = self.index.drop(key)
            self.queue.forget(key)
            self._own_writes.pop(key, None)
            if entry is not None:
                self._wake_queued(key.namespace, entry.workflow)
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
        self.index.put(key, body)
        self._plan(key, body)

    def _plan(self, key: Key, body: Body) -> None:
        """Enqueue the run now, later, or not at all — from its status alone."""
        status = body.get("status") or {}
        state = status.get("state")
        if state in FINAL_STATES:
            if "finished" not in (status.get("accounted") or []) or _unobserved(body):
                self.queue.add(key)
            return
        if state in (None, RunState.QUEUED) or (body.get("spec") or {}).get("cancel"):
            self.queue.add(key)
            return
        try:
            spec = WorkflowSpec.model_validate(status.get("workflowSpec") or {})
            run_status = WorkflowRunStatus.model_validate(status)
        except ValidationError:
            self.queue.add(key)  # let process() fail it with a clear message
            return
        action = executor.next_action(spec, run_status, self.now())
        if action.kind in (Kind.CALL, Kind.FINISH):
            self.queue.add(key)
        elif action.kind is Kind.WAIT and action.at is not None:
            self.queue.add_after(key, max(0.0, (action.at - self.now()).total_seconds()))

    def lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _unlock_idle(self, key: Key) -> None:
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    # -- processing ----------------------------------------------------------------------

    async def process(self, key: Key) -> None:
        self.processed += 1
        try:
            async with self.lock(key):
                await self._process(key)
        except KubeApiError as exc:
            log.warning("API error; retrying", run=str(key), code=exc.code, error=exc.message)
            self.queue.add_after(key, 1.0 if exc.code == 409 else 5.0)
        finally:
            self._unlock_idle(key)

    async def _process(self, key: Key) -> None:
        body = await self.api.get("WorkflowRun", key.namespace, key.name)
        for _ in range(MAX_LOOP):
            if body is None or body.get("_gone"):
                self.index.drop(key)
                return
            try:
                body, again = await self._advance(key, body)
            except Conflict:
                body = await self.api.get("WorkflowRun", key.namespace, key.name)
                continue
            if not again:
                return

    async def _advance(self, key: Key, body: Body) -> tuple[Body, bool]:
        """Carry the run as far as it goes now. Transitions happen in memory; the status is
        written once before each step call (so the call is durable before it is made), and
        once when the run waits or ends. Returns (body, whether to re-read and go on)."""
        status = WorkflowRunStatus.model_validate(body.get("status") or {})
        now = self.now()
        if status.state in FINAL_STATES:
            if "finished" not in status.accounted:
                body = await self._end(key, body, status)
            elif _unobserved(body):
                # The spec changed after the end (e.g. a late cancel): nothing to do but to
                # say so, or kstatus would see the run in progress for ever.
                body = await self._write(body, status)
            return body, False
        if (body.get("spec") or {}).get("cancel"):
            return await self._end(key, body, executor.cancel(status, now)), False
        snapshot = False
        if status.state in (None, RunState.QUEUED):
            admitted = await self._admit(key, body, status, now)
            if admitted is None:
                return body, False
            if admitted.state in FINAL_STATES:
                return await self._end(key, body, admitted), False
            if admitted.state is RunState.QUEUED:
                return await self._write(body, admitted), False
            status, snapshot = admitted, True
        try:
            spec = WorkflowSpec.model_validate(status.workflow_spec or {})
        except ValidationError as exc:
            error = RunError(message=f"invalid workflow snapshot: {exc.errors()[0]['msg']}")
            return await self._end(
                key, body, executor.finish(status, RunState.FAILED, now, error)
            ), False
        dirty = snapshot
        if "started" not in status.accounted:
            await self._account(body, status, "started")
            status = status.model_copy(update={"accounted": [*status.accounted, "started"]})
            dirty = True
        for _ in range(MAX_LOOP):
            now = self.now()
            if status.state in FINAL_STATES:  # a reply ended it (exit, error with Stop, …)
                return await self._end(key, body, status, snapshot=snapshot), False
            if (body.get("spec") or {}).get("cancel"):  # seen in our last write's answer
                cancelled = executor.cancel(status, now)
                return await self._end(key, body, cancelled, snapshot=snapshot), False
            action = executor.next_action(spec, status, now)
            if action.kind is Kind.FINISH:
                assert action.state is not None
                ended = executor.finish(status, action.state, now, action.error)
                return await self._end(key, body, ended, snapshot=snapshot), False
            if action.kind is Kind.NONE:
                return body, False
            if action.kind is Kind.WAIT:
                if dirty:
                    body = await self._write(body, status, snapshot=snapshot)
                if action.at is not None:
                    self.queue.add_after(key, max(0.0, (action.at - now).total_seconds()))
                return body, False
            assert action.step is not None
            name = action.step
            if executor.timed_out(spec, status, name, now):
                status, dirty = executor.record_timeout(spec, status, name, now), True
                continue
            step = _step(spec, name)
            uid = body["metadata"]["uid"]
            extra: dict[str, Any] = {}
            if step.uses.app is not None:
                extra["callback_token_hash"] = token_hash(
                    self.tokens.callback(executor.execution_id(uid, name))
                )
            begun = executor.begin_attempt(status, name, uid, now, **extra)
            if dirty or begun != status:
                # Durable before the call: a crash from here on re-issues the same call.
                # (A call re-issued after a crash is already recorded as running.)
                body = await self._write(body, begun, snapshot=snapshot)
                snapshot = False
            started = self.now()
            reply = await self._execute(body, spec, begun, step, _record(begun, name))
            kind = step.uses.type if step.uses.app is None else "block"
            metrics.STEP_SECONDS.labels(kind).observe((self.now() - started).total_seconds())
            if isinstance(reply, Wait):
                status = executor.wait_until(
                    begun, name, reply.at, hook_token_hash=reply.hook_token_hash, received=[]
                )
            else:
                status = executor.record_reply(spec, begun, name, reply, self.now(), self.rng)
            dirty = True
        return body, True

    async def _execute(
        self,
        body: Body,
        spec: WorkflowSpec,
        status: WorkflowRunStatus,
        step: Step,
        record: StepRecord,
    ) -> StepReply | Wait:
        try:
            with_ = render(step.with_, self.context(body, status), f"step {step.name}: with")
        except TemplateError as exc:
            return ErrorReply(message=str(exc), retryable=False)
        with_ = with_ if isinstance(with_, dict) else {}
        meta = body["metadata"]
        if step.uses.app is None:
            call = StepCall(
                namespace=meta["namespace"],
                run_name=meta["name"],
                run_uid=meta["uid"],
                step=step,
                record=record,
                with_=with_,
                now=self.now(),
            )
            try:
                return await self.builtins.execute(call)
            except KubeApiError as exc:
                return ErrorReply(message=f"step {step.name}: {exc.message}", retryable=True)
        try:
            app = await self.apps.app_handle(meta["namespace"], step.uses.app)
            request = ExecuteRequest(
                entity=self._entity(body, status, step, with_),
                app=app.input,
                with_=with_,
                metadata=self._metadata(record),
            )
            reply: StepReply = await timed_call(app.transport, request)
            return reply
        except HandlerError as exc:
            return ErrorReply(
                message=f"step {step.name}: {exc.message}",
                retryable=exc.reason not in PERMANENT_REASONS,
            )

    def _entity(
        self, body: Body, status: WorkflowRunStatus, step: Step, with_: dict[str, Any]
    ) -> EntityInput:
        ref = ((body.get("spec") or {}).get("workflowRef") or {}).get("name", "")
        workflow = self.workflow_body(Key("Workflow", body["metadata"]["namespace"], ref))
        return EntityInput(
            kind="Workflow",
            name=ref,
            namespace=body["metadata"]["namespace"],
            uid=(workflow or {}).get("metadata", {}).get("uid", ""),
            generation=status.workflow_version or 1,
            type=step.uses.type,
            config=with_,
        )

    def _metadata(self, record: StepRecord) -> CallMetadata:
        execution = record.unique_execution_id or ""
        return CallMetadata(
            attempt=max(1, record.attempts),
            unique_execution_id=execution,
            finish_callback_url=self.tokens.url("callbacks", self.tokens.callback(execution)),
        )

    def context(self, body: Body, status: WorkflowRunStatus) -> dict[str, Any]:
        """What CEL sees: event, steps.<name>.{id,data}, workflow, run."""
        meta = body["metadata"]
        spec = body.get("spec") or {}
        steps = {
            r.name.removeprefix(executor.FALLBACK_PREFIX)
            if r.name.startswith(executor.FALLBACK_PREFIX)
            else r.name: {
                "id": r.outcome.id if r.outcome else None,
                "data": r.outcome.data if r.outcome else None,
                "state": r.state.value,
                "error": r.error.message if r.error else None,
            }
            for r in status.steps
            if r.state is not StepState.PENDING
        }
        return {
            "event": spec.get("input"),
            "steps": steps,
            "workflow": {
                "name": (spec.get("workflowRef") or {}).get("name"),
                "namespace": meta["namespace"],
                "version": status.workflow_version,
            },
            "run": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
        }

    # -- admission -----------------------------------------------------------------------

    async def _admit(
        self, key: Key, body: Body, status: WorkflowRunStatus, now: datetime
    ) -> WorkflowRunStatus | None:
        """Admission: the run's new status (running with its snapshot, queued, or ended),
        or None when it stays queued as it is."""
        spec = body.get("spec") or {}
        name = (spec.get("workflowRef") or {}).get("name", "")
        workflow = self.workflow_body(Key("Workflow", key.namespace, name))
        refused = _refusal(workflow, name, key.namespace, spec.get("workflowVersion"))
        if refused is not None:
            return executor.finish(status, RunState.FAILED, now, RunError(message=refused))
        assert workflow is not None
        activation = (workflow.get("status") or {}).get("activation") or {}
        snapshot = WorkflowSpec.model_validate(activation["spec"])
        limit = snapshot.concurrency
        others = [k for k in self.index.active(key.namespace, name) if k != key]
        if limit is not None and len(others) >= limit.max:
            if limit.policy is RunConcurrencyPolicy.QUEUE:
                if status.state is RunState.QUEUED:
                    return None
                return status.model_copy(update={"state": RunState.QUEUED})
            if limit.policy is RunConcurrencyPolicy.SKIP:
                return executor.finish(
                    status,
                    RunState.TERMINATED,
                    now,
                    RunError(
                        message=f"skipped: {len(others)} runs of {name} are active "
                        f"(concurrency.max {limit.max}, policy Skip)"
                    ),
                )
            for victim in others[: len(others) - limit.max + 1]:
                await self.api.patch_spec(
                    "WorkflowRun", victim.namespace, victim.name, {"spec": {"cancel": True}}
                )
        return status.model_copy(
            update={
                "state": RunState.RUNNING,
                "workflow_version": activation.get("version"),
                "workflow_spec": activation["spec"],
                "started_at": now,
            }
        )

    # -- writes --------------------------------------------------------------------------

    async def _write(
        self, body: Body, status: WorkflowRunStatus, *, snapshot: bool = False
    ) -> Body:
        """One resourceVersion-checked status write; indexes and plans from its result."""
        # The generation acted on: the write is checked against this body's resourceVersion.
        status = status.model_copy(update={"observed_generation": _generation(body)})
        if status.state is not None:
            # From the conditions last written (the in-memory ones may be older).
            previous = [
                Condition.model_validate(c)
                for c in (body.get("status") or {}).get("conditions") or []
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
        self.writes += 1
        if self.crash_after_writes is not None and self.writes >= self.crash_after_writes:
            os.kill(os.getpid(), signal.SIGKILL)  # fault injection: die as kill -9 would
        own = self._own_writes.setdefault(key, [])
        if len(own) >= 8:  # echoes that never came (a watch restarted): forget them
            del own[:-1]
        own.append(updated["metadata"]["resourceVersion"])
        self.index.put(key, updated)
        return updated

    # -- after the end -------------------------------------------------------------------

    async def _end(
        self, key: Key, body: Body, status: WorkflowRunStatus, *, snapshot: bool = False
    ) -> Body:
        """The end of a run, in an order that survives a crash at any point: count it on the
        Workflow (idempotent), tell the world (events deduplicated by id), then write the
        final status with the mark that all of this is done."""
        name = ((body.get("spec") or {}).get("workflowRef") or {}).get("name", "")
        if "started" in status.accounted:
            await self._account(body, status, "finished")
        status = status.model_copy(update={"accounted": [*status.accounted, "finished"]})
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
                f"{body['metadata']['uid']}/{state.value}",
                {
                    "workflow": name,
                    "run": key.name,
                    "state": state.value,
                    "output": status.output,
                    "error": status.error.model_dump(mode="json") if status.error else None,
                },
            )
        body = await self._write(body, status, snapshot=snapshot)
        if kind == "Warning":
            # Failures are Events for people; a completed run says so in `kubectl get wfr`
            # (an Event per successful run would double the API writes at volume).
            self.post_event(body, kind, reason, message)
        await self._queue_count(Key("Workflow", key.namespace, name), _Count("", "phase", None))
        self._wake_queued(key.namespace, name)
        await self._trim_history(key.namespace, name)
        return body

    def _wake_queued(self, namespace: str, workflow: str) -> None:
        waiting = self.index.in_states(namespace, workflow, None, RunState.QUEUED)
        if waiting:
            self.queue.add(waiting[0])

    async def _trim_history(self, namespace: str, workflow: str) -> None:
        body = self.workflow_body(Key("Workflow", namespace, workflow))
        if body is None:
            return
        spec = WorkflowSpec.model_validate(body.get("spec") or {})
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

    # -- the Workflow's counters ---------------------------------------------------------

    async def _account(self, run: Body, status: WorkflowRunStatus, what: str) -> None:
        """Add one run's start or end to its Workflow's counters, exactly once.

        Counts of concurrent runs are coalesced into one resourceVersion-checked patch per
        Workflow at a time. The patch also records a short digest per counted event in
        `status.counted` (a bounded window): a controller that dies after the patch but
        before the run's own write finds the digest on restart and does not count again.
        """
        namespace = run["metadata"]["namespace"]
        name = ((run.get("spec") or {}).get("workflowRef") or {}).get("name", "")
        wf_key = Key("Workflow", namespace, name)
        digest = hashlib.sha256(f"{run['metadata']['uid']}/{what}".encode()).hexdigest()[:16]
        await self._queue_count(wf_key, _Count(digest, what, status.state))

    async def count_ignored(self, wf_key: Key) -> None:
        """An event (or schedule slot) the workflow ignored, counted by the same writer."""
        await self._queue_count(wf_key, _Count("", "ignored", None))

    async def _queue_count(self, wf_key: Key, count: _Count) -> None:
        """Hand a count (or, with what="phase", a re-check of the phase after a run's final
        write) to the Workflow's one writer of counters and phase, and wait for it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        count.done = done
        self._counts.setdefault(wf_key, []).append(count)
        if wf_key not in self._flushing:
            self._flushing.add(wf_key)
            task = asyncio.create_task(self._flush_counts(wf_key))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        await done

    async def _flush_counts(self, wf_key: Key) -> None:
        try:
            while self._counts.get(wf_key):
                batch = self._counts.pop(wf_key)
                try:
                    await self._apply_counts(wf_key, batch)
                except Exception as exc:
                    for count in batch:
                        if count.done is not None and not count.done.done():
                            count.done.set_exception(exc)
                else:
                    for count in batch:
                        if count.done is not None and not count.done.done():
                            count.done.set_result(None)
        finally:
            self._flushing.discard(wf_key)

    async def _apply_counts(self, wf_key: Key, batch: list[_Count]) -> None:
        for _ in range(20):
            workflow = self.workflow_body(wf_key)
            if workflow is None:
                return
            current = workflow.get("status") or {}
            counted = list(current.get("counted") or [])
            new = [c for c in batch if c.what in ("started", "finished")]
            new = [c for c in new if c.digest not in counted]
            ignored = sum(c.what == "ignored" for c in batch)
            started = sum(c.what == "started" for c in new)
            ended = [c for c in new if c.what == "finished"]
            patch: dict[str, Any] = {
                "counted": [*counted, *(c.digest for c in new)][-COUNTED_WINDOW:]
            }
            if started:
                patch["runCount"] = int(current.get("runCount") or 0) + started
                patch["lastRunAt"] = self.now().isoformat()
            successes = sum(c.state is RunState.COMPLETED for c in ended)
            failures = sum(c.state is RunState.FAILED for c in ended)
            if successes:
                patch["successCount"] = int(current.get("successCount") or 0) + successes
            if failures:
                patch["failureCount"] = int(current.get("failureCount") or 0) + failures
            # Runs counted here are not yet written as running / ended in the index. The
            # phase is computed here, by the one writer, from the index as it is now.
            patch["phase"] = self.phase(workflow, extra_active=started - len(ended))
            if not new:
                patch = {"phase": patch["phase"]}
            if ignored:
                patch["ignoredCount"] = int(current.get("ignoredCount") or 0) + ignored
            elif not new and patch["phase"] == current.get("phase"):
                return
            try:
                updated = await self.api.patch_status_checked(workflow, patch)
            except KubeApiError as exc:
                if exc.code != 409:
                    raise
                fresh = await self.api.get("Workflow", wf_key.namespace, wf_key.name)
                if fresh is None:
                    return
                self.remember_workflow(fresh)
                continue
            self.remember_workflow(updated)
            if ended:
                await self._check_failure_rate(current, updated)
            return

    def phase(self, workflow: Body, extra_active: int = 0) -> str:
        meta, status = workflow["metadata"], workflow.get("status") or {}
        activation = status.get("activation") or {}
        current = WorkflowPhase(status["phase"]) if status.get("phase") else None
        active = self.index.count(meta["namespace"], meta["name"], *ACTIVE_STATES)
        return phase_for(
            wanted_state(workflow),
            current,
            activated=activation.get("version") is not None,
            active_runs=max(0, active + extra_active),
        ).value

    async def _check_failure_rate(self, before: Body, after: Body) -> None:
        def rate(status: Body) -> tuple[int, float]:
            done = int(status.get("successCount") or 0) + int(status.get("failureCount") or 0)
            return done, (int(status.get("failureCount") or 0) / done) if done else 0.0

        done_before, rate_before = rate(before)
        done, now_rate = rate(after.get("status") or {})
        crossed = done >= 10 and now_rate > 0.1 and (done_before < 10 or rate_before <= 0.1)
        if not crossed:
            return
        meta = after["metadata"]
        await self.publish(
            meta["namespace"],
            "Workflow.highFailureRate",
            f"blockflow.dev/namespaces/{meta['namespace']}/workflows/{meta['name']}",
            f"{meta['uid']}/highFailureRate/{done}",
            {"workflow": meta["name"], "runs": done, "failureRate": round(now_rate, 3)},
        )
        self.post_event(
            after,
            "Warning",
            "HighFailureRate",
            f"{round(now_rate * 100)} % of the last {done} runs failed",
        )

    # -- callbacks -----------------------------------------------------------------------

    async def finish_callback(
        self, token: str, request: HttpRequestData
    ) -> tuple[int, dict[str, Any]]:
        """A POST to a deferred step's finishCallbackUrl: the handler's `finish` decides."""
        found = self.index.callbacks.get(token_hash(token))
        if found is None:
            return 404, {"error": "unknown callback URL"}
        key, name = found
        async with self.lock(key):
            try:
                return await self._finish_callback(key, name, request)
            finally:
                self._unlock_idle(key)

    async def _finish_callback(
        self, key: Key, name: str, request: HttpRequestData
    ) -> tuple[int, dict[str, Any]]:
        body = await self.api.get("WorkflowRun", key.namespace, key.name)
        if body is None:
            self.index.drop(key)
            return 404, {"error": "unknown callback URL"}
        status = WorkflowRunStatus.model_validate(body.get("status") or {})
        record = _record(status, name)
        if record.state is not StepState.WAITING or status.state in FINAL_STATES:
            return 410, {
                "error": f"step {name} of run {key.name} is {record.state.value}; "
                "it no longer takes callbacks"
            }
        spec = WorkflowSpec.model_validate(status.workflow_spec or {})
        step = _step(spec, name)
        assert step.uses.app is not None
        try:
            with_ = render(step.with_, self.context(body, status), f"step {step.name}: with")
            app = await self.apps.app_handle(key.namespace, step.uses.app)
            reply = await timed_call(
                app.transport,
                FinishRequest(
                    entity=self._entity(body, status, step, with_),
                    app=app.input,
                    with_=with_ if isinstance(with_, dict) else {},
                    request=request,
                    metadata=self._metadata(record),
                ),
            )
        except (HandlerError, TemplateError) as exc:
            return 502, {"error": f"the step's handler could not finish it: {exc}"}
        if isinstance(reply, NoOpReply):
            return 202, {"run": key.name, "step": name, "state": "waiting"}
        recorded = executor.record_reply(spec, status, name, reply, self.now(), self.rng)
        try:
            await self._write(body, recorded)
        except Conflict:
            return 409, {"error": "the run changed while the callback was handled; retry"}
        self.queue.add(key)
        after = _record(recorded, name)
        return 200, {"run": key.name, "step": name, "state": after.state.value}

    async def resume_hook(
        self, key: Key, digest: str, deliver: Callable[[Step, StepRecord], Any]
    ) -> str | None:
        """Hand a hook payload to the waiting step of one run (under its lock). Returns the
        step's new state, or None when that run no longer waits for this token.
        `deliver` raises HookRejected (nothing is written) for a payload it refuses."""
        async with self.lock(key):
            try:
                body = await self.api.get("WorkflowRun", key.namespace, key.name)
                if body is None:
                    self.index.drop(key)
                    return None
                status = WorkflowRunStatus.model_validate(body.get("status") or {})
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
                delivery = deliver(_step(spec, record.name), record)
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
                        spec, updated, record.name, delivery.reply, self.now(), self.rng
                    )
                await self._write(body, updated)
                self.queue.add(key)
                return _record(updated, record.name).state.value
            finally:
                self._unlock_idle(key)

    def workflow_uid(self, key: Key) -> str | None:
        entry = self.index.runs.get(key)
        if entry is None:
            return None
        body = self.workflow_body(Key("Workflow", key.namespace, entry.workflow))
        return None if body is None else str(body["metadata"].get("uid"))


_RUN_LIFECYCLE = {
    RunState.QUEUED: LifecycleState.IN_PROGRESS,
    RunState.RUNNING: LifecycleState.IN_PROGRESS,
    RunState.WAITING: LifecycleState.IN_PROGRESS,
    RunState.PAUSED: LifecycleState.IN_PROGRESS,
    RunState.COMPLETED: LifecycleState.READY,
    RunState.CANCELLED: LifecycleState.READY,
    RunState.FAILED: LifecycleState.FAILED,
    RunState.TERMINATED: LifecycleState.FAILED,
}


def run_conditions(
    status: WorkflowRunStatus, body: Body, now: datetime, previous: list[Condition]
) -> list[Condition]:
    """kstatus for runs: completed or cancelled is Ready (Current), failed or terminated
    Stalled (Failed), the rest — queued, running, waiting, and paused, which has not ended
    either — Reconciling (InProgress); so `kubectl wait --for=condition=Ready wfr/NAME` and
    Flux's `wait: true` wait for the end. The reason is the run's state, capitalized."""
    assert status.state is not None
    message = f"run {status.state.value}"
    if status.error is not None:
        message += f": {status.error.message}"
    return conditions_for(
        _RUN_LIFECYCLE[status.state],
        message=message[:1024],
        generation=_generation(body),
        now=now,
        previous=previous,
        reason=status.state.value.capitalize(),
    )


def _generation(body: Body) -> int:
    return int(body["metadata"].get("generation", 1))


def _unobserved(body: Body) -> bool:
    """A spec change the controller has not acknowledged in status.observedGeneration
    (runs written before it was recorded have none: nothing to acknowledge)."""
    observed = (body.get("status") or {}).get("observedGeneration")
    return observed is not None and observed != _generation(body)


def _refusal(workflow: Body | None, name: str, namespace: str, version: int | None) -> str | None:
    if workflow is None:
        return f"spec.workflowRef.name: Workflow {name} not found in namespace {namespace}"
    activation = (workflow.get("status") or {}).get("activation") or {}
    if not activation.get("spec"):
        phase = (workflow.get("status") or {}).get("phase") or "Draft"
        return (
            f"Workflow {name} is not active (phase {phase}); activate it with "
            f"`blockflow workflow activate {name}`"
        )
    if version is not None and version != activation.get("version"):
        return (
            f"spec.workflowVersion: version {version} of Workflow {name} is no longer active "
            f"(active: {activation.get('version')})"
        )
    return None


def _step(spec: WorkflowSpec, name: str) -> Step:
    if name.startswith(executor.FALLBACK_PREFIX):
        bare = name[len(executor.FALLBACK_PREFIX) :]
        return next(s for s in spec.fallback if s.name == bare)
    return next(s for s in spec.steps if s.name == name)


def _record(status: WorkflowRunStatus, name: str) -> StepRecord:
    return next(r for r in status.steps if r.name == name)


__all__ = ["FINAL_STATES", "WORKFLOW_LABEL", "Indexes", "RunEntry", "RunRuntime"]
