"""Types shared by every Blockflow kind: base model, references, conditions, lifecycle status."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"

#: A free-form JSON object (``config``, ``with``, signals): kept verbatim by the API server.
FreeFormObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", PRESERVE_UNKNOWN: True}),
]

#: Any JSON value (string, number, object, list...): kept verbatim by the API server.
AnyJSON = Annotated[Any, WithJsonSchema({PRESERVE_UNKNOWN: True})]

#: A Kubernetes object name (RFC 1123 subdomain).
ObjectName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
    ),
]


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_enum_values=False,
        extra="ignore",
        defer_build=True,
    )


class SecretReference(ApiModel):
    """A Secret in the same namespace as the referencing object."""

    name: ObjectName = Field(description="Name of the Secret, in the same namespace.")


class SecretKeyReference(ApiModel):
    """One key of a Secret in the same namespace."""

    name: ObjectName = Field(description="Name of the Secret, in the same namespace.")
    key: str = Field(
        default="key",
        min_length=1,
        description="Key inside the Secret's data that holds the value.",
    )


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A kstatus-style condition (Ready, Reconciling, Stalled), as `kubectl wait` reads them."""

    type: str = Field(description="Condition type: Ready, Reconciling or Stalled.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str | None = Field(
        default=None, description="CamelCase reason for the last transition."
    )
    message: str | None = Field(default=None, description="Human-readable detail.")
    last_transition_time: datetime | None = Field(
        default=None, description="When the status last changed."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this condition was computed for."
    )


class LifecycleState(StrEnum):
    """The six lifecycle statuses a handler reports."""

    READY = "ready"
    IN_PROGRESS = "in_progress"
    FAILED = "failed"
    DRAINING = "draining"
    DRAINED = "drained"
    DRAINING_FAILED = "draining_failed"


class LifecycleStatus(ApiModel):
    """Where the entity is in its onSync / onDrain lifecycle."""

    status: LifecycleState | None = Field(
        default=None,
        description="ready, in_progress, failed, draining, drained or draining_failed.",
    )
    description: str | None = Field(
        default=None,
        description="The handler's customStatusDescription, or the controller's reason.",
    )
    last_sync_time: datetime | None = Field(
        default=None, description="When the handler was last called."
    )
    next_sync_time: datetime | None = Field(
        default=None, description="When the next scheduled sync (or drain) is due."
    )
    attempts: int | None = Field(
        default=None, ge=0, description="Consecutive failed attempts (resets on success)."
    )
    last_error: str | None = Field(
        default=None, description="The last error from the handler or the controller."
    )
    handler_version: str | None = Field(
        default=None, description="Version of the handler that last synced this entity."
    )
    inputs_hash: str | None = Field(
        default=None,
        description=(
            "Fingerprint of the inputs last handed to the handler (resolved config, the App's "
            "generation, versions of secret inputs); a change re-syncs."
        ),
    )
    last_handled_sync_at: str | None = Field(
        default=None,
        description="Last value of the blockflow.dev/requested-sync-at annotation acted upon.",
    )
    last_handled_drain_at: str | None = Field(
        default=None,
        description="Last value of the blockflow.dev/requested-drain-at annotation acted upon.",
    )


class SensitiveSignals(ApiModel):
    """Where sensitive signals are kept: never in status, only in an owned Secret."""

    secret_name: str | None = Field(
        default=None, description="The Secret (owned by this entity) that holds the values."
    )
    names: list[str] = Field(
        default_factory=list, description="Names of the sensitive signals (keys of the Secret)."
    )
    resource_version: str | None = Field(
        default=None,
        description="resourceVersion of the Secret last written; dependents re-sync on change.",
    )


class PromptRedirect(ApiModel):
    """Where a prompt sends the person who clicks it."""

    url: str = Field(description="URL to open, e.g. an OAuth consent page.")
    method: str = Field(default="GET", description="HTTP method to use.")


class Prompt(ApiModel):
    """A clickable request for a person (e.g. an OAuth consent link), set by the handler.

    It stays in ``status.prompts`` until a reply deletes it by key (``promptDeletes``)."""

    key: str = Field(
        min_length=1,
        max_length=128,
        description="Stable key of the prompt; a prompt with the same key replaces it.",
    )
    description: str | None = Field(
        default=None, max_length=1024, description="What the person is asked to do."
    )
    redirect: PromptRedirect | None = Field(default=None, description="Where the prompt leads.")


class TimerStatus(ApiModel):
    """A timer a handler set: when it falls due the controller calls the handler's `timer`."""

    key: str = Field(description="The timer's key; setting a timer with this key replaces it.")
    due_time: datetime = Field(description="When the handler's `timer` operation is called.")
    payload: FreeFormObject | None = Field(
        default=None, description="Handed back to the handler when the timer fires."
    )
    prompt_key: str | None = Field(
        default=None, description="The prompt the timer belongs to (e.g. its expiry)."
    )
    attempts: int = Field(
        default=0, ge=0, description="Failed `timer` calls so far (retried with backoff)."
    )


class EntityStatus(ApiModel):
    """Status shared by every kind that goes through the lifecycle engine."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation last acted upon by the controller."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="kstatus conditions: Ready, Reconciling, Stalled."
    )
    lifecycle: LifecycleStatus | None = Field(
        default=None, description="The onSync / onDrain lifecycle state."
    )
    signals: FreeFormObject = Field(
        default_factory=dict, description="Values this entity exposes to others (non-sensitive)."
    )
    sensitive_signals: SensitiveSignals | None = Field(
        default=None, description="Names of sensitive signals and the Secret that holds them."
    )
    prompts: list[Prompt] = Field(
        default_factory=list, description="Open prompts that wait for a person."
    )
    timers: list[TimerStatus] = Field(
        default_factory=list, description="Timers the handler set, kept across restarts."
    )
    state_secret_name: str | None = Field(
        default=None, description="The Secret (owned by this entity) holding the handler's state."
    )
    fixed_config: FreeFormObject | None = Field(
        default=None,
        description="Values of the config fields the type declares fixed, as first synced.",
    )


class ObjectMeta(ApiModel):
    """The subset of metadata the controller reads."""

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: datetime | None = None
    finalizers: list[str] = Field(default_factory=list)
