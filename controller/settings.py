"""Controller settings, read from BLOCKFLOW_* environment variables (pydantic-settings)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
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
    standalone: bool = Field(default=True, description="Run without kopf peering (single replica).")

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
