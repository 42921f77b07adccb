"""A workflow's `inputSchema`: checking a run's input before the run exists.

The schema is JSON Schema (draft 2020-12). It is checked once when the workflow is
activated (:func:`input_schema_errors`), and each input against it before a run is
created (:func:`input_errors`), so a payload that does not match never becomes a run
that fails later: a webhook is answered 400, an event is refused with a Warning Event,
the CLI refuses to trigger. Messages name the field by its path in the input
(``input.body.orderId``) and never quote the rejected value.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

#: Messages reported for one input (the first ones, deepest first).
MAX_MESSAGES = 5


def input_schema_errors(schema: dict[str, Any]) -> list[str]:
    """Why a schema cannot be used (empty: it can)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        return [f"spec.inputSchema{where}: not a valid JSON Schema: {exc.message}"]
    return []


@lru_cache(maxsize=256)
def _validator(text: str) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(text))


def input_errors(schema: dict[str, Any], value: Any) -> list[str]:
    """How `value` fails the schema, one message per problem (empty: it matches)."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    try:
        found = sorted(validator.iter_errors(value), key=lambda e: (-len(e.path), str(e.path)))
    except Exception as exc:  # an unresolvable $ref, say: the schema's fault, said plainly
        return [f"input: cannot be checked against spec.inputSchema: {exc}"]
    messages: list[str] = []
    for error in found[:MAX_MESSAGES]:
        where = "input" + "".join(
            f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
        )
        messages.append(f"{where}: {_plain(error)}")
    return messages


def _plain(error: Any) -> str:
    """The validator's complaint without the rejected value (it may be a secret)."""
    keyword = error.validator
    expected = error.validator_value
    if keyword == "required":
        missing = [
            name
            for name in expected
            if isinstance(error.instance, dict) and name not in error.instance
        ]
        return f"missing required field {', '.join(missing) or expected}"
    if keyword == "type":
        return f"must be of type {expected}"
    if keyword == "enum":
        return f"must be one of {', '.join(json.dumps(v) for v in expected)}"
    if keyword == "const":
        return f"must be {json.dumps(expected)}"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{keyword} is {expected}"
    if keyword in ("minLength", "maxLength", "minItems", "maxItems", "pattern", "format"):
        return f"does not meet {keyword} {expected}"
    if keyword == "additionalProperties":
        return "has fields the schema does not allow"
    return f"does not match the schema ({keyword})"
