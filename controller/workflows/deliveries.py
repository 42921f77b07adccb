"""Which delivery a webhook request is, so a sender's re-delivery starts no second run.

Webhook senders retry: on a timeout, a 5xx, a lost answer, or by hand ("Redeliver" in
GitHub). Most name the delivery in a header that stays the same on every retry, or carry
an id in the body (a Stripe event's ``id``). The id, when there is one, becomes the run's
dedupe key, as an event's (source, id) does: at most one run per workflow per delivery.

A workflow can say where the id is (``spec.trigger.webhook.deliveryId``, a ``${{ CEL }}``
over ``event``); otherwise the first of :data:`DELIVERY_HEADERS` the request carries is
used. A request with no id starts a run, as before.
"""

from __future__ import annotations

import json
from typing import Any

from controller.workflows.templating import TemplateError, render

#: Headers senders keep the same on every re-delivery, lower case, in the order tried.
DELIVERY_HEADERS = (
    "idempotency-key",  # the IETF draft; many APIs
    "webhook-id",  # Standard Webhooks
    "svix-id",  # Svix
    "x-github-delivery",  # GitHub
    "x-gitea-delivery",  # Gitea, Forgejo
    "x-gitlab-event-uuid",  # GitLab
    "x-shopify-webhook-id",  # Shopify
    "x-atlassian-webhook-identifier",  # Jira, Confluence
    "i-twilio-idempotency-token",  # Twilio
)

FIELD = "spec.trigger.webhook.deliveryId"


def delivery_id(event: dict[str, Any], expression: str | None) -> str | None:
    """The delivery's id, or None (no id: every request starts a run). ``event`` is what a
    webhook run sees as ``event`` (headers in lower case)."""
    if expression is not None:
        try:
            value = render(expression, {"event": event}, FIELD)
        except TemplateError:
            return None  # the payload has no id where the workflow says: not a re-delivery
        if value is None or value == "":
            return None
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    headers = event.get("headers") or {}
    for name in DELIVERY_HEADERS:
        value = headers.get(name)
        if value:
            return f"{name}: {value}"
    return None
