"""`blockflow sync|drain|approve|reject`: the everyday nudges.

``sync`` and ``drain`` set the request annotations the lifecycle engine acts on;
``approve`` and ``reject`` answer a waiting approval step through the controller's
``/hooks/<token>`` with the workflow's hookKey (read from its Secret).
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.cli.common import (
    API,
    USAGE_ERROR,
    CliError,
    SubParsers,
    _error,
    _execute,
    _get,
    _namespace_option,
    _run_path,
    _secret_value,
)
from controller.cli.overview import (
    DEFAULT_URL,
    DRAIN_ANNOTATION,
    ENTITY_KINDS,
    SYNC_ANNOTATION,
    _split_ref,
    _waiting_approvals,
)
from controller.kube.objects import status_of

if TYPE_CHECKING:
    from controller.kube.rest import RestClient


def _cmd_request(args: argparse.Namespace) -> int:
    verb: str = args.request_verb
    try:
        (plural, kind), name = _split_ref(args.ref, ENTITY_KINDS, verb)
    except CliError as exc:
        _error(exc.message)
        return exc.code
    annotation = SYNC_ANNOTATION if verb == "sync" else DRAIN_ANNOTATION

    async def action(client: RestClient, namespace: str) -> int:
        from controller.kube.rest import MERGE_PATCH, KubeApiError

        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        body = {"metadata": {"annotations": {annotation: now}}}
        try:
            await client.request(
                "PATCH",
                f"{API}/namespaces/{namespace}/{plural}/{name}",
                body=body,
                content_type=MERGE_PATCH,
            )
        except KubeApiError as exc:
            if exc.code == 404:
                raise CliError(
                    f"{kind.lower()} {name} not found in namespace {namespace}"
                ) from None
            raise
        print(f"{kind.lower()}.blockflow.dev/{name} {verb} requested")
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


async def _hook_key(client: RestClient, namespace: str, workflow: str) -> str:
    from controller.workflows.naming import HOOK_KEY_SIGNAL, workflow_secret_name

    secret_name = workflow_secret_name(workflow)
    missing = CliError(
        f"workflow {workflow} has no hookKey (Secret {secret_name} in namespace {namespace}; "
        "it exists once the workflow is activated)"
    )
    return await _secret_value(
        client,
        namespace,
        secret_name,
        HOOK_KEY_SIGNAL,
        missing,
        f"hookKey of workflow {workflow}",
    )


async def _post_hook(url: str, key: str, payload: dict[str, Any]) -> tuple[int, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(url, json=payload, headers=headers) as response,
        ):
            text = await response.text()
            try:
                answer: Any = json.loads(text) if text else {}
            except json.JSONDecodeError:
                answer = {"error": text.strip()}
            return response.status, answer
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise CliError(
            f"cannot reach the controller at {url}: {exc or type(exc).__name__} "
            "(set --url or BLOCKFLOW_URL)"
        ) from None


def _cmd_decide(args: argparse.Namespace) -> int:
    decision = "approve" if args.decision_verb == "approve" else "reject"
    base = str(args.url or os.environ.get("BLOCKFLOW_URL") or DEFAULT_URL).rstrip("/")
    if not base.startswith(("http://", "https://")):
        _error(f"--url must be an http:// or https:// URL, got {base!r}")
        return USAGE_ERROR
    name: str = args.name

    async def action(client: RestClient, namespace: str) -> int:
        run = await _get(client, _run_path(namespace, name), "workflowrun", name, namespace)
        approval = _choose_step(run, namespace, args.step)
        if approval["hookPath"] is None:
            raise CliError(
                f"step {approval['step']} computes its hook token (with.token): "
                "POST the decision to /hooks/<token> yourself"
            )
        workflow = str(approval["workflow"])
        key = await _hook_key(client, namespace, workflow)
        payload: dict[str, Any] = {"decision": decision}
        if args.by is not None:
            payload["by"] = args.by
        if args.comment is not None:
            payload["comment"] = args.comment
        status, answer = await _post_hook(base + approval["hookPath"], key, payload)
        if status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else None
            raise CliError(f"the controller answered {status}: {message or answer}")
        done = "approved" if decision == "approve" else "rejected"
        print(f"workflowrun.blockflow.dev/{name} step {approval['step']} {done}")
        return 0

    return _execute(args, action)


def add_action_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    """`blockflow sync`, `drain`, `approve`, `reject`."""
    for verb, annotation in (("sync", SYNC_ANNOTATION), ("drain", DRAIN_ANNOTATION)):
        parser = sub.add_parser(verb, help=f"request a {verb} of an App or Block ({annotation})")
        parser.add_argument("ref", metavar="KIND/NAME", help="app/NAME or block/NAME")
        _namespace_option(parser)
        parser.set_defaults(func=_cmd_request, request_verb=verb)

    for verb in ("approve", "reject"):
        parser = sub.add_parser(verb, help=f"{verb} a WorkflowRun's waiting approval step")
        parser.add_argument("name", metavar="RUN")
        parser.add_argument(
            "--step", metavar="STEP", help="the approval step (default: the only waiting one)"
        )
        parser.add_argument("--by", metavar="NAME", help="who decides (recorded in the outcome)")
        parser.add_argument("--comment", metavar="TEXT", help="a comment for the outcome")
        _namespace_option(parser)
        parser.add_argument(
            "--url",
            metavar="BASE",
            help=f"the controller's base URL (default: $BLOCKFLOW_URL, else {DEFAULT_URL})",
        )
        parser.set_defaults(func=_cmd_decide, decision_verb=verb)
