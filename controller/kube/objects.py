"""Raw Kubernetes objects as the controller handles them: one type, one key, a few accessors.

Watch events and API replies are JSON objects; the controller keeps them as plain dicts
(``Body``) and reads them through the accessors here, so "the spec, or an empty one" is
written once. :class:`ObjectMeta` types the metadata every object has (a TypedDict costs
no memory: it is the dict). :class:`Key` names an object of a kind in a namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict, cast

#: An object as the API server sends it (apiVersion, kind, metadata, spec, status).
Body = dict[str, Any]


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    labels: dict[str, str]
    annotations: dict[str, str]
    finalizers: list[str]
    deletionTimestamp: str
    creationTimestamp: str
    ownerReferences: list[dict[str, Any]]


@dataclass(frozen=True, order=True, slots=True)
class Key:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @classmethod
    def of(cls, body: Body) -> Key:
        meta = body["metadata"]
        return cls(body["kind"], meta["namespace"], meta["name"])


def meta_of(body: Body) -> ObjectMeta:
    return cast(ObjectMeta, body.get("metadata") or {})


def spec_of(body: Body | None) -> dict[str, Any]:
    """The object's spec, or an empty one."""
    return ((body or {}).get("spec") or {}) if body is not None else {}


def status_of(body: Body | None) -> dict[str, Any]:
    """The object's status, or an empty one."""
    return ((body or {}).get("status") or {}) if body is not None else {}


def deleting(body: Body) -> bool:
    """Has deletion begun (the API server set deletionTimestamp; finalizers still hold it)?"""
    return bool(meta_of(body).get("deletionTimestamp"))


def generation(body: Body) -> int:
    return int(meta_of(body).get("generation", 1))


def workflow_ref(run: Body) -> str:
    """The name of the Workflow a WorkflowRun runs (``spec.workflowRef.name``)."""
    return str((spec_of(run).get("workflowRef") or {}).get("name", ""))
