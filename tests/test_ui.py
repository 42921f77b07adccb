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
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.conftest import Kubectl
from tests.support.oauth_helpers import example_manifests, serving_provider
from tests.support.threaded_server import ThreadedServer
from tests.support.ui_stage import (
    ARTIFACTS,
    PROMPT_URL,
    REPO,
    SECRET_VALUE,
    UPDATE_SCREENSHOT,
    Stage,
    _run,
    _waiting,
    browser,
    context,
    raw_get,
    same_document,
    screenshot,
    sign_in,
    stage,
    until_live,
)
from tests.support.ui_stage import csrf_of as _csrf
from tests.support.workflow_helpers import get_run, step, wait_run

__all__ = ["browser", "context", "stage"]  # fixtures


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
    paths = ("apps", "apps/payroll", "workflows", "workflows/salaries", "approvals", "runs")
    for path in (*paths, "runs/salaries-1"):
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
