"""The forms of the page's actions: each a plain POST with the CSRF token and where to go back
to (the script sends ``data-async`` ones without leaving the page; without it the browser
posts and follows the redirect)."""

from __future__ import annotations

from controller.ui.html import Safe, el


def action_button(
    action: str,
    label: str,
    csrf: str | None,
    back: str,
    *,
    class_: str = "secondary",
    fields: dict[str, str] | None = None,
    confirm: str | None = None,
    asynchronous: bool = True,
    id_: str | None = None,
) -> Safe:
    """One button in its own form. ``confirm``: a checkbox that must be ticked first (the
    browser refuses the form without it, and so does the server)."""
    hidden = [
        el("input", type="hidden", name=name, value=value) for name, value in (fields or {}).items()
    ]
    check = (
        el(
            "label",
            el(
                "input",
                type="checkbox",
                name="confirm",
                value="yes",
                required=True,
                id=f"{id_}-confirm" if id_ else None,
            ),
            " ",
            confirm,
            class_="confirm small",
        )
        if confirm
        else None
    )
    return el(
        "form",
        el("input", type="hidden", name="csrf", value=csrf),
        el("input", type="hidden", name="next", value=back),
        *hidden,
        check,
        el("button", label, type="submit", class_=class_),
        method="post",
        action=action,
        class_="inline action",
        data_async=asynchronous,
        id=id_,
    )


def no_permission(what: str) -> Safe:
    return el("span", f"You may not {what}.", class_="muted small no-permission")
