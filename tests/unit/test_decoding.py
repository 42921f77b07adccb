"""Documents from the API server decode whatever their depth: deep parts are cut off and
their objects marked, so one object cannot stop a watch or a list."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller import metrics
from controller.admission.validate import refusals
from controller.kube.decoding import (
    ADMITTED_DEPTH,
    MAX_DEPTH,
    field_path,
    install_into_kopf,
    loads,
    too_deep,
    undecodable,
)


def nested(depth: int) -> Any:
    value: Any = {"leaf": "x"}
    for level in range(depth - 1):
        value = {"a": value} if level % 2 else [value]
    return value


def with_deep(doc: Any, depth: int) -> str:
    """``doc`` as JSON with its "DEEP" string replaced by lists nested ``depth`` deep (too
    deep for json.dumps to write)."""
    return json.dumps(doc).replace('"DEEP"', "[" * depth + '"]["' + "]" * depth)


def run(name: str, input_: Any) -> dict[str, Any]:
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "7"},
        "spec": {"workflowRef": {"name": "w"}, "input": input_},
    }


def undecodable_count(kind: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("blockflow_undecodable_objects_total", {"kind": kind})
        or 0.0
    )


def test_an_ordinary_document_is_decoded_as_is() -> None:
    doc = {"type": "MODIFIED", "object": run("ok", {"text": "[[[{{{ not brackets"})}
    assert loads(json.dumps(doc).encode()) == doc


def test_a_watch_event_nested_3000_deep_keeps_its_metadata_and_is_marked() -> None:
    before = undecodable_count("WorkflowRun")
    line = with_deep({"type": "ADDED", "object": run("deep", {"x": "DEEP"})}, 3000)
    with pytest.raises(RecursionError):
        json.loads(line)  # what stopped every watch
    event = loads(line.encode())
    body = event["object"]
    assert body["metadata"]["name"] == "deep" and body["metadata"]["resourceVersion"] == "7"
    assert undecodable(body) == f"nested deeper than {MAX_DEPTH} levels"
    assert undecodable_count("WorkflowRun") == before + 1


def test_in_a_list_only_the_deep_item_is_marked() -> None:
    items = [run("a", {}), run("deep", "DEEP"), run("b", {"n": 1})]
    listed = loads(with_deep({"kind": "WorkflowRunList", "items": items}, 5000))
    assert [undecodable(item) is not None for item in listed["items"]] == [False, True, False]
    assert listed["items"][0] == items[0] and listed["items"][2] == items[2]


def test_depth_that_python_decodes_but_is_past_the_bound_is_marked_too() -> None:
    body = loads(json.dumps(run("mid", nested(300))))
    assert undecodable(body) is not None
    assert undecodable(loads(json.dumps(run("fine", nested(60))))) is None


def test_too_deep_names_the_path_without_recursion() -> None:
    path = too_deep({"spec": {"input": nested(5_000)}}, ADMITTED_DEPTH)
    assert path is not None and path[:2] == ["spec", "input"]
    assert field_path(path) == "spec.input[0].a…"
    assert too_deep({"spec": {"input": nested(10)}}, ADMITTED_DEPTH) is None


def test_admission_refuses_a_deep_run_input_naming_the_field() -> None:
    reasons = refusals(loads(with_deep(run("deep", "DEEP"), 3000)), None, lambda _: None)
    assert len(reasons) == 1
    assert reasons[0].startswith("spec.input") and f"deeper than {ADMITTED_DEPTH}" in reasons[0]
    assert refusals(run("ok", {"customer": {"id": 1}}), None, lambda _: None) == []


def test_kopf_decodes_watch_lines_with_the_bound() -> None:
    from kopf._cogs.clients import api as kopf_api

    install_into_kopf()
    install_into_kopf()  # once is enough; twice changes nothing
    line = with_deep({"type": "ADDED", "object": run("deep", "DEEP")}, 3000)
    decoder = getattr(kopf_api, "json")  # noqa: B009 (not exported: kopf's own import)
    assert undecodable(decoder.loads(line)["object"]) is not None
    assert decoder.dumps({"a": 1}) == '{"a": 1}'
