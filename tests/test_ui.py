"""The web page (/ui/) in a real browser: Debian's Chromium driven by Playwright, against the
real controller on loopback and the local control plane.

One controller, two namespaces and one browser serve the whole module; each test signs in
as a different Kubernetes identity (ServiceAccount tokens from the TokenRequest API, with
Roles made here), and checks what that person sees and may do. Screenshots of the main
views go to tests/artifacts/ (``BLOCKFLOW_UPDATE_SCREENSHOT=1`` also refreshes
docs/images/ui.png, the README's).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import (
    Cluster,
    ControllerProcess,
    Kubectl,
    blockflow,
    eventually,
    release_finalizers,
    start_controller,
)
from tests.support.oauth_helpers import example_manifests, serving_provider
from tests.support.threaded_server import ThreadedServer
from tests.support.workflow_helpers import get_run, readyz, step, wait_phase, wait_run, workflow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = os.environ.get("BLOCKFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Waits for the controller (a run resuming, a view refreshing) — far above what they take.
SLOW_MS = 30_000
PROMPT_URL = "https://auth.example.com/authorize?client_id=crm&scope=mail"
SECRET_VALUE = "s3cr3t-value-never-on-the-page"
UPDATE_SCREENSHOT = os.environ.get("BLOCKFLOW_UPDATE_SCREENSHOT") == "1"

#: What a person needs on Blockflow's kinds to see them, and to decide approvals.
READ = {
    "apiGroups": ["blockflow.dev"],
    "resources": ["apps", "blocks", "workflows", "workflowruns"],
    "verbs": ["get", "list", "watch"],
}
DECIDE = {"apiGroups": ["blockflow.dev"], "resources": ["workflowruns"], "verbs": ["update"]}


# -- the stage: two namespaces, a controller, people --------------------------------------------


@dataclass
class Person:
    username: str
    token: str


@dataclass
class Stage:
    base: str
    a: str  # the namespace most tests look at
    b: str  # another team's namespace
    controller: ControllerProcess
    approver: Person  # reads and decides in a and b
    viewer: Person  # reads a, may not decide
    team_a: Person  # reads and decides in a only
    nobody: Person  # a valid token without any Blockflow rights

    def url(self, path: str) -> str:
        return self.base + path

    def ns(self, namespace: str, *rest: str) -> str:
        return self.url(f"/ui/namespaces/{namespace}/" + "/".join(rest))


def _role(name: str, namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def _binding(role: str, namespace: str, account: str, account_ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{role}-{account}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_ns}],
    }


def _person(kubectl: Kubectl, namespace: str, account: str) -> Person:
    """A ServiceAccount and a token for it (TokenRequest API: kubectl 1.20 has no
    `create token`)."""
    kubectl.run("create", "serviceaccount", account, "-n", namespace)
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    answer = kubectl.run(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        "-f",
        "-",
        input=json.dumps(request),
    )
    token = json.loads(answer.stdout)["status"]["token"]
    return Person(f"system:serviceaccount:{namespace}:{account}", token)


def _run(name: str, workflow_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": workflow_name}},
    }


def _onboarding() -> dict[str, Any]:
    return workflow(
        "onboarding",
        {
            "trigger": {"webhook": {}},
            "steps": [
                {"name": "welcome", "uses": {"type": "sleep"}, "with": {"seconds": 1}},
                {"name": "review", "uses": {"type": "approval"}},
                {
                    "name": "announce",
                    "uses": {"type": "emit"},
                    "with": {"type": "Customer.onboarded"},
                },
            ],
        },
    )


def _waiting(kubectl: Kubectl, namespace: str, run: str, approval: str = "review") -> None:
    def waiting() -> bool:
        records = (get_run(kubectl, namespace, run).get("status") or {}).get("steps") or []
        return any(r["name"] == approval and r["state"] == "waiting" for r in records)

    eventually(waiting, timeout=60, what=f"run {run} waiting for its approval {approval}")


def _start_controller(cluster: Cluster, *namespaces: str) -> ControllerProcess:
    controller = start_controller(cluster, *(a for ns in namespaces for a in ("--namespace", ns)))
    eventually(lambda: readyz(controller) == 200, timeout=60, what="the controller ready")
    return controller


@pytest.fixture(scope="module")
def stage(cluster: Cluster, kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[Stage]:
    suffix = secrets.token_hex(3)
    a, b = f"t-ui-crm-{suffix}", f"t-ui-other-{suffix}"
    if UPDATE_SCREENSHOT:  # the README's picture: names a reader can relate to
        a, b = "acme-crm", "acme-payroll"
    for namespace in (a, b):
        kubectl.run("create", "namespace", namespace)
    controller = _start_controller(cluster, a, b)
    try:
        base = f"http://127.0.0.1:{controller.port}"
        approver = _person(kubectl, a, "approver")
        viewer = _person(kubectl, a, "viewer")
        team_a = _person(kubectl, a, "team-a")
        nobody = _person(kubectl, a, "nobody")
        for namespace in (a, b):
            kubectl.apply(
                namespace,
                _role("bf-decide", namespace, [READ, DECIDE]),
                _binding("bf-decide", namespace, "approver", a),
            )
        kubectl.apply(
            a,
            _role("bf-read", a, [READ]),
            _binding("bf-read", a, "viewer", a),
            _binding("bf-decide", a, "team-a", a),
        )

        # Namespace a: the demo integration, an App whose Block asks for a person (a prompt)
        # and has a sensitive signal, a workflow with an approval, and one that fails.
        demo = (REPO / "examples" / "demo").glob("*.yaml")
        for manifest in sorted(demo):
            kubectl.run("apply", "-n", a, "-f", str(manifest))
        kubectl.apply(
            a,
            blockflow("App", "crm", {"handler": {"python": "scripted"}}),
            blockflow(
                "Block",
                "mailbox",
                {
                    "app": "crm",
                    "type": "scripted",
                    "config": {
                        "secret": SECRET_VALUE,
                        "signals": {"address": "sales@crm.example"},
                        "sync": {
                            "newStatus": "in_progress",
                            "customStatusDescription": "Waiting for the mailbox to be connected",
                            "prompts": [
                                {
                                    "key": "connect",
                                    "description": "Connect the sales mailbox",
                                    "redirect": {"url": PROMPT_URL, "method": "GET"},
                                }
                            ],
                        },
                    },
                },
            ),
            _onboarding(),
            workflow(
                "ledger-sync",
                {
                    "trigger": {"webhook": {}},
                    "steps": [
                        {
                            "name": "fetch",
                            "uses": {"type": "http"},
                            "with": {"url": f"{base}/ledger/export"},
                        }
                    ],
                },
            ),
        )
        # Namespace b: another team's things, with names that must never show up for team a.
        kubectl.apply(
            b,
            blockflow("App", "payroll", {"handler": {"python": "demo"}}),
            workflow(
                "salaries",
                {
                    "trigger": {"webhook": {}},
                    "steps": [{"name": "signoff", "uses": {"type": "approval"}}],
                },
            ),
        )
        for namespace, name in ((a, "onboarding"), (a, "ledger-sync"), (b, "salaries")):
            wait_phase(kubectl, namespace, name, "Activated")
        kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("onboard-1", "onboarding")))
        kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("ledger-1", "ledger-sync")))
        kubectl.run("create", "-n", b, "-f", "-", input=json.dumps(_run("salaries-1", "salaries")))
        _waiting(kubectl, a, "onboard-1")
        _waiting(kubectl, b, "salaries-1", "signoff")
        wait_run(kubectl, a, "ledger-1", "failed", timeout=60)
        kubectl.run("wait", "--for=condition=Ready", "--timeout=60s", "block/consumer", "-n", a)
        yield Stage(base, a, b, controller, approver, viewer, team_a, nobody)
    finally:
        controller.stop(timeout=20)
        failed = request.session.testsfailed
        if failed:
            print(f"\n----- controller log (pid {controller.proc.pid}) -----")
            print("\n".join(controller.lines[-200:]))
        for namespace in (a, b):
            release_finalizers(kubectl, namespace)
            kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: hack/install-deps.sh installs Debian's chromium")
    expect.set_options(timeout=SLOW_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (cookies) per test."""
    fresh = browser.new_context(viewport={"width": 1280, "height": 800})
    yield fresh
    fresh.close()


def sign_in(context: BrowserContext, stage: Stage, person: Person, path: str) -> Page:
    """Open ``path`` with ``?token=`` once: the page keeps the token in a cookie and drops it
    from the address."""
    page = context.new_page()
    page.goto(stage.url(path) + f"?token={person.token}")
    expect(page).to_have_url(stage.url(path))
    return page


def until_live(page: Page) -> None:
    """The page's event stream is connected (changes from now on show without reload)."""
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    """Still the document until_live marked: nothing reloaded or navigated."""
    return bool(page.evaluate("window.__sameDocument === true"))


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def raw_get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(65536).decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# -- the tests -----------------------------------------------------------------------------------


def test_no_token_no_data(stage: Stage, context: BrowserContext, kubectl: Kubectl) -> None:
    a = stage.a
    data = ["mailbox", "Bucket assets is ready", "bucketId", "ledger-sync", "onboard-1", stage.b]
    for path in (
        "/ui/",
        f"/ui/namespaces/{a}/apps",
        f"/ui/namespaces/{a}/workflows",
        f"/ui/namespaces/{a}/approvals",
        f"/ui/namespaces/{a}/runs/ledger-1",
        f"/ui/events?ns={a}",
    ):
        for token in (None, "not-a-token", stage.viewer.token[:-4] + "AAAA"):
            status, body = raw_get(stage.url(path), token)
            assert status == 401, (path, token, status)
            assert "Sign in" in body
            assert not [d for d in data if d in body], (path, body)

    # In the browser: the sign-in form, nothing else; a POST without a token changes nothing.
    page = context.new_page()
    response = page.goto(stage.ns(a, "approvals"))
    assert response is not None and response.status == 401
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#view")).not_to_contain_text("onboard-1")
    answer = page.request.post(
        stage.ns(a, "runs", "onboard-1", "approve"),
        form={"step": "review"},
        headers={"Origin": stage.base},
    )
    assert answer.status == 401 and "onboard-1" not in answer.text()
    assert get_run(kubectl, a, "onboard-1")["status"]["state"] == "waiting"


def test_a_person_sees_only_the_namespaces_their_rbac_allows(
    stage: Stage, browser: Browser, context: BrowserContext
) -> None:
    page = sign_in(context, stage, stage.team_a, "/ui/")
    expect(page.locator("#whoami")).to_have_text(stage.team_a.username)
    expect(page.locator(f'[data-namespace="{stage.a}"]')).to_be_visible()
    expect(page.locator(f'[data-namespace="{stage.b}"]')).to_have_count(0)
    assert stage.b not in page.content()

    # Their own namespace shows its things …
    page.goto(stage.ns(stage.a, "apps"))
    expect(page.locator("#app-demo")).to_contain_text("ready")

    # … the other namespace nothing at all, by any URL: 403, and none of its names.
    others = ["payroll", "salaries", "signoff", "Bucket"]
    for path in ("apps", "apps/payroll", "workflows", "approvals", "runs/salaries-1"):
        url = stage.ns(stage.b, path)
        response = page.goto(url)
        assert response is not None and response.status == 403, path
        expect(page.get_by_role("heading", name="Forbidden")).to_be_visible()
        shown = page.locator("#view").inner_text()
        assert not [o for o in others if o in shown and o not in url], path
    # A namespace that does not exist answers the same: no existence oracle.
    response = page.goto(stage.ns("no-such-namespace", "apps"))
    assert response is not None and response.status == 403
    events = page.request.get(stage.url(f"/ui/events?ns={stage.b}"))
    assert events.status == 403
    forged = page.request.post(
        stage.ns(stage.b, "runs", "salaries-1", "approve"),
        form={"step": "signoff", "csrf": _csrf(page)},
        headers={"Origin": stage.base},
    )
    assert forged.status == 403 and "salaries" not in forged.text().replace("salaries-1", "")

    # A valid token without any rights sees an empty list, not an error.
    elsewhere = browser.new_context()
    nobody = sign_in(elsewhere, stage, stage.nobody, "/ui/")
    expect(nobody.locator("#view")).to_contain_text("no namespace here")
    expect(nobody.locator("[data-namespace]")).to_have_count(0)
    elsewhere.close()


def _csrf(page: Page) -> str:
    """The session's CSRF token, from the sign-out form every page carries."""
    value = page.locator('header form input[name="csrf"]').get_attribute("value")
    assert value
    return value


def test_without_update_rights_the_approval_shows_no_button_and_the_action_is_403(
    stage: Stage, context: BrowserContext, kubectl: Kubectl
) -> None:
    # Signed in through the form this time: the cookie is HttpOnly and SameSite=Lax.
    page = context.new_page()
    page.goto(stage.url("/ui/login"))
    page.get_by_label("Token").fill(stage.viewer.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Namespaces")).to_be_visible()
    (cookie,) = [c for c in context.cookies() if c["name"] == "blockflow_ui"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert "blockflow_ui" not in page.evaluate("document.cookie")

    page.goto(stage.ns(stage.a, "approvals"))
    row = page.locator("#approval-onboard-1-review")
    expect(row).to_contain_text("onboarding")
    expect(row.locator(".no-permission")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    page.goto(stage.ns(stage.a, "runs", "onboard-1"))
    expect(page.locator("#step-review")).to_contain_text("waiting")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)

    # The action URL itself, with a valid CSRF token and this site's Origin: 403.
    answer = page.request.post(
        stage.ns(stage.a, "runs", "onboard-1", "approve"),
        form={"step": "review", "csrf": _csrf(page)},
        headers={"Origin": stage.base},
    )
    assert answer.status == 403
    assert "update workflowrun onboard-1" in answer.text()
    assert get_run(kubectl, stage.a, "onboard-1")["status"]["state"] == "waiting"


def test_an_approval_on_the_page_resumes_the_run_and_the_page_follows_live(
    stage: Stage, context: BrowserContext, kubectl: Kubectl
) -> None:
    a = stage.a
    approvals = sign_in(context, stage, stage.approver, f"/ui/namespaces/{a}/approvals")
    until_live(approvals)

    # A run that starts waiting while the page is open appears on it without a reload.
    kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("onboard-2", "onboarding")))
    row = approvals.locator("#approval-onboard-2-review")
    expect(row.get_by_role("button", name="Approve")).to_be_visible()
    expect(approvals.locator("#approvals-count")).to_have_text("2")
    assert same_document(approvals)
    screenshot(approvals, "ui-approvals")

    # Forged decisions change nothing: no CSRF token, or another site's Origin.
    url = stage.ns(a, "runs", "onboard-2", "approve")
    csrf = _csrf(approvals)
    forged: list[tuple[dict[str, str | float | bool], str]] = [
        ({"step": "review"}, stage.base),
        ({"step": "review", "csrf": "0" * 43}, stage.base),
        ({"step": "review", "csrf": csrf}, "http://evil.example"),
    ]
    for form, origin in forged:
        answer = approvals.request.post(url, form=form, headers={"Origin": origin})
        assert answer.status == 403, (form, origin)
    assert get_run(kubectl, a, "onboard-2")["status"]["state"] == "waiting"

    # The run's own page, open in a second tab, follows the decision live.
    timeline = context.new_page()
    timeline.goto(stage.ns(a, "runs", "onboard-2"))
    until_live(timeline)
    expect(timeline.locator("#run-state")).to_have_text("waiting")
    expect(timeline.locator("#step-announce")).to_contain_text("pending")

    row.get_by_role("button", name="Approve").click()
    expect(approvals.locator("#flash")).to_contain_text("Approved: step review of run onboard-2")
    expect(row).to_have_count(0)
    expect(timeline.locator("#run-state")).to_have_text("completed")
    expect(timeline.locator("#step-review .decided-by")).to_have_text(stage.approver.username)
    expect(timeline.locator("#step-announce")).to_contain_text("completed")
    assert same_document(approvals) and same_document(timeline)
    screenshot(timeline, "ui-run")

    # The run records who approved, and when.
    done = wait_run(kubectl, a, "onboard-2", "completed")
    outcome = step(done, "review")["outcome"]
    assert outcome["id"] == "approved"
    assert outcome["data"]["by"] == stage.approver.username
    at = datetime.fromisoformat(outcome["data"]["at"])
    assert timedelta(0) <= datetime.now(UTC) - at < timedelta(minutes=2)


def test_without_javascript_links_and_forms_still_work(
    stage: Stage, browser: Browser, kubectl: Kubectl
) -> None:
    kubectl.run(
        "create", "-n", stage.a, "-f", "-", input=json.dumps(_run("onboard-3", "onboarding"))
    )
    _waiting(kubectl, stage.a, "onboard-3")
    plain = browser.new_context(java_script_enabled=False)
    try:
        page = sign_in(plain, stage, stage.approver, "/ui/")
        page.get_by_role("link", name=stage.a).click()
        page.get_by_role("link", name="Approvals").click()
        expect(page.locator("#live")).to_have_text("connecting…")  # no script, no stream
        page.locator("#approval-onboard-3-review").get_by_role("button", name="Reject").click()
        # A plain form POST, then a redirect back to the list, without the decided run.
        expect(page).to_have_url(stage.ns(stage.a, "approvals"))
        expect(page.locator("#approval-onboard-3-review")).to_have_count(0)
        page.goto(stage.ns(stage.a, "runs", "onboard-3"))
        review = page.locator("#step-review")
        expect(review.locator('.chip[data-status="rejected"]')).to_be_visible()
        expect(review.locator(".decided-by")).to_have_text(stage.approver.username)

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert not [c for c in plain.cookies() if c["name"] == "blockflow_ui"]
        response = page.goto(stage.ns(stage.a, "apps"))
        assert response is not None and response.status == 401
    finally:
        plain.close()
    outcome = step(get_run(kubectl, stage.a, "onboard-3"), "review")["outcome"]
    assert (outcome["id"], outcome["data"]["by"]) == ("rejected", stage.approver.username)


# -- the OAuth prompt flow (the oauth-example App, the fake provider) ---------------------------


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[Any, ThreadedServer]]:
    with serving_provider() as served:
        yield served


def test_oauth_a_person_clicks_the_prompt_authorizes_and_the_app_turns_ready_live(
    stage: Stage,
    context: BrowserContext,
    kubectl: Kubectl,
    provider: tuple[Any, ThreadedServer],
) -> None:
    """The App asks for consent with a prompt + timer; the person clicks the prompt, allows at
    the provider, which redirects to the App's HTTP endpoint; the handler exchanges the code,
    keeps the token in KV state, deletes the prompt and asks for a sync: Ready, live."""
    fake, server = provider
    b = stage.b
    kubectl.apply(b, *example_manifests(server.url, timeout=300))
    page = sign_in(context, stage, stage.approver, f"/ui/namespaces/{b}/apps/example-oauth")
    until_live(page)
    card = page.locator("#app-example-oauth")
    prompt = card.locator('a.prompt[data-prompt="authorize"]')
    expect(prompt).to_contain_text("Authorize Blockflow to use your account")
    expect(card).to_have_attribute("data-status", "in_progress")
    expect(card.locator(".desc")).to_have_text("Waiting for authorization: open the App's prompt")
    screenshot(page, "ui-oauth-prompt")

    # The prompt opens the provider in a new tab; Allow sends it to the App's endpoint, which
    # sends the person back to the App's page, signed in (the cookie is SameSite=Lax).
    with context.expect_page() as opened:
        prompt.click()
    consent = opened.value
    expect(consent.get_by_role("heading", name="Example provider")).to_be_visible()
    consent.get_by_role("button", name="Allow").click()
    expect(consent).to_have_url(stage.ns(b, "apps", "example-oauth"))
    kubectl.run("wait", "--for=condition=Ready", "app/example-oauth", "-n", b, "--timeout=30s")
    expect(consent.locator("#app-example-oauth .desc")).to_have_text("Authorized as ada")

    # The page the prompt was clicked on follows without a reload.
    expect(card).to_have_attribute("data-status", "ready")
    expect(card.locator(".desc")).to_have_text("Authorized as ada")
    expect(card.locator("a.prompt")).to_have_count(0)
    expect(card).to_contain_text("account")
    assert same_document(page)
    assert fake.exchanged == 1
    (token,) = fake.tokens
    assert token not in page.content() and token not in consent.content()
    screenshot(page, "ui-oauth-ready")


def test_oauth_an_unanswered_prompt_expires_and_the_page_shows_the_app_failed(
    stage: Stage,
    context: BrowserContext,
    kubectl: Kubectl,
    provider: tuple[Any, ThreadedServer],
) -> None:
    _, server = provider
    b = stage.b
    page = sign_in(context, stage, stage.approver, f"/ui/namespaces/{b}/apps")
    until_live(page)
    kubectl.apply(b, *example_manifests(server.url, timeout=4, name="oauth-expiring"))
    card = page.locator("#app-oauth-expiring")
    expect(card.locator('a.prompt[data-prompt="authorize"]')).to_be_visible()
    # Nobody clicks: the timer removes the prompt and the App fails, saying why.
    expect(card).to_have_attribute("data-status", "failed")
    expect(card.locator("a.prompt")).to_have_count(0)
    expect(card.locator(".desc")).to_have_text(
        "Authorization timed out: nobody completed the prompt within 4s. "
        f"`blockflow sync app/oauth-expiring -n {b}` asks again."
    )
    assert same_document(page)
    screenshot(page, "ui-oauth-expired")


def test_the_main_views_show_status_signals_prompts_counters_and_timelines(
    stage: Stage, context: BrowserContext
) -> None:
    a = stage.a
    page = sign_in(context, stage, stage.approver, "/ui/")
    expect(page.locator(f'[data-namespace="{stage.a}"]')).to_contain_text("2 apps")
    expect(page.locator(f'[data-namespace="{stage.b}"]')).to_be_visible()
    screenshot(page, "ui-namespaces")

    # Apps → Blocks: lifecycle status, description, non-sensitive signals, prompts.
    page.get_by_role("link", name=stage.a).click()
    expect(page).to_have_url(stage.ns(a, "apps"))
    expect(page.locator("#block-assets")).to_contain_text("Bucket assets is ready")
    expect(page.locator('#block-assets [data-signal="bucketId"]')).to_contain_text("bkt-")
    mailbox = page.locator("#block-mailbox")
    expect(mailbox.locator(".chip")).to_have_text("in progress")
    expect(mailbox).to_contain_text("Waiting for the mailbox to be connected")
    expect(mailbox.locator('[data-signal="address"]')).to_have_text("address sales@crm.example")
    expect(mailbox).to_contain_text("1 sensitive signal (not shown)")
    prompt = mailbox.get_by_role("link", name="Connect the sales mailbox")
    expect(prompt).to_have_attribute("href", PROMPT_URL)
    expect(prompt).to_have_attribute("target", "_blank")
    assert SECRET_VALUE not in page.content()
    screenshot(page, "ui-apps")
    if UPDATE_SCREENSHOT:
        (REPO / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACTS / "ui-apps.png", REPO / "docs" / "images" / "ui.png")

    # An App's own page (what its handler gets as installationUrl).
    page.goto(stage.ns(a, "apps", "crm"))
    expect(page.get_by_role("heading", name="App crm")).to_be_visible()
    expect(page.locator("#block-mailbox")).to_be_visible()
    expect(page.locator("#block-assets")).to_have_count(0)

    # Workflows: phase, version, counters, success rate; recent runs.
    page.get_by_role("link", name="Workflows").click()
    ledger = page.locator("#workflow-ledger-sync")
    expect(ledger.locator(".chip")).to_have_text("Activated")
    expect(ledger).to_contain_text("v1")
    expect(ledger.locator(".rate")).to_have_text("0%")
    expect(page.locator("#run-onboard-1")).to_contain_text("waiting on review")
    screenshot(page, "ui-workflows")

    # A failed run's timeline: the step, its attempts and its error.
    page.locator("#run-ledger-1").get_by_role("link", name="ledger-1").click()
    expect(page.locator("#run-state")).to_have_text("failed")
    fetch = page.locator("#step-fetch")
    expect(fetch).to_contain_text("1 attempt")
    expect(fetch.locator(".step-error")).to_contain_text(
        re.compile(r"GET http://127\.0\.0\.1:\d+/ledger/export answered 404")
    )
    screenshot(page, "ui-run-failed")
