"""Generate CustomResourceDefinitions from the pydantic models.

Kubernetes wants *structural* OpenAPI v3 schemas: no ``$ref``, no ``anyOf``
with differing types, every node typed (or explicitly preserving unknown
fields).  pydantic emits JSON Schema with references and ``anyOf [X, null]``
for optional fields; this module rewrites one into the other so the models
stay the single source of truth.  ``python -m controller.api.crdgen crds/``
writes one file per kind; a test fails when the files are stale.
"""

from __future__ import annotations

from typing import Any

import yaml

from controller.api.common import PRESERVE_UNKNOWN
from controller.api.kinds import ALL_KINDS, CATEGORY, GROUP, VERSION, KindInfo
from controller.generated import write_files

JsonSchema = dict[str, Any]

# JSON Schema keywords a CRD schema accepts (the rest, e.g. title, is dropped).
_KEPT_KEYWORDS = {
    "type",
    "format",
    "description",
    "default",
    "enum",
    "pattern",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "nullable",
    PRESERVE_UNKNOWN,
}

#: Models whose fields are mutually exclusive: exactly one must be set.  Expressed as
#: min/maxProperties rather than oneOf: the API server's oneOf errors ("Found none
#: valid", plus a misleading "Required value" for the first branch) confuse users.
_EXACTLY_ONE_FIELD = {"HandlerRef", "Trigger"}


class SchemaError(ValueError):
    """A model cannot be expressed as a structural schema."""


def _resolve(node: JsonSchema, defs: dict[str, JsonSchema]) -> tuple[JsonSchema, str | None]:
    """Follow a ``$ref`` (also inside a one-element allOf), keeping sibling keywords."""
    ref_name = None
    if "allOf" in node and len(node["allOf"]) == 1 and "$ref" in node["allOf"][0]:
        node = {**{k: v for k, v in node.items() if k != "allOf"}, **node["allOf"][0]}
    if "$ref" in node:
        ref_name = node["$ref"].rsplit("/", 1)[-1]
        target = defs[ref_name]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings}
    return node, ref_name


def _strip_null(node: JsonSchema) -> JsonSchema:
    """``anyOf: [X, {type: null}]`` (an optional field) becomes X."""
    variants = node.get("anyOf")
    if variants is None:
        return node
    non_null = [v for v in variants if v.get("type") != "null"]
    if len(non_null) != 1:
        raise SchemaError(f"union of {len(non_null)} types is not structural: {variants!r}")
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**non_null[0], **rest}


def to_structural(node: JsonSchema, defs: dict[str, JsonSchema], *, in_status: bool) -> JsonSchema:
    """Rewrite one pydantic JSON Schema node into a structural CRD schema node."""
    node, ref_name = _resolve(node, defs)
    node = _strip_null(node)
    node, inner_ref = _resolve(node, defs)
    ref_name = ref_name or inner_ref
    out: JsonSchema = {}
    for key, value in node.items():
        if key not in _KEPT_KEYWORDS:
            continue
        if key == "properties":
            if not value:
                # An empty object (`manual: {}`): the API server stores no empty `properties`,
                # and a CRD that differs from what it stores conflicts on a server-side apply.
                continue
            out[key] = {
                name: to_structural(child, defs, in_status=in_status)
                for name, child in value.items()
            }
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            if key == "additionalProperties" and value == {}:
                out[PRESERVE_UNKNOWN] = True
                continue
            out[key] = to_structural(value, defs, in_status=in_status)
        elif key == "additionalProperties":
            continue  # `true`/`false` is implied by structural pruning
        elif key == "default":
            if value is None or in_status or value in ({}, []):
                continue
            out[key] = value
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if ref_name in _EXACTLY_ONE_FIELD:
        out["minProperties"] = 1
        out["maxProperties"] = 1
    if "type" not in out and not out.get(PRESERVE_UNKNOWN):
        raise SchemaError(f"schema node has no type: {node!r}")
    return out


def model_schema(model: type[Any], *, in_status: bool) -> JsonSchema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return to_structural(raw, defs, in_status=in_status)


def crd_for(info: KindInfo) -> JsonSchema:
    spec_schema = model_schema(info.spec_model, in_status=False)
    status_schema = model_schema(info.status_model, in_status=True)
    open_api = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "blockflow.dev/v1alpha1"},
            "kind": {"type": "string", "description": info.kind},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/part-of": "blockflow"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": c.name,
                            "type": c.type,
                            "jsonPath": c.json_path,
                            **({"description": c.description} if c.description else {}),
                            **({"priority": c.priority} if c.priority else {}),
                        }
                        for c in info.columns
                    ],
                    "schema": {"openAPIV3Schema": open_api},
                }
            ],
        },
    }


HEADER = "# Generated from controller/api by `make crds`. Do not edit by hand.\n"


def render(info: KindInfo) -> str:
    return HEADER + yaml.safe_dump(crd_for(info), sort_keys=False, width=100)


def rendered_files() -> dict[str, str]:
    """File name → content for every kind."""
    return {f"{info.crd_name}.yaml": render(info) for info in ALL_KINDS}


def main(argv: list[str] | None = None) -> int:
    return write_files(rendered_files(), argv, "crds")


if __name__ == "__main__":
    raise SystemExit(main())
