"""The built-in ``postgresql`` handler against a real PostgreSQL server.

Every call goes through :class:`PythonTransport`, as the controller makes it (replies are
validated); every effect is checked with SQL on the throwaway server of ``tests/support/pg.py``.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from controller import __version__
from controller.handlers.builtin.postgresql import (
    TRANSIENT_RETRY_SECONDS,
    handler,
    quote_ident,
    quote_literal,
    scram_matches,
    scram_sha_256,
)
from controller.handlers.protocol import (
    DrainReply,
    DrainRequest,
    EntityInput,
    SyncReply,
    SyncRequest,
)
from controller.handlers.python_transport import PythonTransport, load_handler
from tests.support.pg import PostgresServer, free_port

transport = PythonTransport(handler)


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def app_entity(postgres: PostgresServer, **changes: Any) -> EntityInput:
    config = {**postgres.app_config(), **changes}
    return EntityInput(
        kind="App", name="postgresql", namespace="ns", uid="app-uid", generation=1, config=config
    )


def block_entity(
    block_type: str, config: dict[str, Any], signals: dict[str, Any] | None = None
) -> EntityInput:
    return EntityInput(
        kind="Block",
        name=f"{block_type}-block",
        namespace="ns",
        uid=f"uid-{secrets.token_hex(4)}",
        generation=1,
        type=block_type,
        config=config,
        signals=signals or {},
    )


async def sync(entity: EntityInput, app: EntityInput | None = None) -> SyncReply:
    reply = await transport.call(SyncRequest(entity=entity, app=app))
    assert isinstance(reply, SyncReply)
    return reply


async def drain(entity: EntityInput, app: EntityInput | None = None) -> DrainReply:
    reply = await transport.call(DrainRequest(entity=entity, app=app))
    assert isinstance(reply, DrainReply)
    return reply


async def sync_role(
    postgres: PostgresServer, config: dict[str, Any], signals: dict[str, Any] | None = None
) -> SyncReply:
    return await sync(block_entity("role", config, signals), app_entity(postgres))


async def sync_database(postgres: PostgresServer, config: dict[str, Any]) -> SyncReply:
    return await sync(block_entity("database", config), app_entity(postgres))


async def drain_block(
    postgres: PostgresServer, block_type: str, config: dict[str, Any]
) -> DrainReply:
    return await drain(block_entity(block_type, config), app_entity(postgres))


@pytest.fixture
async def admin(postgres: PostgresServer) -> AsyncIterator[Any]:
    """A superuser connection for checking effects with SQL."""
    conn = await postgres.connect()
    yield conn
    await conn.close()


async def role_row(admin: Any, name: str) -> Any:
    return await admin.fetchrow(
        "SELECT rolcanlogin, rolconnlimit, rolinherit FROM pg_roles WHERE rolname = $1", name
    )


async def database_row(admin: Any, name: str) -> Any:
    return await admin.fetchrow(
        "SELECT pg_get_userbyid(datdba) AS owner, pg_encoding_to_char(encoding) AS encoding"
        " FROM pg_database WHERE datname = $1",
        name,
    )


async def can_log_in(
    postgres: PostgresServer, user: str, password: str, database: str = "postgres"
) -> bool:
    try:
        conn = await postgres.connect(user=user, password=password, database=database)
    except asyncpg.InvalidPasswordError:
        return False
    try:
        return bool(await conn.fetchval("SELECT current_user = $1", user))
    finally:
        await conn.close()


# -- declarations --------------------------------------------------------------------------------


async def test_handler_is_registered_and_declares_its_types() -> None:
    assert load_handler("postgresql") is handler
    info = await transport.info()
    assert info.version == __version__
    assert info.app_config_schema is not None
    assert set(info.app_config_schema["required"]) == {"host", "username", "password"}
    role, database = info.block_types["role"], info.block_types["database"]
    assert {s.name: s.sensitive for s in role.signals} == {"username": False, "password": True}
    assert role.fixed == ["name"]
    assert role.config_schema is not None and role.config_schema["required"] == ["name"]
    assert {s.name: s.sensitive for s in database.signals} == {
        "name": False,
        "host": False,
        "port": False,
    }
    assert {"name", "encoding"} <= set(database.fixed)
    assert database.config_schema is not None
    assert set(database.config_schema["properties"]) == {"name", "owner", "encoding", "template"}


# -- the App -------------------------------------------------------------------------------------


async def test_app_sync_is_ready_with_good_credentials(postgres: PostgresServer) -> None:
    reply = await sync(app_entity(postgres))
    assert reply.new_status == "ready"
    assert reply.custom_status_description == (
        f"Connected to {postgres.host}:{postgres.port}/{postgres.database}"
    )


async def test_app_sync_fails_clearly_with_a_wrong_password(postgres: PostgresServer) -> None:
    wrong = "not-the-password-" + secrets.token_hex(8)
    reply = await sync(app_entity(postgres, password=wrong))
    assert reply.new_status == "failed"
    description = reply.custom_status_description or ""
    assert "authentication failed" in description
    assert postgres.user in description
    assert wrong not in description and postgres.password not in description
    assert reply.next_schedule_delay is None  # retrying will not fix credentials


async def test_app_sync_fails_when_nothing_listens_and_retries_later(
    postgres: PostgresServer,
) -> None:
    reply = await sync(app_entity(postgres, port=free_port()))
    assert reply.new_status == "failed"
    assert "connection refused" in (reply.custom_status_description or "")
    assert postgres.password not in (reply.custom_status_description or "")
    assert reply.next_schedule_delay == TRANSIENT_RETRY_SECONDS


async def test_app_sync_names_missing_credentials_and_bad_config(postgres: PostgresServer) -> None:
    config = postgres.app_config()
    del config["password"]
    entity = app_entity(postgres).model_copy(update={"config": config})
    reply = await sync(entity)
    assert reply.new_status == "failed"
    assert "no password" in (reply.custom_status_description or "")
    assert "configFrom" in (reply.custom_status_description or "")

    reply = await sync(app_entity(postgres, port="not-a-port"))
    assert reply.new_status == "failed"
    assert "port" in (reply.custom_status_description or "")
    assert postgres.password not in (reply.custom_status_description or "")


async def test_app_sync_reports_a_missing_database(postgres: PostgresServer) -> None:
    reply = await sync(app_entity(postgres, database="no_such_db"))
    assert reply.new_status == "failed"
    assert "no_such_db does not exist" in (reply.custom_status_description or "")


# -- roles ---------------------------------------------------------------------------------------


async def test_role_gets_a_generated_password_that_logs_in(
    postgres: PostgresServer, admin: Any
) -> None:
    name = unique("app")
    reply = await sync_role(postgres, {"name": name})
    assert reply.new_status == "ready", reply.custom_status_description
    assert reply.signal_updates is not None
    assert reply.signal_updates["username"] == name
    password = reply.signal_updates["password"]
    assert isinstance(password, str) and len(password) >= 24
    assert password not in (reply.custom_status_description or "")
    row = await role_row(admin, name)
    assert row is not None and row["rolcanlogin"] and row["rolconnlimit"] == -1
    assert await can_log_in(postgres, name, password)
    # The server stores a SCRAM verifier computed by the handler, not the plain text.
    stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", name)
    assert stored.startswith("SCRAM-SHA-256$") and scram_matches(stored, password)


async def test_role_resync_keeps_the_password_and_applies_changes(
    postgres: PostgresServer, admin: Any
) -> None:
    name = unique("svc")
    first = await sync_role(postgres, {"name": name})
    assert first.signal_updates is not None
    password = first.signal_updates["password"]
    verifier = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", name)

    # The controller hands the (sensitive) signals back: same password, nothing rewritten.
    second = await sync_role(postgres, {"name": name}, signals=first.signal_updates)
    assert second.new_status == "ready"
    assert second.signal_updates == {"username": name, "password": password}
    assert "in sync" in (second.custom_status_description or "")
    assert (
        await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", name)
        == verifier
    )

    # A config change is an ALTER of exactly what differs.
    changed = await sync_role(
        postgres,
        {"name": name, "connectionLimit": 3, "inherit": False},
        signals=first.signal_updates,
    )
    assert changed.new_status == "ready"
    assert "connection limit" in (changed.custom_status_description or "")
    row = await role_row(admin, name)
    assert row["rolconnlimit"] == 3 and row["rolinherit"] is False
    assert await can_log_in(postgres, name, password)

    # Drift: someone changed the password behind our back; the next sync restores it.
    await admin.execute(f"ALTER ROLE {quote_ident(name)} PASSWORD 'tampered'")
    assert not await can_log_in(postgres, name, password)
    repaired = await sync_role(
        postgres, {"name": name, "connectionLimit": 3, "inherit": False}, first.signal_updates
    )
    assert repaired.new_status == "ready"
    assert "password" in (repaired.custom_status_description or "")
    assert await can_log_in(postgres, name, password)

    # login: false is NOLOGIN, and the role really cannot log in.
    nologin = await sync_role(postgres, {"name": name, "login": False}, first.signal_updates)
    assert nologin.new_status == "ready"
    row = await role_row(admin, name)
    assert row["rolcanlogin"] is False and row["rolconnlimit"] == -1
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="not permitted"):
        await postgres.connect(user=name, password=password)


async def test_role_adopts_an_existing_role_and_sets_its_password(
    postgres: PostgresServer, admin: Any
) -> None:
    name = unique("legacy")
    await admin.execute(f"CREATE ROLE {quote_ident(name)} NOLOGIN CONNECTION LIMIT 7")
    reply = await sync_role(postgres, {"name": name})
    assert reply.new_status == "ready"
    assert reply.signal_updates is not None
    row = await role_row(admin, name)
    assert row["rolcanlogin"] and row["rolconnlimit"] == -1
    assert await can_log_in(postgres, name, reply.signal_updates["password"])


async def test_weird_identifiers_and_passwords_are_quoted_safely(
    postgres: PostgresServer, admin: Any
) -> None:
    role = f'Weird "name" {secrets.token_hex(2)}; DROP ROLE postgres; --'
    database = f"My DB 'x' \\ {secrets.token_hex(2)}"
    # An ASCII password (sent as a SCRAM verifier) and a non-ASCII one (sent as a literal),
    # both with quotes and backslashes.
    for password in ["it's a \\'test\\' \"pw\"", "pässwört ' \\\\ '' ü"]:
        reply = await sync_role(postgres, {"name": role}, signals={"password": password})
        assert reply.new_status == "ready", reply.custom_status_description
        assert reply.signal_updates == {"username": role, "password": password}
        assert await can_log_in(postgres, role, password)
    assert await admin.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", role) == 1
    assert await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'")

    reply = await sync_database(postgres, {"name": database, "owner": role})
    assert reply.new_status == "ready", reply.custom_status_description
    row = await database_row(admin, database)
    assert row is not None and row["owner"] == role
    assert (await drain_block(postgres, "database", {"name": database})).new_status == "drained"
    assert (await drain_block(postgres, "role", {"name": role})).new_status == "drained"
    assert await role_row(admin, role) is None


@pytest.mark.parametrize(
    "value",
    ["plain", "it's", "back\\slash", "\\'; DROP TABLE x; --", "'", "\\", "ünï ''\\\\", ""],
)
async def test_quote_literal_round_trips_through_the_server(admin: Any, value: str) -> None:
    for conforming in ("on", "off"):
        await admin.execute(f"SET standard_conforming_strings = {conforming}")
        assert await admin.fetchval(f"SELECT {quote_literal(value)}") == value
    await admin.execute("RESET standard_conforming_strings")
    assert await admin.fetchval(f"SELECT 1 AS {quote_ident(value or 'x')}") == 1
    assert await admin.fetchval("SELECT quote_ident($1)", value or "x") in (
        value or "x",
        quote_ident(value or "x"),
    )


async def test_scram_verifier_matches_the_server_computation(admin: Any) -> None:
    password = "correct horse battery staple"
    verifier = scram_sha_256(password)
    assert scram_matches(verifier, password)
    assert not scram_matches(verifier, password + "!")
    # A verifier made by the server itself is recognised too.
    name = unique("scram")
    await admin.execute(f"CREATE ROLE {quote_ident(name)} PASSWORD {quote_literal(password)}")
    stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", name)
    assert scram_matches(stored, password)
    await admin.execute(f"DROP ROLE {quote_ident(name)}")


async def test_role_config_errors_are_failed_replies(postgres: PostgresServer) -> None:
    too_long = await sync_role(postgres, {"name": "x" * 64})
    assert too_long.new_status == "failed"
    assert "name" in (too_long.custom_status_description or "")
    assert "63 bytes" in (too_long.custom_status_description or "")

    typo = await sync_role(postgres, {"name": unique("r"), "connectionlimit": 3})
    assert typo.new_status == "failed"
    assert "connectionlimit" in (typo.custom_status_description or "")

    reserved = await sync_role(postgres, {"name": "pg_mine"})
    assert reserved.new_status == "failed"
    assert "reserved" in (reserved.custom_status_description or "")

    no_app = await sync(block_entity("role", {"name": unique("r")}), app=None)
    assert no_app.new_status == "failed"
    assert "App" in (no_app.custom_status_description or "")


async def test_the_admin_role_and_superusers_are_never_managed(
    postgres: PostgresServer, admin: Any
) -> None:
    reply = await sync_role(postgres, {"name": postgres.user})
    assert reply.new_status == "failed"
    assert "refusing" in (reply.custom_status_description or "")
    drained = await drain_block(postgres, "role", {"name": postgres.user})
    assert drained.new_status == "draining_failed"
    assert "deletionPolicy: Orphan" in (drained.custom_status_description or "")

    boss = unique("boss")
    await admin.execute(f"CREATE ROLE {quote_ident(boss)} SUPERUSER")
    assert (await sync_role(postgres, {"name": boss})).new_status == "failed"
    assert (await drain_block(postgres, "role", {"name": boss})).new_status == "draining_failed"
    assert await role_row(admin, boss) is not None
    await admin.execute(f"DROP ROLE {quote_ident(boss)}")
    # The admin can still log in: its password was never touched.
    assert (await sync(app_entity(postgres))).new_status == "ready"


# -- databases -----------------------------------------------------------------------------------


async def test_database_is_created_with_owner_and_encoding_and_follows_the_owner(
    postgres: PostgresServer, admin: Any
) -> None:
    first_owner, second_owner, name = unique("own1"), unique("own2"), unique("db")
    for owner in (first_owner, second_owner):
        assert (await sync_role(postgres, {"name": owner})).new_status == "ready"
    config = {"name": name, "owner": first_owner, "encoding": "LATIN1", "template": "template0"}
    reply = await sync_database(postgres, config)
    assert reply.new_status == "ready", reply.custom_status_description
    assert reply.signal_updates == {"name": name, "host": postgres.host, "port": postgres.port}
    row = await database_row(admin, name)
    assert row["owner"] == first_owner and row["encoding"] == "LATIN1"

    again = await sync_database(postgres, config)
    assert again.new_status == "ready"
    assert "in sync" in (again.custom_status_description or "")

    moved = await sync_database(postgres, {**config, "owner": second_owner})
    assert moved.new_status == "ready"
    assert (await database_row(admin, name))["owner"] == second_owner

    # Encoding cannot change: a clear failure, nothing altered.
    changed = await sync_database(postgres, {**config, "owner": second_owner, "encoding": "UTF8"})
    assert changed.new_status == "failed"
    assert "encoding" in (changed.custom_status_description or "")
    assert (await database_row(admin, name))["encoding"] == "LATIN1"

    assert (await drain_block(postgres, "database", config)).new_status == "drained"
    for owner in (first_owner, second_owner):
        assert (await drain_block(postgres, "role", {"name": owner})).new_status == "drained"


async def test_database_defaults_to_utf8(postgres: PostgresServer, admin: Any) -> None:
    owner, name = unique("own"), unique("db")
    assert (await sync_role(postgres, {"name": owner})).new_status == "ready"
    assert (await sync_database(postgres, {"name": name, "owner": owner})).new_status == "ready"
    assert (await database_row(admin, name))["encoding"] == "UTF8"
    assert (await drain_block(postgres, "database", {"name": name})).new_status == "drained"
    assert (await drain_block(postgres, "role", {"name": owner})).new_status == "drained"


async def test_database_errors_are_failed_replies(postgres: PostgresServer, admin: Any) -> None:
    missing_owner = await sync_database(postgres, {"name": unique("db"), "owner": "nobody_here"})
    assert missing_owner.new_status == "failed"
    assert "nobody_here does not exist" in (missing_owner.custom_status_description or "")

    bad_encoding = await sync_database(postgres, {"name": unique("db"), "encoding": "KLINGON"})
    assert bad_encoding.new_status == "failed"
    assert "KLINGON" in (bad_encoding.custom_status_description or "")

    unresolved = await sync_database(
        postgres, {"name": unique("db"), "owner": {"signalRef": {"block": "r", "signal": "u"}}}
    )
    assert unresolved.new_status == "failed"
    assert "owner" in (unresolved.custom_status_description or "")

    # PostgreSQL's own error (with its hint) comes through: LATIN1 needs template0 here.
    name = unique("db")
    needs_template0 = await sync_database(postgres, {"name": name, "encoding": "LATIN1"})
    assert needs_template0.new_status == "failed"
    assert "template0" in (needs_template0.custom_status_description or "")
    assert await database_row(admin, name) is None

    for protected in ("postgres", "template1"):
        assert (await sync_database(postgres, {"name": protected})).new_status == "failed"
        drained = await drain_block(postgres, "database", {"name": protected})
        assert drained.new_status == "draining_failed"
        assert await database_row(admin, protected) is not None


# -- drain ---------------------------------------------------------------------------------------


async def test_drain_drops_the_database_then_the_role(postgres: PostgresServer, admin: Any) -> None:
    role, name = unique("app"), unique("appdb")
    role_reply = await sync_role(postgres, {"name": role})
    assert role_reply.signal_updates is not None
    password = role_reply.signal_updates["password"]
    assert (await sync_database(postgres, {"name": name, "owner": role})).new_status == "ready"
    # The role can use its database; that open session does not block the drain.
    session = await postgres.connect(user=role, password=password, database=name)
    await session.execute("CREATE TABLE t (id int)")

    # While it still owns the database, the role cannot be dropped.
    blocked = await drain_block(postgres, "role", {"name": role})
    assert blocked.new_status == "draining_failed"
    description = blocked.custom_status_description or ""
    assert f"owner of database {name}" in description
    assert password not in description
    assert await role_row(admin, role) is not None

    dropped = await drain_block(postgres, "database", {"name": name, "owner": role})
    assert dropped.new_status == "drained", dropped.custom_status_description
    assert await database_row(admin, name) is None
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await session.fetchval("SELECT 1")  # its session was terminated
    session.terminate()

    assert (await drain_block(postgres, "role", {"name": role})).new_status == "drained"
    assert await role_row(admin, role) is None
    assert not await can_log_in(postgres, role, password)

    # Drain is idempotent: what is gone stays drained.
    assert (await drain_block(postgres, "database", {"name": name})).new_status == "drained"
    assert (await drain_block(postgres, "role", {"name": role})).new_status == "drained"


async def test_drain_fails_clearly_when_the_server_is_unreachable(
    postgres: PostgresServer,
) -> None:
    app = app_entity(postgres, port=free_port())
    reply = await drain(block_entity("role", {"name": unique("r")}), app)
    assert reply.new_status == "draining_failed"
    assert "connection refused" in (reply.custom_status_description or "")


async def test_drain_needs_only_a_valid_name(postgres: PostgresServer, admin: Any) -> None:
    name = unique("typo")
    assert (await sync_role(postgres, {"name": name})).new_status == "ready"
    # A field that became invalid after creation does not orphan the role.
    reply = await drain_block(postgres, "role", {"name": name, "connectionlimit": "x"})
    assert reply.new_status == "drained", reply.custom_status_description
    assert await role_row(admin, name) is None
    # Without a valid name nothing can have been created: nothing to drop, drained.
    for block_type in ("role", "database"):
        reply = await drain_block(postgres, block_type, {"name": "x" * 64})
        assert reply.new_status == "drained"
        assert "Nothing to drop" in (reply.custom_status_description or "")


async def test_connect_timeout_is_a_transient_failure(postgres: PostgresServer) -> None:
    # A socket that listens but never answers: the handshake can only time out.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        reply = await sync(
            app_entity(postgres, port=port, connectTimeoutSeconds=0.5, sslmode="disable")
        )
    assert reply.new_status == "failed"
    assert "timed out connecting to" in (reply.custom_status_description or "")
    assert reply.next_schedule_delay == TRANSIENT_RETRY_SECONDS
