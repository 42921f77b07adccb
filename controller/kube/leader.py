"""Leader election with a coordination.k8s.io Lease: one active controller, the others wait.

Crash-only: a replica that cannot renew its lease in time stops (the Pod restarts and queues
up again as a standby) rather than carry on next to a new leader. Everything a leader knows
is in the API server, so a standby that takes over simply starts: runs continue from their
status, waiting runs wake from their `wakeAt` or their tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from controller import metrics
from controller.kube.rest import MERGE_PATCH, KubeApiError, RestClient
from controller.logs import get_logger

log = get_logger("blockflow.leader")

LEADER_LABEL = "blockflow.dev/leader"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class LostLeadership(Exception):
    """The lease could not be renewed in time."""


class PodLabel:
    """The leader's mark on its own Pod: ``blockflow.dev/leader=true``, which the chart's Service
    selects, so callbacks, webhooks and admission reviews reach the leader while the standbys
    are Ready too (a Deployment whose replicas are all Ready is healthy to Helm, Argo CD and
    Flux). A replica clears the mark before it stands by: a restarted leader's Pod keeps its
    labels."""

    def __init__(self, client: RestClient, namespace: str, pod: str) -> None:
        self.client = client
        self.path = f"/api/v1/namespaces/{namespace}/pods/{pod}"

    async def set(self, leading: bool) -> None:
        patch = {"metadata": {"labels": {LEADER_LABEL: "true" if leading else None}}}
        await self.client.request("PATCH", self.path, body=patch, content_type=MERGE_PATCH)


class LeaderElector:
    def __init__(
        self,
        client: RestClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: float = 15.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.now = now
        self.renewed_at: datetime | None = None

    @property
    def retry_seconds(self) -> float:
        return max(0.5, self.lease_seconds / 3)

    async def acquire(self) -> None:
        """Wait until this replica holds the lease."""
        metrics.LEADER.labels(self.name).set(0)
        announced = False
        while not await self._try():
            if not announced:
                log.info("standing by: another replica holds the lease", lease=self.name)
                announced = True
            await asyncio.sleep(self.retry_seconds)
        metrics.LEADER.labels(self.name).set(1)
        log.info("leading", lease=self.name, identity=self.identity)

    async def keep(self) -> None:
        """Renew until the lease is lost (then raise LostLeadership)."""
        while True:
            await asyncio.sleep(self.retry_seconds)
            try:
                renewed = await self._try()
            except (KubeApiError, OSError) as exc:
                log.warning("could not renew the lease", error=str(exc))
                renewed = False
            if renewed:
                continue
            held_since = self.renewed_at
            if held_since is None or self.now() - held_since > timedelta(
                seconds=self.lease_seconds
            ):
                metrics.LEADER.labels(self.name).set(0)
                raise LostLeadership(f"lease {self.name} lost")

    async def release(self) -> None:
        """Give the lease up on a graceful stop, so a standby takes over at once instead of
        after the lease expires (rolling upgrades, drains)."""
        metrics.LEADER.labels(self.name).set(0)
        try:
            lease = await self.client.request("GET", f"{self.path}/{self.name}")
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec["holderIdentity"] = ""
            spec["renewTime"] = _stamp(self.now() - timedelta(seconds=self.lease_seconds + 1))
            lease["spec"] = spec
            await self.client.request("PUT", f"{self.path}/{self.name}", body=lease)
            log.info("released the leader lease", lease=self.name)
        except (KubeApiError, OSError) as exc:
            log.warning("could not release the lease", error=str(exc))

    async def _try(self) -> bool:
        """Take or renew the lease if it is free, expired or ours."""
        now = self.now()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_seconds)),
            "renewTime": _stamp(now),
        }
        try:
            lease = await self.client.request("GET", f"{self.path}/{self.name}")
        except KubeApiError as exc:
            if exc.code != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {**spec, "acquireTime": _stamp(now), "leaseTransitions": 0},
            }
            try:
                await self.client.request("POST", self.path, body=body)
            except KubeApiError as create_error:
                if create_error.code == 409:
                    return False  # another replica created it first
                raise
            self.renewed_at = now
            return True
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        renewed = _parse(current.get("renewTime"))
        duration = float(current.get("leaseDurationSeconds") or self.lease_seconds)
        expired = renewed is None or now - renewed > timedelta(seconds=duration)
        if holder not in (None, "", self.identity) and not expired:
            return False
        if holder != self.identity:
            spec["acquireTime"] = _stamp(now)
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**current, **spec}
        try:
            # PUT with the resourceVersion just read: two replicas never both win.
            await self.client.request("PUT", f"{self.path}/{self.name}", body=lease)
        except KubeApiError as exc:
            if exc.code == 409:
                return False
            raise
        self.renewed_at = now
        return True
