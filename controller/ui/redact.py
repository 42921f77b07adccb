"""Values shown on the page with what looks sensitive hidden (pure functions).

A step's ``with`` and a step's outcome data are shown to people who may read the run; a
value under a key that names a credential (``password``, ``token``, ``apiKey``,
``Authorization``, ``clientSecret``, a private key, a cookie …) or a string that carries
one (``Bearer …``, a PEM block) is replaced by :data:`HIDDEN`. A ``secretRef`` is a
reference (the Secret's name and key), never a value, and is shown as it is.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

HIDDEN = "•••••• (hidden)"
#: Longest rendering of one value on the page (the rest is cut).
TEXT_MAX = 4000
YAML_MAX = 64000

_SENSITIVE_KEY = re.compile(
    r"pass(word|wd|phrase)?$|secret|token|api[-_]?key|auth(orization)?$|credential|"
    r"private[-_]?key|cookie|signature|hmac|hookkey",
    re.IGNORECASE,
)
_REFERENCE_KEY = re.compile(r"(secret|config)(key)?ref$|ref$|name$", re.IGNORECASE)
_SENSITIVE_TEXT = re.compile(
    r"^\s*(bearer|basic|token)\s+\S{8,}|-----BEGIN [A-Z ]*PRIVATE KEY-----", re.IGNORECASE
)


def sensitive_key(key: str) -> bool:
    return bool(_SENSITIVE_KEY.search(key)) and not _REFERENCE_KEY.search(key)


def redact(value: Any) -> Any:
    """A copy of ``value`` with sensitive-looking values hidden."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if _REFERENCE_KEY.search(name) and isinstance(item, dict):
                # {name, key}: where a value is, never the value.
                plain = all(isinstance(v, str | int | None) for v in item.values())
                out[name] = dict(item) if plain else redact(item)
            elif sensitive_key(name) and not isinstance(item, dict | list):
                out[name] = HIDDEN if item not in (None, "") else item
            else:
                out[name] = redact(item)
        return out
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str) and _SENSITIVE_TEXT.search(value):
        return HIDDEN
    return value


def as_json(value: Any) -> str:
    text = json.dumps(redact(value), indent=2, ensure_ascii=False, default=str)
    return cut(text)


def as_yaml(value: Any) -> str:
    text = yaml.safe_dump(redact(value), sort_keys=False, allow_unicode=True, width=100)
    return cut(text, YAML_MAX)


def cut(text: str, limit: int = TEXT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
