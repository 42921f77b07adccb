"""The OAuth prompt flow over plain HTTP (the browser version is in tests/test_ui.py): the
`oauth-example` App, the fake provider (examples/oauth/provider.py) and the real controller.

The App shows a prompt with a timer; following the prompt's redirect through the provider
lands on the App's HTTP endpoint, whose handler exchanges the code, keeps the token in KV
state, deletes the prompt and asks for a sync: the App becomes Ready. Without anyone
following it, the timer removes the prompt and the App fails, saying why. Timers live in
status, so they fire after a restart too.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import ControllerProcess, Kubectl, eventually
from tests.support.oauth_helpers import CLIENT_SECRET, example_manifests, serving_provider
from tests.support.threaded_server import ThreadedServer
from tests.support.workflow_helpers import readyz


@pytest.fixture
def provider() -> Iterator[tuple[Any, ThreadedServer]]:
    with serving_provider() as served:
        yield served


def call(method: str, url: str, data: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, Location, body) without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return response.status, response.headers.get("Location", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", ""), exc.read().decode()


def app_status(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    got: dict[str, Any] = kubectl.json("get", "app", "example-oauth", "-n", namespace)
    return dict(got.get("status") or {})


def wait_prompt(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    status = eventually(
        lambda: (s := app_status(kubectl, namespace)).get("prompts") and s,
        what="the prompt",
    )
    (prompt,) = status["prompts"]
    return dict(prompt)


def test_following_the_prompt_through_the_provider_makes_the_app_ready(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    provider: tuple[Any, ThreadedServer],
) -> None:
    fake, server = provider
    kubectl.apply(namespace, *example_manifests(server.url, timeout=300))
    controller = run_controller("--namespace", namespace)
    eventually(lambda: readyz(controller) == 200, what="the controller ready")
    prompt = wait_prompt(kubectl, namespace)
    assert prompt["key"] == "authorize"
    assert prompt["description"].startswith("Authorize Blockflow")
    status = app_status(kubectl, namespace)
    assert status["lifecycle"]["status"] == "in_progress"
    (timer,) = status["timers"]
    assert timer["promptKey"] == "authorize"

    # The person follows the prompt: the provider's consent page, then Allow.
    consent_url = prompt["redirect"]["url"]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(consent_url).query))
    app_endpoint = f"http://127.0.0.1:{controller.port}/apps/{namespace}/example-oauth/http"
    assert query["redirect_uri"] == f"{app_endpoint}/callback"
    assert call("GET", consent_url)[0] == 200

    # A forged callback (wrong state) changes nothing.
    forged, _, text = call("GET", f"{app_endpoint}/callback?code=x&state=forged")
    assert forged == 400 and "unknown or expired" in text
    assert app_status(kubectl, namespace)["prompts"] == [prompt]

    allowed, location, _ = call("POST", f"{server.url}/authorize", dict(query))
    assert allowed == 302 and location.startswith(f"{app_endpoint}/callback?code=")
    back, page, _ = call("GET", location)
    assert back == 302 and page.endswith(f"/ui/namespaces/{namespace}/apps/example-oauth")
    # The reply's effects are written before the person is sent back: the prompt is gone.
    assert app_status(kubectl, namespace)["prompts"] == []
    kubectl.run(
        "wait", "--for=condition=Ready", "app/example-oauth", "-n", namespace, "--timeout=30s"
    )
    status = app_status(kubectl, namespace)
    assert status["lifecycle"]["description"] == "Authorized as ada"
    assert status["signals"] == {"account": "ada"}
    assert fake.exchanged == 1

    # The token is in the App's state Secret, never in status or events.
    secret = kubectl.json("get", "secret", status["stateSecretName"], "-n", namespace)
    state = json.loads(base64.b64decode(secret["data"]["state.json"]))
    (token,) = fake.tokens
    assert state["token"] == token
    events = kubectl.run("get", "events", "-n", namespace, "-o", "json").stdout
    assert token not in json.dumps(status) and token not in events and CLIENT_SECRET not in events
    assert token not in "\n".join(controller.lines)


def test_an_unanswered_prompt_expires_even_across_a_restart_and_the_app_says_why(
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    provider: tuple[Any, ThreadedServer],
) -> None:
    _, server = provider
    kubectl.apply(namespace, *example_manifests(server.url, timeout=4))
    first = run_controller("--namespace", namespace)
    wait_prompt(kubectl, namespace)
    first.stop(timeout=20)  # the timer is in status; the next controller fires it

    second = run_controller("--namespace", namespace)
    eventually(lambda: readyz(second) == 200, what="the controller ready")
    status = eventually(
        lambda: (s := app_status(kubectl, namespace))["lifecycle"]["status"] == "failed" and s,
        timeout=30,
        what="the App failed",
    )
    assert status["prompts"] == [] and status["timers"] == []
    assert status["lifecycle"]["description"] == (
        "Authorization timed out: nobody completed the prompt within 4s. "
        f"`blockflow sync app/example-oauth -n {namespace}` asks again."
    )
    ready = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "False"
