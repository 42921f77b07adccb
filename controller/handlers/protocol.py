"""The handler protocol: requests the controller sends and the replies it accepts.

Defined once, here, for both transports: in-process Python handlers receive
these models, HTTP handlers receive their JSON (camelCase) and must reply with
JSON that validates against the reply models.  ``docs/protocol/`` holds the
published JSON Schema, generated from this module (``make protocol``).

Replies are strict (unknown fields are an error): a handler that misspells
``newStatus`` must fail loudly, not be read as "no change".
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field

from controller.api.common import ApiModel, LifecycleState, Prompt

PROTOCOL_VERSION: Final = "blockflow.dev/handler/v1"

Operation = Literal[
    "sync", "drain", "execute", "finish", "activate", "deactivate", "trigger", "http", "timer"
]


class StrictReply(ApiModel):
    """Base of replies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


# -- inputs -------------------------------------------------------------------------------------


class AppHttp(ApiModel):
    """An App's HTTP endpoint on the controller."""

    url: str = Field(
        description=(
            "Base URL: any request to <url>/<path> calls the App handler's `http` operation "
            "(e.g. an OAuth redirect_uri of <url>/callback)."
        )
    )


class EntityInput(ApiModel):
    """The App, Block or Workflow a call is about."""

    kind: Literal["App", "Block", "Workflow"] = Field(description="Kind of the entity.")
    name: str = Field(description="metadata.name")
    namespace: str = Field(description="metadata.namespace")
    uid: str = Field(description="metadata.uid")
    generation: int = Field(description="metadata.generation")
    type: str | None = Field(default=None, description="Block type (Blocks only).")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Resolved config: signal references replaced by values, configFrom merged.",
    )
    status: LifecycleState | None = Field(default=None, description="Current lifecycle status.")
    signals: dict[str, Any] = Field(
        default_factory=dict, description="Current signals, sensitive ones included."
    )
    http: AppHttp | None = Field(default=None, description="Apps only: the App's HTTP endpoint.")
    installation_url: str | None = Field(
        default=None,
        description="Apps only: the App's page on the controller's web page (prompts show there).",
    )


class CallMetadata(ApiModel):
    """Identifiers of one call, stable across its retries."""

    attempt: int = Field(default=1, ge=1, description="1 for the first attempt of this call.")
    unique_execution_id: str | None = Field(
        default=None, description="Step executions: the idempotency key, stable across retries."
    )
    finish_callback_url: str | None = Field(
        default=None, description="Step executions: POST here to finish a deferred step."
    )
    unique_activation_id: str | None = Field(
        default=None, description="Trigger blocks: stable across retries of one activation."
    )
    trigger_callback_url: str | None = Field(
        default=None, description="Trigger blocks: requests here call the handler's `trigger`."
    )


class HandlerRequest(ApiModel):
    """Every request carries the protocol version, the operation and the entity."""

    protocol_version: Literal["blockflow.dev/handler/v1"] = PROTOCOL_VERSION
    operation: Operation
    entity: EntityInput = Field(description="The entity the call is about.")
    app: EntityInput | None = Field(
        default=None, description="The owning App (for Blocks, step and trigger blocks)."
    )
    state: dict[str, Any] = Field(
        default_factory=dict, description="KV state the handler returned last time."
    )
    metadata: CallMetadata = Field(default_factory=CallMetadata)


class SyncRequest(HandlerRequest):
    operation: Literal["sync"] = "sync"


class DrainRequest(HandlerRequest):
    operation: Literal["drain"] = "drain"


class HttpRequestData(ApiModel):
    """An HTTP request that reached the controller (callbacks, triggers)."""

    method: str
    path: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str] = Field(default_factory=dict)
    body: Any = None


class ExecuteRequest(HandlerRequest):
    operation: Literal["execute"] = "execute"
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="Step config.")


class FinishRequest(HandlerRequest):
    operation: Literal["finish"] = "finish"
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    request: HttpRequestData = Field(description="The callback request.")


class ActivateRequest(HandlerRequest):
    operation: Literal["activate"] = "activate"


class DeactivateRequest(HandlerRequest):
    operation: Literal["deactivate"] = "deactivate"


class TriggerRequest(HandlerRequest):
    operation: Literal["trigger"] = "trigger"
    request: HttpRequestData = Field(description="The request that reached the trigger URL.")


class AppHttpRequest(HandlerRequest):
    """A request to the App's HTTP endpoint (`entity` is the App)."""

    operation: Literal["http"] = "http"
    request: HttpRequestData = Field(
        description="The request; `path` is the part after the App's `http.url`."
    )


class TimerInput(ApiModel):
    """The timer that fell due."""

    key: str
    payload: dict[str, Any] | None = None
    prompt: Prompt | None = Field(
        default=None, description="The prompt the timer belongs to, if it is still open."
    )


class TimerRequest(HandlerRequest):
    """A timer the handler set fell due (`entity` is the App or Block that set it)."""

    operation: Literal["timer"] = "timer"
    timer: TimerInput


# -- lifecycle replies -----------------------------------------------------------------------


SyncStatus = Literal["ready", "in_progress", "failed"]
DrainStatus = Literal["draining", "drained", "draining_failed"]
Delay = Annotated[float, Field(ge=0, le=30 * 24 * 3600)]


class TimerSet(StrictReply):
    """A timer to set: the handler's `timer` operation is called after `delaySeconds`."""

    key: str = Field(
        min_length=1, max_length=128, description="A timer with this key already set is replaced."
    )
    delay_seconds: Delay = Field(description="Seconds from now.")
    payload: dict[str, Any] | None = Field(
        default=None, description="Handed back in the `timer` call."
    )
    prompt_key: str | None = Field(
        default=None, description="The prompt this timer belongs to (its expiry, say)."
    )


class SideEffects(StrictReply):
    """What any lifecycle, `http` or `timer` reply may also ask for."""

    prompts: list[Prompt] | None = Field(
        default=None,
        description=(
            "Prompts to show until deleted; one with the key of an open prompt replaces it."
        ),
    )
    prompt_deletes: list[str] | None = Field(
        default=None, description="Keys of prompts to remove (unknown keys are ignored)."
    )
    timers: list[TimerSet] | None = Field(default=None, description="Timers to set.")
    state: dict[str, Any] | None = Field(
        default=None, description="KV state to persist and hand back on the next call."
    )
    request_sync: bool = Field(
        default=False,
        description="Sync this entity again soon (the reply form of `lifecycle.sync()`).",
    )


class SyncReply(SideEffects):
    """Reply to `sync`."""

    new_status: SyncStatus = Field(description="ready, in_progress or failed.")
    custom_status_description: str | None = Field(default=None, max_length=1024)
    signal_updates: dict[str, Any] | None = Field(
        default=None, description="Signals to set (merged into the current ones)."
    )
    next_schedule_delay: Delay | None = Field(
        default=None, description="Seconds until the next sync, at any status."
    )


class DrainReply(SideEffects):
    """Reply to `drain`."""

    new_status: DrainStatus = Field(description="draining, drained or draining_failed.")
    custom_status_description: str | None = Field(default=None, max_length=1024)
    next_schedule_delay: Delay | None = Field(
        default=None, description="Seconds until drain runs again."
    )


class HttpResponse(StrictReply):
    """The answer the App's HTTP endpoint gives."""

    status: int = Field(default=200, ge=200, le=599)
    headers: dict[str, str] = Field(
        default_factory=dict, description="e.g. Location for a redirect, Content-Type."
    )
    body: Any = Field(
        default=None,
        description="A string is sent as is (text/plain unless Content-Type says otherwise); "
        "anything else as JSON.",
    )


class HttpReply(SideEffects):
    """Reply to `http`."""

    response: HttpResponse = Field(default_factory=HttpResponse)


class TimerReply(SideEffects):
    """Reply to `timer`."""


# -- step and trigger replies ----------------------------------------------------------------


class OutcomeReply(StrictReply):
    type: Literal["outcome"] = "outcome"
    id: str = Field(min_length=1, description="Outcome id, e.g. success.")
    data: Any = Field(default=None, description="Outcome data.")


class ExitReply(StrictReply):
    type: Literal["exit"] = "exit"


class DeferReply(StrictReply):
    type: Literal["defer"] = "defer"


class ErrorReply(StrictReply):
    type: Literal["error"] = "error"
    message: str = Field(min_length=1)
    retryable: bool = False


class NoOpReply(StrictReply):
    type: Literal["no-op"] = "no-op"


class CompleteReply(StrictReply):
    type: Literal["complete"] = "complete"


ExecuteReply = Annotated[
    OutcomeReply | ExitReply | DeferReply | ErrorReply, Field(discriminator="type")
]
FinishReply = Annotated[
    OutcomeReply | ExitReply | ErrorReply | NoOpReply, Field(discriminator="type")
]
ActivationReply = Annotated[CompleteReply | ErrorReply, Field(discriminator="type")]
TriggerReply = Annotated[OutcomeReply | NoOpReply, Field(discriminator="type")]


# -- handler metadata --------------------------------------------------------------------------


class SignalSpec(StrictReply):
    """A signal a block type exposes."""

    name: str
    sensitive: bool = Field(
        default=False, description="Kept in an owned Secret, never in status, events or logs."
    )
    description: str | None = None


class BlockTypeSpec(StrictReply):
    """What a handler declares about one of its block types."""

    kind: Literal["lifecycle", "step", "trigger"] = "lifecycle"
    description: str | None = None
    config_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the block's config."
    )
    signals: list[SignalSpec] = Field(default_factory=list)
    fixed: list[str] = Field(
        default_factory=list, description="Config fields that cannot change after creation."
    )


class HandlerInfo(StrictReply):
    """`GET <url>/` for HTTP handlers; the handler object's description for Python ones."""

    version: str = Field(min_length=1, description="Handler version; a change re-syncs its Apps.")
    protocol_version: Literal["blockflow.dev/handler/v1"] = PROTOCOL_VERSION
    app_config_schema: dict[str, Any] | None = None
    app_signals: list[SignalSpec] = Field(default_factory=list)
    block_types: dict[str, BlockTypeSpec] = Field(default_factory=dict)


#: operation → (request model, reply type): the table the docs and the schema export use.
OPERATIONS: dict[str, tuple[type[HandlerRequest], Any]] = {
    "sync": (SyncRequest, SyncReply),
    "drain": (DrainRequest, DrainReply),
    "execute": (ExecuteRequest, ExecuteReply),
    "finish": (FinishRequest, FinishReply),
    "activate": (ActivateRequest, ActivationReply),
    "deactivate": (DeactivateRequest, ActivationReply),
    "trigger": (TriggerRequest, TriggerReply),
    "http": (AppHttpRequest, HttpReply),
    "timer": (TimerRequest, TimerReply),
}
