"""The web page's workflow and run views, pure: workflows and a refused activation, the run
index (paging by key, filters, pending approvals and their message, related runs), a run's
steps with their inputs and outputs, hidden sensitive values, the run list's form and pager.
(The page itself is tested in a browser: tests/test_ui_workflows.py.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.ui import (
    pages,
    run_page,
    run_views,
    runs_page,
    views,
    workflow_page,
    workflow_views,
)
from controller.ui.redact import HIDDEN, redact
from controller.ui.run_index import RunFilter, RunIndex, RunSummary

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def stamp(delta: float) -> str:
    return (NOW + timedelta(seconds=delta)).isoformat().replace("+00:00", "Z")


# -- Workflows and runs ------------------------------------------------------------------------


def run(name: str, state: str | None, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    spec = {
        "steps": [
            {"name": "prepare", "uses": {"type": "sleep"}},
            {"name": "review", "uses": {"type": "approval"}},
            {"name": "vendor", "uses": {"app": "crm", "type": "approval"}},
            {"name": "notify", "uses": {"type": "emit"}},
        ],
        "fallback": [{"name": "cleanup", "uses": {"type": "http"}}],
    }
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "creationTimestamp": extra.pop("created", stamp(-60)),
        },
        "spec": {"workflowRef": {"name": "onboarding"}},
        "status": {"state": state, "workflowSpec": spec, "steps": steps, **extra},
    }


def test_workflows_show_counters_success_rate_and_active_runs() -> None:
    workflow = {
        "metadata": {"name": "onboarding"},
        "spec": {"state": "Active"},
        "status": {
            "phase": "Triggered",
            "version": 3,
            "runCount": 10,
            "successCount": 6,
            "failureCount": 2,
            "lastRunAt": stamp(-5),
        },
    }
    index = RunIndex()
    for body in (run("r1", "waiting", []), run("r2", "completed", []), run("r3", None, [])):
        index.observe(body, None)
    (view,) = views.workflow_views([workflow], index.active_by_workflow("ns"))
    assert (view.phase, view.version, view.runs, view.succeeded, view.failed) == (
        "Triggered",
        3,
        10,
        6,
        2,
    )
    assert view.success_rate == 0.75 and view.active == 2
    assert view.last_run_at == NOW - timedelta(seconds=5)
    (unseen,) = views.workflow_views([workflow], None)
    assert unseen.active is None
    assert views.success_rate(0, 0) is None


def test_a_refused_activation_is_failed_with_its_reason_not_a_grey_draft() -> None:
    workflow = {
        "metadata": {"name": "orders", "namespace": "ns", "managedFields": [{"x": 1}]},
        "spec": {
            "state": "Active",
            "trigger": {"event": "Order.placed"},
            "steps": [
                {
                    "name": "charge",
                    "uses": {"app": "pay", "type": "charge"},
                    "with": {"apiKey": "sk_live_123", "secretRef": {"name": "s", "key": "k"}},
                    "retryPolicy": {"maxAttempts": 3},
                    "needs": ["check"],
                }
            ],
        },
        "status": {
            "phase": "Draft",
            "lifecycle": {"status": "failed", "description": "App pay has no step type charge"},
            "conditions": [
                {"type": "Stalled", "status": "True", "reason": "Failed", "message": "no charge"}
            ],
        },
    }
    view = workflow_views.workflow_page_view(workflow, {})
    assert view.refused == "App pay has no step type charge"
    assert view.trigger == "event Order.placed" and view.wanted == "Active"
    (step,) = view.steps
    assert (step.uses, step.notes) == ("pay/charge", ("needs check", "up to 3 attempts"))
    assert step.inputs is not None and "sk_live_123" not in step.inputs
    assert '"name": "s"' in step.inputs  # a secretRef is a reference: shown
    assert "sk_live_123" not in view.yaml and "managedFields" not in view.yaml
    controls = workflow_page.WorkflowControls("c", may_trigger=True, may_patch=True)
    html = workflow_page.workflow_view("ns", view, [], None, NOW, controls)
    assert 'id="activation-refused"' in html and "App pay has no step type charge" in html
    assert "Draft" not in pages.workflow_status(view.workflow)
    assert 'action="/ui/namespaces/ns/workflows/orders/pause"' in html
    assert 'action="/ui/namespaces/ns/workflows/orders/activate"' not in html  # it is Active
    assert 'name="confirm"' in html  # archive asks first
    refused = workflow_page.WorkflowControls("c", may_trigger=False, may_patch=False)
    html = workflow_page.workflow_view("ns", view, None, None, NOW, refused)
    assert "/trigger" not in html and "/pause" not in html and "may not" in html


def test_sensitive_looking_values_are_hidden_and_references_shown() -> None:
    shown = redact(
        {
            "url": "https://api.example/x",
            "headers": {"Authorization": "Bearer abcdefgh12345", "Accept": "json"},
            "password": "hunter2",
            "clientSecret": "s",
            "secretRef": {"name": "creds", "key": "token"},
            "note": "Bearer abcdefgh12345",
            "items": [{"token": "t"}],
            "tokenTtl": None,
        }
    )
    assert shown == {
        "url": "https://api.example/x",
        "headers": {"Authorization": HIDDEN, "Accept": "json"},
        "password": HIDDEN,
        "clientSecret": HIDDEN,
        "secretRef": {"name": "creds", "key": "token"},
        "note": HIDDEN,
        "items": [{"token": HIDDEN}],
        "tokenTtl": None,
    }


def summary(name: str, state: str, workflow: str, created: float, **extra: Any) -> dict[str, Any]:
    body = run(name, state, [], created=stamp(created), **extra)
    body["spec"]["workflowRef"]["name"] = workflow
    return body


def test_the_run_index_pages_newest_first_by_key_with_filters() -> None:
    index = RunIndex()
    states = ("completed", "failed", "running", "waiting")
    # 600 runs, several per second (creationTimestamp has seconds only): the name breaks ties.
    for i in range(600):
        workflow = "orders" if i % 3 else "billing"
        index.observe(summary(f"r-{i:04d}", states[i % 4], workflow, -6000 + i // 4), None)
    everything = [f"r-{i:04d}" for i in reversed(range(600))]

    def walk(wanted: RunFilter, limit: int) -> list[str]:
        names, before = [], None
        while True:
            page = index.page("ns", wanted, limit=limit, before=before)
            names += [r.name for r in page.runs]
            assert page.total == len(list(filter(wanted.predicate(), _all(index))))
            if page.older is None:
                return names
            before = page.older

    assert walk(RunFilter(), 50) == everything
    assert walk(RunFilter(), 7) == everything
    failed = walk(RunFilter(state="failed"), 25)
    assert failed == [n for n in everything if int(n[2:]) % 4 == 1]
    active = walk(RunFilter(state="active"), 25)
    assert active == [n for n in everything if int(n[2:]) % 4 in (2, 3)]
    billing = walk(RunFilter(workflow="billing", search="R-01"), 10)
    assert billing == [n for n in everything if int(n[2:]) % 3 == 0 and n.startswith("r-01")]
    recent = RunFilter(since=NOW + timedelta(seconds=-5900))
    assert walk(recent, 30) == everything[: 600 - 400]

    # Back again: each page before a page is the one that led to it.
    first = index.page("ns", RunFilter(), limit=50)
    second = index.page("ns", RunFilter(), limit=50, before=first.older)
    assert first.newer is None and second.newer is not None
    back = index.page("ns", RunFilter(), limit=50, after=second.newer)
    assert back.runs == first.runs and back.newer is None

    # New runs arriving do not move a page reached by key; deleted runs leave it.
    index.observe(summary("r-new", "running", "orders", 10), None)
    assert index.page("ns", RunFilter(), limit=50, before=first.older).runs == second.runs
    index.observe(summary("r-0549", "completed", "orders", 0), "DELETED")
    assert "r-0549" not in [r.name for r in index.page("ns", RunFilter(), limit=100).runs]
    assert index.count("ns") == 600


def _all(index: RunIndex) -> list[RunSummary]:
    return list(index.page("ns", RunFilter(), limit=100_000).runs)


def test_the_run_index_knows_pending_approvals_their_message_and_related_runs() -> None:
    index = RunIndex()
    emitted = {
        "specversion": "1.0",
        "type": "Customer.onboarded",
        "source": "blockflow.dev/namespaces/ns/workflowruns/parent-1",
        "id": "x",
        "data": {"company": "ACME"},
    }
    waiting = summary("child-1", "waiting", "welcome", -10, workflowSpec=_approval_spec())
    waiting["spec"]["input"] = emitted
    waiting["metadata"]["uid"] = "u1"
    waiting["status"]["steps"] = [
        {"name": "ask", "state": "waiting", "startedAt": stamp(-5), "hookTokenHash": "h"}
    ]
    started = summary("child-2", "running", "billing", -9)
    started["metadata"]["annotations"] = {
        "blockflow.dev/parent-run": "parent-1",
        "blockflow.dev/parent-step": "bill",
    }
    for body in (summary("parent-1", "completed", "onboarding", -20), waiting, started):
        index.observe(body, None)
    (pending,) = index.pending("ns")
    (approval,) = pending.approvals
    assert (pending.name, approval.step) == ("child-1", "ask")
    assert approval.message == "Welcome ACME aboard?"
    assert (pending.origin, pending.event) == ("parent-1", "Customer.onboarded")
    parent = index.get("ns", "parent-1")
    assert parent is not None
    assert [r.name for r in index.related("ns", parent)] == ["child-2", "child-1"]
    index.observe(started, "DELETED")
    assert [r.name for r in index.related("ns", parent)] == ["child-1"]
    html = pages.approvals_view("ns", [(pending, approval)], {"child-1": True}, "c", NOW)
    assert "Welcome ACME aboard?" in html and "/runs/child-1/approve" in html


def _approval_spec() -> dict[str, Any]:
    return {
        "steps": [
            {
                "name": "ask",
                "uses": {"type": "approval"},
                "with": {"message": "Welcome ${{ event.data.company }} aboard?"},
            }
        ]
    }


def test_a_runs_timeline_has_states_attempts_durations_errors_and_decisions() -> None:
    body = run(
        "r1",
        "failed",
        [
            {
                "name": "prepare",
                "state": "completed",
                "attempts": 1,
                "startedAt": stamp(-30),
                "finishedAt": stamp(-29.5),
                "outcome": {"id": "done", "data": {"secret": "not shown", "rows": 42}},
            },
            {
                "name": "review",
                "state": "completed",
                "attempts": 1,
                "startedAt": stamp(-29),
                "finishedAt": stamp(-20),
                "outcome": {
                    "id": "approved",
                    "data": {"by": "ada", "at": stamp(-20), "comment": "ok"},
                },
            },
            {
                "name": "notify",
                "state": "failed",
                "attempts": 3,
                "startedAt": stamp(-19),
                "finishedAt": stamp(-1),
                "error": {"message": "step notify: boom", "retryable": False},
            },
        ],
        startedAt=stamp(-30),
        finishedAt=stamp(-1),
        workflowVersion=2,
        error={"message": "step notify: boom", "step": "notify"},
    )
    body["status"]["workflowSpec"]["steps"][0]["with"] = {"seconds": 1, "token": "hook-secret"}
    view = run_views.run_view(body, NOW)
    assert (view.state, view.version, view.duration, view.error) == (
        "failed",
        2,
        29.0,
        "step notify: boom",
    )
    prepare, review, notify = view.steps
    assert (prepare.uses, prepare.outcome, prepare.duration, prepare.decided_by) == (
        "sleep",
        "done",
        0.5,
        None,
    )
    assert prepare.inputs is not None and '"seconds": 1' in prepare.inputs
    assert prepare.outputs is not None and '"rows": 42' in prepare.outputs
    assert (review.decided_by, review.decided_at, review.comment) == (
        "ada",
        NOW - timedelta(seconds=20),
        "ok",
    )
    assert (notify.attempts, notify.error) == (3, "step notify: boom")
    assert view.not_reached == ()  # a finished run has nothing to come
    controls = run_page.RunControls("c", may_decide=True, may_stop=True)
    html = run_page.run_view(
        "ns", view, NOW, controls=controls, approvals=None, related=None, events=[]
    )
    assert "not shown" not in html and "hook-secret" not in html  # sensitive values never
    assert "Step notify: step notify" not in html
    assert "/stop" not in html  # a finished run cannot be stopped


def test_a_run_that_failed_before_starting_says_why() -> None:
    body = run(
        "r1",
        "failed",
        [],
        error={"message": "Workflow onboarding is not active (phase Draft)"},
        finishedAt=stamp(-1),
    )
    view = run_views.run_view(body, NOW)
    controls = run_page.RunControls("c", may_decide=False, may_stop=False)
    html = run_page.run_view(
        "ns", view, NOW, controls=controls, approvals=None, related=None, events="no events"
    )
    assert "Workflow onboarding is not active (phase Draft)" in html
    assert "No step ran" in html
    index = RunIndex()
    index.observe(body, None)
    listed = runs_page.runs_table("ns", index.page("ns", RunFilter()).runs, NOW)
    assert "Workflow onboarding is not active (phase Draft)" in listed


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        ("webhook", "its workflow's webhook"),
        ("schedule", "its workflow's schedule"),
        ("manual", "by hand (blockflow workflow trigger, or the page)"),
        (None, "not recorded (made by hand, e.g. kubectl apply)"),
    ],
)
def test_a_run_says_what_started_it(label: str | None, shown: str) -> None:
    body = run("r1", "completed", [])
    if label:
        body["metadata"].setdefault("labels", {})["blockflow.dev/trigger"] = label
    view = run_views.run_view(body, NOW)
    controls = run_page.RunControls("c", may_decide=False, may_stop=False)
    html = run_page.run_view(
        "ns", view, NOW, controls=controls, approvals=None, related=None, events="no events"
    )
    started = html.split("Started by", 1)[1][:300]
    assert shown.replace("'", "&#x27;") in started, started


def test_a_waiting_approval_offers_decisions_only_to_who_may_decide() -> None:
    body = run(
        "r1",
        "waiting",
        [
            {"name": "prepare", "state": "completed"},
            {"name": "review", "state": "waiting", "hookTokenHash": "h"},
        ],
    )
    body["status"]["workflowSpec"]["steps"][1]["with"] = {"message": "Ship it?"}
    view = run_views.run_view(body, NOW)
    assert [s.awaiting_approval for s in view.steps] == [False, True]
    assert view.not_reached == ("vendor", "notify")  # fallback steps are not "to come"

    def page(may_decide: bool, may_stop: bool) -> str:
        controls = run_page.RunControls("tok", may_decide=may_decide, may_stop=may_stop)
        return run_page.run_view(
            "ns", view, NOW, controls=controls, approvals=1, related=None, events=[]
        )

    allowed = page(True, True)
    assert 'action="/ui/namespaces/ns/runs/r1/approve"' in allowed
    assert 'name="csrf" value="tok"' in allowed and 'name="step" value="review"' in allowed
    assert "Ship it?" in allowed and 'action="/ui/namespaces/ns/runs/r1/stop"' in allowed
    refused = page(False, False)
    assert "/approve" not in refused and "may not decide" in refused and "/stop" not in refused
    assert "Ship it?" in refused  # the question is shown to whoever may read the run


def test_the_run_list_form_and_pager_keep_the_filters() -> None:
    index = RunIndex()
    for i in range(30):
        index.observe(summary(f"r-{i:02d}", "failed", "orders", -100 + i), None)
    query = runs_page.RunQuery(state="failed", workflow="orders", q="r-", limit=25)
    page = index.page("ns", RunFilter(state="failed", workflow="orders", search="r-"), limit=25)
    html = runs_page.runs_view("ns", query, page, ["orders"], None, NOW, first=True)
    assert "30 runs match" in html
    older = re.search(r'href="([^"]*before=[^"]*)"', html)
    assert older is not None
    assert "state=failed" in older.group(1) and "workflow=orders" in older.group(1)
    assert "limit=25" in older.group(1) and "q=r-" in older.group(1)
    assert '<option value="failed" selected>' in html


def test_a_runs_events_are_newest_first_and_counted() -> None:
    items = [
        {
            "type": "Warning",
            "reason": f"R{i}",
            "message": "m",
            "count": i,
            "lastTimestamp": stamp(i),
        }
        for i in range(80)
    ]
    shown = run_views.event_views(items)
    assert len(shown) == run_views.MAX_EVENTS
    assert [e.reason for e in shown[:2]] == ["R79", "R78"]
    assert shown[0].count == 79 and shown[0].last == NOW + timedelta(seconds=79)


def test_an_approval_message_that_cannot_be_rendered_is_shown_as_written() -> None:
    body = run("r1", "waiting", [{"name": "ask", "state": "waiting", "hookTokenHash": "h"}])
    body["metadata"]["uid"] = "u1"
    body["status"]["workflowSpec"] = {
        "steps": [
            {
                "name": "ask",
                "uses": {"type": "approval"},
                "with": {"message": "Refund ${{ steps.lookup.data.amount }}?"},
            }
        ]
    }
    index = RunIndex()
    index.observe(body, None)
    (pending,) = index.pending("ns")
    assert pending.approvals[0].message == "Refund ${{ steps.lookup.data.amount }}?"
    # Malformed runs are summarized as far as they go, never refused.
    index.observe({"metadata": {"name": "odd", "namespace": "ns"}, "status": "x"}, None)
    index.observe({"metadata": {"name": "odd2", "namespace": "ns"}, "spec": [], "status": {}}, None)
    assert index.count("ns") == 3


def test_a_runs_buttons_follow_its_state_and_the_timeline_shows_branches_and_fan_outs() -> None:
    def page(body: dict[str, Any], may: bool = True) -> str:
        view = run_views.run_view(body, NOW)
        controls = run_page.RunControls("tok", may_decide=may, may_stop=may)
        return run_page.run_view(
            "ns", view, NOW, controls=controls, approvals=None, related=None, events=[]
        )

    base = "/ui/namespaces/ns/runs/r1/"
    going = page(run("r1", "running", [{"name": "prepare", "state": "running"}]))
    assert f'action="{base}pause"' in going and f'action="{base}stop"' in going
    assert f'action="{base}retry"' not in going and f'action="{base}resume"' not in going
    paused_body = run("r1", "paused", [{"name": "prepare", "state": "completed"}])
    paused_body["spec"]["paused"] = True
    paused = page(paused_body)
    assert f'action="{base}resume"' in paused and f'action="{base}pause"' not in paused
    failed = page(run("r1", "failed", [{"name": "prepare", "state": "failed"}]))
    assert f'action="{base}retry"' in failed and f'action="{base}stop"' not in failed
    assert f'action="{base}retry"' not in page(
        run("r1", "failed", [{"name": "prepare", "state": "failed"}]), may=False
    )
    done = page(run("r1", "completed", [{"name": "prepare", "state": "completed"}]))
    assert all(f'action="{base}{v}"' not in done for v in ("retry", "pause", "stop", "resume"))

    fanned = run(
        "r1",
        "running",
        [
            {"name": "prepare", "state": "running", "progress": "cc.f" + "." * 996},
            {"name": "review", "state": "skipped", "reason": "its condition is false: x"},
        ],
    )
    fanned["status"]["workflowSpec"]["steps"][0]["forEach"] = "${{ event.users }}"
    fanned["status"]["workflowSpec"]["steps"][1]["needs"] = ["prepare"]
    html = page(fanned)
    assert "2 of 1000 items done, 1 failed" in html
    assert "after prepare" in html and "its condition is false: x" in html
