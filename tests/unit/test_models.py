"""The models accept every example and refuse what the API server cannot express."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from controller.api import App, Block, Workflow, WorkflowRun
from controller.api.app import HandlerRef
from controller.api.block import DeletionPolicy
from controller.api.workflow import Trigger, WorkflowState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODELS: dict[str, Any] = {
    "App": App,
    "Block": Block,
    "Workflow": Workflow,
    "WorkflowRun": WorkflowRun,
}


def _example_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion", "").startswith("blockflow.dev/"):
                docs.append((f"{path.relative_to(EXAMPLES)}:{doc['metadata']['name']}", doc))
    return docs


@pytest.mark.parametrize(
    "doc", [d for _, d in _example_documents()], ids=[n for n, _ in _example_documents()]
)
def test_every_example_parses_with_its_model(doc: dict[str, Any]) -> None:
    MODELS[doc["kind"]].model_validate(doc)


def test_defaults_match_the_documented_contract() -> None:
    block = Block.model_validate(
        {"metadata": {"name": "b"}, "spec": {"app": "a", "type": "bucket"}}
    )
    assert block.spec.deletion_policy is DeletionPolicy.DELETE
    workflow = Workflow.model_validate({"metadata": {"name": "w"}, "spec": {}})
    assert workflow.spec.state is WorkflowState.DRAFT
    app = App.model_validate(
        {"metadata": {"name": "a"}, "spec": {"handler": {"http": {"url": "http://h:8080"}}}}
    )
    assert app.spec.handler.http is not None and app.spec.handler.http.timeout_seconds == 10


def test_handler_needs_exactly_one_transport() -> None:
    with pytest.raises(ValidationError, match="exactly one of `http` or `python`"):
        HandlerRef.model_validate({"python": "demo", "http": {"url": "http://x"}})
    with pytest.raises(ValidationError, match="exactly one"):
        HandlerRef.model_validate({})


def test_trigger_needs_exactly_one_kind() -> None:
    with pytest.raises(
        ValidationError, match="exactly one of event, webhook, schedule, block or manual"
    ):
        Trigger.model_validate({"event": "Deal.won", "webhook": {}})


def test_step_with_round_trips_under_its_wire_name() -> None:
    workflow = Workflow.model_validate(
        {
            "metadata": {"name": "w"},
            "spec": {
                "steps": [
                    {
                        "name": "s1",
                        "uses": {"type": "http"},
                        "with": {"url": "${{ event.body.url }}"},
                    }
                ]
            },
        }
    )
    assert workflow.spec.steps[0].with_ == {"url": "${{ event.body.url }}"}
    dumped = workflow.spec.model_dump(by_alias=True, exclude_defaults=True)
    assert dumped["steps"][0]["with"] == {"url": "${{ event.body.url }}"}
