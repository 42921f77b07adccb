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

import base64
import binascii
import contextlib
import hashlib
import hmac
import re
import secrets
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import asyncpg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from controller import __version__
from controller.handlers.protocol import (
    DrainReply,
    DrainRequest,
    SignalSpec,
    SyncReply,
    SyncRequest,
)
from controller.handlers.sdk import BlockType, Handler, HandlerContext

__all__ = [
    "PostgresqlHandler",
    "handler",
    "quote_ident",
    "quote_literal",
    "scram_matches",
    "scram_sha_256",
]

#: Seconds until a sync that failed for a transient reason (server unreachable) runs again.
TRANSIENT_RETRY_SECONDS = 30.0
#: Seconds any one statement may run.
COMMAND_TIMEOUT_SECONDS = 60.0
#: PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes.
MAX_IDENTIFIER_BYTES = 63
_MAX_DESCRIPTION = 1024

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


# -- quoting ------------------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    """An SQL identifier, always double-quoted (so case, spaces and quotes survive)."""
    if "\x00" in name:
        raise ValueError("identifiers cannot contain NUL characters")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """An SQL string literal, correct whatever ``standard_conforming_strings`` is.

    Like libpq's ``PQescapeLiteral``: quotes are doubled; if there is a backslash the
    literal is an escape string (``E'...'``) with backslashes doubled too.
    """
    if "\x00" in value:
        raise ValueError("string literals cannot contain NUL characters")
    quoted = value.replace("'", "''")
    if "\\" in value:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


# -- SCRAM-SHA-256 verifiers ----------------------------------------------------------------------

_SCRAM = re.compile(r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)")


def scram_sha_256(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The verifier PostgreSQL stores for ``password`` (RFC 5802/7677, as libpq computes it).

    Only for ASCII passwords: for those SASLprep is the identity, as in the server.
    """
    if not password.isascii():
        raise ValueError("client-side SCRAM verifiers are computed for ASCII passwords only")
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier was made from ``password``."""
    match = _SCRAM.fullmatch(verifier)
    if match is None or not password.isascii():
        return False
    iterations = int(match[1])
    if not 1 <= iterations <= 1_000_000:
        return False
    try:
        salt = base64.b64decode(match[2], validate=True)
    except binascii.Error:
        return False
    expected = scram_sha_256(password, salt=salt, iterations=iterations)
    return hmac.compare_digest(expected.encode(), verifier.encode())


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


# -- failures ------------------------------------------------------------------------------------


class Failure(Exception):
    """A reason to reply failed / draining_failed; its text goes to the user."""

    def __init__(self, description: str, *, transient: bool = False) -> None:
        super().__init__(description)
        self.description = description
        self.transient = transient


_M = TypeVar("_M", bound=BaseModel)


def _parse(model: type[_M], data: dict[str, Any], what: str) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Locations and messages only: the input values may be secrets.
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error["loc"]) or "(config)"
            problems.append(f"{where}: {error['msg']}")
        more = exc.error_count() - len(problems)
        raise Failure(
            f"invalid {what}: " + "; ".join(problems) + (f" (+{more} more)" if more > 0 else "")
        ) from None


def _app_config(request: SyncRequest | DrainRequest) -> AppConfig:
    app = request.app if request.entity.kind == "Block" else request.entity
    if app is None:
        raise Failure("the request carries no App: a postgresql Block needs its App's config")
    if "username" not in app.config or "password" not in app.config:
        missing = [key for key in ("username", "password") if key not in app.config]
        raise Failure(
            f"App {app.name} has no {' or '.join(missing)}: put the admin credentials in a "
            f"Secret with keys username and password and name it in spec.configFrom"
        )
    return _parse(AppConfig, app.config, f"config of App {app.name}")


_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")


def _postgres_failure(exc: asyncpg.PostgresError, doing: str) -> Failure:
    """A PostgreSQL error as a user-facing description (message, detail, hint; no query)."""
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    parts = [f"{doing}: {_one_line(str(getattr(exc, 'message', '') or exc))}"]
    detail = getattr(exc, "detail", None)
    if detail:
        parts.append(f"({_one_line(str(detail))})")
    hint = getattr(exc, "hint", None)
    if hint:
        parts.append(f"Hint: {_one_line(str(hint)).rstrip('.')}.")
    if sqlstate:
        parts.append(f"[SQLSTATE {sqlstate}]")
    transient = sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES) or sqlstate == "55P03"
    return Failure(" ".join(parts), transient=transient)


def _connect_failure(exc: BaseException, app: AppConfig) -> Failure:
    target = app.target
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return Failure(
            f"authentication failed for user {app.username} at {target}: check username and "
            f"password in the Secret named in the App's configFrom"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return Failure(
            f"database {app.database} does not exist on {app.host}:{app.port}: fix the App's "
            f"config.database"
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return Failure(f"{target} refused the login of {app.username}: {_message(exc)}")
    if isinstance(exc, asyncpg.PostgresError):
        return _postgres_failure(exc, f"cannot connect to {target}")
    if isinstance(exc, TimeoutError):
        return Failure(
            f"timed out connecting to {target} after {app.connect_timeout_seconds:g}s",
            transient=True,
        )
    if isinstance(exc, ConnectionRefusedError):
        return Failure(
            f"connection refused by {app.host}:{app.port}: is PostgreSQL running and listening "
            f"there?",
            transient=True,
        )
    if isinstance(exc, socket.gaierror):
        return Failure(f"cannot resolve host {app.host}: {exc.strerror}", transient=True)
    return Failure(
        f"cannot connect to {target}: {type(exc).__name__}: {_message(exc)}", transient=True
    )


def _message(exc: BaseException) -> str:
    return _one_line(str(getattr(exc, "message", None) or exc) or type(exc).__name__)


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _scrub(text: str, hidden: Iterable[str]) -> str:
    for secret in hidden:
        if secret:
            text = text.replace(secret, "***")
    if len(text) > _MAX_DESCRIPTION:
        text = text[: _MAX_DESCRIPTION - 1] + "…"
    return text


def _sync_failed(failure: Failure, hidden: Iterable[str]) -> SyncReply:
    return SyncReply(
        new_status="failed",
        custom_status_description=_scrub(failure.description, hidden),
        next_schedule_delay=TRANSIENT_RETRY_SECONDS if failure.transient else None,
    )


def _drain_failed(failure: Failure, hidden: Iterable[str]) -> DrainReply:
    return DrainReply(
        new_status="draining_failed", custom_status_description=_scrub(failure.description, hidden)
    )


# -- connections --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """One admin connection and what we learnt about it on connect."""

    conn: Any  # asyncpg.Connection (asyncpg ships no type information)
    app: AppConfig
    current_user: str
    current_database: str
    server_major: int


@contextlib.asynccontextmanager
async def connect(app: AppConfig) -> AsyncIterator[Session]:
    """A short-lived admin connection; connection problems raise :class:`Failure`."""
    options: dict[str, Any] = {
        "host": app.host,
        "port": app.port,
        "user": app.username,
        "password": app.password,
        "database": app.database,
        "timeout": app.connect_timeout_seconds,
        "command_timeout": COMMAND_TIMEOUT_SECONDS,
        "statement_cache_size": 0,
        "server_settings": {"application_name": "blockflow"},
    }
    if app.sslmode is not None:
        options["ssl"] = app.sslmode
    try:
        conn = await asyncpg.connect(**options)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise _connect_failure(exc, app) from None
    try:
        row = await conn.fetchrow("SELECT current_user AS u, current_database() AS d")
        yield Session(
            conn=conn,
            app=app,
            current_user=row["u"],
            current_database=row["d"],
            server_major=conn.get_server_version().major,
        )
    except TimeoutError:
        raise Failure(
            f"a statement on {app.target} did not finish within {COMMAND_TIMEOUT_SECONDS:g}s",
            transient=True,
        ) from None
    except (asyncpg.InterfaceError, OSError) as exc:
        raise Failure(
            f"lost the connection to {app.target}: {type(exc).__name__}: {_message(exc)}",
            transient=True,
        ) from None
    finally:
        try:
            await conn.close(timeout=5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            conn.terminate()


# -- the handler ---------------------------------------------------------------------------------


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


# -- roles ---------------------------------------------------------------------------------------


async def _protected_role(session: Session, name: str) -> str | None:
    """Why Blockflow must not alter or drop this role, or None."""
    if name == session.current_user:
        return "it is the role the App logs in as"
    superuser = await session.conn.fetchval(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1", name
    )
    if superuser:
        return "it is a superuser"
    return None


def _password_clause(session: Session, password: str) -> str:
    if session.server_major >= 10 and password.isascii():
        return "PASSWORD " + quote_literal(scram_sha_256(password))
    return "PASSWORD " + quote_literal(password)  # the server hashes it


async def _password_is_current(session: Session, name: str, password: str) -> bool:
    """Whether the stored verifier matches (False when the admin may not read pg_authid)."""
    try:
        stored = await session.conn.fetchval(
            "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1", name
        )
    except asyncpg.InsufficientPrivilegeError:
        return False
    return isinstance(stored, str) and scram_matches(stored, password)


async def _ensure_role(session: Session, config: RoleConfig, password: str) -> str:
    name = config.name
    protected = await _protected_role(session, name)
    if protected:
        raise Failure(f"refusing to manage role {name}: {protected}; choose another name")
    row = await session.conn.fetchrow(
        "SELECT rolcanlogin, rolinherit, rolconnlimit FROM pg_catalog.pg_roles WHERE rolname = $1",
        name,
    )
    login = "LOGIN" if config.login else "NOLOGIN"
    inherit = "INHERIT" if config.inherit else "NOINHERIT"
    limit = f"CONNECTION LIMIT {int(config.connection_limit)}"
    if row is None:
        await session.conn.execute(
            f"CREATE ROLE {quote_ident(name)} WITH {login} {inherit} {limit} "
            + _password_clause(session, password)
        )
        return f"Role {name} created"
    changes: dict[str, str] = {}
    if row["rolcanlogin"] != config.login:
        changes["login"] = login
    if row["rolinherit"] != config.inherit:
        changes["inherit"] = inherit
    if row["rolconnlimit"] != config.connection_limit:
        changes["connection limit"] = limit
    if not await _password_is_current(session, name, password):
        changes["password"] = _password_clause(session, password)
    if not changes:
        return f"Role {name} is in sync"
    await session.conn.execute(f"ALTER ROLE {quote_ident(name)} WITH " + " ".join(changes.values()))
    return f"Role {name} updated: {', '.join(changes)}"


async def _drop_role(session: Session, name: str) -> str:
    protected = await _protected_role(session, name)
    if protected:
        raise Failure(
            f"refusing to drop role {name}: {protected}; set deletionPolicy: Orphan to delete "
            f"the Block without dropping the role"
        )
    exists = await session.conn.fetchval(
        "SELECT true FROM pg_catalog.pg_roles WHERE rolname = $1", name
    )
    if not exists:
        return f"Role {name} does not exist"
    try:
        await session.conn.execute(f"DROP ROLE IF EXISTS {quote_ident(name)}")
    except asyncpg.DependentObjectsStillExistError as exc:
        detail = _one_line(str(getattr(exc, "detail", "") or ""))
        raise Failure(
            f"role {name} cannot be dropped: it still owns objects or holds privileges"
            + (f" ({detail})" if detail else "")
            + "; drop or reassign them first (e.g. delete the database Blocks it owns)"
        ) from None
    return f"Role {name} dropped"


# -- databases -----------------------------------------------------------------------------------


async def _protected_database(session: Session, name: str) -> str | None:
    if name == session.current_database:
        return "it is the database the App connects to"
    template = await session.conn.fetchval(
        "SELECT datistemplate FROM pg_catalog.pg_database WHERE datname = $1", name
    )
    if template:
        return "it is a template database"
    return None


async def _ensure_database(session: Session, config: DatabaseConfig) -> str:
    name, conn = config.name, session.conn
    protected = await _protected_database(session, name)
    if protected:
        raise Failure(f"refusing to manage database {name}: {protected}; choose another name")
    encoding = await conn.fetchval(
        "SELECT pg_catalog.pg_encoding_to_char(pg_catalog.pg_char_to_encoding($1))",
        config.encoding,
    )
    if not encoding:
        raise Failure(f"unknown encoding {config.encoding!r} (e.g. UTF8, LATIN1, SQL_ASCII)")
    if config.owner is not None:
        owner_exists = await conn.fetchval(
            "SELECT true FROM pg_catalog.pg_roles WHERE rolname = $1", config.owner
        )
        if not owner_exists:
            raise Failure(f"owner role {config.owner} does not exist", transient=True)
    row = await conn.fetchrow(
        "SELECT pg_catalog.pg_get_userbyid(datdba) AS owner,"
        " pg_catalog.pg_encoding_to_char(encoding) AS encoding"
        " FROM pg_catalog.pg_database WHERE datname = $1",
        name,
    )
    if row is None:
        statement = f"CREATE DATABASE {quote_ident(name)}"
        if config.owner is not None:
            statement += f" OWNER {quote_ident(config.owner)}"
        statement += f" ENCODING {quote_literal(encoding)}"
        if config.template is not None:
            statement += f" TEMPLATE {quote_ident(config.template)}"
        await conn.execute(statement)  # not in a transaction: CREATE DATABASE refuses one
        return f"Database {name} created"
    if row["encoding"] != encoding:
        raise Failure(
            f"database {name} exists with encoding {row['encoding']}, but the config asks for "
            f"{encoding}; a database's encoding cannot change"
        )
    if config.owner is not None and row["owner"] != config.owner:
        await conn.execute(
            f"ALTER DATABASE {quote_ident(name)} OWNER TO {quote_ident(config.owner)}"
        )
        return f"Database {name} updated: owner {config.owner}"
    return f"Database {name} is in sync"


async def _drop_database(session: Session, name: str) -> str:
    conn = session.conn
    protected = await _protected_database(session, name)
    if protected:
        raise Failure(
            f"refusing to drop database {name}: {protected}; set deletionPolicy: Orphan to "
            f"delete the Block without dropping the database"
        )
    exists = await conn.fetchval("SELECT true FROM pg_catalog.pg_database WHERE datname = $1", name)
    if not exists:
        return f"Database {name} does not exist"
    await conn.execute(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid()",
        name,
    )
    force = " WITH (FORCE)" if session.server_major >= 13 else ""
    await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}{force}")
    return f"Database {name} dropped"


handler = PostgresqlHandler(
    version=__version__, block_types={"role": Role(), "database": Database()}
)
