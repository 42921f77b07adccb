"""Fan-out: a step run once per item of a list (`forEach`), `maxConcurrency` at a time.

The run's status stays small whatever the number of items. The step's own record keeps
the items (`items`), one character per item saying how far it is (`progress`: `.` to
do, `c` completed, `f` failed) and, once an item completes, its outcome data (`results`).
An iteration in progress has a record of its own, `<step>[<index>]`, with its own
attempts, idempotency key, retry backoff and timeout, like any step; when it completes,
its data moves into `results` and its record goes. So at most `maxConcurrency` iteration
records exist at once, and the step's outcome, once every item completed, is `completed`
with the list of results, in the items' order.

An iteration that fails for good fails the step ("iteration 17 failed: …"; the other
iterations in progress are cancelled), and `errorHandling` decides what follows. Limits
(the status of a run is one Kubernetes object, at most 1.5 MiB in etcd): at most
:data:`MAX_ITEMS` items, at most :data:`MAX_ITEMS_BYTES` of items as JSON, at most
:data:`MAX_ITEM_RESULT_BYTES` of data per iteration and :data:`MAX_RESULTS_BYTES` in all.
Past a limit the step fails saying which and what to do.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from controller.api.workflowrun import StepOutcome, StepRecord, StepState, WorkflowRunStatus

MAX_ITEMS = 2000
MAX_ITEMS_BYTES = 128 * 1024
MAX_ITEM_RESULT_BYTES = 16 * 1024
MAX_RESULTS_BYTES = 256 * 1024

TODO, DONE, FAILED = ".", "c", "f"
_ITEM = re.compile(r"^(?P<step>.+)\[(?P<index>\d+)\]$")


def item_name(step: str, index: int) -> str:
    return f"{step}[{index}]"


def parse_item(name: str) -> tuple[str, int] | None:
    """(step, index) of an iteration's record name; None for any other record."""
    found = _ITEM.match(name)
    return None if found is None else (found["step"], int(found["index"]))


def is_expanded(record: StepRecord | None) -> bool:
    return record is not None and record.progress is not None


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def items_error(step: str, items: Any) -> str | None:
    """Why a forEach value cannot be fanned out (None: it can)."""
    if not isinstance(items, list):
        kind = type(items).__name__ if items is not None else "null"
        return f"step {step}: forEach must be a list, got {kind}"
    if any(item is None for item in items):
        return f"step {step}: forEach has null items; leave them out (e.g. .filter(x, x != null))"
    if len(items) > MAX_ITEMS:
        return (
            f"step {step}: forEach has {len(items)} items, over the limit of {MAX_ITEMS}; "
            "split the list (e.g. a workflow step per batch)"
        )
    size = _size(items)
    if size > MAX_ITEMS_BYTES:
        return (
            f"step {step}: forEach's items are {size} bytes as JSON, over the limit of "
            f"{MAX_ITEMS_BYTES}; fan out over ids and look the rest up in the step"
        )
    return None


def expand(
    status: WorkflowRunStatus, step: str, items: list[Any], now: datetime, started: StepRecord
) -> WorkflowRunStatus:
    """The step's record, fanned out over its items (no iteration started yet)."""
    record = started.model_copy(
        update={
            "state": StepState.RUNNING if items else StepState.COMPLETED,
            "items": items,
            "progress": TODO * len(items),
            "results": {},
            "started_at": started.started_at or now,
            "finished_at": None if items else now,
            "outcome": None if items else StepOutcome(id="completed", data=[]),
        }
    )
    if not items:
        record = record.model_copy(update={"results": None})
    others = [r for r in status.steps if r.name != step]
    return status.model_copy(update={"steps": [*others, record]})


def due_items(
    parent: StepRecord, max_concurrency: int, records: dict[str, StepRecord]
) -> tuple[list[int], int]:
    """Items to start now (in order, up to the concurrency limit), and how many iterations
    are in progress (records of their own, running or waiting)."""
    assert parent.progress is not None
    active = [
        i
        for i, mark in enumerate(parent.progress)
        if mark == TODO and item_name(parent.name, i) in records
    ]
    room = max(0, max_concurrency - len(active))
    start: list[int] = []
    if room:
        for i, mark in enumerate(parent.progress):
            if mark == TODO and item_name(parent.name, i) not in records:
                start.append(i)
                if len(start) == room:
                    break
    return start, len(active)


def collect(status: WorkflowRunStatus, item: str, now: datetime) -> tuple[WorkflowRunStatus, str]:
    """A completed iteration's data moved into its step's results, its record dropped; the
    step completes with its results once every item has. Returns the status and, when the
    data breaks a limit, why the step fails ('' otherwise)."""
    step, index = parse_item(item) or ("", 0)
    record = next(r for r in status.steps if r.name == item)
    parent = next(r for r in status.steps if r.name == step)
    assert parent.progress is not None and parent.results is not None
    data = record.outcome.data if record.outcome else None
    size = _size(data)
    if size > MAX_ITEM_RESULT_BYTES:
        return status, (
            f"iteration {index} of step {step} returned {size} bytes, over the limit of "
            f"{MAX_ITEM_RESULT_BYTES} per iteration; return less (e.g. a reference)"
        )
    results = {**parent.results, str(index): data}
    total = _size(results)
    if total > MAX_RESULTS_BYTES:
        return status, (
            f"the results of step {step} reached {total} bytes, over the limit of "
            f"{MAX_RESULTS_BYTES}; return less per iteration"
        )
    progress = parent.progress[:index] + DONE + parent.progress[index + 1 :]
    update: dict[str, Any] = {"progress": progress, "results": results}
    if TODO not in progress and FAILED not in progress:
        ordered = [results.get(str(i)) for i in range(len(progress))]
        update |= {
            "state": StepState.COMPLETED,
            "outcome": StepOutcome(id="completed", data=ordered),
            "results": None,
            "finished_at": now,
        }
    parent = parent.model_copy(update=update)
    steps = [parent if r.name == step else r for r in status.steps if r.name != item]
    return status.model_copy(update={"steps": steps}), ""


def fail_item(
    status: WorkflowRunStatus, item: str, message: str, now: datetime
) -> tuple[WorkflowRunStatus, StepRecord, str]:
    """An iteration failed for good: marked in its step's progress (its record kept, to
    show why), the step's other iterations in progress cancelled. Returns the status, the
    step's record and the step's failure message."""
    step, index = parse_item(item) or ("", 0)
    parent = next(r for r in status.steps if r.name == step)
    assert parent.progress is not None
    progress = parent.progress[:index] + FAILED + parent.progress[index + 1 :]
    parent = parent.model_copy(update={"progress": progress})
    steps: list[StepRecord] = []
    for r in status.steps:
        sibling = parse_item(r.name)
        if r.name == step:
            steps.append(parent)
        elif sibling and sibling[0] == step and r.name != item and r.state not in _ENDED:
            reason = f"iteration {index} failed"
            steps.append(
                r.model_copy(
                    update={
                        "state": StepState.CANCELLED,
                        "finished_at": now,
                        "wake_at": None,
                        "reason": reason,
                    }
                )
            )
        else:
            steps.append(r)
    why = f"iteration {index} of step {step} failed: {message}"
    return status.model_copy(update={"steps": steps}), parent, why


_ENDED = (StepState.COMPLETED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED)


def item_value(status: WorkflowRunStatus, item: str) -> tuple[bool, Any, int]:
    """(is an iteration, its item, its index) for CEL's `item` and `index`."""
    parsed = parse_item(item)
    if parsed is None:
        return False, None, 0
    step, index = parsed
    parent = next((r for r in status.steps if r.name == step), None)
    items = parent.items if parent is not None and parent.items is not None else []
    return True, items[index] if index < len(items) else None, index
