"""The App's and the block types' config, validated with names that Postgres accepts
(and their JSON Schemas, which the controller checks before a call)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from controller.handlers.builtin.postgresql.constants import MAX_IDENTIFIER_BYTES, SSL_MODES

# -- config ------------------------------------------------------------------------------------


def _identifier(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"must be at most {MAX_IDENTIFIER_BYTES} bytes (PostgreSQL truncates longer names)"
        )
    return value


Identifier = Annotated[str, Field(min_length=1), AfterValidator(_identifier)]


class _Config(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class AppConfig(_Config):
    """The App's config with the configFrom Secret's keys merged in."""

    # The Secret may hold more keys than these; they are not ours to refuse.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    host: str = Field(min_length=1)
    port: int = Field(default=5432, ge=1, le=65535)
    database: Identifier = "postgres"
    username: Identifier
    password: str = Field(min_length=1, repr=False)
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        None
    )
    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"


class RoleConfig(_Config):
    name: Identifier
    login: bool = True
    connection_limit: int = Field(default=-1, ge=-1)
    inherit: bool = True


class DatabaseConfig(_Config):
    name: Identifier
    owner: Identifier | None = None
    encoding: str = Field(default="UTF8", min_length=1, max_length=64)
    template: Identifier | None = None


def _name_schema(description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDENTIFIER_BYTES,
        "description": description,
    }


APP_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A PostgreSQL server; put username and password in a Secret (configFrom).",
    "properties": {
        "host": {"type": "string", "minLength": 1, "description": "Host name or IP address."},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 5432},
        "database": {
            **_name_schema("Database to connect to for administration."),
            "default": "postgres",
        },
        "username": _name_schema("Admin role (CREATEROLE and CREATEDB); from configFrom."),
        "password": {"type": "string", "minLength": 1, "description": "From configFrom."},
        "sslmode": {"type": "string", "enum": list(SSL_MODES), "description": "libpq sslmode."},
        "connectTimeoutSeconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 300,
            "default": 10,
        },
    },
    "required": ["host", "username", "password"],
}

ROLE_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": _name_schema("Role name (cannot change after creation)."),
        "login": {"type": "boolean", "default": True, "description": "LOGIN or NOLOGIN."},
        "connectionLimit": {
            "type": "integer",
            "minimum": -1,
            "default": -1,
            "description": "CONNECTION LIMIT; -1 means no limit.",
        },
        "inherit": {"type": "boolean", "default": True, "description": "INHERIT or NOINHERIT."},
    },
    "required": ["name"],
    "additionalProperties": False,
}

DATABASE_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": _name_schema("Database name (cannot change after creation)."),
        "owner": _name_schema("Owning role, e.g. a signalRef to a role Block's username."),
        "encoding": {
            "type": "string",
            "minLength": 1,
            "default": "UTF8",
            "description": "Character set (cannot change after creation).",
        },
        "template": _name_schema("Template database, used at creation (e.g. template0)."),
    },
    "required": ["name"],
    "additionalProperties": False,
}
