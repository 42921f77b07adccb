"""`${{ <CEL> }}` in a step's `with:`, evaluated with the CEL the Kubernetes API uses.

- A string that is exactly one `${{ … }}` becomes the expression's value, keeping its
  type (a number stays a number, an object an object).
- `${{ … }}` inside a longer string is interpolated as text (strings as they are,
  `true`/`false`/`null`, numbers, objects and lists as compact JSON).
- Everything else — keys, numbers, strings without `${{` — is literal.
- A `${{` without its `}}` is an error (refused at admission and activation; a run that
  meets one fails the step), never text taken literally.

CEL sees `event` (for a webhook: method, headers, query, body), `steps.<name>` (`id`,
`data`), `workflow` and `run`. Errors name the field and the expression, never the data.
"""

from __future__ import annotations

import json
import re
import sys
import types
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _cel() -> types.ModuleType:
    """The CEL package, loaded on first use (its Rust extension is ~4 MiB of resident memory
    a controller without workflows never needs), and without its command line: the package's
    ``__init__`` imports ``cel.cli`` (typer, rich, prompt_toolkit, pygments; ~24 MiB), so an
    empty ``cel.cli`` goes in its place first, keeping the compiler and its standard library."""
    if "cel" not in sys.modules:
        sys.modules.setdefault("cel.cli", types.ModuleType("cel.cli", "not loaded"))
    import cel

    return cel


_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


class TemplateError(ValueError):
    """An expression does not compile or cannot be evaluated; says where and why."""


@lru_cache(maxsize=4096)
def _program(source: str) -> Any:
    return _cel().compile(source)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_POSITION = re.compile(r"<input>:\d+:(\d+): (.*)")
_EXPECTING = re.compile(r"\s*expecting \{.*\}\s*$")
_FOUND = re.compile(r"(?:mismatched input|no viable alternative at input|extraneous input) (\S+)")


def _compile_reason(exc: Exception) -> str:
    """The parser's complaint in one line: where, and what it found (not its whole list of
    the tokens it would have taken)."""
    text = _first_line(exc)
    found = _POSITION.search(text)
    if found is None:
        return _EXPECTING.sub("", text)
    column, detail = found.group(1), _EXPECTING.sub("", found.group(2))
    detail = detail.removeprefix("Syntax error: ")
    if "'<EOF>'" in detail:
        return f"it ends at column {column} where more is needed"
    token = re.search(
        r"(?:mismatched input|no viable alternative at input|extraneous input) (\S+)", detail
    )
    if token is not None:
        return f"unexpected {token.group(1)} at column {column}"
    return f"{detail} (column {column})"


def compile_errors(value: Any, path: str) -> list[str]:
    """Every expression in `value` that does not compile, as 'path: ${{ … }}: reason'."""
    errors: list[str] = [f"{where}: {UNCLOSED}" for where in _unclosed(value, path)]
    for where, source in _expressions(value, path):
        try:
            _program(source)
        except Exception as exc:
            errors.append(f"{where}: ${{{{ {source} }}}} does not compile: {_compile_reason(exc)}")
    return errors


UNCLOSED = "${{ is not closed: end the expression with }}"


def _is_unclosed(text: str) -> bool:
    return "${{" in _EXPRESSION.sub("", text)


def _unclosed(value: Any, path: str) -> list[str]:
    """The paths of strings with a ``${{`` that no ``}}`` closes."""
    if isinstance(value, str):
        return [path] if _is_unclosed(value) else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _unclosed(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _unclosed(v, f"{path}[{i}]")]
    return []


def _expressions(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path, m.group(1).strip()) for m in _EXPRESSION.finditer(value)]
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _expressions(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _expressions(v, f"{path}[{i}]")]
    return []


def _evaluate(source: str, context: dict[str, Any], path: str) -> Any:
    try:
        return _program(source).execute(context)
    except KeyError as exc:
        reason = f"no field {exc.args[0]!r}" if exc.args else "no such field"
    except Exception as exc:
        reason = _first_line(exc)
    raise TemplateError(f"{path}: ${{{{ {source} }}}}: {reason}")


def evaluate(source: str, context: dict[str, Any], path: str) -> Any:
    """One bare CEL expression (e.g. a hook's `until`), with errors that name `path`."""
    return _evaluate(source, context, path)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def render(value: Any, context: dict[str, Any], path: str = "with") -> Any:
    """`value` with every expression evaluated against `context`."""
    if isinstance(value, str):
        whole = _EXPRESSION.fullmatch(value.strip())
        if whole and value.strip() == value and len(_EXPRESSION.findall(value)) == 1:
            return _evaluate(whole.group(1).strip(), context, path)
        if "${{" not in value:
            return value
        if _is_unclosed(value):
            raise TemplateError(f"{path}: {UNCLOSED}")
        return _EXPRESSION.sub(
            lambda m: _as_text(_evaluate(m.group(1).strip(), context, path)), value
        )
    if isinstance(value, dict):
        return {k: render(v, context, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def condition_source(text: str) -> str:
    """The CEL of a step's `if`: `${{ expr }}` or the bare expression."""
    whole = _EXPRESSION.fullmatch(text.strip())
    return whole.group(1).strip() if whole else text.strip()


def condition_errors(text: str, path: str) -> list[str]:
    """Why an `if` cannot be evaluated at all (it must be one expression that compiles)."""
    source = condition_source(text)
    if "${{" in source or "}}" in source:
        return [f"{path}: write one expression, `${{{{ <CEL> }}}}` or the bare CEL"]
    try:
        _program(source)
    except Exception as exc:
        return [f"{path}: ${{{{ {source} }}}} does not compile: {_compile_reason(exc)}"]
    return []


def condition_holds(text: str, context: dict[str, Any], path: str) -> bool:
    """A step's `if`, evaluated: true or false; anything else is an error naming `path`."""
    source = condition_source(text)
    value = _evaluate(source, context, path)
    if not isinstance(value, bool):
        shown = _as_text(value)
        shown = shown if len(shown) <= 40 else shown[:40] + "…"
        raise TemplateError(
            f"{path}: ${{{{ {source} }}}} is {shown}, not true or false; "
            "compare it, e.g. `== 'created'` or `!= null`"
        )
    return value
