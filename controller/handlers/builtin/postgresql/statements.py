"""The statements behind sync and drain: roles and databases created, altered and dropped,
never one the handler did not create (protected names are refused)."""

from __future__ import annotations

import asyncpg

from controller.handlers.builtin.postgresql.config import DatabaseConfig, RoleConfig
from controller.handlers.builtin.postgresql.connection import Session
from controller.handlers.builtin.postgresql.failures import Failure, _one_line
from controller.handlers.builtin.postgresql.sql import (
    quote_ident,
    quote_literal,
    scram_matches,
    scram_sha_256,
)

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
