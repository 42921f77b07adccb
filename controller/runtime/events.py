"""Kubernetes Events, posted in the background for every room of the controller.

Events are for people; a reconcile must not wait for them, and an Event that cannot be
posted is never worth failing a reconcile for.
"""

from __future__ import annotations

import asyncio

from controller.kube.api import KubeApi
from controller.kube.objects import Body
from controller.logs import get_logger

log = get_logger("blockflow.events")


class EventPoster:
    """Posts Kubernetes Events in the background, off the reconcile's critical path.

    Events are for people; a reconcile must not wait for them. The queue is bounded:
    when the API server cannot keep up, the oldest-first backlog is kept and new events
    are dropped and counted, never blocking a worker.
    """

    def __init__(self, api: KubeApi, *, limit: int = 1000) -> None:
        self.api = api
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[Body, str, str, str]] = asyncio.Queue(maxsize=limit)

    def post(self, body: Body, type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait((body, type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        while True:
            body, type_, reason, message = await self._queue.get()
            try:
                await self.api.post_event(body, type_, reason, message)
            except Exception as exc:  # an Event is never worth stopping the poster for
                log.warning("could not post event", reason=reason, error=str(exc))
