"""Lifecycle transitions, published to whoever subscribes.

The lifecycle runtime writes the status of Apps, Blocks and Workflows. Other rooms care
about what changed (the workflow engine turns `Block.ready` into an event other
workflows trigger on, and re-indexes a Workflow whose activation changed), but the
lifecycle runtime must not know them: after each status write it publishes the
object's body before and after, and subscribers do the rest. A subscriber must not
block and must not raise (one that fails is logged and the others still run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.kube.objects import Body, Key
from controller.logs import get_logger

log = get_logger("blockflow.transitions")


@dataclass(frozen=True, slots=True)
class Transition:
    key: Key
    before: Body
    after: Body


Subscriber = Callable[[Transition], None]


class Transitions:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, key: Key, before: Body, after: Body) -> None:
        transition = Transition(key, before, after)
        for subscriber in self._subscribers:
            try:
                subscriber(transition)
            except Exception as exc:  # one subscriber's bug must not stop a reconcile
                log.error("transition subscriber failed", entity=str(key), error=str(exc))
