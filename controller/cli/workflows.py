"""`blockflow workflow list|get|activate|pause|archive|trigger|url`.

List and get read Workflows; activate, pause and archive are merge patches of a Workflow's
``spec.state``; trigger creates a WorkflowRun the way the controller's triggers do
(:func:`controller.workflows.naming.new_run_body`); url prints a workflow's trigger URL.
Installed as ``kubectl-blockflow`` too, so ``kubectl blockflow workflow trigger NAME``
works as a kubectl plugin.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.cli.common import (
    ARCHIVED,
    STATE_VERBS,
    USAGE_ERROR,
    CliError,
    SubParsers,
    _age,
    _error,
    _execute,
    _get,
    _print_document,
    _run_path,
    _secret_value,
    _table,
    _workflow_path,
    add_selector,
    named,
    no_resources,
    object_name,
    print_list,
    report,
    spec_of,
    status_of,
    workflow_ref,
)

if TYPE_CHECKING:
    from controller.cli.client import Client

PLURAL = "workflows"
RECENT_RUNS = 5


def _cmd_set_state(args: argparse.Namespace) -> int:
    verb: str = args.verb
    name = object_name(str(args.name), PLURAL, "NAME")
    target, done = STATE_VERBS[verb]

    def action(client: Client, namespace: str) -> int:
        from controller.cli.client import MERGE_PATCH, ApiError

        path = _workflow_path(namespace, name)
        for attempt in range(1, 4):
            workflow = _get(client, path, "workflow", name, namespace)
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
                changed = client.request("PATCH", path, body=body, content_type=MERGE_PATCH)
            except ApiError as exc:
                if exc.code == 409 and attempt < 3:
                    continue
                if exc.code == 404:
                    raise CliError(f"workflow {name} not found in namespace {namespace}") from None
                raise
            report(args, changed, f"{named(PLURAL, name)} state set to {target}", PLURAL)
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
    name = object_name(str(args.name), PLURAL, "NAME")
    try:
        input_ = _read_input(args)
    except CliError as exc:
        _error(exc.message)
        return exc.code
    if args.timeout is not None and not args.wait:
        _error("--timeout is only meaningful with --wait")
        return USAGE_ERROR

    def action(client: Client, namespace: str) -> int:
        from controller.workflows.admission import refusal
        from controller.workflows.naming import new_run_body

        workflow = _get(client, _workflow_path(namespace, name), "workflow", name, namespace)
        refused = refusal(workflow, name, namespace, None)
        if refused is not None:  # a run would only fail saying this: say it now
            raise CliError(f"cannot trigger: {refused}")
        from controller.workflows.triggers import refused_input

        wrong = refused_input(workflow, input_)
        if wrong is not None:  # the same check the controller makes, before any run exists
            raise CliError(f"cannot trigger: --input: {wrong}")
        body = new_run_body(
            namespace,
            name,
            workflow["metadata"]["uid"],
            datetime.now(UTC),
            input_=input_,
            trigger="manual",
        )
        created = client.request("POST", _run_path(namespace), body=body)
        run = str(created["metadata"]["name"])
        if args.output in ("json", "yaml") and not args.wait:
            _print_document(created, args.output)
        else:
            print(named("workflowruns", run) if args.output == "name" else run, flush=True)
        if not args.wait:
            return 0
        return _wait_for_run(client, namespace, run, args.timeout or 300.0)

    return _execute(args, action)


def _wait_for_run(client: Client, namespace: str, run: str, limit: float) -> int:
    """Watch the run until it is finished: print its state; 0 when it completed."""
    from controller.cli.runs import wait_for_end

    status = status_of(wait_for_end(client, namespace, run, limit))
    state = status.get("state")
    print(state)
    error = status.get("error") or {}
    if state != "completed" and error.get("message"):
        step = f" (step {error['step']})" if error.get("step") else ""
        _error(f"run {state}: {error['message']}{step}")
    return 0 if state == "completed" else 1


def _cmd_url(args: argparse.Namespace) -> int:
    name = object_name(str(args.name), PLURAL, "NAME")

    def action(client: Client, namespace: str) -> int:
        from controller.workflows.naming import TRIGGER_URL_SIGNAL, workflow_secret_name

        missing = CliError(
            f"workflow {name} has no trigger URL (only webhook and block triggers have one, "
            "and only once activated)"
        )
        url = _secret_value(
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


def _trigger_text(spec: dict[str, Any]) -> str:
    trigger = spec.get("trigger") or {}
    for kind, value in trigger.items():
        if value is None:
            continue
        if kind == "event":
            return f"event {value}"
        if kind == "schedule" and isinstance(value, dict):
            return f"schedule {value.get('cron')}"
        if kind == "block" and isinstance(value, dict):
            return f"block {value.get('app', '')}/{value.get('type', '')}".replace(" /", " ")
        return str(kind)
    return "<none>"


def _lifecycle(workflow: dict[str, Any]) -> tuple[str, str]:
    lifecycle = status_of(workflow).get("lifecycle") or {}
    description = " ".join(str(lifecycle.get("description") or "").split())
    return str(lifecycle.get("status") or "<none>"), description or "<none>"


def _cmd_list(args: argparse.Namespace) -> int:
    everywhere = bool(args.all_namespaces)

    def action(client: Client, namespace: str) -> int:
        params = {"labelSelector": args.selector} if args.selector else None
        path = _workflow_path(None if everywhere else namespace)
        listed = client.request("GET", path, params=params)
        items = sorted(
            listed.get("items") or [],
            key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"]),
        )
        output = args.output or "table"
        if print_list(items, output, PLURAL):
            return 0
        if not items:
            no_resources(namespace, everywhere)
            return 0
        now = datetime.now(UTC)
        head = ["NAME", "STATE", "PHASE", "STATUS", "VERSION", "RUNS", "LAST RUN", "AGE"]
        if output == "wide":
            head += ["TRIGGER", "DESCRIPTION"]
        rows = [["NAMESPACE", *head] if everywhere else head]
        for item in items:
            spec, status = spec_of(item), status_of(item)
            lifecycle, description = _lifecycle(item)
            version = status.get("version")
            row = [
                item["metadata"]["name"],
                str(spec.get("state") or "Active"),
                str(status.get("phase") or "<none>"),
                lifecycle,
                "<none>" if version is None else str(version),
                str(status.get("runCount") or 0),
                _age(status.get("lastRunAt"), now),
                _age(item["metadata"].get("creationTimestamp"), now),
            ]
            if output == "wide":
                row += [_trigger_text(spec), description]
            rows.append([item["metadata"].get("namespace", ""), *row] if everywhere else row)
        print(_table(rows))
        return 0

    return _execute(args, action)


def _describe(workflow: dict[str, Any], runs: list[dict[str, Any]], namespace: str) -> str:
    spec, status = spec_of(workflow), status_of(workflow)
    now = datetime.now(UTC)
    lifecycle, description = _lifecycle(workflow)
    fields: list[tuple[str, str]] = [
        ("Name", workflow["metadata"]["name"]),
        ("Namespace", namespace),
        ("State", str(spec.get("state") or "Active")),
        ("Phase", str(status.get("phase") or "<none>")),
        ("Status", lifecycle if description == "<none>" else f"{lifecycle}: {description}"),
        ("Version", str(status.get("version") if status.get("version") is not None else "<none>")),
        ("Trigger", _trigger_text(spec)),
        (
            "Runs",
            f"{status.get('runCount') or 0} ({status.get('successCount') or 0} succeeded, "
            f"{status.get('failureCount') or 0} failed)",
        ),
    ]
    if spec.get("description"):
        fields.insert(2, ("Description", " ".join(str(spec["description"]).split())))
    if status.get("lastRunAt"):
        fields.append(("Last run", f"{status['lastRunAt']} ({_age(status['lastRunAt'], now)} ago)"))
    width = max(len(label) for label, _ in fields) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in fields]
    steps = [*(spec.get("steps") or []), *(spec.get("fallback") or [])]
    lines.append("Steps:" if steps else f"{'Steps:':<{width}}<none>")
    if steps:
        rows = [["NAME", "USES", "NEEDS"]]
        for step in steps:
            uses = step.get("uses") or {}
            used = f"{uses['app']}/{uses.get('type')}" if uses.get("app") else str(uses.get("type"))
            rows.append([str(step.get("name")), used, ", ".join(step.get("needs") or []) or "-"])
        lines.append(_table(rows, indent="  "))
    lines.append("Recent runs:" if runs else f"{'Recent runs:':<{width}}<none>")
    if runs:
        rows = [["NAME", "STATE", "AGE"]]
        for run in runs:
            rows.append(
                [
                    run["metadata"]["name"],
                    str(status_of(run).get("state") or "<none>"),
                    _age(run["metadata"].get("creationTimestamp"), now),
                ]
            )
        lines.append(_table(rows, indent="  "))
    return "\n".join(lines)


def _cmd_get(args: argparse.Namespace) -> int:
    name = object_name(str(args.name), PLURAL, "NAME")

    def action(client: Client, namespace: str) -> int:
        from controller.workflows.naming import WORKFLOW_LABEL, label_value

        workflow = _get(client, _workflow_path(namespace, name), "workflow", name, namespace)
        output = args.output or "table"
        if output in ("json", "yaml"):
            _print_document(workflow, output)
            return 0
        if output == "name":
            print(named(PLURAL, name))
            return 0
        selector = {"labelSelector": f"{WORKFLOW_LABEL}={label_value(name)}"}
        listed = client.request("GET", _run_path(namespace), params=selector)
        runs = [r for r in listed.get("items") or [] if workflow_ref(r) == name]
        runs.sort(key=lambda r: str(r["metadata"].get("creationTimestamp")), reverse=True)
        print(_describe(workflow, runs[:RECENT_RUNS], namespace))
        return 0

    return _execute(args, action)


def add_workflow_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    """`blockflow workflow list|get|activate|pause|archive|trigger|url`."""
    workflow = sub.add_parser(
        "workflow",
        aliases=["wf", "workflows", "bfwf"],
        help="list, show, activate, pause, archive or trigger Workflows, or print a trigger URL",
    )
    verbs = workflow.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", aliases=["ls"], help="list Workflows")
    add_selector(listing)
    listing.set_defaults(func=_cmd_list, lists=True)
    get = verbs.add_parser("get", help="show a Workflow: trigger, steps, counters, recent runs")
    get.add_argument("name", metavar="NAME")
    get.set_defaults(func=_cmd_get)
    for verb, (target, _) in STATE_VERBS.items():
        parser = verbs.add_parser(verb, help=f"set spec.state to {target}")
        parser.add_argument("name", metavar="NAME")
        parser.set_defaults(func=_cmd_set_state)

    trigger = verbs.add_parser("trigger", help="start a run now; prints the run's name")
    trigger.add_argument("name", metavar="NAME")
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
    url.set_defaults(func=_cmd_url, outputs=("table",))
