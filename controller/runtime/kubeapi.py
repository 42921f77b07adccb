"""The few Kubernetes writes and reads the runtime makes, over lightkube (async).

Every write here is deliberate: one status patch per reconcile that changes
something, finalizer edits once per lifetime, Secrets only when a sensitive
signal or the handler's state changes, Events only on transitions.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Secret
from lightkube.types import PatchType

from controller.kube import RESOURCES
from controller.logs import get_logger

FINALIZER = "blockflow.dev/lifecycle"
COMPONENT = "blockflow-controller"
log = get_logger("blockflow.kubeapi")

Body = dict[str, Any]


def _as_dict(obj: Any) -> Body:
    return dict(obj.to_dict()) if hasattr(obj, "to_dict") else dict(obj)


class KubeApi:
    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.writes = 0  # counted for the benchmark's "API writes per reconcile"

    async def patch_status(self, kind: str, namespace: str, name: str, patch: Body) -> Body:
        """One JSON merge patch of the status subresource; returns the updated object."""
        self.writes += 1
        result = await self.client.patch(
            RESOURCES[kind].Status,
            name,
            {"status": patch},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
        return _as_dict(result)

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
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    async def _json_patch(self, kind: str, body: Body, ops: list[Body]) -> Body:
        meta = body["metadata"]
        self.writes += 1
        result = await self.client.patch(
            RESOURCES[kind],
            meta["name"],
            ops,
            namespace=meta["namespace"],
            patch_type=PatchType.JSON,
        )
        return _as_dict(result)

    # -- secrets -------------------------------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        """(decoded data, resourceVersion), or None when absent."""
        try:
            secret = await self.client.get(Secret, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        version = secret.metadata.resourceVersion if secret.metadata else ""
        return data, version or ""

    async def merge_secret(
        self,
        namespace: str,
        name: str,
        updates: dict[str, str | None],
        owner: Body,
        labels: dict[str, str],
    ) -> None:
        """Set (or, with None, remove) keys of an owned Secret, creating it when missing."""
        data = {
            k: (base64.b64encode(v.encode()).decode() if v is not None else None)
            for k, v in updates.items()
        }
        self.writes += 1
        try:
            await self.client.patch(
                Secret, name, {"data": data}, namespace=namespace, patch_type=PatchType.MERGE
            )
            return
        except ApiError as exc:
            if exc.status.code != 404:
                raise
        secret = Secret(
            metadata=ObjectMeta(
                name=name,
                namespace=namespace,
                labels=labels,
                ownerReferences=[_owner_reference(owner)],
            ),
            type="Opaque",
            data={k: v for k, v in data.items() if v is not None},
        )
        await self.client.create(secret)

    # -- events --------------------------------------------------------------------------------

    async def post_event(self, body: Body, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event about the object, for people (never fails the reconcile)."""
        meta = body["metadata"]
        now = datetime.now(UTC)
        event = Event(
            metadata=ObjectMeta(generateName=f"{meta['name']}.", namespace=meta["namespace"]),
            involvedObject=ObjectReference(
                apiVersion=body.get("apiVersion"),
                kind=body.get("kind"),
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
                resourceVersion=meta.get("resourceVersion"),
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            source=EventSource(component=COMPONENT),
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
            reportingComponent=COMPONENT,
        )
        self.writes += 1
        try:
            await self.client.create(event)
        except ApiError as exc:
            log.warning("could not post event", reason=reason, error=str(exc.status.message))


def _owner_reference(owner: Body) -> Any:
    from lightkube.models.meta_v1 import OwnerReference

    meta = owner["metadata"]
    return OwnerReference(
        apiVersion=owner["apiVersion"],
        kind=owner["kind"],
        name=meta["name"],
        uid=meta["uid"],
        controller=True,
        blockOwnerDeletion=True,
    )
