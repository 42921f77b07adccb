"""A connection to the server the App names, as the admin user of its configFrom Secret."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from controller.handlers.builtin.postgresql.config import AppConfig
from controller.handlers.builtin.postgresql.constants import COMMAND_TIMEOUT_SECONDS
from controller.handlers.builtin.postgresql.failures import Failure, _connect_failure, _message

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
