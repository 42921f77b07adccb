"""The few Kubernetes writes and reads the runtime makes (over :mod:`controller.kube.rest`).

Every write here is deliberate: one status patch per reconcile that changes
something, finalizer edits once per lifetime, Secrets only when a sensitive
signal or the handler's state changes, Events only on transitions.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

from controller.api.kinds import ALL_KINDS, GROUP, VERSION
from controller.kube.objects import Body
from controller.kube.rest import JSON_PATCH, MERGE_PATCH, KubeApiError, Requester
from controller.logs import get_logger

FINALIZER = "blockflow.dev/lifecycle"
COMPONENT = "blockflow-controller"
log = get_logger("blockflow.kubeapi")


_PLURALS = {info.kind: info.plural for info in ALL_KINDS}


def _object_path(kind: str, namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{_PLURALS[kind]}/{name}"


def _secret_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/secrets" + (f"/{name}" if name else "")


class KubeApi:
    def __init__(self, client: Requester) -> None:
        self.client = client
        self.writes = 0  # counted for the benchmark's "API writes per reconcile"

    async def patch_status(self, kind: str, namespace: str, name: str, patch: Body) -> Body:
        """One JSON merge patch of the status subresource; returns the updated object."""
        self.writes += 1
        return await self.client.request(
            "PATCH",
            _object_path(kind, namespace, name) + "/status",
            body={"status": patch},
            content_type=MERGE_PATCH,
        )

    async def patch_status_checked(self, body: Body, status_patch: Body) -> Body:
        """A status merge patch that fails with 409 when the object changed since `body`
        was read (optimistic concurrency: no lost updates between writers)."""
        meta = body["metadata"]
        self.writes += 1
        return await self.client.request(
            "PATCH",
            _object_path(body["kind"], meta["namespace"], meta["name"]) + "/status",
            body={"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status_patch},
            content_type=MERGE_PATCH,
        )

    async def patch_spec(self, kind: str, namespace: str, name: str, patch: Body) -> Body:
        self.writes += 1
        return await self.client.request(
            "PATCH", _object_path(kind, namespace, name), body=patch, content_type=MERGE_PATCH
        )

    async def get(self, kind: str, namespace: str, name: str) -> Body | None:
        try:
            return await self.client.request("GET", _object_path(kind, namespace, name))
        except KubeApiError as exc:
            if exc.code == 404:
                return None
            raise

    async def create(self, body: Body) -> Body:
        """Create a Blockflow object (409 AlreadyExists is the caller's to interpret)."""
        meta = body["metadata"]
        path = _object_path(body["kind"], meta["namespace"], meta["name"]).rsplit("/", 1)[0]
        self.writes += 1
        return await self.client.request("POST", path, body=body)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.writes += 1
        try:
            await self.client.request(
                "DELETE",
                _object_path(kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except KubeApiError as exc:
            if exc.code != 404:
                raise

    async def list_all(self, kind: str, namespace: str | None = None) -> list[Body]:
        """Every object of a kind (paged), in one namespace or the whole cluster."""
        plural = _PLURALS[kind]
        path = (
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
            if namespace
            else f"/apis/{GROUP}/{VERSION}/{plural}"
        )
        items: list[Body] = []
        params = {"limit": "500"}
        while True:
            page = await self.client.request("GET", path, params=params)
            for item in page.get("items") or []:
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
                items.append(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params = {"limit": "500", "continue": token}

    async def add_finalizer(self, kind: str, body: Body) -> Body:
        meta = body["metadata"]
        ops: list[Body] = (
            [{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}]
            if meta.get("finalizers")
            else [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]
        )
        return await self._json_patch(kind, body, ops)

    async def remove_finalizer(self, kind: str, body: Body) -> Body | None:
        finalizers = body["metadata"].get("finalizers") or []
        if FINALIZER not in finalizers:
            return body
        index = finalizers.index(FINALIZER)
        ops = [
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": FINALIZER},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        try:
            return await self._json_patch(kind, body, ops)
        except KubeApiError as exc:
            if exc.code == 404:
                return None
            raise

    async def _json_patch(self, kind: str, body: Body, ops: list[Body]) -> Body:
        meta = body["metadata"]
        self.writes += 1
        return await self.client.request(
            "PATCH",
            _object_path(kind, meta["namespace"], meta["name"]),
            body=ops,
            content_type=JSON_PATCH,
        )

    # -- secrets -------------------------------------------------------------------------------

    async def namespace_deleting(self, namespace: str) -> bool | None:
        """Whether the namespace is being deleted; None when it cannot be read (no RBAC to, or
        already gone: then its objects are gone too)."""
        try:
            found = await self.client.request("GET", f"/api/v1/namespaces/{namespace}")
        except KubeApiError:
            return None
        meta, status = found.get("metadata") or {}, found.get("status") or {}
        return bool(meta.get("deletionTimestamp")) or status.get("phase") == "Terminating"

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        """(decoded data, resourceVersion), or None when absent."""
        try:
            secret = await self.client.request("GET", _secret_path(namespace, name))
        except KubeApiError as exc:
            if exc.code == 404:
                return None
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return data, _resource_version(secret)

    async def merge_secret(
        self,
        namespace: str,
        name: str,
        updates: dict[str, str | None],
        owner: Body,
        labels: dict[str, str],
    ) -> str:
        """Set (or, with None, remove) keys of an owned Secret, creating it when missing.

        Returns the Secret's new resourceVersion (from the write's own response)."""
        data = {
            k: (base64.b64encode(v.encode()).decode() if v is not None else None)
            for k, v in updates.items()
        }
        self.writes += 1
        try:
            written = await self.client.request(
                "PATCH",
                _secret_path(namespace, name),
                body={"data": data},
                content_type=MERGE_PATCH,
            )
            return _resource_version(written)
        except KubeApiError as exc:
            if exc.code != 404:
                raise
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [_owner_reference(owner)],
            },
            "type": "Opaque",
            "data": {k: v for k, v in data.items() if v is not None},
        }
        return _resource_version(
            await self.client.request("POST", _secret_path(namespace), body=secret)
        )

    # -- events --------------------------------------------------------------------------------

    async def post_event(self, body: Body, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event about the object, for people (never fails the reconcile).

        The same Event again (object, type, reason, message) is counted on the first one
        (``count``, ``lastTimestamp``), as client-go's recorder aggregates: a failure retried
        fifty times is one Event seen fifty times, not fifty Events."""
        meta = body["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = message[:1024]
        same = f"{meta.get('uid')}\n{type_}\n{reason}\n{message}".encode()
        name = f"{meta['name']}.{hashlib.sha256(same).hexdigest()[:16]}"
        path = f"/api/v1/namespaces/{meta['namespace']}/events"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": COMPONENT,
        }
        self.writes += 1
        try:
            try:
                await self.client.request("POST", path, body=event)
            except KubeApiError as exc:
                if exc.code != 409:
                    raise
                seen = await self.client.request("GET", f"{path}/{name}")
                patch = {"count": int(seen.get("count") or 1) + 1, "lastTimestamp": now}
                await self.client.request(
                    "PATCH", f"{path}/{name}", body=patch, content_type=MERGE_PATCH
                )
        except KubeApiError as exc:
            # A namespace being deleted takes no new content: expected while it goes.
            terminating = exc.code == 403 and "being terminated" in exc.message
            (log.debug if terminating else log.warning)(
                "could not post event", reason=reason, error=exc.message
            )


def _resource_version(obj: Body) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _owner_reference(owner: Body) -> Body:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
