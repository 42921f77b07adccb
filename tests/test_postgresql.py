"""The ``postgresql`` integration end to end: the real controller process, the real API server
and a real PostgreSQL server (``tests/support/pg.py``); every effect is checked with SQL.

The manifests are ``examples/postgresql/postgresql.yaml`` itself, with only the server's
address and the admin Secret's credentials replaced by the throwaway server's; where a test
needs another variant (unique role/database names, ``deletionPolicy: Delete``) it edits the
loaded example, so what the tests prove is the example working.

Roles and databases are global to the PostgreSQL server, which lives for the whole session, so
every test but the first (which keeps the example's own names) uses unique names.  Each test
cleans up while its controller still runs: remaining Blocks are switched to ``Orphan`` and
deleted, then the App, then the test's roles and databases are dropped with SQL.  Anything the
controller fails to let go of within the time limit is a teardown error naming what is left
and why (its ``status.lifecycle``), with the controller's last log lines.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import asyncpg
import pytest
import yaml

from tests.conftest import EXAMPLES_DIR, ControllerProcess, Kubectl
from tests.support.pg import PostgresServer

EXAMPLE = EXAMPLES_DIR / "postgresql" / "postgresql.yaml"
FINALIZER = "blockflow.dev/lifecycle"
SYNC_ANNOTATION = "blockflow.dev/requested-sync-at"
TIMEOUT = 60.0

T = TypeVar("T")


# -- the example, loaded ----------------------------------------------------------------------


@dataclass
class Example:
    """The documents of examples/postgresql/postgresql.yaml, pointed at the test server."""

    secret: dict[str, Any]
    app: dict[str, Any]
    role: dict[str, Any]
    database: dict[str, Any]

    def all(self) -> list[dict[str, Any]]:
        return [self.secret, self.app, self.role, self.database]

    @property
    def role_name(self) -> str:
        return str(self.role["spec"]["config"]["name"])

    @property
    def database_name(self) -> str:
        return str(self.database["spec"]["config"]["name"])


def load_example(postgres: PostgresServer) -> Example:
    """The example with host/port/database and the admin credentials of ``postgres``."""
    docs = [doc for doc in yaml.safe_load_all(EXAMPLE.read_text()) if doc]
    by_name = {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}
    assert set(by_name) == {
        ("Secret", "postgresql-admin"),
        ("App", "postgresql"),
        ("Block", "app-role"),
        ("Block", "app-db"),
    }, f"{EXAMPLE} changed: update this test"
    secret = by_name[("Secret", "postgresql-admin")]
    assert set(secret["stringData"]) == {"username", "password"}
    secret["stringData"] = {"username": postgres.user, "password": postgres.password}
    app = by_name[("App", "postgresql")]
    config = app["spec"]["config"]
    assert {"host", "port", "database"} <= set(config)
    config.update(host=postgres.host, port=postgres.port, database=postgres.database)
    assert app["spec"]["configFrom"] == [{"secretRef": {"name": "postgresql-admin"}}]
    role = by_name[("Block", "app-role")]
    database = by_name[("Block", "app-db")]
    assert database["spec"]["config"]["owner"] == {
        "signalRef": {"block": "app-role", "signal": "username"}
    }
    return Example(secret, app, role, database)


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


# -- polling ----------------------------------------------------------------------------------


async def eventually_async(
    probe: Callable[[], Awaitable[T | None]], *, what: str, within: float = TIMEOUT
) -> T:
    """Poll ``probe`` until it returns something other than None or False (bounded)."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g}s: {what} (last: {result!r})")
        await asyncio.sleep(0.2)


async def eventually(probe: Callable[[], T | None], *, what: str, within: float = TIMEOUT) -> T:
    """:func:`eventually_async` for a synchronous probe (kubectl)."""

    async def probing() -> T | None:
        return probe()

    return await eventually_async(probing, what=what, within=within)


# -- the environment of one test ----------------------------------------------------------------


@dataclass
class Env:
    """One namespace, its controller, the PostgreSQL server and a superuser connection."""

    kubectl: Kubectl
    namespace: str
    postgres: PostgresServer
    controller: ControllerProcess
    admin: Any
    roles: set[str] = field(default_factory=set)
    databases: set[str] = field(default_factory=set)

    # -- Kubernetes

    def k(self, *args: str, check: bool = True, timeout: float = 60) -> Any:
        return self.kubectl.run(*args, "-n", self.namespace, check=check, timeout=timeout)

    def apply(self, *docs: dict[str, Any]) -> None:
        for doc in docs:
            config = (doc.get("spec") or {}).get("config") or {}
            if doc["kind"] == "Block" and doc["spec"]["type"] == "role":
                self.roles.add(config["name"])
            if doc["kind"] == "Block" and doc["spec"]["type"] == "database":
                self.databases.add(config["name"])
        self.kubectl.apply(self.namespace, *docs)

    def get(self, ref: str) -> dict[str, Any] | None:
        """An object as JSON (``kind/name``), or None when it does not exist."""
        result = self.k("get", ref, "-o", "json", "--ignore-not-found")
        return json.loads(result.stdout) if result.stdout.strip() else None

    def must_get(self, ref: str) -> dict[str, Any]:
        found = self.get(ref)
        assert found is not None, f"{ref} does not exist in {self.namespace}"
        return found

    def wait(self, condition: str, *refs: str, timeout: float = TIMEOUT) -> None:
        """``kubectl wait --for=<condition>`` (bounded)."""
        self.k("wait", f"--for={condition}", *refs, f"--timeout={timeout:g}s", timeout=timeout + 30)

    async def gone(self, *refs: str, within: float = TIMEOUT) -> None:
        """Until the objects no longer exist (``kubectl wait --for=delete`` of kubectl 1.20
        fails when an object is already gone, so poll instead)."""
        for ref in refs:
            await eventually(partial(self.absent, ref), what=f"{ref} gone", within=within)

    def absent(self, ref: str) -> bool:
        return self.get(ref) is None

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.kubectl.json(
            "get", "events", "-n", self.namespace, "--field-selector", f"involvedObject.name={name}"
        )["items"]
        return [e for e in items if e["involvedObject"].get("kind") in ("Block", "App")]

    def sensitive_secret(self, block: str) -> dict[str, str]:
        """The decoded data of a Block's sensitive-signal Secret (named in its status)."""
        status = self.must_get(f"block/{block}")["status"]
        name = status["sensitiveSignals"]["secretName"]
        data = self.must_get(f"secret/{name}")["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def synced(self, ref: str) -> dict[str, Any] | None:
        """The object when the controller has acted on its current generation."""
        body = self.get(ref)
        if body is None:
            return None
        status = body.get("status") or {}
        if status.get("observedGeneration") != body["metadata"]["generation"]:
            return None
        return body

    # -- PostgreSQL

    async def role(self, name: str) -> Any:
        return await self.admin.fetchrow(
            "SELECT rolcanlogin, rolconnlimit, rolinherit, rolpassword"
            " FROM pg_authid WHERE rolname = $1",
            name,
        )

    async def database(self, name: str) -> Any:
        return await self.admin.fetchrow(
            "SELECT pg_get_userbyid(datdba) AS owner, pg_encoding_to_char(encoding) AS encoding"
            " FROM pg_database WHERE datname = $1",
            name,
        )

    async def all_roles(self) -> set[str]:
        rows = await self.admin.fetch("SELECT rolname FROM pg_roles")
        return {row["rolname"] for row in rows}

    async def logs_in(self, user: str, password: str, database: str | None = None) -> bool:
        try:
            conn = await self.postgres.connect(user=user, password=password, database=database)
        except asyncpg.InvalidPasswordError:
            return False
        try:
            return bool(await conn.fetchval("SELECT current_user = $1", user))
        finally:
            await conn.close()

    # -- cleanup (while the controller still runs)

    async def cleanup(self) -> list[str]:
        """Delete the Blocks (as Orphan), then the Apps; drop the test's roles and databases."""
        problems: list[str] = []
        for block in self.kubectl.json("get", "blocks", "-n", self.namespace)["items"]:
            self.k(
                "patch",
                f"block/{block['metadata']['name']}",
                "--type=merge",
                "-p",
                '{"spec": {"deletionPolicy": "Orphan"}}',
                check=False,
            )
        for kind in ("blocks", "apps"):
            self.k("delete", kind, "--all", "--wait=false", check=False)
            try:
                await eventually(
                    partial(self.none_left, kind),
                    what=f"{kind} gone after cleanup",
                )
            except AssertionError as exc:
                problems.append(self._describe_leftovers(str(exc), kind))
        for name in self.databases:
            await self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for name in self.roles:
            await self.admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        return problems

    def none_left(self, kind: str) -> bool:
        return not self.k("get", kind, "-o", "name").stdout.strip()

    def _describe_leftovers(self, problem: str, kind: str) -> str:
        """What is left and why (the namespace fixture releases the finalizers later)."""
        lines = [problem]
        for ref in self.k("get", kind, "-o", "name").stdout.split():
            body = self.get(ref) or {}
            lifecycle = (body.get("status") or {}).get("lifecycle") or {}
            lines.append(
                f"  {ref}: finalizers {body.get('metadata', {}).get('finalizers')}, "
                f"{lifecycle.get('status')}: {lifecycle.get('description')}"
            )
        lines.append("controller log (last 40 lines):")
        lines += self.controller.lines[-40:]
        return "\n".join(lines)


@pytest.fixture
async def env(
    kubectl: Kubectl,
    namespace: str,
    postgres: PostgresServer,
    run_controller: Callable[..., ControllerProcess],
) -> AsyncIterator[Env]:
    controller = run_controller("--namespace", namespace)
    admin = await postgres.connect()
    environment = Env(kubectl, namespace, postgres, controller, admin)
    try:
        yield environment
        problems = await environment.cleanup()
        if problems:
            pytest.fail("cleanup: " + "\n".join(problems), pytrace=False)
    finally:
        await admin.close()


def renamed(example: Example, *, database_policy: str | None = None) -> Example:
    """The example with unique role and database names (and optionally a deletionPolicy)."""
    example = copy.deepcopy(example)
    example.role["spec"]["config"]["name"] = unique("role")
    example.database["spec"]["config"]["name"] = unique("db")
    if database_policy is not None:
        example.database["spec"]["deletionPolicy"] = database_policy
    return example


async def apply_and_wait_ready(env: Env, example: Example) -> None:
    env.apply(*example.all())
    env.wait("condition=Ready", "app/postgresql", "block/app-role", "block/app-db")


# -- 1. the example as written --------------------------------------------------------------------


async def test_example_creates_a_login_role_and_a_database_it_owns(env: Env) -> None:
    example = load_example(env.postgres)
    assert (example.role_name, example.database_name) == ("app", "app")
    env.apply(*example.all())

    # The command the issue asks for, exactly.
    env.k("wait", "--for=condition=Ready", "block/app-role", "--timeout=60s", timeout=90)
    env.wait("condition=Ready", "app/postgresql", "block/app-db")

    app = env.must_get("app/postgresql")
    assert app["status"]["lifecycle"]["status"] == "ready"
    target = f"{env.postgres.host}:{env.postgres.port}/{env.postgres.database}"
    assert app["status"]["lifecycle"]["description"] == f"Connected to {target}"

    # The role exists and logs in with the password kept only in the role's Secret.
    role_block = env.must_get("block/app-role")
    status = role_block["status"]
    assert status["signals"] == {"username": "app"}
    assert status["sensitiveSignals"]["names"] == ["password"]
    secret_name = status["sensitiveSignals"]["secretName"]
    owners = env.must_get(f"secret/{secret_name}")["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"]) for o in owners] == [("Block", "app-role")]
    password = env.sensitive_secret("app-role")["password"]
    assert len(password) >= 16
    row = await env.role("app")
    assert row is not None and row["rolcanlogin"] and row["rolconnlimit"] == -1
    assert await env.logs_in("app", password)
    assert not await env.logs_in("app", password + "x")

    # The database is owned by the role, UTF8, and the role can use it.
    assert dict(await env.database("app") or {}) == {"owner": "app", "encoding": "UTF8"}
    assert await env.logs_in("app", password, database="app")
    db_status = env.must_get("block/app-db")["status"]
    assert db_status["signals"] == {
        "name": "app",
        "host": env.postgres.host,
        "port": env.postgres.port,
    }

    # The password is nowhere but in that Secret: not in any status, Event or log line.
    encoded = base64.b64encode(password.encode()).decode()
    for text in (
        env.k("get", "block/app-role", "-o", "json").stdout,
        env.k("get", "blocks,apps", "-o", "json").stdout,
        env.k("get", "events", "-o", "json").stdout,
    ):
        assert password not in text and encoded not in text
        assert env.postgres.password not in text
    assert not [line for line in env.controller.lines if password in line]
    assert not [line for line in env.controller.lines if env.postgres.password in line]

    # The database Block waited for the role's signal (when it was seen before the role was
    # ready; both were applied at once) and became Ready after it.
    waits = [e for e in env.events("app-db") if e["reason"] == "DependencyNotReady"]
    for event in waits:
        assert event["message"] == "Waiting for signal username of Block app-role", event
    ready = [e for e in env.events("app-db") if e["reason"] == "Ready"]
    assert ready, env.events("app-db")


# -- 2. a change ----------------------------------------------------------------------------------


async def test_role_config_change_is_applied_and_keeps_the_password(env: Env) -> None:
    example = renamed(load_example(env.postgres))
    role = example.role_name
    await apply_and_wait_ready(env, example)
    password = env.sensitive_secret("app-role")["password"]
    secret_name = env.must_get("block/app-role")["status"]["sensitiveSignals"]["secretName"]
    secret_version = env.must_get(f"secret/{secret_name}")["metadata"]["resourceVersion"]
    before = await env.role(role)
    assert before["rolconnlimit"] == -1

    env.k(
        "patch", "block/app-role", "--type=merge", "-p", '{"spec":{"config":{"connectionLimit":5}}}'
    )

    async def limit_is_5() -> Any:
        row = await env.role(role)
        return row if row is not None and row["rolconnlimit"] == 5 else None

    await eventually_async(limit_is_5, what=f"role {role} has CONNECTION LIMIT 5")
    body = await eventually(lambda: env.synced("block/app-role"), what="role Block re-synced")
    lifecycle = body["status"]["lifecycle"]
    assert lifecycle["status"] == "ready"
    assert lifecycle["description"] == f"Role {role} updated: connection limit"

    # Same password: the Secret's value is unchanged, the stored verifier was not rewritten,
    # and it still logs in.
    assert env.sensitive_secret("app-role")["password"] == password
    assert env.must_get(f"secret/{secret_name}")["metadata"]["resourceVersion"] == secret_version
    after = await env.role(role)
    assert after["rolpassword"] == before["rolpassword"]
    assert (after["rolcanlogin"], after["rolinherit"]) == (True, True)
    assert await env.logs_in(role, password)
    # The database (owner unchanged) is untouched.
    assert dict(await env.database(example.database_name) or {}) == {
        "owner": role,
        "encoding": "UTF8",
    }


# -- 3. a fixed field -----------------------------------------------------------------------------


async def test_changing_the_fixed_role_name_stalls_and_touches_nothing(env: Env) -> None:
    example = renamed(load_example(env.postgres))
    role = example.role_name
    await apply_and_wait_ready(env, example)
    password = env.sensitive_secret("app-role")["password"]
    before = await env.role(role)
    roles_before = await env.all_roles()

    new_name = unique("renamed")
    env.roles.add(new_name)  # dropped at cleanup, should the controller create it after all
    patch = json.dumps({"spec": {"config": {"name": new_name}}})
    env.k("patch", "block/app-role", "--type=merge", "-p", patch)
    env.wait("condition=Stalled", "block/app-role")

    body = env.must_get("block/app-role")
    stalled = next(c for c in body["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "FixedFieldChanged"
    assert "spec.config.name" in stalled["message"]
    assert role in stalled["message"] and new_name in stalled["message"]
    assert body["status"]["lifecycle"]["status"] == "failed"
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    ready = next(c for c in body["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    warnings = [e for e in env.events("app-role") if e["reason"] == "FixedFieldChanged"]
    assert warnings and warnings[0]["type"] == "Warning"
    # The signal still names the original role.
    assert body["status"]["signals"] == {"username": role}

    # SQL: the original role is untouched, no role was created.
    assert await env.all_roles() == roles_before
    assert await env.role(new_name) is None
    assert dict(await env.role(role) or {}) == dict(before)
    assert await env.logs_in(role, password)


# -- 4. deletion ----------------------------------------------------------------------------------


async def test_deleting_blocks_drops_the_database_then_the_role(env: Env) -> None:
    example = renamed(load_example(env.postgres), database_policy="Delete")
    role, database = example.role_name, example.database_name
    await apply_and_wait_ready(env, example)
    assert await env.database(database) is not None

    env.k("delete", "block/app-db", "--wait=false")
    await env.gone("block/app-db")
    assert await env.database(database) is None
    assert await env.role(role) is not None  # only the database went

    env.k("delete", "block/app-role", "--wait=false")
    await env.gone("block/app-role")
    assert await env.role(role) is None

    # With its Blocks gone, the App goes as soon as it is deleted.
    env.k("delete", "app/postgresql", "--wait=false")
    await env.gone("app/postgresql")


async def test_orphan_policy_leaves_the_database(env: Env) -> None:
    example = renamed(load_example(env.postgres))
    assert example.database["spec"]["deletionPolicy"] == "Orphan"  # as in the example
    role, database = example.role_name, example.database_name
    await apply_and_wait_ready(env, example)

    env.k("delete", "block/app-db", "--wait=false")
    await env.gone("block/app-db")
    assert dict(await env.database(database) or {}) == {"owner": role, "encoding": "UTF8"}
    assert await env.logs_in(role, env.sensitive_secret("app-role")["password"], database)


# -- 5. ordering of deletions ---------------------------------------------------------------------


async def test_a_referenced_role_waits_for_the_database_block(env: Env) -> None:
    example = renamed(load_example(env.postgres), database_policy="Delete")
    role, database = example.role_name, example.database_name
    await apply_and_wait_ready(env, example)

    env.k("delete", "block/app-role", "--wait=false")

    def role_waits() -> dict[str, Any] | None:
        body = env.get("block/app-role")
        lifecycle = ((body or {}).get("status") or {}).get("lifecycle") or {}
        description = lifecycle.get("description")
        return body if description and "dependents" in description else None

    body = await eventually(role_waits, what="role Block says it waits for dependents")
    assert body["metadata"].get("deletionTimestamp")
    assert FINALIZER in body["metadata"]["finalizers"]
    description = body["status"]["lifecycle"]["description"]
    assert description == "Waiting for dependents to go: Block app-db"
    assert await env.role(role) is not None
    assert await env.database(database) is not None
    assert env.must_get("block/app-role")["metadata"]["finalizers"] == [FINALIZER]

    env.k("delete", "block/app-db", "--wait=false")
    await env.gone("block/app-db", "block/app-role")
    assert await env.database(database) is None
    assert await env.role(role) is None


async def test_an_app_waits_for_its_blocks(env: Env) -> None:
    example = renamed(load_example(env.postgres), database_policy="Delete")
    role, database = example.role_name, example.database_name
    await apply_and_wait_ready(env, example)

    env.k("delete", "app/postgresql", "--wait=false")

    def app_waits() -> dict[str, Any] | None:
        body = env.get("app/postgresql")
        lifecycle = ((body or {}).get("status") or {}).get("lifecycle") or {}
        description = lifecycle.get("description")
        return body if description and "dependents" in description else None

    body = await eventually(app_waits, what="App says it waits for its Blocks")
    assert body["metadata"].get("deletionTimestamp")
    assert FINALIZER in body["metadata"]["finalizers"]
    description = body["status"]["lifecycle"]["description"]
    assert "Block app-db" in description and "Block app-role" in description, description
    assert await env.role(role) is not None and await env.database(database) is not None

    env.k("delete", "block/app-db", "block/app-role", "--wait=false")
    await env.gone("block/app-db", "block/app-role", "app/postgresql")
    assert await env.database(database) is None
    assert await env.role(role) is None


# -- 6. a requested sync --------------------------------------------------------------------------


async def test_requested_sync_is_echoed_and_repairs_a_dropped_role(env: Env) -> None:
    example = renamed(load_example(env.postgres))
    role = example.role_name
    env.apply(example.secret, example.app, example.role)
    env.wait("condition=Ready", "app/postgresql", "block/app-role")
    password = env.sensitive_secret("app-role")["password"]

    def handled(value: str) -> dict[str, Any] | None:
        body = env.get("block/app-role")
        lifecycle = ((body or {}).get("status") or {}).get("lifecycle") or {}
        return body if lifecycle.get("lastHandledSyncAt") == value else None

    first = f"first-{secrets.token_hex(4)}"
    env.k("annotate", "block/app-role", f"{SYNC_ANNOTATION}={first}", "--overwrite")
    body = await eventually(lambda: handled(first), what=f"lastHandledSyncAt == {first}")
    assert body["status"]["lifecycle"]["description"] == f"Role {role} is in sync"

    # Drift: the role is dropped behind Blockflow's back; a requested sync recreates it.
    await env.admin.execute(f'DROP ROLE "{role}"')
    assert await env.role(role) is None
    second = f"second-{secrets.token_hex(4)}"
    env.k("annotate", "block/app-role", f"{SYNC_ANNOTATION}={second}", "--overwrite")

    async def recreated() -> Any:
        return await env.role(role)

    await eventually_async(recreated, what=f"role {role} recreated")
    body = await eventually(lambda: handled(second), what=f"lastHandledSyncAt == {second}")
    lifecycle = body["status"]["lifecycle"]
    assert lifecycle["status"] == "ready"
    assert lifecycle["description"] == f"Role {role} created"
    # With the password it had: the signal was kept, the Secret is unchanged.
    assert env.sensitive_secret("app-role")["password"] == password
    assert await env.logs_in(role, password)
