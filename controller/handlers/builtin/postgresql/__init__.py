"""The built-in ``postgresql`` handler: roles and databases on a PostgreSQL server.

An App names the server and admin credentials (``spec.handler.python: postgresql``)::

    config: {host: db.example.internal, port: 5432, database: postgres}
    configFrom: [{secretRef: {name: postgresql-admin}}]    # keys: username, password

Block types:

``role``
    ``name`` (fixed), ``login`` (default true), ``connectionLimit`` (default -1: unlimited),
    ``inherit`` (default true).  Signals ``username`` and ``password`` (sensitive).  The password
    is generated once and handed back by the controller on every later sync (it is one of the
    entity's signals), so it never changes unless the signal is lost.
``database``
    ``name`` (fixed), ``owner`` (a role name; usually a ``signalRef`` to a role's ``username``),
    ``encoding`` (default UTF8; fixed), ``template`` (used only at creation; fixed).  Signals
    ``name``, ``host`` and ``port``.

Every call opens one short-lived connection with the App's credentials.  ``sync`` is
idempotent: it creates what is missing and alters only what differs (a sync with nothing to
change writes nothing).  ``drain`` drops (the controller skips it for ``deletionPolicy:
Orphan``).  PostgreSQL and connection errors become ``failed`` / ``draining_failed`` replies
whose description never contains a password.

Passwords are sent as SCRAM-SHA-256 verifiers computed here (like ``psql``'s ``\\password``),
so the plain text never reaches the server's statement log.  (That is for ASCII passwords,
which all generated ones are; others are sent as literals for the server to hash.)  The
verifier is compared with the stored one (when the admin may read ``pg_authid``) so an
unchanged password is not rewritten.
The role the App logs in as, superuser roles, the App's own database and template databases
are never altered or dropped.
"""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

import asyncpg
from pydantic import BaseModel, ValidationError

from controller import __version__
from controller.handlers.builtin.postgresql.config import (
    APP_CONFIG_SCHEMA,
    DATABASE_CONFIG_SCHEMA,
    ROLE_CONFIG_SCHEMA,
    DatabaseConfig,
    Identifier,
    RoleConfig,
)
from controller.handlers.builtin.postgresql.connection import connect
from controller.handlers.builtin.postgresql.constants import TRANSIENT_RETRY_SECONDS
from controller.handlers.builtin.postgresql.failures import (
    Failure,
    _app_config,
    _drain_failed,
    _parse,
    _postgres_failure,
    _scrub,
    _sync_failed,
)

# -- the handler ---------------------------------------------------------------------------------
from controller.handlers.builtin.postgresql.sql import (
    quote_ident,
    quote_literal,
    scram_matches,
    scram_sha_256,
)
from controller.handlers.builtin.postgresql.statements import (
    _drop_database,
    _drop_role,
    _ensure_database,
    _ensure_role,
)
from controller.handlers.protocol import (
    DrainReply,
    DrainRequest,
    SignalSpec,
    SyncReply,
    SyncRequest,
)
from controller.handlers.sdk import BlockType, Handler, HandlerContext


class PostgresqlHandler(Handler):
    """App-level sync checks that the admin credentials work."""

    app_config_schema: ClassVar[dict[str, Any] | None] = APP_CONFIG_SCHEMA

    async def sync_app(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        hidden = [_app_password(request)]
        try:
            app = _app_config(request)
            async with connect(app) as session:
                await session.conn.fetchval("SELECT 1")
        except Failure as failure:
            return _sync_failed(failure, hidden)
        except asyncpg.PostgresError as exc:
            return _sync_failed(_postgres_failure(exc, "checking the connection"), hidden)
        return SyncReply(new_status="ready", custom_status_description=f"Connected to {app.target}")


class Role(BlockType):
    """A role (user) with a generated password."""

    description = "A PostgreSQL role; its password is generated once (sensitive signal)."
    config_schema = ROLE_CONFIG_SCHEMA
    signals: ClassVar[list[SignalSpec]] = [
        SignalSpec(name="username", description="The role name."),
        SignalSpec(name="password", sensitive=True, description="The role's password."),
    ]
    fixed: ClassVar[list[str]] = ["name"]

    async def sync(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        current = request.entity.signals.get("password")
        password = current if isinstance(current, str) and current else secrets.token_urlsafe(24)
        hidden = [password, _app_password(request)]
        try:
            app = _app_config(request)
            config = _parse(RoleConfig, request.entity.config, "role config")
            async with connect(app) as session:
                try:
                    outcome = await _ensure_role(session, config, password)
                except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                    # Created concurrently by someone else: now it exists, so alter it.
                    outcome = await _ensure_role(session, config, password)
        except Failure as failure:
            return _sync_failed(failure, hidden)
        except asyncpg.PostgresError as exc:
            return _sync_failed(_postgres_failure(exc, "syncing the role"), hidden)
        return SyncReply(
            new_status="ready",
            custom_status_description=_scrub(outcome, hidden),
            signal_updates={"username": config.name, "password": password},
        )

    async def drain(self, request: DrainRequest, ctx: HandlerContext) -> DrainReply:
        hidden = [str(request.entity.signals.get("password", "")), _app_password(request)]
        try:
            name = _drain_target(request)
            if name is None:
                return _nothing_to_drop("role")
            app = _app_config(request)
            async with connect(app) as session:
                outcome = await _drop_role(session, name)
        except Failure as failure:
            return _drain_failed(failure, hidden)
        except asyncpg.PostgresError as exc:
            return _drain_failed(_postgres_failure(exc, "dropping the role"), hidden)
        return DrainReply(new_status="drained", custom_status_description=_scrub(outcome, hidden))


class Database(BlockType):
    """A database with an owner."""

    description = "A PostgreSQL database owned by a role."
    config_schema = DATABASE_CONFIG_SCHEMA
    signals: ClassVar[list[SignalSpec]] = [
        SignalSpec(name="name", description="The database name."),
        SignalSpec(name="host", description="The server's host (from the App)."),
        SignalSpec(name="port", description="The server's port (from the App)."),
    ]
    fixed: ClassVar[list[str]] = ["name", "encoding", "template"]

    async def sync(self, request: SyncRequest, ctx: HandlerContext) -> SyncReply:
        hidden = [_app_password(request)]
        try:
            app = _app_config(request)
            config = _parse(DatabaseConfig, request.entity.config, "database config")
            async with connect(app) as session:
                try:
                    outcome = await _ensure_database(session, config)
                except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                    # Created concurrently by someone else: now it exists, so alter it.
                    outcome = await _ensure_database(session, config)
        except Failure as failure:
            return _sync_failed(failure, hidden)
        except asyncpg.PostgresError as exc:
            return _sync_failed(_postgres_failure(exc, "syncing the database"), hidden)
        return SyncReply(
            new_status="ready",
            custom_status_description=_scrub(outcome, hidden),
            signal_updates={"name": config.name, "host": app.host, "port": app.port},
        )

    async def drain(self, request: DrainRequest, ctx: HandlerContext) -> DrainReply:
        hidden = [_app_password(request)]
        try:
            name = _drain_target(request)
            if name is None:
                return _nothing_to_drop("database")
            app = _app_config(request)
            async with connect(app) as session:
                outcome = await _drop_database(session, name)
        except Failure as failure:
            return _drain_failed(failure, hidden)
        except asyncpg.PostgresError as exc:
            return _drain_failed(_postgres_failure(exc, "dropping the database"), hidden)
        return DrainReply(new_status="drained", custom_status_description=_scrub(outcome, hidden))


class _DrainTarget(BaseModel):
    """Drain needs only the name: other fields may have become invalid since creation."""

    name: Identifier


def _drain_target(request: DrainRequest) -> str | None:
    """The name to drop, or None when no valid name means nothing was ever created."""
    try:
        return _DrainTarget.model_validate(request.entity.config).name
    except ValidationError:
        return None


def _nothing_to_drop(what: str) -> DrainReply:
    return DrainReply(
        new_status="drained",
        custom_status_description=f"Nothing to drop: the config has no valid {what} name",
    )


def _app_password(request: SyncRequest | DrainRequest) -> str:
    app = request.app if request.entity.kind == "Block" else request.entity
    return str(app.config.get("password", "")) if app is not None else ""


handler = PostgresqlHandler(
    version=__version__, block_types={"role": Role(), "database": Database()}
)


__all__ = [
    "TRANSIENT_RETRY_SECONDS",
    "PostgresqlHandler",
    "handler",
    "quote_ident",
    "quote_literal",
    "scram_matches",
    "scram_sha_256",
]
