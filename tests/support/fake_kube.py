"""An in-memory Kubernetes API server at the REST level, for runtime unit tests.

`FakeKube` stands where `controller.kube.rest.RestClient` stands (``request(method,
path, body=, content_type=, params=)``), so `KubeApi(FakeKube())` — and every room built
on it — runs against it unchanged. It keeps what the runtimes rely on from a real API
server:

- objects by path; `resourceVersion` from one counter; `uid`, `creationTimestamp`,
  `generateName`; 404 NotFound, 409 AlreadyExists;
- the status subresource of the custom resources: a status write changes only status,
  a write of the object never changes its status, `generation` moves only with the spec;
- JSON merge patches (with a `metadata.resourceVersion` precondition → 409 Conflict) and
  JSON patches (`add`, `remove`, `replace`, `test`);
- deletion with finalizers: `deletionTimestamp` is set, and the object goes when its last
  finalizer is removed;
- lists (one page), with `labelSelector` of the form `k=v,k2=v2`.

A test reads `requests` (method, path, body) to count writes, and injects failures with
:meth:`FakeKube.fail`. Watches are not served: tests hand bodies to `observe` themselves
(:meth:`FakeKube.objects` lists what is stored).
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.kube.rest import JSON_PATCH, KubeApiError

GROUP_PREFIX = "/apis/blockflow.dev/v1alpha1"
#: Resources whose status is a subresource (writes to the object never change it).
STATUS_SUBRESOURCE = {"apps", "blocks", "workflows", "workflowruns", "jobs"}
_KINDS = {
    "apps": "App",
    "blocks": "Block",
    "workflows": "Workflow",
    "workflowruns": "WorkflowRun",
    "secrets": "Secret",
    "events": "Event",
    "jobs": "Job",
    "leases": "Lease",
}

Body = dict[str, Any]


@dataclass
class _Failure:
    method: str
    matches: Callable[[str], bool]
    error: BaseException
    times: int


@dataclass(frozen=True)
class _Path:
    prefix: str  # /api/v1 or /apis/<group>/<version>
    namespace: str | None
    resource: str
    name: str | None
    subresource: str | None

    @property
    def collection(self) -> tuple[str, str | None, str]:
        return (self.prefix, self.namespace, self.resource)


def parse_path(path: str) -> _Path:
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        prefix, rest = "/" + "/".join(parts[:2]), parts[2:]
    else:
        prefix, rest = "/" + "/".join(parts[:3]), parts[3:]
    namespace = None
    if rest and rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    return _Path(prefix, namespace, resource, name, subresource)


class FakeKube:
    def __init__(self) -> None:
        self._objects: dict[tuple[str, str | None, str], dict[str, Body]] = {}
        self._versions = itertools.count(1)
        self._names = itertools.count(1)
        self._failures: list[_Failure] = []
        #: Every request received: (method, path, body).
        self.requests: list[tuple[str, str, Any]] = []

    # -- what tests use ----------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path_contains: str,
        error: BaseException | None = None,
        *,
        times: int = 1,
    ) -> None:
        """The next ``times`` requests of ``method`` whose path contains ``path_contains``
        fail with ``error`` (a KubeApiError, or e.g. aiohttp.ClientOSError), then succeed."""
        self._failures.append(
            _Failure(
                method,
                lambda path: path_contains in path,
                error or KubeApiError(500, "InternalError", "injected"),
                times,
            )
        )

    def failures_left(self) -> int:
        """Injected failures not used up yet."""
        return sum(failure.times for failure in self._failures)

    def writes(self, method: str | None = None, path_contains: str = "") -> int:
        """How many writes (or requests of ``method``) were received for matching paths."""
        return sum(
            1
            for m, p, _ in self.requests
            if (m == method if method else m != "GET") and path_contains in p
        )

    def objects(self, resource: str, namespace: str | None = None) -> list[Body]:
        """Stored objects of a resource (deep copies), sorted by name."""
        found = [
            copy.deepcopy(obj)
            for (_, ns, res), items in self._objects.items()
            if res == resource and (namespace is None or ns == namespace)
            for obj in items.values()
        ]
        return sorted(found, key=lambda o: o["metadata"]["name"])

    def get_object(self, path: str) -> Body | None:
        where = parse_path(path)
        obj = self._objects.get(where.collection, {}).get(where.name or "")
        return copy.deepcopy(obj) if obj is not None else None

    def put(self, body: Body, *, path: str | None = None) -> Body:
        """Store an object directly (as a create would), for test setup."""
        where = parse_path(path or collection_path(body))
        return self._create(where, copy.deepcopy(body))

    # -- RestClient ----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        self.requests.append((method, path, copy.deepcopy(body)))
        for failure in self._failures:
            if failure.times > 0 and failure.method == method and failure.matches(path):
                failure.times -= 1
                raise failure.error
        where = parse_path(path)
        if method == "GET":
            if where.name is None:
                return self._list(where, params or {})
            return copy.deepcopy(self._get(where))
        if method == "POST":
            return self._create(where, copy.deepcopy(body))
        if method == "PATCH":
            return self._patch(where, copy.deepcopy(body), content_type)
        if method == "DELETE":
            return self._delete(where)
        raise KubeApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    async def close(self) -> None:
        return None

    # -- verbs ---------------------------------------------------------------------------------

    def _get(self, where: _Path) -> Body:
        obj = self._objects.get(where.collection, {}).get(where.name or "")
        if obj is None:
            raise KubeApiError(404, "NotFound", f'{where.resource} "{where.name}" not found')
        return obj

    def _list(self, where: _Path, params: dict[str, str]) -> Body:
        wanted = dict(
            pair.split("=", 1) for pair in (params.get("labelSelector") or "").split(",") if pair
        )
        items = [
            copy.deepcopy(obj)
            for (prefix, ns, res), objs in self._objects.items()
            if prefix == where.prefix
            and res == where.resource
            and (where.namespace is None or ns == where.namespace)
            for obj in objs.values()
            if all((obj["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return {"items": items, "metadata": {"resourceVersion": str(next(self._versions))}}

    def _create(self, where: _Path, body: Body) -> Body:
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise KubeApiError(422, "Invalid", "metadata.name: Required value")
            meta["name"] = f"{meta['generateName']}{next(self._names):05d}"
        items = self._objects.setdefault(where.collection, {})
        if meta["name"] in items:
            raise KubeApiError(
                409, "AlreadyExists", f'{where.resource} "{meta["name"]}" already exists'
            )
        if where.namespace is not None:
            meta["namespace"] = where.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = "2026-01-01T00:00:00Z"
        meta["resourceVersion"] = str(next(self._versions))
        body.setdefault("kind", _KINDS.get(where.resource, where.resource))
        if where.resource in STATUS_SUBRESOURCE:
            meta["generation"] = 1
            body.pop("status", None)
        items[meta["name"]] = body
        return copy.deepcopy(body)

    def _patch(self, where: _Path, patch: Any, content_type: str) -> Body:
        current = self._get(where)
        if content_type == JSON_PATCH:
            updated = apply_json_patch(current, patch)
        else:
            wanted_rv = ((patch or {}).get("metadata") or {}).pop("resourceVersion", None)
            if wanted_rv is not None and wanted_rv != current["metadata"]["resourceVersion"]:
                raise KubeApiError(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                )
            updated = merge_patch(current, patch)
        if where.subresource == "status":
            updated = {**current, "status": updated.get("status")}
        elif where.resource in STATUS_SUBRESOURCE:
            updated["status"] = copy.deepcopy(current.get("status"))
            if updated.get("spec") != current.get("spec"):
                updated["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if updated.get("status") is None:
            updated.pop("status", None)
        for field in ("uid", "creationTimestamp", "name", "namespace"):
            if field in current["metadata"]:
                updated["metadata"][field] = current["metadata"][field]
        if updated == current:
            return copy.deepcopy(current)
        updated["metadata"]["resourceVersion"] = str(next(self._versions))
        return self._store(where, updated)

    def _delete(self, where: _Path) -> Body:
        current = self._get(where)
        if current["metadata"].get("finalizers"):
            if not current["metadata"].get("deletionTimestamp"):
                current = copy.deepcopy(current)
                current["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
                current["metadata"]["resourceVersion"] = str(next(self._versions))
                self._objects[where.collection][current["metadata"]["name"]] = current
            return copy.deepcopy(current)
        del self._objects[where.collection][current["metadata"]["name"]]
        return {"kind": "Status", "status": "Success"}

    def _store(self, where: _Path, obj: Body) -> Body:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self._objects[where.collection][meta["name"]]  # the last finalizer went
        else:
            self._objects[where.collection][meta["name"]] = obj
        return copy.deepcopy(obj)


def collection_path(body: Body) -> str:
    """The API path of the collection an object belongs to."""
    meta = body["metadata"]
    api_version = body.get("apiVersion", "v1")
    plural = {v: k for k, v in _KINDS.items()}[body["kind"]]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{meta['namespace']}/{plural}"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_json_patch(target: Body, ops: list[Body]) -> Body:
    """RFC 6902 for add, remove, replace and test (what the controller sends)."""
    doc = copy.deepcopy(target)
    for op in ops:
        *parents, last = [_unescape(p) for p in op["path"].lstrip("/").split("/")]
        container: Any = doc
        for part in parents:
            container = container[int(part)] if isinstance(container, list) else container[part]
        kind = op["op"]
        if kind == "test":
            found = _child(container, last)
            if found != op["value"]:
                raise KubeApiError(422, "Invalid", f"test operation failed at {op['path']}")
        elif kind == "remove":
            _child(container, last)  # 422 when absent
            if isinstance(container, list):
                del container[int(last)]
            else:
                del container[last]
        elif kind in ("add", "replace"):
            value = copy.deepcopy(op["value"])
            if isinstance(container, list):
                if last == "-":
                    container.append(value)
                elif kind == "add":
                    container.insert(int(last), value)
                else:
                    container[int(last)] = value
            else:
                container[last] = value
        else:
            raise KubeApiError(422, "Invalid", f"unsupported op {kind}")
    return doc


def _child(container: Any, key: str) -> Any:
    try:
        return container[int(key)] if isinstance(container, list) else container[key]
    except (KeyError, IndexError, ValueError):
        raise KubeApiError(422, "Invalid", f"path element {key!r} does not exist") from None


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")
