"""The lifecycle gates: whether a handler may be called, table by table."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.common import LifecycleState
from controller.lifecycle import gates
from controller.lifecycle.signals import SignalRef

FAILED, WAITING, DRAINING = (
    LifecycleState.FAILED,
    LifecycleState.IN_PROGRESS,
    LifecycleState.DRAINING,
)


@pytest.mark.parametrize(
    ("block_type", "offered", "expected"),
    [
        ("bucket", ["bucket", "queue"], None),
        (
            "table",
            ["bucket", "queue"],
            "block type 'table' is not offered by the handler of "
            "App storage (offered: bucket, queue)",
        ),
        ("table", [], "(offered: none)"),
    ],
)
def test_unknown_block_type(block_type: str, offered: list[str], expected: str | None) -> None:
    gate = gates.unknown_block_type(block_type, offered, "storage")
    if expected is None:
        assert gate is None
        return
    assert gate is not None
    assert (gate.state, gate.reason, gate.warn) == (FAILED, "UnknownBlockType", True)
    assert gate.message.startswith("spec.type: ")
    assert expected in gate.message


REF = SignalRef(kind="Block", name="db", signal="host")


@pytest.mark.parametrize(
    ("cycle", "missing", "state", "reason"),
    [
        (None, [], None, None),
        ([("Block", "a"), ("Block", "b"), ("Block", "a")], [], FAILED, "DependencyCycle"),
        (None, [REF], WAITING, "DependencyNotReady"),
        # A cycle fails for good even when something is missing too.
        ([("Block", "a"), ("Block", "a")], [REF], FAILED, "DependencyCycle"),
    ],
)
def test_dependencies(
    cycle: list[tuple[str, str]] | None,
    missing: list[SignalRef],
    state: LifecycleState | None,
    reason: str | None,
) -> None:
    gate = gates.dependencies(cycle, missing)
    assert (gate.state if gate else None, gate.reason if gate else None) == (state, reason)


def test_a_missing_dependency_names_what_is_waited_for() -> None:
    gate = gates.dependencies(None, [REF])
    assert gate is not None and "db" in gate.message and not gate.warn


@pytest.mark.parametrize(
    ("config", "fixed", "recorded", "changed"),
    [
        ({"region": "eu"}, [], None, None),  # no fixed fields
        ({"region": "eu"}, ["region"], None, None),  # nothing recorded yet: first sync
        ({"region": "eu"}, ["region"], {"region": "eu"}, None),
        ({"region": "us"}, ["region"], {"region": "eu"}, "region"),
        # A field fixed after creation (not recorded) cannot have changed.
        ({"region": "us", "size": 2}, ["region", "size"], {"region": "us"}, None),
    ],
)
def test_fixed_fields(
    config: dict[str, Any], fixed: list[str], recorded: dict[str, Any] | None, changed: str | None
) -> None:
    current = gates.fixed_values(config, fixed)
    gate = gates.fixed_field_changed("Block", current, recorded)
    if changed is None:
        assert gate is None
        return
    assert gate is not None and gate.reason == "FixedFieldChanged" and gate.state is FAILED
    assert gate.message.startswith(f"spec.config.{changed} is fixed: it was 'eu'")
    assert "delete and recreate the Block" in gate.message


def test_fixed_values_of_a_type_without_fixed_fields_are_none() -> None:
    assert gates.fixed_values({"a": 1}, []) is None
    assert gates.fixed_values({"a": 1}, ["a", "b"]) == {"a": 1, "b": None}


SCHEMA = {
    "type": "object",
    "properties": {"size": {"type": "integer", "minimum": 1}},
    "required": ["size"],
}


@pytest.mark.parametrize(
    ("config", "schema", "fails_on"),
    [
        ({"size": 3}, SCHEMA, None),
        ({"size": 0}, SCHEMA, "size"),
        ({}, SCHEMA, "size"),
        ({"anything": True}, None, None),  # no schema: anything goes
    ],
)
def test_invalid_config(config: dict[str, Any], schema: Any, fails_on: str | None) -> None:
    gate = gates.invalid_config(config, schema)
    if fails_on is None:
        assert gate is None
        return
    assert gate is not None and gate.reason == "InvalidConfig" and gate.warn
    assert fails_on in gate.message


@pytest.mark.parametrize(
    ("alive", "message"),
    [
        ([], None),
        ([("Block", "b"), ("Block", "a")], "Waiting for dependents to go: Block a, Block b"),
    ],
)
def test_dependents_exist(alive: list[tuple[str, str]], message: str | None) -> None:
    gate = gates.dependents_exist(alive)
    assert (gate.message if gate else None) == message
    if gate is not None:
        assert (gate.state, gate.reason, gate.warn) == (DRAINING, "DependentsExist", False)


@pytest.mark.parametrize(
    ("updates", "listed", "current", "writes"),
    [
        # New values are written; non-strings as JSON.
        ({"password": "s3", "port": 5432}, [], {}, {"password": "s3", "port": "5432"}),
        # The same secret returned again costs no write.
        ({"password": "s3"}, ["password"], {"password": "s3"}, {}),
        ({"password": "s4"}, ["password"], {"password": "s3"}, {"password": "s4"}),
        # None deletes a stored value.
        ({"password": None}, ["password"], {"password": "s3"}, {"password": None}),
        # Listed but not read this time (current unknown): written again.
        ({"password": "s3"}, ["password"], {}, {"password": "s3"}),
    ],
)
def test_sensitive_writes(
    updates: dict[str, Any],
    listed: list[str],
    current: dict[str, str],
    writes: dict[str, str | None],
) -> None:
    assert gates.sensitive_writes(updates, listed, current) == writes


def test_sensitive_names_after_writes() -> None:
    assert gates.sensitive_names(["a", "b"], {"c": "1", "a": None}) == ["b", "c"]


@pytest.mark.parametrize(
    ("status", "patch", "changes"),
    [
        ({}, {}, False),
        ({"a": 1}, {"a": 1}, False),
        ({"a": 1}, {"a": 2}, True),
        ({"lifecycle": {"status": "ready", "x": 1}}, {"lifecycle": {"status": "ready"}}, False),
        ({"lifecycle": {"status": "ready"}}, {"lifecycle": {"status": "failed"}}, True),
        # Deleting a key that is not there changes nothing; deleting one that is does.
        ({"lifecycle": {"status": "ready"}}, {"lifecycle": {"gone": None}}, False),
        ({"lifecycle": {"gone": 1}}, {"lifecycle": {"gone": None}}, True),
        ({}, {"signals": {"a": 1}}, True),
    ],
)
def test_changes(status: dict[str, Any], patch: dict[str, Any], changes: bool) -> None:
    assert gates.changes(status, patch) is changes


@pytest.mark.parametrize(
    ("reason", "namespace_deleting", "abandoned"),
    [
        ("SecretNotFound", True, True),  # the namespace's deletion took the Secret first
        ("AppNotFound", True, True),
        ("SecretNotFound", False, False),  # deleted by mistake: it can be made again
        ("SecretNotFound", None, False),  # the namespace could not be read: keep trying
        ("HandlerError", True, False),  # the handler answered: its answer stands
        ("Timeout", True, False),
        (None, True, False),
    ],
)
def test_a_drain_is_abandoned_only_when_its_input_is_gone_for_good(
    reason: str | None, namespace_deleting: bool | None, abandoned: bool
) -> None:
    assert gates.drain_abandoned(reason, namespace_deleting) is abandoned
