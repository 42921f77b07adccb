"""Config validation against the JSON Schema a handler declares for a block type or its App.

Messages name the field and the rule, never the value: an App's config carries the
values of its `configFrom` Secrets, and a message ends up in status and Events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported when a schema is first checked: jsonschema loads every meta-schema it knows
    # (~8 MiB resident), which a controller whose handlers declare no schema never needs.
    from jsonschema.exceptions import ValidationError

_RULES = {
    "minimum": "must be >= {}",
    "maximum": "must be <= {}",
    "exclusiveMinimum": "must be > {}",
    "exclusiveMaximum": "must be < {}",
    "minLength": "must be at least {} characters long",
    "maxLength": "must be at most {} characters long",
    "pattern": "must match the pattern {}",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "const": "must be {!r}",
    "format": "must be a valid {}",
}


def _path(base: str, error: ValidationError) -> str:
    path = base
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _describe(error: ValidationError) -> str:
    rule, expected = error.validator, error.validator_value
    if rule == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return "must be of type " + " or ".join(str(k) for k in kinds)
    if rule == "enum" and isinstance(expected, list):
        return "must be one of " + ", ".join(repr(v) for v in expected)
    if rule in ("required", "additionalProperties", "dependentRequired"):
        return str(error.message)  # names properties, not values
    template = _RULES.get(str(rule))
    if template is not None:
        return template.format(expected)
    return f"does not satisfy the schema's {rule!r} rule"


def config_error(
    config: Any, schema: dict[str, Any] | None, base: str = "spec.config"
) -> str | None:
    """None when `config` is valid (or there is no schema); else one clear message."""
    if not schema:
        return None
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"the handler declares an invalid config schema: {exc.message}"
    validator = Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.path))
    )
    if not errors:
        return None
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{_path(base, first)}: {_describe(first)}{more}"
