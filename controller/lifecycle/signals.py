"""Signal references in config: find them, resolve them, detect cycles (pure logic).

Anywhere in a Block's config, ``{signalRef: {block: <name>, signal: <key>}}`` (or
``app: <name>``) stands for another entity's signal in the same namespace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

SIGNAL_REF = "signalRef"


class SignalRefError(ValueError):
    """A malformed reference; the message names the field and the fix."""


@dataclass(frozen=True, order=True)
class SignalRef:
    kind: Literal["App", "Block"]
    name: str
    signal: str

    def describe(self) -> str:
        return f"signal {self.signal} of {self.kind} {self.name}"


def _parse_ref(value: Any, path: str, namespace: str) -> SignalRef:
    if not isinstance(value, dict):
        raise SignalRefError(f"{path}: must be an object like {{block: <name>, signal: <key>}}")
    unknown = set(value) - {"block", "app", "signal", "namespace"}
    if unknown:
        raise SignalRefError(
            f"{path}: unknown field(s) {sorted(unknown)}; use block|app and signal"
        )
    if value.get("namespace") not in (None, namespace):
        raise SignalRefError(
            f"{path}.namespace: signals can only be referenced within the same namespace "
            f"({namespace}); remove the namespace field"
        )
    targets = [k for k in ("block", "app") if value.get(k)]
    if len(targets) != 1:
        raise SignalRefError(f"{path}: set exactly one of `block` or `app`")
    signal = value.get("signal")
    if not isinstance(signal, str) or not signal:
        raise SignalRefError(f"{path}.signal: required, the name of the signal to use")
    target = targets[0]
    name = value[target]
    if not isinstance(name, str):
        raise SignalRefError(f"{path}.{target}: must be a name")
    return SignalRef("Block" if target == "block" else "App", name, signal)


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {SIGNAL_REF}


def find_refs(
    config: Any, namespace: str, path: str = "spec.config"
) -> list[tuple[str, SignalRef]]:
    """Every (path, reference) in a config tree; raises SignalRefError on a malformed one."""
    found: list[tuple[str, SignalRef]] = []
    if _is_ref(config):
        found.append((path, _parse_ref(config[SIGNAL_REF], f"{path}.{SIGNAL_REF}", namespace)))
    elif isinstance(config, dict):
        for key, child in config.items():
            found += find_refs(child, namespace, f"{path}.{key}")
    elif isinstance(config, list):
        for index, child in enumerate(config):
            found += find_refs(child, namespace, f"{path}[{index}]")
    return found


#: Looks a reference up: (found, value).
Lookup = Callable[[SignalRef], tuple[bool, Any]]


@dataclass
class Resolution:
    config: Any
    missing: list[SignalRef]


def resolve(config: Any, namespace: str, lookup: Lookup) -> Resolution:
    """Replace references by values; collect those not available yet."""
    missing: list[SignalRef] = []

    def walk(value: Any, path: str) -> Any:
        if _is_ref(value):
            ref = _parse_ref(value[SIGNAL_REF], f"{path}.{SIGNAL_REF}", namespace)
            found, resolved = lookup(ref)
            if not found:
                missing.append(ref)
                return None
            return resolved
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return Resolution(walk(config, "spec.config"), sorted(set(missing)))


def waiting_message(missing: list[SignalRef]) -> str:
    return "Waiting for " + ", ".join(ref.describe() for ref in missing)


Node = tuple[str, str]  # (kind, name)


def find_cycle(start: Node, edges: Callable[[Node], Iterable[Node]]) -> list[Node] | None:
    """A reference path from `start` back to itself, if there is one."""
    stack: list[tuple[Node, list[Node]]] = [(start, [start])]
    seen: set[Node] = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges(node):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def cycle_message(path: list[Node]) -> str:
    return "Dependency cycle: " + " -> ".join(f"{kind} {name}" for kind, name in path)


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-able inputs (never of secret values: pass their versions)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
