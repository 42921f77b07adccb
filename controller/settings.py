"""Controller settings, read from BLOCKFLOW_* environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the operator process can be told; each field is BLOCKFLOW_<NAME> in the env."""

    model_config = SettingsConfigDict(env_prefix="BLOCKFLOW_", extra="ignore")

    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: readable on a TTY, JSON otherwise."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces to watch (comma-separated); empty means the whole cluster.",
    )
    workers: int = Field(
        default=32, ge=1, le=1024, description="Reconciles of different entities run at once."
    )
    calls: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description=(
            "Handler and outside calls in flight at once, over all handlers (a call waits for "
            "a slot; it never holds a reconcile worker while it waits or runs)."
        ),
    )
    calls_per_handler: int = Field(
        default=32,
        ge=1,
        le=10_000,
        description=(
            "Calls in flight at once to one handler (an HTTP handler's host, a Python handler, "
            "an http step's host): a slow handler fills only its own slots."
        ),
    )
    resync_seconds: float = Field(
        default=600.0,
        ge=5.0,
        description=(
            "Every this many seconds every object is listed again and re-planned: a safety net "
            "for anything a missed watch event would otherwise leave waiting for good."
        ),
    )
    standalone: bool = Field(default=True, description="Run without kopf peering (single replica).")
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP server.")
    public_url: str | None = Field(
        default=None,
        description=(
            "Base URL callers reach the HTTP server at (callback, trigger URLs); "
            "default http://<http_host>:<http_port>."
        ),
    )
    controller_namespace: str = Field(
        default="default",
        description="Namespace of the controller's own Secret (the token key).",
    )
    token_key: SecretStr | None = Field(
        default=None,
        description=(
            "Key every URL token is derived from; default: kept in the Secret "
            "blockflow-token-key of controller_namespace (created on first start)."
        ),
    )
    events_namespace: str = Field(
        default="default", description="Namespace of events POSTed to /events without one."
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="HTTP body limit.")
    leader_election: bool = Field(
        default=False,
        description=(
            "Run as one of several replicas: only the holder of the Lease `lease_name` in "
            "controller_namespace works; the others stand by and take over when it stops."
        ),
    )
    lease_name: str = Field(default="blockflow-leader", description="Name of the Lease.")
    pod_name: str | None = Field(
        default=None,
        description=(
            "The Pod this replica runs in (controller_namespace). With leader election, the "
            "leader labels it blockflow.dev/leader=true and a standby removes the label, so a "
            "Service selecting that label sends traffic to the leader only, while every replica "
            "is Ready."
        ),
    )
    lease_seconds: float = Field(
        default=15.0, ge=1, le=300, description="How long a leader that stopped renewing holds on."
    )
    admission_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description=(
            "Port of the HTTPS validating admission webhook (on http_host); unset: no webhook."
        ),
    )
    admission_cert_dir: Path | None = Field(
        default=None,
        description=(
            "Directory holding the webhook's serving certificate as tls.crt and tls.key "
            "(a mounted TLS Secret, or what `blockflow admission local` made)."
        ),
    )

    @model_validator(mode="after")
    def _admission_needs_a_cert(self) -> Settings:
        if self.admission_port is not None and self.admission_cert_dir is None:
            raise ValueError(
                "BLOCKFLOW_ADMISSION_PORT is set but BLOCKFLOW_ADMISSION_CERT_DIR is not: "
                "the webhook serves HTTPS; point it at a directory with tls.crt and tls.key"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
