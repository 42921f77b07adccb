"""The CRDs are generated from the models, structural, and up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.api import crdgen
from controller.api.common import PRESERVE_UNKNOWN
from controller.api.kinds import ALL_KINDS

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"


def test_crds_directory_matches_the_models() -> None:
    expected = crdgen.rendered_files()
    on_disk = {p.name: p.read_text() for p in CRDS_DIR.glob("*.yaml")}
    stale = sorted(name for name in expected if on_disk.get(name) != expected[name])
    extra = sorted(set(on_disk) - set(expected))
    assert not stale and not extra, (
        f"crds/ is stale (changed: {stale}, unexpected: {extra}); run `make crds`"
    )


def _walk(node: dict[str, Any], path: str) -> list[str]:
    """Return the paths of nodes that break the structural-schema rules."""
    problems = []
    for banned in ("$ref", "anyOf", "allOf", "oneOf", "title", "$defs"):
        if banned in node:
            problems.append(f"{path}: has {banned}")
    if "type" not in node and not node.get(PRESERVE_UNKNOWN):
        problems.append(f"{path}: no type")
    for name, child in node.get("properties", {}).items():
        problems += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        problems += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _walk(node["additionalProperties"], f"{path}{{}}")
    return problems


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_schema_is_structural_and_described(info: Any) -> None:
    crd = crdgen.crd_for(info)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema, info.kind) == []
    spec = schema["properties"]["spec"]
    undocumented = [
        name for name, child in spec["properties"].items() if not child.get("description")
    ]
    assert undocumented == [], f"{info.kind}.spec fields without description: {undocumented}"


@pytest.mark.parametrize("info", ALL_KINDS, ids=lambda i: i.kind)
def test_crd_names_category_and_status_subresource(info: Any) -> None:
    crd = yaml.safe_load(crdgen.render(info))
    names = crd["spec"]["names"]
    assert names["categories"] == ["blockflow"]
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
    printed = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    # Age ends what `kubectl get` shows; `-o wide` columns (priority 1) may follow it.
    columns = [c["name"] for c in printed if not c.get("priority")]
    assert columns[-1] == "Age"


def test_free_form_fields_keep_unknown_fields() -> None:
    block = crdgen.crd_for(ALL_KINDS[1])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert block["properties"]["spec"]["properties"]["config"][PRESERVE_UNKNOWN] is True
    assert block["properties"]["status"]["properties"]["signals"][PRESERVE_UNKNOWN] is True


def test_union_that_is_not_optional_is_refused() -> None:
    node = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    with pytest.raises(crdgen.SchemaError, match="not structural"):
        crdgen.to_structural(node, {}, in_status=False)


def test_no_schema_node_has_empty_properties() -> None:
    """The API server drops an empty `properties`; a CRD that says it anyway differs from what
    is stored, and a server-side apply of it (Helm's) conflicts with kubectl's apply."""

    def empties(node: Any, path: str) -> list[str]:
        if isinstance(node, dict):
            found = [path] if node.get("properties") == {} else []
            return found + [p for k, v in node.items() for p in empties(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [p for i, v in enumerate(node) for p in empties(v, f"{path}[{i}]")]
        return []

    for name, text in crdgen.rendered_files().items():
        assert empties(yaml.safe_load(text), name) == []
