"""The web page's workflow pages, run lists and actions in a real browser (Chromium, the real
controller, the local control plane): a workflow's own page, a refused activation, Trigger /
Pause / Activate, Stop, Sync, a run's inputs, outputs, Events and related runs, the run list
paged, filtered and searched over hundreds of runs, and the page at 390 px and in the dark.
Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import Kubectl, blockflow, eventually
from tests.support.ui_stage import (
    REFUSAL,
    Stage,
    _run,
    _waiting,
    browser,
    context,
    csrf_of,
    same_document,
    screenshot,
    sign_in,
    stage,
    until_live,
)
from tests.support.workflow_helpers import get_run, get_workflow, wait_phase, wait_run

__all__ = ["browser", "context", "stage"]  # fixtures

#: Runs the paging test creates (each fails at once: its workflow does not exist).
MANY = 300


def _names(page: Page) -> list[str]:
    return [n.strip() for n in page.locator("table.runs a.run-name").all_inner_texts()]


def test_a_workflow_has_its_own_page_and_every_workflow_name_links_to_it(
    stage: Stage, context: BrowserContext
) -> None:
    a = stage.a
    page = sign_in(context, stage, stage.approver, f"/ui/namespaces/{a}/workflows")
    # A refused activation is red with its reason, not a grey Draft.
    broken = page.locator("#workflow-broken")
    expect(broken.locator('.chip[data-status="failed"]')).to_have_text("activation failed")
    expect(broken.locator(".refusal")).to_contain_text(REFUSAL)
    page.locator("#workflow-onboarding").get_by_role("link", name="onboarding").click()
    expect(page).to_have_url(stage.ns(a, "workflows", "onboarding"))
    expect(page.get_by_role("heading", name="Workflow onboarding")).to_be_visible()
    expect(page.locator("#workflow-trigger")).to_have_text("webhook")
    expect(page.locator("#workflow-wanted")).to_have_text("Active")
    expect(page.locator("#workflow-phase")).to_have_text(re.compile("Activated|Triggered"))
    expect(page.locator("#workflow-version")).to_have_text("v1")
    expect(page.locator("#spec-step-review")).to_contain_text("approval")
    page.locator("#spec-step-welcome summary").click()
    expect(page.locator("#spec-step-welcome pre")).to_contain_text('"seconds": 1')
    page.get_by_text("YAML", exact=True).click()
    expect(page.locator("#workflow-yaml")).to_contain_text("kind: Workflow")
    expect(page.locator("#workflow-yaml")).not_to_contain_text("managedFields")
    expect(page.locator("#run-onboard-1")).to_contain_text("waiting on review")
    screenshot(page, "ui-workflow")

    # The run's page links back to it, and the refused one says why, prominently.
    page.goto(stage.ns(a, "runs", "onboard-1"))
    page.locator("#run-workflow").click()
    expect(page).to_have_url(stage.ns(a, "workflows", "onboarding"))
    page.goto(stage.ns(a, "workflows", "broken"))
    expect(page.locator("#activation-refused")).to_contain_text(REFUSAL)
    expect(page.locator('[data-condition="Stalled"]')).to_contain_text("True")
    screenshot(page, "ui-workflow-refused")


def test_trigger_approve_and_follow_the_event_to_the_run_it_started(
    stage: Stage, context: BrowserContext, kubectl: Kubectl
) -> None:
    a = stage.a
    page = sign_in(context, stage, stage.approver, f"/ui/namespaces/{a}/workflows/onboarding")
    # Input that is not a JSON object is refused on the form, keeping what was typed.
    page.locator("#trigger-input").fill("[1, 2")
    page.get_by_role("button", name="Trigger a run").click()
    expect(page.locator("#trigger-error")).to_contain_text("not valid JSON")
    expect(page.locator("#trigger-input")).to_have_value("[1, 2")

    page.locator("#trigger-input").fill(json.dumps({"company": "ACME", "password": "pw-1"}))
    page.get_by_role("button", name="Trigger a run").click()
    expect(page).to_have_url(re.compile("/runs/onboarding-"))
    run = page.url.rsplit("/", 1)[1]
    body = get_run(kubectl, a, run)
    assert body["spec"]["input"] == {"company": "ACME", "password": "pw-1"}
    assert body["metadata"]["annotations"]["blockflow.dev/triggered-by"] == stage.approver.username
    expect(page.locator("#triggered-by")).to_contain_text(stage.approver.username)
    until_live(page)

    # The approver reads the question next to the buttons; inputs show, sensitive ones do not.
    review = page.locator("#step-review")
    expect(review.locator(".approval-message")).to_have_text(f"Onboard the customer of run {run}?")
    page.locator(".run-input summary").click()
    expect(page.locator(".run-input pre")).to_contain_text('"company": "ACME"')
    assert "pw-1" not in page.content()
    screenshot(page, "ui-run-approval")
    review.get_by_role("button", name="Approve").click()
    expect(page.locator("#run-state")).to_have_text("completed")

    # The event it emitted started a run of `welcome`: linked both ways.
    related = page.locator("#related-runs li")
    expect(related).to_have_count(1)
    expect(related).to_contain_text("welcome")
    related.get_by_role("link").first.click()
    expect(page.locator("#origin-run")).to_have_text(run)
    expect(page.locator("#run-state")).to_have_text("completed")
    greet = page.locator("#step-greet")
    greet.locator(".inputs summary").click()
    expect(greet.locator(".inputs pre")).to_contain_text("Customer.welcomed")
    expect(greet.locator(".inputs pre")).to_contain_text("hidden")  # api_key
    greet.locator(".outputs summary").click()
    expect(greet.locator(".outputs pre")).to_contain_text('"type": "Customer.welcomed"')
    assert "k-123" not in page.content()
    screenshot(page, "ui-run-related")
    page.locator("#origin-run").click()
    expect(page).to_have_url(stage.ns(a, "runs", run))


def test_a_failed_run_shows_its_events_and_a_run_refused_before_starting_its_reason(
    stage: Stage, context: BrowserContext, kubectl: Kubectl
) -> None:
    a = stage.a
    page = sign_in(context, stage, stage.approver, f"/ui/namespaces/{a}/runs/ledger-1")
    events = page.locator("#run-events")
    expect(events).to_contain_text("Warning")
    expect(events).to_contain_text("404")
    kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("broken-1", "broken")))
    wait_run(kubectl, a, "broken-1", "failed")
    page.goto(stage.ns(a, "runs", "broken-1"))
    expect(page.locator("#run-error")).to_contain_text("Workflow broken is not active")
    page.goto(stage.ns(a, "runs") + "?state=failed&workflow=broken")
    expect(page.locator("#run-broken-1 .run-reason")).to_contain_text("is not active")
    screenshot(page, "ui-runs-failed")


def test_stop_pause_activate_and_sync_need_the_rights_and_do_what_the_cli_does(
    stage: Stage, browser: Browser, context: BrowserContext, kubectl: Kubectl
) -> None:
    a = stage.a
    kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("onboard-stop", "onboarding")))
    _waiting(kubectl, a, "onboard-stop")

    # A viewer sees no buttons, and the action URLs answer 403.
    viewing = browser.new_context()
    viewer = sign_in(viewing, stage, stage.viewer, f"/ui/namespaces/{a}/runs/onboard-stop")
    expect(viewer.locator("#step-review")).to_contain_text("waiting")
    expect(viewer.locator("#stop-run")).to_have_count(0)
    for path, form in (
        (("runs", "onboard-stop", "stop"), {}),
        (("runs", "onboard-stop", "delete"), {"confirm": "yes"}),
        (("workflows", "ledger-sync", "pause"), {}),
        (("workflows", "onboarding", "trigger"), {"input": "{}"}),
        (("apps", "crm", "sync"), {}),
    ):
        answer = viewer.request.post(
            stage.ns(a, *path),
            form={"csrf": csrf_of(viewer), **form},
            headers={"Origin": stage.base},
        )
        assert answer.status == 403, path
    viewer.goto(stage.ns(a, "workflows", "ledger-sync"))
    expect(viewer.locator("#workflow-actions")).to_contain_text("You may not")
    expect(viewer.locator("#trigger-form")).to_have_count(0)
    viewer.goto(stage.ns(a, "apps"))
    expect(viewer.locator("#sync-apps-crm")).to_have_count(0)
    viewing.close()
    assert get_run(kubectl, a, "onboard-stop")["status"]["state"] == "waiting"

    # Stop: spec.cancel, and the run ends cancelled (the page follows). Forged: nothing.
    page = sign_in(context, stage, stage.approver, f"/ui/namespaces/{a}/runs/onboard-stop")
    until_live(page)
    stop_url = stage.ns(a, "runs", "onboard-stop", "stop")
    for csrf, origin in (("0" * 43, stage.base), (csrf_of(page), "http://evil.example")):
        forged = page.request.post(stop_url, form={"csrf": csrf}, headers={"Origin": origin})
        assert forged.status == 403, origin
    assert get_run(kubectl, a, "onboard-stop")["spec"].get("cancel") is not True
    page.locator("#stop-run").get_by_role("button", name="Stop run").click()
    expect(page.locator("#flash")).to_contain_text("Stop requested")
    expect(page.locator("#run-state")).to_have_text("cancelled")
    assert get_run(kubectl, a, "onboard-stop")["spec"]["cancel"] is True

    # Pause and activate: spec.state; a paused workflow cannot be triggered, and says so.
    page.goto(stage.ns(a, "workflows", "ledger-sync"))
    until_live(page)
    page.locator("#workflow-pause button").click()
    expect(page.locator("#flash")).to_contain_text("state set to Paused")
    expect(page.locator("#workflow-phase")).to_have_text("Paused")
    page.locator("#trigger-input").fill("{}")
    page.get_by_role("button", name="Trigger a run").click()
    expect(page.locator("#trigger-error")).to_contain_text("is not active (phase Paused)")
    page.locator("#workflow-activate button").click()
    expect(page.locator("#workflow-phase")).to_have_text("Activated")
    wait_phase(kubectl, a, "ledger-sync", "Activated")
    assert get_workflow(kubectl, a, "ledger-sync")["spec"]["state"] == "Active"
    # Archive asks first (the browser will not send the form unticked).
    page.get_by_text("Archive…").click()
    page.locator("#workflow-archive button").click()
    assert get_workflow(kubectl, a, "ledger-sync")["spec"]["state"] == "Active"

    # Sync and Drain: the request annotations `blockflow sync|drain` set; Drain asks first.
    page.goto(stage.ns(a, "apps"))
    page.locator("#sync-apps-crm button").click()
    expect(page.locator("#flash")).to_contain_text("Sync requested: app crm")
    annotations = kubectl.json("get", "apps.blockflow.dev", "crm", "-n", a)["metadata"][
        "annotations"
    ]
    assert annotations.get("blockflow.dev/requested-sync-at")
    kubectl.apply(a, blockflow("Block", "scratch", {"app": "crm", "type": "scripted"}))
    scratch = page.locator("#block-scratch")
    expect(scratch.locator(".chip")).to_have_text("ready")
    scratch.get_by_text("Drain…").click()
    scratch.locator("#drain-blocks-scratch button").click()  # unticked: not sent
    scratch.get_by_label("deprovision it").check()
    scratch.locator("#drain-blocks-scratch button").click()
    expect(page.locator("#flash")).to_contain_text("Drain requested: block scratch")
    expect(page.locator("#block-scratch .chip")).to_have_text(re.compile("draining|drained"))


def test_pause_resume_and_retry_a_run_from_its_page(
    stage: Stage, context: BrowserContext, kubectl: Kubectl
) -> None:
    a = stage.a
    kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("onboard-again", "onboarding")))
    _waiting(kubectl, a, "onboard-again")
    page = sign_in(context, stage, stage.approver, f"/ui/namespaces/{a}/runs/onboard-again")
    until_live(page)
    page.locator("#pause-run").get_by_role("button", name="Pause").click()
    expect(page.locator("#flash")).to_contain_text("Pause requested")
    expect(page.locator("#run-state")).to_have_text("paused")
    assert get_run(kubectl, a, "onboard-again")["spec"]["paused"] is True
    page.locator("#resume-run").get_by_role("button", name="Resume").click()
    expect(page.locator("#run-state")).to_have_text("waiting")
    page.locator("#stop-run").get_by_role("button", name="Stop run").click()
    expect(page.locator("#run-state")).to_have_text("cancelled")
    screenshot(page, "ui-run-retry")
    page.locator("#retry-run").get_by_role("button", name="Retry").click()
    expect(page.locator("#flash")).to_contain_text("Retry requested")
    # It runs again (the retry clears the stop request) and waits for its approval anew.
    expect(page.locator("#run-state")).to_have_text("waiting")
    assert get_run(kubectl, a, "onboard-again")["spec"]["cancel"] is False
    retried = eventually(
        lambda: (r := get_run(kubectl, a, "onboard-again"))["status"].get("retries") and r,
        what="the retry recorded",
    )
    (retry,) = retried["status"]["retries"]
    assert retry["by"] == stage.approver.username and retry["previousState"] == "cancelled"

    # Delete, as `blockflow run delete`: only an ended run, only once confirmed.
    expect(page.locator("#delete-run")).to_have_count(0)  # waiting: stop it first
    page.locator("#stop-run").get_by_role("button", name="Stop run").click()
    expect(page.locator("#run-state")).to_have_text("cancelled")
    page.locator("#delete-run-confirm").check()
    page.locator("#delete-run").get_by_role("button", name="Delete run").click()
    page.wait_for_url(f"**/ui/namespaces/{a}/runs")
    gone = ("get", "workflowruns.blockflow.dev", "onboard-again", "-n", a)
    eventually(lambda: kubectl.run(*gone, check=False).returncode != 0, what="the run deleted")


def test_a_live_refresh_waits_for_whoever_types_and_keeps_what_they_typed(
    stage: Stage, context: BrowserContext, kubectl: Kubectl
) -> None:
    a = stage.a
    page = sign_in(context, stage, stage.approver, f"/ui/namespaces/{a}/workflows/onboarding")
    until_live(page)
    page.locator("#trigger-input").fill('{"keep": "me"}')  # the field keeps the focus
    before = page.evaluate("document.body.getAttribute('data-refreshed')")
    kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("onboard-typed", "onboarding")))
    _waiting(kubectl, a, "onboard-typed")
    # The run's changes reached the page (its stream) a second ago, but nothing was replaced.
    expect(page.locator("#run-onboard-typed")).to_have_count(0)
    assert page.evaluate("document.body.getAttribute('data-refreshed')") == before
    page.locator("h1").click()  # leaves the field: the view catches up
    expect(page.locator("#run-onboard-typed")).to_be_visible()
    expect(page.locator("#trigger-input")).to_have_value('{"keep": "me"}')
    # What was opened stays open (a step's inputs, the YAML) when the view refreshes.
    page.get_by_text("YAML", exact=True).click()
    kubectl.run(
        "patch", "wfr", "onboard-typed", "-n", a, "--type=merge", "-p", '{"spec": {"cancel": true}}'
    )
    expect(page.locator("#run-onboard-typed")).to_contain_text("cancelled")
    expect(page.locator("#workflow-yaml")).to_be_visible()
    assert same_document(page)


def test_without_javascript_trigger_and_stop_are_forms_that_post_and_redirect(
    stage: Stage, browser: Browser, kubectl: Kubectl
) -> None:
    plain = browser.new_context(java_script_enabled=False)
    try:
        page = sign_in(plain, stage, stage.approver, f"/ui/namespaces/{stage.a}/workflows")
        page.locator("#workflow-onboarding").get_by_role("link").click()
        page.locator("#trigger-input").fill('{"company": "Initech"}')
        page.get_by_role("button", name="Trigger a run").click()
        expect(page).to_have_url(re.compile("/runs/onboarding-"))
        run = page.url.rsplit("/", 1)[1]
        _waiting(kubectl, stage.a, run)
        page.reload()
        page.get_by_role("button", name="Stop run").click()
        expect(page).to_have_url(stage.ns(stage.a, "runs", run))
        wait_run(kubectl, stage.a, run, "cancelled")
        page.reload()
        expect(page.locator("#run-state")).to_have_text("cancelled")
    finally:
        plain.close()


def _create_many(kubectl: Kubectl, namespace: str, count: int) -> None:
    """Runs of a workflow that does not exist: each fails at once, saying why, and no
    history limit removes them (it belongs to the workflow)."""
    items = [_run(f"ghost-{i:04d}", "ghost") for i in range(count)]
    for start in range(0, count, 100):
        document = {"apiVersion": "v1", "kind": "List", "items": items[start : start + 100]}
        kubectl.run("create", "-n", namespace, "-f", "-", input=json.dumps(document), timeout=120)

    def all_failed() -> bool:
        listed = kubectl.json("get", "workflowruns.blockflow.dev", "-n", namespace)["items"]
        ghosts = [r for r in listed if r["spec"]["workflowRef"]["name"] == "ghost"]
        return len(ghosts) == count and all(
            (r.get("status") or {}).get("state") == "failed" for r in ghosts
        )

    eventually(all_failed, timeout=180, what=f"{count} runs failed")


def test_the_run_list_pages_filters_and_searches_hundreds_of_runs_on_the_server(
    stage: Stage, context: BrowserContext, kubectl: Kubectl
) -> None:
    b = stage.b
    started = time.monotonic()
    _create_many(kubectl, b, MANY)
    created = time.monotonic() - started
    listed = kubectl.json("get", "workflowruns.blockflow.dev", "-n", b)["items"]
    newest_first = [
        r["metadata"]["name"]
        for r in sorted(
            listed,
            key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]),
            reverse=True,
        )
    ]
    assert len(newest_first) == MANY + 1  # and salaries-1

    page = sign_in(context, stage, stage.approver, f"/ui/namespaces/{b}/runs")
    expect(page.locator("#run-count")).to_have_text(f"50 shown · {MANY + 1} runs match")
    page.goto(stage.ns(b, "runs") + "?limit=100")
    seen: list[str] = []
    timings: list[float] = []
    while True:
        seen += _names(page)
        older = page.locator('[data-page="page-older"]').first
        if older.count() == 0:
            break
        clicked = time.monotonic()
        older.click()
        page.wait_for_load_state()
        timings.append(time.monotonic() - clicked)
    assert seen == newest_first  # every run once, newest first, over 4 pages
    # And back: "Newer" returns the page before.
    page.locator('[data-page="page-newer"]').first.click()
    assert _names(page) == newest_first[200:300]

    # Filters and search, on the server (the URL says what is shown; no script needed).
    page.goto(stage.ns(b, "runs") + "?state=waiting")
    assert _names(page) == ["salaries-1"]
    page.goto(stage.ns(b, "runs"))
    page.get_by_label("Name").fill("ghost-01")
    page.locator("#run-filters select[name=workflow]").select_option("ghost")
    page.locator("#run-filters select[name=since]").select_option("1h")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#run-count")).to_have_text("50 shown · 100 runs match")
    assert all(n.startswith("ghost-01") for n in _names(page))
    assert "workflow=ghost" in page.url and "q=ghost-01" in page.url
    expect(page.locator("#run-ghost-0199 .run-reason")).to_contain_text("Workflow ghost not found")
    page.goto(stage.ns(b, "runs") + "?state=completed&q=ghost")
    expect(page.locator("#no-runs")).to_be_visible()
    screenshot(page, "ui-runs-empty")
    page.goto(stage.ns(b, "runs") + "?workflow=ghost&limit=25")
    screenshot(page, "ui-runs")
    print(f"\n{MANY} runs created in {created:.1f} s; pages of 100: {timings}")
    assert max(timings) < 5


def _fits(page: Page, width: int) -> None:
    """Nothing wider than the screen but what scrolls on its own; Sign out on screen."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    box = page.get_by_role("button", name="Sign out").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def test_readable_at_390_px_and_dark_when_the_system_is(
    stage: Stage, browser: Browser, kubectl: Kubectl
) -> None:
    a = stage.a
    kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("onboard-phone", "onboarding")))
    _waiting(kubectl, a, "onboard-phone")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    try:
        page = sign_in(phone, stage, stage.approver, f"/ui/namespaces/{a}/apps")
        views: list[tuple[str, str]] = [
            ("apps", "ui-390-apps"),
            ("workflows", "ui-390-workflows"),
            ("workflows/onboarding", "ui-390-workflow"),
            ("runs", "ui-390-runs"),
            ("runs/onboard-phone", "ui-390-run"),
            ("approvals", "ui-390-approvals"),
        ]
        for path, name in views:
            page.goto(stage.ns(a, path))
            _fits(page, 390)
            screenshot(page, name)
        row = page.locator("#approval-onboard-phone-review")
        expect(row.locator(".approval-message")).to_contain_text("onboard-phone")
        box = row.get_by_role("button", name="Approve").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    finally:
        phone.close()

    dark = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    try:
        page = sign_in(dark, stage, stage.approver, f"/ui/namespaces/{a}/workflows")
        background: Any = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)", background
        screenshot(page, "ui-dark-workflows")
        for path, name in (
            ("runs/onboard-phone", "ui-dark-run"),
            ("apps", "ui-dark-apps"),
            ("workflows/broken", "ui-dark-workflow-refused"),
        ):
            page.goto(stage.ns(a, path))
            screenshot(page, name)
    finally:
        dark.close()
