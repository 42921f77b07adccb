"""Step calls in flight: each a task of its own, so that a run's branches run side by side
and nothing waits on a call while holding the run.

The run driver (:mod:`controller.workflows.runs`) writes a step's attempt as `running`
*before* it starts the call here; then it lets go of the run. When the call answers (or
its attempt's or the run's timeout falls due first) the answer goes into the run's
mailbox and the run is queued: its next reconcile records the answer — only if the step
is still running that very attempt (a late answer to a step that was cancelled, timed out
or retried meanwhile is dropped) — and goes on, in one status write.

The mailbox is memory only, like a call in flight: a controller killed before the answer
is written finds the step `running` and calls it again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller import metrics
from controller.api.workflow import Step, WorkflowSpec
from controller.api.workflowrun import StepRecord, StepState, WorkflowRunStatus
from controller.handlers.protocol import CallMetadata, EntityInput, ErrorReply, ExecuteRequest
from controller.handlers.transport import HandlerError
from controller.kube.objects import Body, Key, workflow_ref
from controller.kube.rest import KubeApiError
from controller.logs import get_logger
from controller.runtime.calls import before
from controller.runtime.queue import without_worker
from controller.runtime.store import Cache
from controller.server.tokens import token_hash
from controller.workflows import executor, fan_out
from controller.workflows.activator import Apps, TokenKeys
from controller.workflows.executor import StepReply
from controller.workflows.graph import find_node
from controller.workflows.run_context import (
    builtin_target,
    call_metadata,
    cel_context,
    find_record,
    find_step,
    step_entity,
)
from controller.workflows.steps import Builtins, StepCall, Wait
from controller.workflows.templating import (
    TemplateError,
    condition_holds,
    condition_source,
    render,
)

log = get_logger("blockflow.runs")

#: Handler failures that another attempt will not fix.
PERMANENT_REASONS = ("InvalidReply", "UnknownHandler", "AppNotFound", "SecretNotFound")


@dataclass(frozen=True, slots=True)
class Answer:
    """A call's answer, waiting to be recorded: for the attempt it was made for."""

    attempts: int
    execution: str | None
    reply: StepReply | Wait | None  # None: the attempt's (or the run's) time ran out


class StepCaller:
    def __init__(
        self,
        *,
        apps: Apps,
        builtins: Builtins,
        tokens: TokenKeys,
        workflows: Cache,
        now: Callable[[], datetime],
        answered: Callable[[Key], None],
    ) -> None:
        self.apps = apps
        self.builtins = builtins
        self.tokens = tokens
        self.workflows = workflows
        self.now = now
        self._answered = answered
        self._calls: dict[Key, dict[str, asyncio.Task[None]]] = {}
        self._answers: dict[Key, dict[str, Answer]] = {}
        #: Runs whose reconcile waits a moment for its calls' answers (not to be queued).
        self._lingering: set[Key] = set()

    # -- bookkeeping ---------------------------------------------------------------------------

    def busy(self, key: Key) -> frozenset[str]:
        """The run's steps with a call in flight (not to be called again)."""
        return frozenset(self._calls.get(key, ()))

    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for calls in self._calls.values() for t in calls.values()]

    def start(
        self, key: Key, body: Body, spec: WorkflowSpec, status: WorkflowRunStatus, name: str
    ) -> None:
        """Call a step whose attempt is written as running."""
        node = find_node(spec, name)
        assert node is not None, f"no step {name}"
        step = node.step
        task = asyncio.create_task(
            self._call(key, body, spec, status, name, step),
            name=f"step {key.name}/{name}",
            context=without_worker(),  # its own: never the slot of the reconcile starting it
        )
        self._calls.setdefault(key, {})[name] = task

    def record(
        self, key: Key, spec: WorkflowSpec, status: WorkflowRunStatus, rng: random.Random
    ) -> WorkflowRunStatus:
        """The status with the answers that arrived for it recorded (answers stay in the
        mailbox until a written status shows them recorded: see :meth:`written`)."""
        for name, answer in list(self._answers.get(key, {}).items()):
            record = next((r for r in status.steps if r.name == name), None)
            if not _awaits(record, answer):
                continue
            if answer.reply is None:
                status = executor.record_timeout(spec, status, name, self.now(), rng)
            elif isinstance(answer.reply, Wait):
                reply = answer.reply
                status = executor.wait_until(
                    status,
                    name,
                    reply.at,
                    hook_token_hash=reply.hook_token_hash,
                    child=reply.child,
                    awaits=reply.awaits,
                    received=[],
                )
            else:
                status = executor.record_reply(spec, status, name, answer.reply, self.now(), rng)
        return status

    def written(self, key: Key, status: WorkflowRunStatus) -> None:
        """A status was written: answers it records are done with, and calls of steps it no
        longer runs (cancelled, timed out, the run ended) are abandoned."""
        records = {r.name: r for r in status.steps}
        answers = self._answers.get(key, {})
        for name, answer in list(answers.items()):
            if not _awaits(records.get(name), answer):
                del answers[name]
        if not answers:
            self._answers.pop(key, None)
        for name, task in list(self._calls.get(key, {}).items()):
            record = records.get(name)
            if record is None or record.state is not StepState.RUNNING:
                task.cancel()
                self._done(key, name)

    async def linger(self, key: Key, seconds: float) -> bool:
        """Wait up to `seconds` for an answer to one of the run's calls in flight; True when
        one came. A step that answers at once (a built-in, a fast handler) is then recorded
        by the reconcile that called it, without a round through the queue."""
        tasks = list(self._calls.get(key, {}).values())
        if not tasks or seconds <= 0:
            return False
        self._lingering.add(key)
        try:
            done, _ = await asyncio.wait(
                tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self._lingering.discard(key)
        return bool(done) or bool(self._answers.get(key))

    def forget(self, key: Key) -> None:
        """The run is gone or over: its calls are abandoned, its answers dropped."""
        for task in self._calls.pop(key, {}).values():
            task.cancel()
        self._answers.pop(key, None)

    def _done(self, key: Key, name: str) -> None:
        calls = self._calls.get(key)
        if calls is not None:
            calls.pop(name, None)
            if not calls:
                del self._calls[key]

    def begin(
        self,
        body: Body,
        spec: WorkflowSpec,
        status: WorkflowRunStatus,
        names: tuple[str, ...],
        now: datetime,
        rng: random.Random,
    ) -> tuple[WorkflowRunStatus, list[str]]:
        """The steps due now begun (their attempts counted, keys fixed), in memory; those
        whose timeout passed are recorded as timed out, those whose condition is false as
        skipped. Returns the status and the steps to call."""
        uid = body["metadata"]["uid"]
        calls: list[str] = []
        for name in names:
            if executor.timed_out(spec, status, name, now):
                status = executor.record_timeout(spec, status, name, now, rng)
                continue
            step = find_step(spec, name)
            fresh = all(r.name != name for r in status.steps)
            iteration = fan_out.parse_item(name) is not None
            if step.if_ is not None and fresh and not iteration:
                try:
                    holds = condition_holds(
                        step.if_, cel_context(body, status), f"step {step.name}: if"
                    )
                except TemplateError as exc:
                    status = executor.begin_attempt(status, name, uid, now)
                    error = ErrorReply(message=str(exc), retryable=False)
                    status = executor.record_reply(spec, status, name, error, now, rng)
                    continue
                if not holds:
                    why = f"its condition is false: {condition_source(step.if_)}"
                    status = executor.skip(status, name, now, why[:512])
                    continue
            if step.for_each is not None and fresh and not iteration:
                status = self._fan_out(body, spec, status, step, name, now, rng)
                continue
            extra: dict[str, Any] = {}
            if step.uses.app is not None:
                execution = executor.execution_id(uid, name, len(status.retries))
                extra["callback_token_hash"] = token_hash(self.tokens.callback(execution))
            status = executor.begin_attempt(status, name, uid, now, **extra)
            calls.append(name)
        return status, calls

    def _fan_out(
        self,
        body: Body,
        spec: WorkflowSpec,
        status: WorkflowRunStatus,
        step: Step,
        name: str,
        now: datetime,
        rng: random.Random,
    ) -> WorkflowRunStatus:
        """A forEach step, due: its items evaluated and kept; its iterations come next."""
        assert step.for_each is not None
        try:
            items = render(step.for_each, cel_context(body, status), f"step {step.name}: forEach")
            refused = fan_out.items_error(step.name, items)
        except TemplateError as exc:
            refused = str(exc)
        if refused is not None:
            begun = executor.begin_attempt(status, name, body["metadata"]["uid"], now)
            error = ErrorReply(message=refused, retryable=False)
            return executor.record_reply(spec, begun, name, error, now, rng)
        started = StepRecord(name=name, state=StepState.RUNNING, started_at=now)
        return fan_out.expand(status, name, items, now, started)

    # -- one call ------------------------------------------------------------------------------

    async def _call(
        self,
        key: Key,
        body: Body,
        spec: WorkflowSpec,
        status: WorkflowRunStatus,
        name: str,
        step: Step,
    ) -> None:
        record = find_record(status, name)
        started = self.now()
        left = executor.time_left(spec, status, name, started)  # the attempt's or the run's
        reply: StepReply | Wait | None
        try:
            reply = await before(
                None if left is None else left + 0.01, self.execute(body, status, step, record)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a step must not lose the run: a retryable error
            log.warning("step call failed", run=str(key), step=name, error=str(exc))
            reply = ErrorReply(message=f"step {name}: the call failed: {exc}", retryable=True)
        if reply is not None:
            kind = step.uses.type if step.uses.app is None else "block"
            metrics.STEP_SECONDS.labels(kind).observe((self.now() - started).total_seconds())
        answer = Answer(record.attempts, record.unique_execution_id, reply)
        self._answers.setdefault(key, {})[name] = answer
        self._done(key, name)
        if key not in self._lingering:  # else the reconcile waiting for it records it
            self._answered(key)

    async def execute(
        self, body: Body, status: WorkflowRunStatus, step: Step, record: StepRecord
    ) -> StepReply | Wait:
        context = cel_context(body, status)
        iteration, item, index = fan_out.item_value(status, record.name)
        if iteration:
            context |= {"item": item, "index": index}
        try:
            with_ = render(step.with_, context, f"step {record.name}: with")
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
                async with self.apps.calls.slot(builtin_target(step.uses.type, with_)):
                    return await self.builtins.execute(call)
            except KubeApiError as exc:
                return ErrorReply(message=f"step {step.name}: {exc.message}", retryable=True)
        try:
            app = await self.apps.app_handle(meta["namespace"], step.uses.app)
            request = ExecuteRequest(
                entity=self.entity(body, status, step, with_),
                app=app.input,
                with_=with_,
                metadata=self.metadata(record),
            )
            reply: StepReply = await app.call(request)
            return reply
        except HandlerError as exc:
            return ErrorReply(
                message=f"step {step.name}: {exc.message}",
                retryable=exc.reason not in PERMANENT_REASONS,
            )

    def entity(
        self, body: Body, status: WorkflowRunStatus, step: Step, with_: dict[str, object]
    ) -> EntityInput:
        """The step's entity as a step block sees it: the workflow, at the run's version."""
        ref = Key("Workflow", body["metadata"]["namespace"], workflow_ref(body))
        workflow = self.workflows.get(ref)
        uid = (workflow or {}).get("metadata", {}).get("uid", "")
        return step_entity(body, status, step, with_, uid)

    def metadata(self, record: StepRecord) -> CallMetadata:
        return call_metadata(record, self.tokens)


def _awaits(record: StepRecord | None, answer: Answer) -> bool:
    """Is the step still running the attempt this answer is for?"""
    return (
        record is not None
        and record.state is StepState.RUNNING
        and record.attempts == answer.attempts
        and record.unique_execution_id == answer.execution
    )
