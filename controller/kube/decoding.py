"""Decoding what the API server sends, so that no object can stop the controller.

The API server accepts JSON nested up to 10,000 levels; Python's decoder gives up near
1,000 with RecursionError, and code that walks a decoded object (validation, CEL,
encoding it again) fails well before that. One such object in a watch stream or a list
used to stop every watch, on every restart, until someone deleted it.

:func:`loads` decodes every document the controller reads from the API server (its own
client, and kopf's watches and lists through :func:`install_into_kopf`). A document
nested no deeper than :data:`MAX_DEPTH` is returned as is. A deeper one is decoded with
every container below that depth replaced by a marker, and each object that lost a part
is marked (:data:`UNDECODABLE`, with the reason) and counted. The runtimes quarantine a
marked object: they never call a handler with it, they say why in its status and a
Warning Event, and the rest of the cluster goes on being reconciled. Admission refuses
such objects before they are stored (:data:`ADMITTED_DEPTH` is well inside this bound, so
what admission lets in always decodes whole).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from controller import metrics
from controller.safe_json import brackets

#: Deepest nesting of a document read from the API server (a watch event, a list, an
#: object); deeper parts are cut off and their object quarantined.
MAX_DEPTH = 100

#: Deepest nesting admission lets an object have (from the object's root): a webhook body
#: (64 levels at most) placed in a run's ``spec.input`` or a step's output still fits, and
#: an admitted object with its managedFields stays well inside :data:`MAX_DEPTH` in a list.
ADMITTED_DEPTH = 80

#: The key marking an object that could not be decoded whole; its value says why.
UNDECODABLE = "blockflow.dev/undecodable"

_CUT = "<<blockflow: cut here, nested too deep>>"


def undecodable(body: Any) -> str | None:
    """Why this object could not be decoded whole (None: it was)."""
    reason = body.get(UNDECODABLE) if isinstance(body, dict) else None
    return str(reason) if reason else None


def loads(data: bytes | str) -> Any:
    """A document from the API server, decoded; parts deeper than :data:`MAX_DEPTH` cut off
    and their objects marked :data:`UNDECODABLE`. Never raises RecursionError."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        value = json.loads(text)
    except RecursionError:
        return _decode_cut(text)
    if _brackets(text) > MAX_DEPTH and too_deep(value, MAX_DEPTH) is not None:
        return _decode_cut(text)
    return value


def too_deep(value: Any, limit: int) -> list[str | int] | None:
    """The path to the first container nested deeper than ``limit`` (the root is level 1),
    or None. Iterative: no recursion, whatever the depth."""
    stack: list[tuple[Any, int, list[str | int]]] = [(value, 1, [])]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            children: Iterator[tuple[str | int, Any]] = iter(node.items())
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            continue
        if depth > limit:
            return path
        for name, child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, [*path, name]))
    return None


def field_path(path: list[str | int], shown: int = 4) -> str:
    """``spec.steps[0].with.a…`` for a path: its first ``shown`` parts."""
    text = ""
    for part in path[:shown]:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text + ("…" if len(path) > shown else "")


def _brackets(text: str) -> int:
    """An upper bound of the nesting depth, counted at C speed."""
    return text.count("{") + text.count("[")


def _decode_cut(text: str) -> Any:
    value = json.loads(_cut(text, MAX_DEPTH))
    objects = _objects(value)
    for obj in objects:
        if _CUT in json.dumps(obj):
            obj[UNDECODABLE] = f"nested deeper than {MAX_DEPTH} levels"
            kind = str(obj.get("kind") or "unknown")
            metrics.UNDECODABLE_OBJECTS.labels(kind=kind).inc()
    return value


def _objects(value: Any) -> list[dict[str, Any]]:
    """The objects in a document: a list's items, a watch event's object, or itself."""
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("items"), list):
        return [item for item in value["items"] if isinstance(item, dict)]
    if isinstance(value.get("object"), dict) and "type" in value:
        return [value["object"]]
    return [value]


def _cut(text: str, limit: int) -> str:
    """The JSON text with every container opened below ``limit`` levels replaced by a marker
    string (one pass over the characters, no recursion)."""
    out: list[str] = []
    start = 0  # where the text not yet copied begins
    cut_at = 0  # the depth of the container being cut (0: none)
    for index, char, depth in brackets(text):
        if char in "[{" and depth > limit and not cut_at:
            out += (text[start:index], json.dumps(_CUT))
            cut_at = depth
        elif char in "]}" and depth == cut_at:
            cut_at, start = 0, index + 1
    out.append("" if cut_at else text[start:])
    return "".join(out)


def install_into_kopf() -> None:
    """Make kopf's watch streams and lists decode with :func:`loads`.

    kopf (1.x) decodes watch lines with its API module's ``json.loads`` and list replies
    with ``response.json()`` in its ``get``; both are replaced here, once, at start. If a
    kopf release moves them, this fails at start, naming what is missing, instead of
    letting one deep object stop every watch."""
    from kopf._cogs.clients import api as kopf_api

    if getattr(kopf_api, "_blockflow_decoding", False):
        return
    missing = [name for name in ("json", "get", "request") if not hasattr(kopf_api, name)]
    if missing:
        raise RuntimeError(f"kopf's API module has no {', '.join(missing)}: cannot bound decoding")
    request = kopf_api.request

    async def get(url: str, *, settings: Any, logger: Any, **kwargs: Any) -> Any:
        response = await request(method="get", url=url, settings=settings, logger=logger, **kwargs)
        async with response:
            return loads(await response.read())

    setattr(kopf_api, "json", _BoundedJson())  # noqa: B010 (a module attribute, on purpose)
    kopf_api.get = get
    setattr(kopf_api, "_blockflow_decoding", True)  # noqa: B010


class _BoundedJson:
    """Stands in for the ``json`` module inside kopf's API module: only ``loads`` differs."""

    @staticmethod
    def loads(data: bytes | str, **_: Any) -> Any:
        return loads(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)
