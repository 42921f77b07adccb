"""Workflow: event-triggered, multi-step automation."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from controller.api.common import (
    AnyJSON,
    ApiModel,
    EntityStatus,
    FreeFormObject,
    ObjectMeta,
    ObjectName,
    SecretKeyReference,
)

#: A step name: usable in CEL as ``steps.<name>``.
StepName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class WorkflowState(StrEnum):
    """The state a user asks for; activate, pause and archive are edits of this field."""

    DRAFT = "Draft"
    ACTIVE = "Active"
    PAUSED = "Paused"
    ARCHIVED = "Archived"


class WorkflowPhase(StrEnum):
    """Where the workflow actually is."""

    DRAFT = "Draft"
    ACTIVATED = "Activated"
    PAUSED = "Paused"
    TRIGGERED = "Triggered"
    ARCHIVED = "Archived"


class ErrorHandling(StrEnum):
    """What a run does when a step fails for good."""

    STOP = "Stop"
    CONTINUE = "Continue"
    FALLBACK = "Fallback"


class ConcurrencyPolicy(StrEnum):
    """What a schedule does when the previous run is still active."""

    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class RunConcurrencyPolicy(StrEnum):
    """What happens to a new run when `concurrency.max` runs are already active."""

    QUEUE = "Queue"
    SKIP = "Skip"
    REPLACE = "Replace"


class Backoff(ApiModel):
    """Exponential backoff between attempts (jitter is added by the controller)."""

    initial_seconds: float = Field(default=1.0, ge=0, description="Delay before the 2nd attempt.")
    factor: float = Field(default=2.0, ge=1, description="Multiplier applied after each attempt.")
    max_seconds: float = Field(default=300.0, ge=0, description="Upper bound of one delay.")


class RetryPolicy(ApiModel):
    """How often and how fast a retryable step error is retried."""

    max_attempts: int = Field(
        default=3, ge=1, le=100, description="Attempts in all, the first included."
    )
    backoff: Backoff = Field(default_factory=Backoff, description="Delay between attempts.")


class StepUses(ApiModel):
    """What a step runs: an App's step block (`app` + `type`), or a built-in step (`type` only)."""

    app: ObjectName | None = Field(
        default=None, description="The App whose handler offers the step block; omit for built-ins."
    )
    type: str = Field(
        min_length=1,
        max_length=128,
        description=(
            "Step block type, or a built-in: http, sleep, hook, approval, emit, kubernetes.job."
        ),
    )


class Step(ApiModel):
    """One step of a workflow."""

    name: StepName = Field(description="Unique step name; CEL sees its result as steps.<name>.")
    uses: StepUses = Field(description="The step block or built-in step to run.")
    with_: FreeFormObject = Field(
        default_factory=dict,
        alias="with",
        description=(
            "The step's config. A string that is exactly ${{ <CEL> }} is replaced by the "
            "expression's value; ${{ ... }} inside a longer string is interpolated as text."
        ),
    )
    retry_policy: RetryPolicy | None = Field(
        default=None, description="Overrides the workflow's retryPolicy for this step."
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description=(
            "How long one attempt may take, a call in flight or a wait for its callback or "
            "hook included: when it falls due the attempt fails as timed out (a late answer "
            "is not recorded) and is retried per the retry policy."
        ),
    )
    if_: str | None = Field(
        default=None,
        alias="if",
        min_length=1,
        description=(
            "Run the step only when this CEL condition is true, e.g. "
            "`${{ steps.lookup.id == 'created' }}` (the `${{ }}` may be left out); when false "
            "the step is recorded as skipped. It is evaluated when the step is due, so it "
            "sees the outcomes (id, data, state) of the steps before it."
        ),
    )
    for_each: str | None = Field(
        default=None,
        alias="forEach",
        min_length=1,
        description=(
            "Run the step once per item of this `${{ CEL }}` list (fan-out); CEL in `with` sees "
            "the item as `item` and its position as `index`. Each iteration has its own "
            "attempts, idempotency key and timeout; the step's outcome is `completed` with the "
            "list of the iterations' data, in order. Up to 2,000 items (128 KiB as JSON), 16 "
            "KiB of data per iteration, 256 KiB in all: past a limit the step fails, saying so."
        ),
    )
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=200,
        alias="maxConcurrency",
        description="Iterations of a forEach step in progress at once (default 10).",
    )
    needs: list[StepName] | None = Field(
        default=None,
        max_length=64,
        description=(
            "The steps (of the same list) this step waits for; it starts once each of them "
            "has ended (completed, skipped, or failed under errorHandling Continue). Steps "
            "that wait for nothing unfinished run side by side. Omitted: the step before it "
            "in the list (the steps of a workflow that declares no needs run in order); "
            "`[]`: it starts at once."
        ),
    )


class WebhookResponse(ApiModel):
    """A static HTTP response returned to the webhook's caller."""

    status: int = Field(default=202, ge=200, le=599, description="HTTP status code.")
    headers: dict[str, str] = Field(default_factory=dict, description="Response headers.")
    body: AnyJSON = Field(default=None, description="Response body (JSON).")


class WebhookSignature(ApiModel):
    """HMAC verification of incoming webhook requests (GitHub's X-Hub-Signature-256 format)."""

    header: str = Field(default="X-Hub-Signature-256", description="Header carrying sha256=<hex>.")
    secret_ref: SecretKeyReference = Field(description="Secret key the HMAC is computed with.")


class WebhookTrigger(ApiModel):
    """Start a run for each request to the workflow's trigger URL."""

    response: WebhookResponse | None = Field(
        default=None, description="Static response; 202 Accepted when omitted."
    )
    signature: WebhookSignature | None = Field(
        default=None, description="Reject requests whose HMAC signature does not match."
    )
    delivery_id: str | None = Field(
        default=None,
        description=(
            "Where a request's delivery id is, as `${{ CEL }}` over `event` (method, headers, "
            "query, body), e.g. `${{ event.body.id }}` for Stripe: a re-delivery with an id "
            "already seen starts no second run (200, duplicate: true). When omitted, the first "
            "of these headers the request carries: Idempotency-Key, webhook-id, svix-id, "
            "X-GitHub-Delivery, X-Gitea-Delivery, X-Gitlab-Event-UUID, X-Shopify-Webhook-Id, "
            "X-Atlassian-Webhook-Identifier, I-Twilio-Idempotency-Token. A request without "
            "an id starts a run."
        ),
    )


class ScheduleTrigger(ApiModel):
    """Start runs on a cron schedule."""

    cron: str = Field(min_length=1, description="Cron expression, e.g. '0 9 * * 1-5'.")
    timezone: str = Field(default="UTC", description="IANA time zone, e.g. Europe/Berlin.")
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.ALLOW,
        description="Allow, Forbid or Replace when the previous run is still active.",
    )
    max_catch_up: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Runs missed while the controller was down that are still started.",
    )


class BlockTrigger(ApiModel):
    """A custom trigger block of an App's handler (activated once per workflow version)."""

    app: ObjectName = Field(description="The App whose handler offers the trigger block.")
    type: str = Field(min_length=1, max_length=128, description="Trigger block type.")
    config: FreeFormObject = Field(default_factory=dict, description="The trigger block's config.")


class ManualTrigger(ApiModel):
    """Runs are started only by hand (`blockflow workflow trigger`, the web page, a
    WorkflowRun applied) or by another workflow's `workflow` step."""


class Trigger(ApiModel):
    """What starts a run: exactly one of event, webhook, schedule, block or manual."""

    event: str | None = Field(
        default=None, min_length=1, description="An event type, e.g. Deal.won or Block.ready."
    )
    webhook: WebhookTrigger | None = Field(default=None, description="An HTTP request.")
    schedule: ScheduleTrigger | None = Field(default=None, description="A cron schedule.")
    block: BlockTrigger | None = Field(default=None, description="A custom trigger block.")
    manual: ManualTrigger | None = Field(
        default=None,
        description=(
            "Started by hand or by other workflows only (`manual: {}`); the same as leaving "
            "spec.trigger out."
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        kinds = ("event", "webhook", "schedule", "block", "manual")
        chosen = [k for k in kinds if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "spec.trigger: set exactly one of event, webhook, schedule, block or manual"
            )
        return self


class CancelOn(ApiModel):
    """An event that cancels the workflow's running or waiting runs it matches."""

    event: str = Field(min_length=1, description="The event type, e.g. Order.cancelled.")
    match: dict[str, str] = Field(
        default_factory=dict,
        max_length=8,
        description=(
            "Dotted paths in the event and the values they must have, rendered per run when it "
            "starts, e.g. `data.orderId: ${{ event.data.orderId }}`."
        ),
    )


class Concurrency(ApiModel):
    """Limit on runs active at once (per key value, when `key` is set)."""

    max: int = Field(ge=1, description="Runs that may be active at once.")
    key: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "A `${{ CEL }}` over the run's `event`, e.g. `${{ event.data.customerId }}`: the "
            "limit counts the runs with the same value (one queue per customer)."
        ),
    )
    policy: RunConcurrencyPolicy = Field(
        default=RunConcurrencyPolicy.QUEUE,
        description="Queue, Skip or Replace a run that would exceed max.",
    )


class WorkflowSpec(ApiModel):
    """Desired state of a Workflow."""

    description: str | None = Field(default=None, description="What the workflow is for.")
    state: WorkflowState = Field(
        default=WorkflowState.DRAFT, description="Draft, Active, Paused or Archived."
    )
    trigger: Trigger | None = Field(
        default=None,
        description=(
            "What starts a run. Omitted (or `manual: {}`): runs are started by hand or by "
            "other workflows only."
        ),
    )
    input_schema: FreeFormObject | None = Field(
        default=None,
        description=(
            "A JSON Schema (draft 2020-12) the run's input must match: a webhook whose "
            "payload does not is answered 400 naming the field, an event starts no run (a "
            "Warning Event and blockflow_run_input_refused_total say why), and "
            "`blockflow workflow trigger` refuses it before creating a run. For webhooks the "
            "input is the request (method, headers, query, body); for events, the event."
        ),
    )
    steps: list[Step] = Field(
        default_factory=list,
        max_length=200,
        description=(
            "The steps (at least one to activate): in order, unless steps declare `needs`."
        ),
    )
    retry_policy: RetryPolicy | None = Field(
        default=None, description="Default retry policy for retryable step errors."
    )
    error_handling: ErrorHandling = Field(
        default=ErrorHandling.STOP, description="Stop, Continue or Fallback when a step fails."
    )
    fallback: list[Step] = Field(
        default_factory=list,
        max_length=50,
        description="Steps run when errorHandling is Fallback and a step fails.",
    )
    finally_: list[Step] = Field(
        default_factory=list,
        alias="finally",
        max_length=50,
        description=(
            "Steps run when the run ends — completed, failed or timed out (not when it is "
            "cancelled) — whatever happened before; CEL sees the outcome as `run.state` and "
            "`run.error`. They are not bound by the run's timeoutSeconds (give them their "
            "own); one that fails makes the run fail. Seen by CEL as steps.<name>."
        ),
    )
    timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Fails a run that has not finished in time, a step call in flight included.",
    )
    concurrency: Concurrency | None = Field(default=None, description="Limit on active runs.")
    cancel_on: list[CancelOn] = Field(
        default_factory=list,
        max_length=8,
        description="Events that cancel the runs they match (running, waiting or queued).",
    )
    successful_runs_limit: int = Field(
        default=10, ge=0, description="Completed runs kept; older ones are deleted."
    )
    failed_runs_limit: int = Field(
        default=10, ge=0, description="Failed runs kept; older ones are deleted."
    )


class Activation(ApiModel):
    """The trigger's current activation (its callback URL is a sensitive signal, not here)."""

    unique_activation_id: str | None = Field(
        default=None, description="Stable across retries of one activation."
    )
    version: int | None = Field(default=None, description="Workflow version that was activated.")
    activated_at: datetime | None = Field(default=None, description="When activation completed.")
    token_hash: str | None = Field(
        default=None, description="sha256 of the trigger URL's token (webhook and block triggers)."
    )
    spec: FreeFormObject | None = Field(
        default=None, description="The activated version's spec: what new runs execute."
    )


class ActivationAttempts(ApiModel):
    """Attempts to activate a version's trigger block that have not succeeded yet."""

    version: int = Field(description="The Workflow version being activated.")
    attempts: int = Field(ge=1, description="Calls of `activate` made for it so far.")


class WorkflowStatus(EntityStatus):
    """Observed state of a Workflow."""

    phase: WorkflowPhase | None = Field(
        default=None, description="Draft, Activated, Paused, Triggered (runs active) or Archived."
    )
    version: int | None = Field(
        default=None, description="The workflow's version (metadata.generation)."
    )
    activation: Activation | None = Field(
        default=None, description="The current trigger activation."
    )
    activation_attempts: ActivationAttempts | None = Field(
        default=None,
        description=(
            "While a trigger block's activation is retried: the attempts made (its handler "
            "sees the next one as metadata.attempt); cleared once activated."
        ),
    )
    last_run_at: datetime | None = Field(default=None, description="When the last run started.")
    run_count: int = Field(default=0, ge=0, description="Runs started.")
    success_count: int = Field(default=0, ge=0, description="Runs completed.")
    failure_count: int = Field(default=0, ge=0, description="Runs failed.")
    ignored_count: int = Field(
        default=0, ge=0, description="Events that arrived while the workflow was not active."
    )
    last_schedule_time: datetime | None = Field(
        default=None, description="The last schedule slot a run was started for."
    )
    counted: list[str] = Field(
        default_factory=list,
        description="Recently counted run events (bookkeeping that keeps the counters exact).",
    )


class Workflow(ApiModel):
    """Event-triggered automation: a trigger plus ordered steps."""

    api_version: Literal["blockflow.dev/v1alpha1"] = "blockflow.dev/v1alpha1"
    kind: Literal["Workflow"] = "Workflow"
    metadata: ObjectMeta
    spec: WorkflowSpec
    status: WorkflowStatus = Field(default_factory=WorkflowStatus)
