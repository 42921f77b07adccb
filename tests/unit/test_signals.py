"""Signal references: found anywhere, resolved, waited for, cycles named."""

from __future__ import annotations

from typing import Any

import pytest

from controller.lifecycle.signals import (
    SignalRef,
    SignalRefError,
    cycle_message,
    find_cycle,
    find_refs,
    fingerprint,
    resolve,
    waiting_message,
)

CONFIG = {
    "name": "assets",
    "kmsKey": {"signalRef": {"block": "key", "signal": "keyId"}},
    "replicas": [{"region": {"signalRef": {"app": "storage", "signal": "region"}}}, "literal"],
}


def test_references_are_found_anywhere_in_the_config() -> None:
    refs = find_refs(CONFIG, "ns")
    assert refs == [
        ("spec.config.kmsKey", SignalRef("Block", "key", "keyId")),
        ("spec.config.replicas[0].region", SignalRef("App", "storage", "region")),
    ]


def test_resolution_replaces_references_and_reports_what_is_missing() -> None:
    values: dict[SignalRef, Any] = {SignalRef("Block", "key", "keyId"): "k-1"}

    def lookup(ref: SignalRef) -> tuple[bool, Any]:
        return (ref in values, values.get(ref))

    result = resolve(CONFIG, "ns", lookup)
    assert result.config["kmsKey"] == "k-1"
    assert result.config["replicas"][1] == "literal"
    assert result.missing == [SignalRef("App", "storage", "region")]
    assert waiting_message(result.missing) == "Waiting for signal region of App storage"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"block": "a", "app": "b", "signal": "s"}, "exactly one of `block` or `app`"),
        ({"block": "a"}, "spec.config.x.signalRef.signal: required"),
        ({"block": "a", "signal": "s", "namespace": "other"}, "same namespace"),
        ({"blok": "a", "signal": "s"}, "unknown field"),
        ("a.b", "must be an object"),
    ],
)
def test_malformed_references_name_the_field(ref: Any, message: str) -> None:
    with pytest.raises(SignalRefError, match=message):
        find_refs({"x": {"signalRef": ref}}, "ns")


def test_cycles_are_reported_with_their_path() -> None:
    graph = {
        ("Block", "a"): [("Block", "b")],
        ("Block", "b"): [("Block", "c")],
        ("Block", "c"): [("Block", "a")],
        ("Block", "d"): [("Block", "a")],
    }
    path = find_cycle(("Block", "a"), lambda n: graph.get(n, []))
    assert path is not None
    assert cycle_message(path) == "Dependency cycle: Block a -> Block b -> Block c -> Block a"
    assert find_cycle(("Block", "d"), lambda n: graph.get(n, [])) is None


def test_fingerprint_is_stable_and_sensitive_to_values() -> None:
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
