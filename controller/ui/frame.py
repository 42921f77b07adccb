"""The frame every page shares, and what it is made of: status chips, paths, times, the
namespace tabs, the sign-in and error pages (pure functions, escaped by construction).

Every page is the same frame — a top bar (where you are, who you are, sign out), a
``#view`` that holds the tabs and the content, and a footer telling whether live updates
are on. The script re-fetches ``#view`` alone (``X-Blockflow-Fragment: 1``) whenever the
namespace changes; without it, links and plain form POSTs do everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from controller import __version__
from controller.ui.assets import CSS, JS
from controller.ui.html import Safe, el, join, raw
from controller.ui.views import (
    ago_text,
)

UI = "/ui"

_TONES = {
    # lifecycle
    "ready": "ok",
    "in_progress": "info",
    "failed": "bad",
    "draining": "warn",
    "draining_failed": "bad",
    "drained": "idle",
    # workflow phases
    "Activated": "ok",
    "Triggered": "info",
    "Paused": "warn",
    "Draft": "idle",
    "Archived": "idle",
    # runs and steps
    "completed": "ok",
    "running": "info",
    "queued": "info",
    "waiting": "warn",
    "paused": "warn",
    "terminated": "bad",
    "cancelled": "idle",
    "skipped": "idle",
    "pending": "idle",
    # outcomes
    "approved": "ok",
    "rejected": "bad",
}

_LABELS = {"in_progress": "in progress", "draining_failed": "draining failed"}


def tone(status: str | None) -> str:
    return _TONES.get(status or "", "idle")


def chip(status: str | None, *, id_: str | None = None, empty: str = "unknown") -> Safe:
    text = _LABELS.get(status or "", status or empty)
    return el("span", text, class_=f"chip {tone(status)}", id=id_, data_status=status or "")


def ns_path(namespace: str, *rest: str) -> str:
    tail = "/".join(quote(part, safe="") for part in rest)
    return f"{UI}/namespaces/{quote(namespace, safe='')}/{tail}"


def run_path(namespace: str, run: str) -> str:
    return ns_path(namespace, "runs", run)


def workflow_path(namespace: str, workflow: str) -> str:
    return ns_path(namespace, "workflows", workflow)


def runs_path(namespace: str, **query: str) -> str:
    """The run list, filtered (empty values left out)."""
    shown = {k: v for k, v in query.items() if v}
    return ns_path(namespace, "runs") + (f"?{urlencode(shown)}" if shown else "")


def scroll(table: Safe) -> Safe:
    """A table that scrolls sideways on a narrow screen instead of widening the page."""
    return el("div", table, class_="scroll")


def app_path(namespace: str, app: str) -> str:
    """The App's own page (what handlers get as ``installationUrl``)."""
    return ns_path(namespace, "apps", app)


def when(moment: datetime | None, now: datetime) -> Safe:
    if moment is None:
        return el("span", "—", class_="muted")
    stamp = moment.isoformat().replace("+00:00", "Z")
    return el("time", ago_text(moment, now), datetime=stamp, title=stamp)


# -- the frame -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """What every page shows around its content."""

    title: str
    #: The signed-in person (None on the login and error pages of nobody).
    user: str | None = None
    csrf: str | None = None
    #: (label, href or None for the current place)
    crumbs: tuple[tuple[str, str | None], ...] = ()
    #: The Server-Sent Events URL of this view; None: a static page.
    live: str | None = None
    #: The page's own URL, when the view is a form's answer shown at the form's POST address
    #: (the script goes there after another action instead of re-fetching this one).
    canonical: str | None = None
    #: Shown above every view: why this replica's lists are empty (a standby), or None.
    notice: str | None = None


def document(frame: Frame, view: Safe) -> str:
    crumbs = []
    for label, href in frame.crumbs:
        crumbs.append(el("span", "/", class_="sep"))
        crumbs.append(el("a", label, href=href) if href else el("span", label))
    who: Safe = raw("")
    if frame.user is not None:
        who = el(
            "div",
            el(
                "span", el("span", "Signed in as ", class_="wide"), el("b", frame.user, id="whoami")
            ),
            el(
                "form",
                el("input", type="hidden", name="csrf", value=frame.csrf),
                el("button", "Sign out", type="submit"),
                method="post",
                action=f"{UI}/logout",
                class_="inline",
            ),
            class_="who",
        )
    live = (
        el("span", "connecting…", id="live", class_="live off")
        if frame.live
        else el("span", "static page", id="live", class_="live")
    )
    body = join(
        [
            el(
                "header",
                el("a", el("span", "◆", class_="mark"), "Blockflow", href=f"{UI}/", class_="brand"),
                el("nav", *crumbs, class_="crumbs", aria_label="breadcrumbs"),
                who,
                class_="top",
            ),
            el("div", id="flash", class_="flash", hidden=True, role="status"),
            el("div", frame.notice, class_="alert notice", role="status")
            if frame.notice
            else raw(""),
            el("div", view, id="view", data_live=frame.live, data_href=frame.canonical),
            el("footer", live, el("span", "·"), el("span", f"Blockflow {__version__}")),
            el("script", raw(JS)),
        ]
    )
    head = join(
        [
            raw('<meta charset="utf-8">'),
            el("meta", name="viewport", content="width=device-width, initial-scale=1"),
            el("meta", name="referrer", content="same-origin"),
            el("title", f"{frame.title} · Blockflow"),
            el("style", raw(CSS)),
        ]
    )
    return f'<!doctype html>\n<html lang="en"><head>{head}</head><body>{body}</body></html>\n'


def _main(*children: object) -> Safe:
    return el("main", *children)


# -- namespace tabs ------------------------------------------------------------------------------


def tabs(namespace: str, current: str, approvals: int | None) -> Safe:
    items = [
        ("apps", "Apps & Blocks", ns_path(namespace, "apps")),
        ("workflows", "Workflows", ns_path(namespace, "workflows")),
        ("runs", "Runs", ns_path(namespace, "runs")),
        ("approvals", "Approvals", ns_path(namespace, "approvals")),
    ]
    links = []
    for key, label, href in items:
        badge: object = None
        if key == "approvals" and approvals:
            badge = el("span", approvals, class_="badge", id="approvals-count")
        links.append(
            el(
                "a",
                label,
                badge,
                href=href,
                aria_current="page" if key == current else None,
                id=f"tab-{key}",
            )
        )
    return el("nav", *links, class_="tabs")


# -- sign-in and errors ------------------------------------------------------------------------


def login_view(nonce: str, next_url: str, message: str | None) -> Safe:
    return el(
        "main",
        el(
            "section",
            el("h1", "Sign in"),
            el(
                "p",
                "This page shows what your Kubernetes identity may see. Paste a bearer token "
                "the cluster accepts (yours, or a ServiceAccount's):",
                class_="muted",
            ),
            el("div", message, class_="flash bad", id="login-error") if message else None,
            el(
                "form",
                el("input", type="hidden", name="nonce", value=nonce),
                el("input", type="hidden", name="next", value=next_url),
                el("label", "Token", for_="token"),
                el(
                    "input",
                    type="password",
                    name="token",
                    id="token",
                    autocomplete="off",
                    required=True,
                    spellcheck="false",
                ),
                el("button", "Sign in", type="submit", class_="primary"),
                method="post",
                action=f"{UI}/login",
            ),
            el(
                "p",
                "For example ",
                el("code", "kubectl create token NAME -n NAMESPACE"),
                " (Kubernetes ≥ 1.24). The token is checked with a TokenReview and kept only "
                "in an HttpOnly cookie of this site.",
                class_="muted small",
            ),
            class_="card",
        ),
        class_="login",
    )


def error_view(status: int, title: str, message: str) -> Safe:
    return el(
        "main",
        el(
            "section",
            el("h1", title),
            el("p", message, class_="muted"),
            el("p", el("a", "Back to the namespaces", href=f"{UI}/")),
            class_="card",
            data_status=str(status),
        ),
        class_="error-box",
    )
