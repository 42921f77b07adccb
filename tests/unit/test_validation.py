"""Config validation names the field and the rule, and never echoes a value."""

from __future__ import annotations

from controller.lifecycle.validation import config_error

SCHEMA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 3},
        "provisionSeconds": {"type": "number", "minimum": 0},
        "tier": {"enum": ["hot", "cold"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}


def test_valid_config_and_no_schema_pass() -> None:
    assert config_error({"name": "assets", "tags": ["a"]}, SCHEMA) is None
    assert config_error({"anything": 1}, None) is None


def test_each_rule_names_the_field() -> None:
    cases = {
        "spec.config: 'name' is a required property": {},
        "spec.config.provisionSeconds: must be >= 0": {"name": "abc", "provisionSeconds": -1},
        "spec.config.name: must be at least 3 characters long": {"name": "ab"},
        "spec.config.tier: must be one of 'hot', 'cold'": {"name": "abc", "tier": "warm"},
        "spec.config.tags[1]: must be of type string": {"name": "abc", "tags": ["a", 2]},
    }
    for message, config in cases.items():
        assert config_error(config, SCHEMA) == message


def test_messages_never_contain_the_value() -> None:
    secret = "s3cr3t-Passw0rd"
    schema = {"properties": {"password": {"type": "integer"}, "pin": {"pattern": "^[0-9]+$"}}}
    message = config_error({"password": secret, "pin": secret}, schema)
    assert message is not None and secret not in message
    assert message.startswith("spec.config.p") and "(and 1 more)" in message


def test_a_broken_schema_is_reported_as_the_handlers_fault() -> None:
    message = config_error({}, {"type": "no-such-type"})
    assert message is not None and message.startswith(
        "the handler declares an invalid config schema"
    )
