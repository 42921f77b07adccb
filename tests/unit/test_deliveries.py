"""A webhook request's delivery id: the workflow's expression, else a known header."""

from __future__ import annotations

from typing import Any

import pytest

from controller.workflows.deliveries import delivery_id


def event(headers: dict[str, str] | None = None, body: Any = None) -> dict[str, Any]:
    return {"method": "POST", "headers": headers or {}, "query": {}, "body": body}


@pytest.mark.parametrize(
    ("headers", "body", "expression", "expected"),
    [
        ({"x-github-delivery": "g1"}, None, None, "x-github-delivery: g1"),
        ({"webhook-id": "w1", "x-github-delivery": "g1"}, None, None, "webhook-id: w1"),
        ({"idempotency-key": "k"}, None, None, "idempotency-key: k"),
        ({"x-request-id": "r"}, None, None, None),  # per request, not per delivery
        ({}, {"id": "evt_1"}, None, None),  # a body id counts only when the workflow says so
        ({}, {"id": "evt_1"}, "${{ event.body.id }}", "evt_1"),
        ({}, {"id": 7}, "${{ event.body.id }}", "7"),
        ({}, {"ref": {"a": 1}}, "${{ event.body.ref }}", '{"a": 1}'),
        ({}, {"other": 1}, "${{ event.body.id }}", None),  # no id: a run, not a refusal
        ({}, {"id": ""}, "${{ event.body.id }}", None),
        ({"x-github-delivery": "g1"}, {}, "${{ event.body.id }}", None),  # the expression wins
        ({"x-hook": "h"}, None, "${{ event.headers['x-hook'] }}", "h"),
    ],
)
def test_delivery_ids(
    headers: dict[str, str], body: Any, expression: str | None, expected: str | None
) -> None:
    assert delivery_id(event(headers, body), expression) == expected
