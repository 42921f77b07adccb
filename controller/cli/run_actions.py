"""`blockflow run retry|pause|resume`: what an operator does to a run, as edits of its spec.

Each is a merge patch of the WorkflowRun (`spec.retry` raised by one, `spec.paused`), so the
API server's RBAC decides who may, and the controller acts on it in the run's next
reconcile. A command that cannot succeed — retrying a run that has not ended, resuming a
run that is not paused — fails at once with the reason and exit status 1.
"""

from __future__ import annotations

import argparse
import getpass
from typing import TYPE_CHECKING, Any

from controller.cli.common import (
    CliError,
    _execute,
    _get,
    _run_path,
    named,
    object_name,
    report,
    spec_of,
    status_of,
)

if TYPE_CHECKING:
    from controller.cli.client import Client

RETRYABLE = ("failed", "terminated", "cancelled")
ENDED = ("completed", *RETRYABLE)
RETRIED_BY = "blockflow.dev/retried-by"


def whoami(client: Client) -> str:
    """Who the API server says we are (SelfSubjectReview), else the local user."""
    from controller.cli.client import ApiError

    for version in ("v1", "v1beta1", "v1alpha1"):
        try:
            review = client.request(
                "POST",
                f"/apis/authentication.k8s.io/{version}/selfsubjectreviews",
                body={
                    "apiVersion": f"authentication.k8s.io/{version}",
                    "kind": "SelfSubjectReview",
                },
            )
        except ApiError as exc:
            if exc.code in (404, 405):
                continue
            break
        name = ((review.get("status") or {}).get("userInfo") or {}).get("username")
        if name:
            return str(name)
    return f"{getpass.getuser()} (local user)"


def _patch(client: Client, namespace: str, name: str, patch: dict[str, Any]) -> Any:
    from controller.cli.client import MERGE_PATCH

    return client.request("PATCH", _run_path(namespace, name), body=patch, content_type=MERGE_PATCH)


def _cmd_run_retry(args: argparse.Namespace) -> int:
    name = object_name(str(args.name), "workflowruns", "NAME")

    def action(client: Client, namespace: str) -> int:
        run = _get(client, _run_path(namespace, name), "workflowrun", name, namespace)
        state = status_of(run).get("state")
        if state not in RETRYABLE:
            raise CliError(
                f"workflowrun {name} is {state or 'not started'}: only a failed, terminated or "
                "cancelled run can be retried"
            )
        # The next retry: asking again before the controller acted asks for the same one.
        wanted = len(status_of(run).get("retries") or []) + 1
        if int(spec_of(run).get("retry") or 0) >= wanted:
            print(f"workflowrun.blockflow.dev/{name} retry {wanted} already requested")
            return 0
        by = args.by or whoami(client)
        changed = _patch(
            client,
            namespace,
            name,
            {
                "metadata": {
                    "annotations": {RETRIED_BY: by},
                    "resourceVersion": run["metadata"]["resourceVersion"],
                },
                # A cancelled run retried must not be cancelled again at once.
                "spec": {"retry": wanted, "cancel": False},
            },
        )
        report(args, changed, f"{named('workflowruns', name)} retry {wanted} requested (by {by})")
        return 0

    return _execute(args, action)


def _pause_or_resume(args: argparse.Namespace, paused: bool) -> int:
    name = object_name(str(args.name), "workflowruns", "NAME")
    verb = "pause" if paused else "resume"

    def action(client: Client, namespace: str) -> int:
        run = _get(client, _run_path(namespace, name), "workflowrun", name, namespace)
        state = status_of(run).get("state")
        if state in ENDED:
            raise CliError(f"workflowrun {name} has ended ({state}): there is nothing to {verb}")
        if not paused and not spec_of(run).get("paused"):
            raise CliError(f"workflowrun {name} is not paused")
        changed = _patch(client, namespace, name, {"spec": {"paused": paused}})
        done = "paused" if paused else "resumed"
        report(args, changed, f"{named('workflowruns', name)} {done}")
        return 0

    return _execute(args, action)


def add_run_action_verbs(verbs: Any) -> None:
    """Register retry, pause and resume on `blockflow run`'s subcommands."""
    retry = verbs.add_parser(
        "retry",
        help="retry a failed, terminated or cancelled run from the steps that did not complete",
    )
    retry.add_argument("name", metavar="NAME")
    retry.add_argument(
        "--by", help="who retries it, as recorded in the run (default: who the API server says)"
    )
    retry.set_defaults(func=_cmd_run_retry)
    for verb, paused, text in (
        ("pause", True, "pause a run: no new step starts, timers wait (sets spec.paused)"),
        ("resume", False, "resume a paused run where it was"),
    ):
        parser = verbs.add_parser(verb, help=text)
        parser.add_argument("name", metavar="NAME")
        parser.set_defaults(func=lambda a, p=paused: _pause_or_resume(a, p))
