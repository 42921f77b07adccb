"""Safe-by-construction HTML: every value is escaped unless it is already :class:`Safe`.

A tiny element builder instead of a template engine: ``el("a", "Run ", name, href=url)``
escapes ``name`` and ``url``; only what these functions return (or :func:`raw` of a
constant) is trusted markup. Nothing from the API server can open a tag or an attribute.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

#: Elements without a closing tag.
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link"})


class Safe(str):
    """Markup that is already escaped (or a trusted constant)."""

    __slots__ = ()


def raw(markup: str) -> Safe:
    """Trust a constant piece of markup (never data)."""
    return Safe(markup)


def esc(value: object) -> Safe:
    """Text (or an attribute value) escaped for HTML; Safe passes through; None is empty."""
    if isinstance(value, Safe):
        return value
    if value is None:
        return Safe("")
    return Safe(html.escape(str(value), quote=True))


def _attribute(name: str, value: object) -> str:
    name = name.rstrip("_").replace("_", "-")
    if value is True:
        return f" {name}"
    return f' {name}="{esc(value)}"'


def el(tag: str, *children: object, **attrs: object) -> Safe:
    """``<tag attrs>children</tag>``: children and attribute values escaped; attributes
    that are None or False are left out; ``class_``/``data_x`` become ``class``/``data-x``."""
    attributes = "".join(
        _attribute(name, value) for name, value in attrs.items() if value not in (None, False)
    )
    if tag in _VOID:
        return Safe(f"<{tag}{attributes}>")
    return Safe(f"<{tag}{attributes}>{join(children)}</{tag}>")


def join(children: Iterable[object]) -> Safe:
    """Children concatenated (each escaped unless Safe; nested iterables flattened)."""
    parts: list[str] = []
    for child in children:
        if isinstance(child, list | tuple):
            parts.append(join(child))
        else:
            parts.append(esc(child))
    return Safe("".join(parts))
