"""`blockflow run list`'s STEPS column: finished steps of all the run's steps."""

from __future__ import annotations

from typing import Any

import pytest

from controller.cli.runs import _steps_summary


def run(records: list[str], planned: int | None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "steps": [{"name": f"s{i}", "state": s} for i, s in enumerate(records)]
    }
    if planned is not None:
        status["workflowSpec"] = {"steps": [{"name": f"s{i}"} for i in range(planned)]}
    return {"status": status}


@pytest.mark.parametrize(
    ("records", "planned", "shown"),
    [
        (["completed", "running"], 3, "1/3"),  # was 1/2: only the steps begun were counted
        ([], 3, "0/3"),
        (["completed", "skipped", "failed"], 3, "3/3"),
        (["failed", "completed"], 1, "2/2"),  # a fallback step ran after the one step
        (["completed"], None, "1/1"),  # no snapshot yet
    ],
)
def test_steps_summary(records: list[str], planned: int | None, shown: str) -> None:
    assert _steps_summary(run(records, planned)) == shown
