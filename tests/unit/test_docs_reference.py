"""docs/reference/ is generated from the models (`make docs`) and must stay in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.api import docgen
from controller.handlers.protocol import OPERATIONS

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("reference")
    assert docgen.main([str(out)]) == 0
    return {p.name: p.read_text() for p in sorted(out.glob("*.md"))}


def _row(text: str, field: str) -> list[str]:
    """The cells of the table row for ``field``."""
    match = re.search(rf"^\| `{re.escape(field)}` \|(.*)\|$", text, re.MULTILINE)
    assert match, f"no row for {field}"
    return [cell.strip() for cell in match.group(1).split(" | ")]


def test_reference_is_up_to_date(generated: dict[str, str]) -> None:
    on_disk = {p.name: p.read_text() for p in sorted(REFERENCE.glob("*.md"))}
    stale = sorted(n for n in generated if on_disk.get(n) != generated[n])
    assert not stale and set(on_disk) == set(generated), (
        f"docs/reference is stale ({stale}); run `make docs`"
    )


def test_generation_is_deterministic(generated: dict[str, str]) -> None:
    assert docgen.rendered_files() == generated


def test_every_file_carries_the_generated_header(generated: dict[str, str]) -> None:
    assert set(generated) == {"crds.md", "protocol.md", "events.md"}
    for text in generated.values():
        assert text.startswith(docgen.HEADER)


def test_crd_reference_lists_kinds_and_flattened_fields(generated: dict[str, str]) -> None:
    crds = generated["crds.md"]
    for kind in ("App", "Block", "Workflow", "WorkflowRun"):
        assert f"\n## {kind}\n" in crds
    assert "- API version: `blockflow.dev/v1alpha1`" in crds
    assert "- Short names: `wfr`, `bfrun`" in crds
    assert "| Status | string | `.status.lifecycle.status` | Lifecycle status. |" in crds

    kind, default, description = _row(crds, "spec.trigger.schedule.cron")
    assert kind == "string, required" and default == ""
    assert description.startswith("Cron expression")
    assert _row(crds, "spec.trigger.schedule.timezone")[1] == '`"UTC"`'
    assert "draining_failed" in _row(crds, "status.lifecycle.status")[0]
    assert _row(crds, "status.lifecycle.status")[2].startswith("ready, in_progress")
    assert _row(crds, "spec.steps[].name")[2].startswith("Unique step name")


def test_protocol_reference_covers_every_operation(generated: dict[str, str]) -> None:
    protocol = generated["protocol.md"]
    for operation in OPERATIONS:
        assert f"\n## {operation}\n" in protocol
    assert "\n## HandlerInfo (`GET /`)\n" in protocol

    execute = protocol.split("\n## execute\n", 1)[1].split("\n## finish\n", 1)[0]
    assert _row(execute, "metadata.uniqueExecutionId") == [
        "string",
        "`null`",
        "Step executions: the idempotency key, stable across retries.",
    ]
    assert _row(execute, "with")[2] == "Step config."
    for variant in ("outcome", "exit", "defer", "error"):
        assert f'#### `type: "{variant}"`' in execute
    assert _row(protocol, "blockTypes.<name>.fixed")[2].startswith("Config fields")


def test_own_events_are_documented_from_the_models_their_publishers_use() -> None:
    from controller.api.docgen import render_events
    from controller.api.events import OWN_EVENTS

    events = render_events()
    for event_type in OWN_EVENTS:
        assert f"`{event_type}`" in events
    assert "| `failureRate` | number, required |" in events
