"""Failures, told apart: transient ones (connection, serialization, resources) are retried
soon, permanent ones fail the entity; secrets are scrubbed from every message."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel, ValidationError

from controller.handlers.builtin.postgresql.config import AppConfig
from controller.handlers.builtin.postgresql.constants import (
    _MAX_DESCRIPTION,
    TRANSIENT_RETRY_SECONDS,
)
from controller.handlers.protocol import (
    DrainReply,
    DrainRequest,
    SyncReply,
    SyncRequest,
)

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
