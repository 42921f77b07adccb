"""The operator's web page (``/ui/`` on the controller's HTTP server).

Namespaces → Apps (status, description, non-sensitive signals, prompts as buttons) → their
Blocks; Workflows (phase, version, counters, success rate); a run's timeline; pending
approvals with Approve / Reject. Server-rendered HTML with live updates (Server-Sent Events);
every page and action authenticated with a Kubernetes bearer token (TokenReview) and
authorized for that person (SubjectAccessReview). See docs/operations.md, "The web page".

- :mod:`controller.ui.views` — what each page shows (pure, from API objects);
- :mod:`controller.ui.frame`, :mod:`controller.ui.pages`, :mod:`controller.ui.run_page` — the
  HTML (pure, escaped by construction, :mod:`.html`);
- :mod:`controller.ui.auth` — TokenReview / SubjectAccessReview, cached; CSRF tokens;
- :mod:`controller.ui.live` — the change feed the controller's watches fill;
- :mod:`controller.ui.approvals` — Approve / Reject through the hook path, in process;
- :mod:`controller.ui.sessions` — sign-in, cookies, CSRF; :mod:`controller.ui.web` — the routes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from controller.ui.live import ChangeFeed

if TYPE_CHECKING:
    from controller.kube.rest import Requester
    from controller.workflows.runtime import WorkflowRuntime


def ui_routes(
    client: Requester,
    *,
    key: bytes,
    feed: ChangeFeed,
    workflows: WorkflowRuntime | None = None,
    namespaces: Sequence[str] = (),
    public_url: str | None = None,
) -> Callable[[web.Application], None]:
    """What :func:`controller.server.app.build_app` calls (``extra=``) to add the page."""
    from controller.ui.approvals import RuntimeApprovals
    from controller.ui.web import Page

    page = Page(
        client,
        key=key,
        feed=feed,
        approvals=RuntimeApprovals(workflows) if workflows is not None else None,
        namespaces=namespaces,
        public_url=public_url,
    )
    return page.install


__all__ = ["ChangeFeed", "ui_routes"]
