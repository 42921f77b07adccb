"""The web page's pure parts: views from API objects, escaped HTML, reviews and their cache,
CSRF tokens, the change feed. (The page itself is tested in a browser: tests/test_ui.py.)"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.kube.rest import KubeApiError
from controller.times import parse_time
from controller.ui import (
    frame,
    pages,
    views,
)
from controller.ui.assets import CSP, CSS, JS
from controller.ui.auth import Access, Identity, Reviewer, ReviewUnavailable, csrf_ok, csrf_token
from controller.ui.html import Safe, el, esc, raw
from controller.ui.live import ChangeFeed
from controller.ui.sessions import _safe_next

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def stamp(delta: float) -> str:
    return (NOW + timedelta(seconds=delta)).isoformat().replace("+00:00", "Z")


# -- HTML ------------------------------------------------------------------------------------


def test_text_and_attributes_are_escaped_and_only_safe_markup_passes() -> None:
    html = el("a", "<script>x</script>", href='" onclick="evil()', class_="c", hidden=True)
    assert html == (
        '<a href="&quot; onclick=&quot;evil()" class="c" hidden>&lt;script&gt;x&lt;/script&gt;</a>'
    )
    assert el("p", raw("<b>ok</b>"), None, 3) == "<p><b>ok</b>3</p>"
    assert el("input", type="hidden", value=None, data_x="y") == '<input type="hidden" data-x="y">'
    assert isinstance(esc("<"), Safe) and esc(Safe("<b>")) == "<b>"


def test_an_entity_page_escapes_what_handlers_wrote() -> None:
    block = {
        "kind": "Block",
        "metadata": {"name": "b"},
        "spec": {"app": "a", "type": "t"},
        "status": {
            "lifecycle": {"status": "failed", "description": "<img src=x onerror=alert(1)>"},
            "signals": {"<k>": "<v>"},
        },
    }
    app = {"kind": "App", "metadata": {"name": "a"}, "status": {}}
    html = pages.apps_view("ns", views.apps_view([app], [block]), None)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<k>" not in html and "&lt;k&gt;" in html


# -- Apps and Blocks -------------------------------------------------------------------------


def entity(status: dict[str, Any], kind: str = "Block") -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": "mailbox"},
        "spec": {"app": "crm", "type": "imap"},
        "status": status,
    }


def test_an_entity_shows_its_status_non_sensitive_signals_and_prompts() -> None:
    view = views.entity_view(
        entity(
            {
                "lifecycle": {"status": "in_progress", "description": "Connecting"},
                "signals": {"address": "a@b.c", "limits": {"daily": 500}, "long": "x" * 200},
                "sensitiveSignals": {"secretName": "s", "names": ["password", "token"]},
                "prompts": [
                    {"key": "p1", "description": "Connect", "redirect": {"url": "https://x/y"}},
                    {"key": "p2", "message": "Old style", "redirect": {"url": "https://z"}},
                    {"key": "p3", "redirect": {"url": "javascript:alert(1)", "method": "post"}},
                    {"key": "p4", "message": "No redirect"},
                    {"description": "no key: ignored"},
                ],
            }
        )
    )
    assert (view.status, view.description, view.app, view.type) == (
        "in_progress",
        "Connecting",
        "crm",
        "imap",
    )
    assert [(s.name, s.value) for s in view.signals][:2] == [
        ("address", "a@b.c"),
        ("limits", '{"daily":500}'),
    ]
    assert len(view.signals[2].value) == views.SIGNAL_MAX and view.signals[2].value.endswith("…")
    assert view.hidden_signals == 2
    assert [(p.key, p.text, p.url, p.method) for p in view.prompts] == [
        ("p1", "Connect", "https://x/y", "GET"),
        ("p2", "Old style", "https://z", "GET"),
        ("p3", "p3", None, "POST"),  # never a javascript: link
        ("p4", "No redirect", None, "GET"),
    ]
    html = pages.apps_view(
        "ns", views.AppsView(apps=(), other_blocks=(view,), blocks_visible=True), None
    )
    assert "password" not in html and "2 sensitive signals (not shown)" in html
    assert 'href="https://x/y" target="_blank" rel="noopener noreferrer"' in html
    assert "javascript:" not in html


def test_blocks_are_grouped_under_their_app_or_listed_as_orphans() -> None:
    apps = [{"kind": "App", "metadata": {"name": n}} for n in ("b-app", "a-app")]
    blocks = [
        {"kind": "Block", "metadata": {"name": n}, "spec": {"app": app}}
        for n, app in (("z", "a-app"), ("y", "a-app"), ("x", "gone"))
    ]
    view = views.apps_view(apps, blocks)
    assert view.apps is not None
    assert [(a.app.name, [b.name for b in a.blocks]) for a in view.apps] == [
        ("a-app", ["y", "z"]),
        ("b-app", []),
    ]
    assert [b.name for b in view.other_blocks] == ["x"]
    hidden = views.apps_view(None, None)
    assert (hidden.apps, hidden.other_blocks, hidden.blocks_visible) == (None, (), False)
    assert "You may not list Apps or Blocks" in pages.apps_view("ns", hidden, None)


def test_durations_and_relative_times_read_naturally() -> None:
    assert [views.duration_text(s) for s in (0.35, 4.25, 42, 185, 7260, 90000)] == [
        "350 ms",
        "4.2 s",
        "42 s",
        "3 min 5 s",
        "2 h 1 min",
        "1 d 1 h",
    ]
    ago = [views.ago_text(NOW - timedelta(seconds=s), NOW) for s in (1, 12, 300, 7200, -90)]
    assert ago == ["just now", "12 s ago", "5 min ago", "2 h ago", "in 1 min"]
    assert parse_time("garbage") is None and parse_time(None) is None


# -- reviews ---------------------------------------------------------------------------------


class FakeApi:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, Any]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        self.sent.append((path, body))
        answer = self.answers[path.rsplit("/", 1)[-1]]
        if isinstance(answer, Exception):
            raise answer
        result: dict[str, Any] = answer(body) if callable(answer) else answer
        return result


def token_review(body: dict[str, Any]) -> dict[str, Any]:
    if body["spec"]["token"] != "good":
        return {"status": {"authenticated": False}}
    user = {"username": "ada", "uid": "u1", "groups": ["devs"], "extra": {"scopes": ["a"]}}
    return {"status": {"authenticated": True, "user": user}}


def access_review(body: dict[str, Any]) -> dict[str, Any]:
    attributes = body["spec"]["resourceAttributes"]
    return {"status": {"allowed": attributes.get("namespace") == "team-a"}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tokens_and_access_are_reviewed_for_the_person_and_cached_briefly() -> None:
    api = FakeApi({"tokenreviews": token_review, "subjectaccessreviews": access_review})
    clock = Clock()
    reviewer = Reviewer(api, ttl=10, clock=clock)

    async def scenario() -> None:
        who = await reviewer.authenticate("good")
        assert who == Identity("ada", "u1", ("devs",), (("scopes", ("a",)),))
        assert await reviewer.authenticate("good") == who
        assert await reviewer.authenticate("bad") is None
        assert await reviewer.authenticate("with space") is None  # not even asked
        assert reviewer.reviews == 2
        assert await reviewer.allowed(who, Access("list", "apps", "team-a"))
        assert not await reviewer.allowed(who, Access("list", "apps", "team-b"))
        assert await reviewer.allowed(who, Access("list", "apps", "team-a"))
        assert reviewer.reviews == 4
        clock.now += 11  # expired: asked again
        assert await reviewer.authenticate("good") == who
        assert reviewer.reviews == 5

    asyncio.run(scenario())
    path, sar = api.sent[2]
    assert path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    assert sar["spec"] == {
        "user": "ada",
        "groups": ["devs"],
        "uid": "u1",
        "extra": {"scopes": ["a"]},
        "resourceAttributes": {
            "verb": "list",
            "group": "blockflow.dev",
            "resource": "apps",
            "namespace": "team-a",
        },
    }
    assert "good" not in repr(reviewer._tokens._entries)  # only a hash of the token is kept


def test_a_review_the_api_server_refuses_is_unavailable_not_allowed() -> None:
    forbidden = KubeApiError(403, "Forbidden", "cannot create tokenreviews")
    reviewer = Reviewer(FakeApi({"tokenreviews": forbidden}))
    with pytest.raises(ReviewUnavailable, match="403 Forbidden"):
        asyncio.run(reviewer.authenticate("good"))


def test_csrf_tokens_belong_to_one_session() -> None:
    key = b"k" * 32
    token = csrf_token(key, "bearer-1")
    assert csrf_ok(key, "bearer-1", token)
    assert not csrf_ok(key, "bearer-2", token)
    assert not csrf_ok(b"other", "bearer-1", token)
    assert not csrf_ok(key, "bearer-1", None) and not csrf_ok(key, "bearer-1", "")
    assert "bearer-1" not in token


def test_redirects_stay_on_the_page() -> None:
    for good in ("/ui/", "/ui/namespaces/a/approvals", "/ui/namespaces/a/runs/r?x=1"):
        assert _safe_next(good) == good
    for bad in ("https://evil.example/ui/", "//evil.example/ui/", "/ui\\@evil", "/other", None):
        assert _safe_next(bad) == "/ui/"


# -- live updates and assets -------------------------------------------------------------------


def test_the_feed_wakes_the_streams_of_the_namespace_that_changed() -> None:
    feed = ChangeFeed()

    def body(namespace: str, name: str) -> dict[str, Any]:
        return {"metadata": {"namespace": namespace, "name": name}}

    with (
        feed.subscribe("a") as in_a,
        feed.subscribe("b") as in_b,
        feed.subscribe(None) as listing,
    ):
        feed.notify("App", body("a", "x"), None)
        assert in_a.changed.is_set() and not in_b.changed.is_set() and listing.changed.is_set()
        in_a.changed.clear()
        listing.changed.clear()
        feed.notify("App", body("a", "x"), "MODIFIED")
        assert in_a.changed.is_set() and not listing.changed.is_set()  # same objects
        feed.notify("WorkflowRun", body("a", "r"), "ADDED")
        feed.notify("Block", body("b", "y"), "ADDED")
        assert feed.namespaces() == ["a", "b"]
        assert feed.counts("a") == {"App": 1, "WorkflowRun": 1}
        feed.notify("Block", body("b", "y"), "DELETED")
        assert feed.namespaces() == ["a"]
        assert feed.subscribers() == 3
        feed.close()
        assert in_b.closed and in_b.changed.is_set()
    assert feed.subscribers() == 0


def test_revisions_tell_a_late_stream_that_its_page_missed_a_change() -> None:
    feed = ChangeFeed()
    rendered = feed.revision("a")  # what a page shows, in the URL of its stream
    feed.notify("App", {"metadata": {"namespace": "a", "name": "x"}}, "MODIFIED")
    assert feed.revision("a") > rendered  # the stream opening now says "changed" at once
    assert feed.revision("b") == 0


def test_the_csp_allows_exactly_the_inline_style_and_script() -> None:
    hashes = set(re.findall(r"'sha256-([^']+)'", CSP))
    for text in (CSS, JS):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert digest in hashes
    assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP
    assert "unsafe-inline" not in CSP
    document = frame.document(frame.Frame(title="t"), el("p", "x"))
    assert f"<style>{CSS}</style>" in document and f"<script>{JS}</script>" in document
