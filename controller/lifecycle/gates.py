"""Gates: whether a handler may be called for an entity at all, decided from plain values.

Before the lifecycle runtime calls `sync` or `drain`, it checks what the handler cannot
fix: the App is missing, the block type is not offered, a signal reference points into a
cycle or at something not there yet, a fixed field changed, the config does not match
the schema, dependents are still present. Each check here takes values and returns a
:class:`Gate` (the state, reason and message the engine records) or None to go on. The
runtime only gathers the values; no check lives in an I/O method.

Also here: which sensitive signal values need a Secret write, and whether a status patch
changes anything — the small rules that decide how many writes a reconcile costs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.api.common import LifecycleState
from controller.lifecycle.signals import SignalRef, cycle_message, waiting_message
from controller.lifecycle.validation import config_error


@dataclass(frozen=True, slots=True)
class Gate:
    """The handler must not be called now; the engine records this instead."""

    state: LifecycleState
    reason: str
    message: str
    warn: bool = False


def app_missing(app: str) -> Gate:
    return Gate(LifecycleState.IN_PROGRESS, "DependencyNotReady", f"Waiting for App {app}")


def undecodable(kind: str, reason: str) -> Gate:
    """An object the controller could not read whole: its handler is never called with it."""
    return Gate(
        LifecycleState.FAILED,
        "Undecodable",
        f"this {kind} cannot be handled: its spec is {reason}; flatten it "
        "(kubectl edit), or delete it (a drain cannot run without its spec: remove the "
        "finalizer blockflow.dev/lifecycle if it hangs)",
        warn=True,
    )


def app_undecodable(app: str) -> Gate:
    return Gate(
        LifecycleState.IN_PROGRESS,
        "DependencyNotReady",
        f"Waiting for App {app}, which cannot be handled (see its status)",
    )


def unknown_block_type(block_type: str, offered: Iterable[str], app: str) -> Gate | None:
    """A Block whose type its App's handler does not offer."""
    names = sorted(offered)
    if block_type in names:
        return None
    return Gate(
        LifecycleState.FAILED,
        "UnknownBlockType",
        f"spec.type: block type {block_type!r} is not offered by the handler of App {app} "
        f"(offered: {', '.join(names) or 'none'})",
        warn=True,
    )


def invalid_reference(message: str) -> Gate:
    """A signal reference that does not parse (the message names the field)."""
    return Gate(LifecycleState.FAILED, "InvalidSignalRef", message, warn=True)


def dependencies(cycle: list[tuple[str, str]] | None, missing: list[SignalRef]) -> Gate | None:
    """A cycle of references fails for good; a reference not resolvable yet waits."""
    if cycle:
        return Gate(LifecycleState.FAILED, "DependencyCycle", cycle_message(cycle), warn=True)
    if missing:
        return Gate(LifecycleState.IN_PROGRESS, "DependencyNotReady", waiting_message(missing))
    return None


def fixed_values(config: Mapping[str, Any], fixed: Iterable[str]) -> dict[str, Any] | None:
    """The current values of a block type's fixed fields (None when it declares none)."""
    names = list(fixed)
    if not names:
        return None
    return {name: config.get(name) for name in names}


def fixed_field_changed(
    kind: str, current: Mapping[str, Any] | None, recorded: Mapping[str, Any] | None
) -> Gate | None:
    """A fixed field whose value differs from the one recorded at creation."""
    if current is None or recorded is None:
        return None
    changed = [f for f in current if f in recorded and recorded[f] != current[f]]
    if not changed:
        return None
    name = changed[0]
    return Gate(
        LifecycleState.FAILED,
        "FixedFieldChanged",
        f"spec.config.{name} is fixed: it was {recorded[name]!r} when created and is now "
        f"{current[name]!r}; change it back, or delete and recreate the {kind}",
        warn=True,
    )


def invalid_config(config: Any, schema: dict[str, Any] | None) -> Gate | None:
    """A config that does not match the handler's JSON Schema (the message names the field)."""
    message = config_error(config, schema)
    if message is None:
        return None
    return Gate(LifecycleState.FAILED, "InvalidConfig", message, warn=True)


def dependents_exist(alive: Iterable[tuple[str, str]]) -> Gate | None:
    """A drain waits while Blocks of the App (or referrers of the Block) are still there."""
    names = sorted(alive)
    if not names:
        return None
    listed = ", ".join(f"{kind} {name}" for kind, name in names)
    return Gate(
        LifecycleState.DRAINING, "DependentsExist", f"Waiting for dependents to go: {listed}"
    )


#: Why a drain cannot be called when something it needs is gone (not a handler's answer):
#: a configFrom or handler-key Secret, the Block's App.
INPUTS_GONE = frozenset({"SecretNotFound", "AppNotFound"})


def drain_abandoned(reason: str | None, namespace_deleting: bool | None) -> bool:
    """Whether a deleted entity goes without its drain: its namespace is being deleted, so
    nothing can be created in it again, and something the drain needs is already gone (the
    namespace's deletion took the Secret first). Retrying could never succeed and would keep
    the namespace Terminating for ever. Anywhere else the drain is retried, as the missing
    input can be created again; ``None`` (the namespace could not be read) retries too."""
    return namespace_deleting is True and reason in INPUTS_GONE


# -- writes ------------------------------------------------------------------------------


def sensitive_writes(
    updates: Mapping[str, Any], listed: Iterable[str], current: Mapping[str, str]
) -> dict[str, str | None]:
    """The sensitive signal values to write to the entity's Secret: every value as a string
    (JSON for non-strings; None deletes), minus those already stored with that value —
    handlers often return the same secret each time, and an unchanged Secret costs nothing."""
    known = set(listed)
    encoded = {k: _encode(v) for k, v in updates.items()}
    return {k: v for k, v in encoded.items() if k not in known or current.get(k) != v}


def sensitive_names(listed: Iterable[str], writes: Mapping[str, str | None]) -> list[str]:
    """The names stored in the Secret after ``writes`` (None removes a name)."""
    return sorted((set(listed) | set(writes)) - {k for k, v in writes.items() if v is None})


def changes(status: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """Would this merge patch change the status? (A write that changes nothing is skipped.)"""
    for key, value in patch.items():
        current = status.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            if any(
                current.get(k) != v
                for k, v in value.items()
                if not (v is None and k not in current)
            ):
                return True
        elif current != value:
            return True
    return False


def _encode(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else json.dumps(value)
