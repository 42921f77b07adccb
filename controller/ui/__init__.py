"""The operator's web page (``/ui/`` on the controller's HTTP server).

Namespaces → Apps (status, description, non-sensitive signals, prompts as buttons, Sync) →
their Blocks; Workflows (status, version, counters, success rate) and a page per workflow
(trigger, steps, activation, YAML; Trigger, Activate, Pause, Archive); every run of a
namespace, paged and filtered on the server; a run's page (steps with their inputs and
outputs, Events, related runs; Stop); pending approvals with their message and Approve /
Reject. Server-rendered HTML with live updates (Server-Sent Events); every page and action
authenticated with a Kubernetes bearer token (TokenReview) and authorized for that person
(SubjectAccessReview). See docs/operations.md, "The web page".

- :mod:`controller.ui.views`, :mod:`.run_views`, :mod:`.workflow_views` — what each page shows
  (pure, from API objects; :mod:`.redact` hides sensitive-looking values);
- :mod:`controller.ui.run_index` — every watched run, summarized: what run lists page through;
- :mod:`controller.ui.frame`, :mod:`.pages`, :mod:`.runs_page`, :mod:`.run_page`,
  :mod:`.workflow_page`, :mod:`.actions_html` — the HTML (pure, escaped by construction,
  :mod:`.html`);
- :mod:`controller.ui.auth` — TokenReview / SubjectAccessReview, cached; CSRF tokens;
- :mod:`controller.ui.live` — the change feed the controller's watches fill;
- :mod:`controller.ui.approvals` — Approve / Reject through the hook path, in process;
- :mod:`controller.ui.sessions` — sign-in, cookies, CSRF; :mod:`.access` — reviews and reads;
  :mod:`.actions`, :mod:`.workflow_routes` — the actions; :mod:`controller.ui.web` — the routes.
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
