"""The shape of a workflow's steps: which step waits for which, from the spec alone.

A workflow has three lists of steps — `steps`, `fallback` and `finally` — and each list is
a graph: a step waits for the steps named in its `needs`, or, when it declares none, for
the step before it in the list (so a list without `needs` runs in order, as it always
has). Steps whose waits are over run side by side. Records of fallback and finally steps
carry a prefix (``fallback.``, ``finally.``) so that a name may appear in more than one
list.

:func:`graph_errors` is what admission and activation say about a graph that cannot run:
an unknown name, a step that needs itself, a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.api.workflow import Step, WorkflowSpec

FALLBACK_PREFIX = "fallback."
FINALLY_PREFIX = "finally."


@dataclass(frozen=True, slots=True)
class Node:
    """One step of the graph: its record name, the step, and the record names it waits for."""

    name: str
    step: Step
    needs: tuple[str, ...]


def _nodes(steps: list[Step], prefix: str) -> list[Node]:
    nodes: list[Node] = []
    for index, step in enumerate(steps):
        if step.needs is not None:
            needs = tuple(prefix + n for n in step.needs)
        else:
            needs = (prefix + steps[index - 1].name,) if index else ()
        nodes.append(Node(prefix + step.name, step, needs))
    return nodes


def main_nodes(spec: WorkflowSpec) -> list[Node]:
    return _nodes(spec.steps, "")


def fallback_nodes(spec: WorkflowSpec) -> list[Node]:
    return _nodes(spec.fallback, FALLBACK_PREFIX)


def finally_nodes(spec: WorkflowSpec) -> list[Node]:
    return _nodes(spec.finally_, FINALLY_PREFIX)


def all_nodes(spec: WorkflowSpec) -> list[Node]:
    return [*main_nodes(spec), *fallback_nodes(spec), *finally_nodes(spec)]


def find_node(spec: WorkflowSpec, name: str) -> Node | None:
    """The node of a record name (an iteration's, `<step>[<index>]`, is its step's)."""
    if name.endswith("]") and "[" in name:
        name = name[: name.rindex("[")]
    return next((n for n in all_nodes(spec) if n.name == name), None)


def bare_name(record_name: str) -> str:
    """The step's own name (what CEL sees as steps.<name>)."""
    for prefix in (FALLBACK_PREFIX, FINALLY_PREFIX):
        if record_name.startswith(prefix):
            return record_name[len(prefix) :]
    return record_name


def graph_errors(steps: list[Step], field: str) -> list[str]:
    """Why a list of steps cannot run as a graph (each message names the field)."""
    names = [s.name for s in steps]
    errors: list[str] = []
    for index, step in enumerate(steps):
        for n in step.needs or []:
            if n == step.name:
                errors.append(f"spec.{field}[{index}].needs: step {step.name} needs itself")
            elif n not in names:
                errors.append(
                    f"spec.{field}[{index}].needs: no step named {n} in spec.{field}; "
                    f"name one of {', '.join(x for x in names if x != step.name) or 'none'}"
                )
    if errors:
        return errors
    cycle = _cycle({n.name: n.needs for n in _nodes(steps, "")})
    if cycle:
        errors.append(
            f"spec.{field}: the steps wait for each other in a cycle: {' -> '.join(cycle)}; "
            "remove one of these needs"
        )
    return errors


def _cycle(needs: dict[str, tuple[str, ...]]) -> list[str] | None:
    """A cycle of the graph as a path (first name repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in needs.get(name, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for name in needs:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None
