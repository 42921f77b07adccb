"""`blockflow sync|drain|approve|reject`: the everyday nudges.

``sync`` and ``drain`` set the request annotations the lifecycle engine acts on;
``approve`` and ``reject`` answer a waiting approval step through the controller's
``/hooks/<token>`` with the workflow's hookKey (read from its Secret). A step whose token is
computed (``with.token: ${{ … }}``) has it computed here the way the controller computed it
— the same CEL over the same run — and checked against the hash the run's status keeps, so
a decision only ever goes to the step it is meant for.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.cli.common import (
    API,
    USAGE_ERROR,
    CliError,
    SubParsers,
    _execute,
    _get,
    _run_path,
    _secret_value,
    named,
    object_name,
    report,
    split_ref,
    status_of,
)
from controller.cli.overview import (
    DRAIN_ANNOTATION,
    SYNC_ANNOTATION,
    _hook_path,
    _snapshot_steps,
    _waiting_approvals,
    default_url,
)

if TYPE_CHECKING:
    from controller.cli.client import Client


def _cmd_request(args: argparse.Namespace) -> int:
    verb: str = args.request_verb
    plural, kind, name = split_ref(args.ref, ("apps", "blocks"), verb)
    annotation = SYNC_ANNOTATION if verb == "sync" else DRAIN_ANNOTATION

    def action(client: Client, namespace: str) -> int:
        from controller.cli.client import MERGE_PATCH, ApiError

        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        body = {"metadata": {"annotations": {annotation: now}}}
        try:
            changed = client.request(
                "PATCH",
                f"{API}/namespaces/{namespace}/{plural}/{name}",
                body=body,
                content_type=MERGE_PATCH,
            )
        except ApiError as exc:
            if exc.code == 404:
                raise CliError(
                    f"{kind.lower()} {name} not found in namespace {namespace}"
                ) from None
            raise
        report(args, changed, f"{named(plural, name)} {verb} requested", plural)
        return 0

    return _execute(args, action)


def _choose_step(run: dict[str, Any], namespace: str, wanted: str | None) -> dict[str, Any]:
    name = run["metadata"]["name"]
    state = status_of(run).get("state") or "not started"
    approvals = _waiting_approvals(run, namespace)
    if not approvals:
        raise CliError(f"workflowrun {name} is not waiting for an approval (state: {state})")
    if wanted is None:
        if len(approvals) > 1:
            steps = ", ".join(str(a["step"]) for a in approvals)
            raise CliError(f"workflowrun {name} waits for several approvals ({steps}): pick --step")
        return approvals[0]
    for approval in approvals:
        if approval["step"] == wanted:
            return approval
    steps = ", ".join(str(a["step"]) for a in approvals)
    raise CliError(
        f"step {wanted} of workflowrun {name} is not waiting for an approval "
        f"(waiting for one: {steps})"
    )


def computed_hook_path(run: dict[str, Any], record_name: str) -> str:
    """The hook path of an approval whose ``with.token`` is CEL: rendered as the controller
    rendered it (same context, same templating) and checked against the stored hash."""
    import hashlib

    from controller.api.workflowrun import WorkflowRunStatus
    from controller.workflows import fan_out
    from controller.workflows.run_context import cel_context
    from controller.workflows.templating import TemplateError, render

    name = run["metadata"]["name"]
    status_body = status_of(run)
    record = next((r for r in status_body.get("steps") or [] if r.get("name") == record_name), None)
    stored = (record or {}).get("hookTokenHash")
    step = _snapshot_steps(run).get(record_name.split("[", 1)[0]) or {}
    cannot = (
        f"step {record_name} of workflowrun {name} computes its hook token (with.token) "
        "from values the run no longer shows"
    )
    status = WorkflowRunStatus.model_validate(status_body)
    context = cel_context(run, status)
    iteration, item, index = fan_out.item_value(status, record_name)
    if iteration:
        context |= {"item": item, "index": index}
    try:
        token = render((step.get("with") or {}).get("token"), context, "with.token")
    except TemplateError as exc:
        raise CliError(f"{cannot}: {exc}") from None
    text = str(token)
    if not stored or hashlib.sha256(text.encode()).hexdigest() != stored:
        raise CliError(f"{cannot}: approve it on the web page (/ui/) instead")
    return _hook_path(text)


def _post_hook(url: str, key: str, payload: dict[str, Any], base: str) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        words = getattr(reason, "strerror", None) or str(reason) or "no answer"
        raise CliError(
            f"nothing answers at {base} ({words}): is the controller running? "
            "Point --url or BLOCKFLOW_URL at its HTTP server"
        ) from None
    try:
        answer: Any = json.loads(text) if text else {}
    except json.JSONDecodeError:
        answer = {"error": text.strip()[:300]}
    return status, answer


def _cmd_decide(args: argparse.Namespace) -> int:
    decision = "approve" if args.decision_verb == "approve" else "reject"
    base = str(args.url or default_url()).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise CliError(f"--url must be an http:// or https:// URL, got {base!r}", USAGE_ERROR)
    name = object_name(str(args.name), "workflowruns", "RUN")

    def action(client: Client, namespace: str) -> int:
        from controller.workflows.naming import HOOK_KEY_SIGNAL, workflow_secret_name

        run = _get(client, _run_path(namespace, name), "workflowrun", name, namespace)
        approval = _choose_step(run, namespace, args.step)
        path = approval["hookPath"] or computed_hook_path(run, str(approval["step"]))
        workflow = str(approval["workflow"])
        secret_name = workflow_secret_name(workflow)
        missing = CliError(
            f"workflow {workflow} has no hookKey (Secret {secret_name} in namespace "
            f"{namespace}; it exists once the workflow is activated)"
        )
        from controller.cli.client import ApiError

        try:
            key = _secret_value(
                client, namespace, secret_name, HOOK_KEY_SIGNAL, missing, f"hookKey of {workflow}"
            )
        except ApiError as exc:
            if exc.code != 403:
                raise
            raise CliError(
                f"you may not read Secret {secret_name} (the workflow's hookKey), which "
                f"approving from here needs; the web page at {base}/ui/ decides with your own "
                "identity (it needs update on the run)"
            ) from None
        payload: dict[str, Any] = {"decision": decision}
        if args.by is not None:
            payload["by"] = args.by
        if args.comment is not None:
            payload["comment"] = args.comment
        status, answer = _post_hook(base + path, key, payload, base)
        if status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else None
            raise CliError(f"the controller at {base} answered {status}: {message or answer}")
        done = "approved" if decision == "approve" else "rejected"
        print(f"{named('workflowruns', name)} step {approval['step']} {done}")
        return 0

    return _execute(args, action)


def add_action_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    """`blockflow sync`, `drain`, `approve`, `reject`."""
    for verb, annotation in (("sync", SYNC_ANNOTATION), ("drain", DRAIN_ANNOTATION)):
        parser = sub.add_parser(verb, help=f"request a {verb} of an App or Block ({annotation})")
        parser.add_argument(
            "ref", metavar="KIND/NAME", help="app/NAME or block/NAME (also apps/, blk/, bfapp/)"
        )
        parser.set_defaults(func=_cmd_request, request_verb=verb)

    for verb in ("approve", "reject"):
        parser = sub.add_parser(verb, help=f"{verb} a WorkflowRun's waiting approval step")
        parser.add_argument("name", metavar="RUN")
        parser.add_argument(
            "--step", metavar="STEP", help="the approval step (default: the only waiting one)"
        )
        parser.add_argument("--by", metavar="NAME", help="who decides (recorded in the outcome)")
        parser.add_argument("--comment", metavar="TEXT", help="a comment for the outcome")
        parser.add_argument(
            "--url",
            metavar="BASE",
            help="the controller's base URL (default: $BLOCKFLOW_URL, else "
            "http://127.0.0.1:$BLOCKFLOW_HTTP_PORT, 8080 when unset)",
        )
        parser.set_defaults(func=_cmd_decide, decision_verb=verb, outputs=("table",))
