"""Admission checks, decided from the object, the one it replaces and what Apps offer."""

from __future__ import annotations

from typing import Any

from controller.admission.registration import webhook_configuration
from controller.admission.validate import referenced_apps, refusals
from controller.handlers.protocol import BlockTypeSpec

OFFERED = {
    "storage": {
        "bucket": BlockTypeSpec(kind="lifecycle", fixed=["name"]),
        "scan": BlockTypeSpec(kind="step"),
        "object-created": BlockTypeSpec(kind="trigger"),
    }
}


def offered(app: str) -> dict[str, BlockTypeSpec] | None:
    return OFFERED.get(app)


def body(kind: str, spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "team"},
        "spec": spec,
        **({"status": status} if status else {}),
    }


def test_a_valid_block_and_its_unchanged_fixed_field_pass() -> None:
    block = body("Block", {"app": "storage", "type": "bucket", "config": {"name": "a"}})
    assert refusals(block, None, offered) == []
    assert refusals(block, block, offered) == []


def test_a_fixed_field_cannot_change() -> None:
    old = body("Block", {"app": "storage", "type": "bucket", "config": {"name": "a"}})
    new = body("Block", {"app": "storage", "type": "bucket", "config": {"name": "b"}})
    (message,) = refusals(new, old, offered)
    assert message.startswith("spec.config.name is fixed: it was 'a'")
    assert "delete and recreate" in message


def test_unknown_block_types_of_known_apps_are_refused_unknown_apps_are_not() -> None:
    (message,) = refusals(body("Block", {"app": "storage", "type": "bukket"}), None, offered)
    assert message == "spec.type: App storage offers no block type 'bukket' (offered: bucket)"
    assert refusals(body("Block", {"app": "later", "type": "any"}), None, offered) == []


def test_malformed_and_cross_namespace_signal_refs_are_refused() -> None:
    bad = {"signalRef": {"block": "key"}}
    (message,) = refusals(body("App", {"config": {"k": bad}}), None, offered)
    assert message == "spec.config.k.signalRef.signal: required, the name of the signal to use"
    other = {"signalRef": {"block": "key", "signal": "id", "namespace": "other"}}
    block = body("Block", {"app": "storage", "type": "bucket", "config": {"kms": other}})
    (message,) = refusals(block, None, offered)
    assert "spec.config.kms.signalRef.namespace: signals can only be referenced" in message


def test_an_active_workflow_is_refused_for_what_would_refuse_its_activation() -> None:
    spec = {
        "state": "Active",
        "trigger": {"schedule": {"cron": "0 25 * * *", "timezone": "Mars/Olympus"}},
        "steps": [
            {"name": "a", "uses": {"app": "storage", "type": "bucket"}},
            {"name": "b", "uses": {"type": "http"}, "with": {"url": "${{ event.( }}"}},
            {"name": "c", "uses": {"app": "not-yet", "type": "x"}},
        ],
    }
    messages = refusals(body("Workflow", spec), None, offered)
    fields = [m.split(":")[0] for m in messages]
    assert fields == [
        "spec.trigger.schedule.cron",
        "spec.trigger.schedule.timezone",
        "spec.steps[0].uses.type",
        "spec.steps[1].with.url",
    ], messages  # the App that does not exist yet is the controller's to report
    assert refusals(body("Workflow", {**spec, "state": "Draft"}), None, offered) == []


def test_archived_is_final() -> None:
    spec = {
        "state": "Active",
        "trigger": {"webhook": {}},
        "steps": [{"name": "a", "uses": {"type": "sleep"}}],
    }
    old = body("Workflow", {**spec, "state": "Archived"}, {"phase": "Archived"})
    (message,) = refusals(body("Workflow", spec), old, offered)
    assert "Archived is final" in message


def test_an_update_that_leaves_spec_alone_is_allowed_even_if_the_object_is_invalid() -> None:
    """Finalizers and labels must still change on an object admitted before a rule existed."""
    invalid = body("Block", {"app": "storage", "type": "bukket"})
    relabelled = {**invalid, "metadata": {**invalid["metadata"], "labels": {"a": "b"}}}
    assert refusals(relabelled, invalid, offered) == []
    assert refusals(invalid, None, offered) != []


def test_referenced_apps_are_those_of_block_steps_fallbacks_and_trigger_blocks() -> None:
    assert referenced_apps(body("Block", {"app": "storage", "type": "bucket"})) == {"storage"}
    workflow = body(
        "Workflow",
        {
            "trigger": {"block": {"app": "git", "type": "push"}},
            "steps": [{"name": "a", "uses": {"app": "storage", "type": "scan"}}],
            "fallback": [{"name": "f", "uses": {"app": "chat", "type": "say"}}, "junk"],
        },
    )
    assert referenced_apps(workflow) == {"git", "storage", "chat"}
    assert referenced_apps(body("App", {})) == set()


def test_the_local_webhook_configuration_is_scoped_and_trusts_the_ca() -> None:
    config = webhook_configuration(
        "t",
        "https://127.0.0.1:1/validate",
        b"PEM",
        failure_policy="Fail",
        namespace_labels={"team": "a"},
    )
    (hook,) = config["webhooks"]
    assert hook["namespaceSelector"] == {"matchLabels": {"team": "a"}}
    assert hook["clientConfig"] == {"url": "https://127.0.0.1:1/validate", "caBundle": "UEVN"}
    assert hook["rules"][0]["resources"] == ["apps", "blocks", "workflows", "workflowruns"]
    assert hook["failurePolicy"] == "Fail"
    assert "namespaceSelector" not in webhook_configuration("t", "u", b"")["webhooks"][0]
