"""What every built-in step shares: the call it gets, what it may answer, what it may use.

A built-in answers like a step block — an outcome, an exit, an error — or with a
:class:`Wait`: "come back at this time" (a sleep, a Job being polled) or "wait for a
POST to /hooks/<token>" (a hook, an approval). A wait is written to the run's status;
nothing waits in memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from controller.api.workflow import Step
from controller.api.workflowrun import EventWait, StepRecord
from controller.handlers.protocol import ErrorReply, ExitReply, OutcomeReply
from controller.kube.rest import Requester


@dataclass(frozen=True)
class Wait:
    """Come back at `at` (resume the same attempt), or wait for a hook (`at` None)."""

    at: datetime | None
    hook_token_hash: str | None = None
    #: The run a `workflow` step started and waits for.
    child: str | None = None
    #: The event a `waitForEvent` step waits for.
    awaits: EventWait | None = None


BuiltinReply = OutcomeReply | ExitReply | ErrorReply | Wait

#: (namespace, type, source, id, data) → runs started.
Publish = Callable[[str, str, str, str, Any], Awaitable[int]]


@dataclass(frozen=True)
class ChildRun:
    """A run a `workflow` step starts: of `workflow`, named `name`, for the parent run."""

    namespace: str
    workflow: str
    name: str
    input: dict[str, Any] | None
    parent_name: str
    parent_uid: str
    parent_step: str


class ChildRefused(ValueError):
    """The child run cannot start (no such workflow, not active, input refused): says why."""


#: Creates the child run (nothing when it exists already); raises ChildRefused.
StartChild = Callable[[ChildRun], Awaitable[None]]


@dataclass(frozen=True)
class StepCall:
    """One call of a built-in step."""

    namespace: str
    run_name: str
    run_uid: str
    step: Step
    record: StepRecord
    with_: dict[str, Any]
    now: datetime

    @property
    def execution_id(self) -> str:
        return self.record.unique_execution_id or ""


@dataclass(frozen=True)
class StepTools:
    """What built-in steps may use: the Kubernetes API, an HTTP session, event publishing."""

    kube: Requester
    http: aiohttp.ClientSession
    publish: Publish
    start_child: StartChild


#: A built-in step: its call and tools in, its reply out.
StepFunction = Callable[[StepCall, StepTools], Awaitable[BuiltinReply]]


@dataclass(frozen=True)
class HookDelivery:
    """What a hook POST does to a waiting step: its new received list, and the reply
    (an outcome when the step is done, None while it keeps waiting)."""

    received: list[Any]
    reply: OutcomeReply | None


class HookRejected(ValueError):
    """A hook payload the step does not accept (answered 400, nothing changes)."""


def bad(call: StepCall, field: str, fix: str) -> ErrorReply:
    """A `with:` field the step cannot use: a permanent error naming the field and the fix."""
    return ErrorReply(message=f"step {call.step.name}: with.{field}: {fix}", retryable=False)
