"""URLs the controller hands out for an App (one place, so the handler input, the HTTP routes
and the web page agree)."""

from __future__ import annotations

from urllib.parse import quote


def app_http_url(base: str, namespace: str, app: str) -> str:
    """The App's HTTP endpoint: ``<base>/apps/<ns>/<app>/http`` (+ ``/<path>``)."""
    return f"{base.rstrip('/')}/apps/{quote(namespace)}/{quote(app)}/http"


def app_page_url(base: str, namespace: str, app: str) -> str:
    """The App's page on the controller's web page (its prompts show there)."""
    return f"{base.rstrip('/')}/ui/namespaces/{quote(namespace)}/apps/{quote(app)}"
