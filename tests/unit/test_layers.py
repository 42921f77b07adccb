"""The package's layers import only downward, and the pure core loads no I/O library.

The rule (docs/development.md has the map): the Kubernetes client (`kube/`), the models
(`api/`), the handler protocol and transports (`handlers/`) and the pure lifecycle
engine (`lifecycle/`) are at the bottom; the controller loop (`runtime/`) uses them;
the workflow engine (`workflows/`) uses the runtime; the HTTP surface, the page, the CLI
and the operator sit on top. Imports inside functions count too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "controller"

#: room → rooms it must never import.
FORBIDDEN = {
    "lifecycle": {"server", "runtime", "workflows", "ui", "operator", "cli", "kube"},
    "handlers": {"server", "runtime", "workflows", "ui", "operator", "cli", "lifecycle"},
    "api": {"server", "runtime", "workflows", "ui", "operator", "cli", "kube", "lifecycle"},
    "kube": {"server", "runtime", "workflows", "ui", "operator", "cli", "lifecycle"},
    "runtime": {"workflows", "ui", "operator", "cli"},
    "workflows": {"ui", "operator", "cli"},
}


def imported_rooms(path: Path) -> set[tuple[str, int]]:
    """(room, line) for every import of another room of the package in one file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names, line = [node.module], node.lineno
        elif isinstance(node, ast.Import):
            names, line = [alias.name for alias in node.names], node.lineno
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "controller" and len(parts) > 1:
                found.add((parts[1], line))
    return found


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_a_room_imports_only_downward(room: str) -> None:
    files = sorted((PACKAGE / room).rglob("*.py"))
    assert files, f"controller/{room} has no modules"
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports controller.{other}"
        for path in files
        for other, line in sorted(imported_rooms(path))
        if other in FORBIDDEN[room]
    ]
    assert wrong == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from controller.workflows.runs import RunRuntime\n")
    assert imported_rooms(module) == {("workflows", 2)}


def test_the_pure_engines_load_no_io_library() -> None:
    probe = (
        "import sys, controller.lifecycle.engine, controller.lifecycle.gates, "
        "controller.workflows.executor, controller.workflows.admission, "
        "controller.workflows.counters\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'aiohttp', 'prometheus_client', 'kopf'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_no_production_code_kills_its_own_process() -> None:
    """Fault injection belongs to the tests (tests/support/crashing_controller.py)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "testing"):
            continue  # the local cluster's tooling stops processes it started
        text = path.read_text()
        for needle in ("os._exit(", "os.getpid(), signal.SIGKILL", "os.abort("):
            if needle in text:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}: {needle}")
    assert offenders == []


MAX_LINES = 520


def test_no_module_is_a_warehouse() -> None:
    """One job per file: a module past ~500 lines is doing several (generated code aside)."""
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "generated.py" and (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
