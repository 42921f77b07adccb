"""`blockflow workflow activate|pause|archive|trigger|url`.

Activate, pause and archive are merge patches of a Workflow's ``spec.state``; trigger
creates a WorkflowRun the way the controller's triggers do
(:func:`controller.workflows.naming.new_run_body`); url prints a workflow's trigger URL.
Installed as ``kubectl-blockflow`` too, so ``kubectl blockflow workflow trigger NAME``
works as a kubectl plugin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from controller.cli.common import (
    ARCHIVED,
    POLL_INTERVAL,
    STATE_VERBS,
    TERMINAL_RUN_STATES,
    USAGE_ERROR,
    CliError,
    SubParsers,
    _error,
    _execute,
    _get,
    _namespace_option,
    _run_path,
    _secret_value,
    _workflow_path,
)
from controller.kube.objects import spec_of, status_of

if TYPE_CHECKING:
    from controller.kube.rest import RestClient


def _cmd_set_state(args: argparse.Namespace) -> int:
    verb: str = args.verb
    name: str = args.name
    target, done = STATE_VERBS[verb]

    async def action(client: RestClient, namespace: str) -> int:
        from controller.kube.rest import MERGE_PATCH, KubeApiError

        path = _workflow_path(namespace, name)
        for attempt in range(1, 4):
            workflow = await _get(client, path, "workflow", name, namespace)
            current = spec_of(workflow).get("state")
            if current == ARCHIVED and target != ARCHIVED:
                raise CliError(
                    f"workflow {name} is Archived, which is final: it cannot be {done} "
                    "(create a new Workflow instead)"
                )
            # The resourceVersion makes the check above and the patch one atomic edit.
            version = workflow["metadata"]["resourceVersion"]
            body = {"metadata": {"resourceVersion": version}, "spec": {"state": target}}
            try:
                await client.request("PATCH", path, body=body, content_type=MERGE_PATCH)
            except KubeApiError as exc:
                if exc.code == 409 and attempt < 3:
                    continue
                if exc.code == 404:
                    raise CliError(f"workflow {name} not found in namespace {namespace}") from None
                raise
            print(f"workflow.blockflow.dev/{name} state set to {target}")
            return 0
        raise AssertionError("unreachable")  # pragma: no cover

    return _execute(args, action)


def _read_input(args: argparse.Namespace) -> object:
    """The run's input from --input or --input-file (JSON); CliError(code 2) when invalid."""
    if args.input is not None:
        source, flag = str(args.input), "--input"
    elif args.input_file is not None:
        flag = "--input-file"
        try:
            if args.input_file == "-":
                source = sys.stdin.read()
            else:
                with open(args.input_file, encoding="utf-8") as handle:
                    source = handle.read()
        except OSError as exc:
            raise CliError(f"{flag}: cannot read {args.input_file}: {exc.strerror}", 2) from None
    else:
        return None
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise CliError(f"{flag} is not valid JSON: {exc}", USAGE_ERROR) from None
    if not isinstance(value, dict):
        raise CliError(f'{flag} must be a JSON object, e.g. {{"orderId": 42}}', USAGE_ERROR)
    return value


def _cmd_trigger(args: argparse.Namespace) -> int:
    name: str = args.name
    try:
        input_ = _read_input(args)
    except CliError as exc:
        _error(exc.message)
        return exc.code
    if args.timeout is not None and not args.wait:
        _error("--timeout is only meaningful with --wait")
        return USAGE_ERROR

    async def action(client: RestClient, namespace: str) -> int:
        from controller.workflows.admission import refusal
        from controller.workflows.naming import new_run_body

        workflow = await _get(client, _workflow_path(namespace, name), "workflow", name, namespace)
        refused = refusal(workflow, name, namespace, None)
        if refused is not None:  # a run would only fail saying this: say it now
            raise CliError(f"cannot trigger: {refused}")
        from controller.workflows.triggers import refused_input

        wrong = refused_input(workflow, input_)
        if wrong is not None:  # the same check the controller makes, before any run exists
            raise CliError(f"cannot trigger: --input: {wrong}")
        body = new_run_body(
            namespace, name, workflow["metadata"]["uid"], datetime.now(UTC), input_=input_
        )
        created = await client.request("POST", _run_path(namespace), body=body)
        run = str(created["metadata"]["name"])
        print(run, flush=True)
        if not args.wait:
            return 0
        return await _wait_for_run(client, namespace, run, args.timeout or 300.0)

    return _execute(args, action)


async def _wait_for_run(client: RestClient, namespace: str, run: str, limit: float) -> int:
    """Poll the run until it is finished: print its state; 0 when it completed."""
    deadline = time.monotonic() + limit
    state: str | None = None
    while True:
        try:
            current = await _get(client, _run_path(namespace, run), "workflowrun", run, namespace)
        except CliError:
            raise CliError(f"workflowrun {run} was deleted while waiting for it") from None
        status = status_of(current)
        state = status.get("state")
        if state in TERMINAL_RUN_STATES:
            print(state)
            error = status.get("error") or {}
            if state != "completed" and error.get("message"):
                step = f" (step {error['step']})" if error.get("step") else ""
                _error(f"run {state}: {error['message']}{step}")
            return 0 if state == "completed" else 1
        if time.monotonic() >= deadline:
            raise CliError(
                f"timed out after {limit:g}s waiting for workflowrun {run} to finish "
                f"(state: {state or 'not started'})"
            )
        await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


def _cmd_url(args: argparse.Namespace) -> int:
    name: str = args.name

    async def action(client: RestClient, namespace: str) -> int:
        from controller.workflows.naming import TRIGGER_URL_SIGNAL, workflow_secret_name

        missing = CliError(
            f"workflow {name} has no trigger URL (only webhook and block triggers have one, "
            "and only once activated)"
        )
        url = await _secret_value(
            client,
            namespace,
            workflow_secret_name(name),
            TRIGGER_URL_SIGNAL,
            missing,
            f"trigger URL of workflow {name}",
        )
        print(url)
        return 0

    return _execute(args, action)


def add_workflow_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    """`blockflow workflow activate|pause|archive|trigger|url NAME`."""
    workflow = sub.add_parser(
        "workflow",
        aliases=["wf"],
        help="activate, pause, archive or trigger a Workflow, or print its trigger URL",
    )
    verbs = workflow.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (target, _) in STATE_VERBS.items():
        parser = verbs.add_parser(verb, help=f"set spec.state to {target}")
        parser.add_argument("name", metavar="NAME")
        _namespace_option(parser)
        parser.set_defaults(func=_cmd_set_state)

    trigger = verbs.add_parser("trigger", help="start a run now; prints the run's name")
    trigger.add_argument("name", metavar="NAME")
    _namespace_option(trigger)
    given = trigger.add_mutually_exclusive_group()
    given.add_argument("--input", metavar="JSON", help="the run's input (the event CEL sees)")
    given.add_argument(
        "--input-file", metavar="PATH", help="read the input (JSON) from a file, - for stdin"
    )
    trigger.add_argument("--wait", action="store_true", help="wait for the run to finish")
    trigger.add_argument(
        "--timeout", type=float, metavar="S", help="with --wait: give up after S seconds (300)"
    )
    trigger.set_defaults(func=_cmd_trigger)

    url = verbs.add_parser("url", help="print the workflow's trigger URL (webhook/block triggers)")
    url.add_argument("name", metavar="NAME")
    _namespace_option(url)
    url.set_defaults(func=_cmd_url)
