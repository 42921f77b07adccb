"""JSON from the outside world (requests, handler and step replies), parsed so that no
document can cost a 500 or an unhandled error.

`json.loads` accepts what Blockflow must refuse as bad input, and fails on some of it in
ways that are not `ValueError`: a document nested 100,000 deep raises RecursionError, a
5,000-digit integer a ValueError about integer conversion, and `NaN` / `Infinity` pass (and
then cannot be written back as JSON to the API server). :func:`loads` turns each into a
:class:`JsonError` whose message says what is wrong, so callers answer 400.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

#: Deepest nesting accepted: far beyond what an event or a form needs, far below recursion.
MAX_DEPTH = 64


class JsonError(ValueError):
    """Not JSON Blockflow accepts; the message says why."""


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number; send null or a string instead")


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed document, or JsonError (invalid, too deep, NaN/Infinity, huge integers)."""
    if _too_deep(data, max_depth):
        raise JsonError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except JsonError:
        raise
    except UnicodeDecodeError:
        raise JsonError("not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise JsonError(str(exc)) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer past Python's digit limit
        raise JsonError(f"cannot be read: {exc}") from None


def _too_deep(data: bytes | str, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit`` outside strings (one pass, no recursion)."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if text.count("[") + text.count("{") <= limit:
        return False  # the usual case, without a pass in Python
    return any(depth > limit for _, char, depth in brackets(text) if char in "[{")


def brackets(text: str) -> Iterator[tuple[int, str, int]]:
    """Each bracket outside strings: (index, bracket, depth), the depth inside it (an
    opening bracket's level, counted from 1; a closing one's, before it closes)."""
    depth = 0
    in_string = escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            yield index, char, depth
        elif char in "]}":
            yield index, char, depth
            depth -= 1
