"""`blockflow workflow activate|pause|archive|trigger|url` and `blockflow run get|list|stop`.

These verbs only read and edit API objects (no controller needed): activate, pause and
archive are merge patches of a Workflow's ``spec.state``, trigger creates a WorkflowRun
the way the controller's triggers do (:func:`controller.workflows.naming.new_run_body`),
and stop sets a run's ``spec.cancel``. Installed as ``kubectl-blockflow`` too, so
``kubectl blockflow workflow trigger NAME`` works as a kubectl plugin.

Expected failures (API errors, a missing object, bad input) print one line on stderr and
exit 1 (2 for usage errors), never a traceback. This module imports only the standard
library at load time, so ``blockflow --help`` stays fast; the Kubernetes client is loaded
when a verb runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.times import parse_time

if TYPE_CHECKING:
    from controller.kube.rest import KubeApiError, RestClient

API = "/apis/blockflow.dev/v1alpha1"
TERMINAL_RUN_STATES = ("completed", "failed", "cancelled", "terminated")
FINISHED_STEP_STATES = ("completed", "failed", "skipped", "cancelled")
ARCHIVED = "Archived"
USAGE_ERROR = 2
POLL_INTERVAL = 0.5

#: verb -> (the spec.state it sets, its past participle for messages)
STATE_VERBS = {
    "activate": ("Active", "activated"),
    "pause": ("Paused", "paused"),
    "archive": (ARCHIVED, "archived"),
}

Action = Callable[["RestClient", str], Awaitable[int]]
SubParsers = argparse._SubParsersAction  # the type argparse's add_subparsers returns


class CliError(Exception):
    """An expected failure: its message is printed as one line, then the CLI exits `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message, self.code = message, code


# -- plumbing ----------------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)


def _api_message(exc: KubeApiError) -> str:
    return f"Error from server ({exc.reason}): {exc.message or exc.reason}"


def _namespace_arg(args: argparse.Namespace) -> str | None:
    """-n of the verb; for `blockflow run -n NS list`, the controller's -n given before it."""
    chosen = getattr(args, "target_namespace", None)
    if chosen:
        return str(chosen)
    before = getattr(args, "namespace", None)
    if isinstance(before, list) and before:
        return str(before[-1])
    return None


def _execute(args: argparse.Namespace, action: Action) -> int:
    """Run one verb against the kubeconfig's cluster; expected errors become one line."""
    import aiohttp

    from controller.kube.connection import CredentialsError, connection_info, load_config
    from controller.kube.rest import KubeApiError, RestClient

    try:
        single = load_config()
    except CredentialsError as exc:
        _error(str(exc))
        return 1
    namespace = _namespace_arg(args) or single.namespace or "default"

    async def main() -> int:
        client = RestClient(lambda: connection_info(single), limit=4)
        try:
            return await action(client, namespace)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except CliError as exc:
        _error(exc.message)
        return exc.code
    except KubeApiError as exc:
        _error(_api_message(exc))
        return 1
    except CredentialsError as exc:
        _error(str(exc))
        return 1
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        _error(
            f"cannot reach the API server at {single.cluster.server}: {exc or type(exc).__name__}"
        )
        return 1
    except KeyboardInterrupt:
        return 130


async def _get(client: RestClient, path: str, kind: str, name: str, namespace: str) -> Any:
    from controller.kube.rest import KubeApiError

    try:
        return await client.request("GET", path)
    except KubeApiError as exc:
        if exc.code == 404:
            raise CliError(f"{kind} {name} not found in namespace {namespace}") from None
        raise


def _workflow_path(namespace: str, name: str = "") -> str:
    return f"{API}/namespaces/{namespace}/workflows" + (f"/{name}" if name else "")


def _run_path(namespace: str, name: str = "") -> str:
    return f"{API}/namespaces/{namespace}/workflowruns" + (f"/{name}" if name else "")


def _print_document(document: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(document, indent=2))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def _table(rows: list[list[str]], indent: str = "") -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append(indent + "   ".join(cells).rstrip())
    return "\n".join(lines)


def human_duration(seconds: float) -> str:
    """kubectl's short durations: 45s, 3m20s, 45m, 3h20m, 20h, 3d4h, 30d, 2y."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _age(value: object, now: datetime) -> str:
    when = parse_time(value)
    return human_duration((now - when).total_seconds()) if when else "<none>"


# -- workflow verbs ----------------------------------------------------------------------------


def _cmd_set_state(args: argparse.Namespace) -> int:
    verb: str = args.verb
    name: str = args.name
    target, done = STATE_VERBS[verb]

    async def action(client: RestClient, namespace: str) -> int:
        from controller.kube.rest import MERGE_PATCH, KubeApiError

        path = _workflow_path(namespace, name)
        for attempt in range(1, 4):
            workflow = await _get(client, path, "workflow", name, namespace)
            current = (workflow.get("spec") or {}).get("state")
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
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise CliError(f"{flag} is not valid JSON: {exc}", USAGE_ERROR) from None


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
        from controller.workflows.naming import new_run_body

        workflow = await _get(client, _workflow_path(namespace, name), "workflow", name, namespace)
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
        status = current.get("status") or {}
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
        from controller.kube.rest import KubeApiError
        from controller.workflows.naming import TRIGGER_URL_SIGNAL, workflow_secret_name

        missing = CliError(
            f"workflow {name} has no trigger URL (only webhook and block triggers have one, "
            "and only once activated)"
        )
        path = f"/api/v1/namespaces/{namespace}/secrets/{workflow_secret_name(name)}"
        try:
            secret = await client.request("GET", path)
        except KubeApiError as exc:
            if exc.code == 404:
                raise missing from None
            raise
        encoded = (secret.get("data") or {}).get(TRIGGER_URL_SIGNAL)
        if not encoded:
            raise missing
        try:
            url = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise CliError(f"the trigger URL of workflow {name} is not valid base64") from None
        print(url)
        return 0

    return _execute(args, action)


# -- run verbs ---------------------------------------------------------------------------------


def _steps_summary(run: dict[str, Any]) -> str:
    records = (run.get("status") or {}).get("steps") or []
    done = sum(1 for r in records if r.get("state") in FINISHED_STEP_STATES)
    return f"{done}/{len(records)}"


def _cmd_run_list(args: argparse.Namespace) -> int:
    workflow: str | None = args.workflow

    async def action(client: RestClient, namespace: str) -> int:
        from controller.workflows.naming import WORKFLOW_LABEL, label_value

        params = (
            {"labelSelector": f"{WORKFLOW_LABEL}={label_value(workflow)}"} if workflow else None
        )
        listed = await client.request("GET", _run_path(namespace), params=params)
        items = sorted(listed.get("items") or [], key=lambda item: item["metadata"]["name"])
        if workflow:  # a long name's label is a digest: keep only this workflow's runs
            items = [
                i
                for i in items
                if (i.get("spec") or {}).get("workflowRef", {}).get("name") == workflow
            ]
        if args.output in ("json", "yaml"):
            _print_document({"apiVersion": "v1", "kind": "List", "items": items}, args.output)
            return 0
        if not items:
            print(f"No resources found in {namespace} namespace.", file=sys.stderr)
            return 0
        now = datetime.now(UTC)
        rows = [["NAME", "WORKFLOW", "STATE", "STEPS", "STARTED", "AGE"]]
        for item in items:
            status = item.get("status") or {}
            rows.append(
                [
                    item["metadata"]["name"],
                    str((item.get("spec") or {}).get("workflowRef", {}).get("name", "<none>")),
                    str(status.get("state") or "<none>"),
                    _steps_summary(item),
                    _age(status.get("startedAt"), now),
                    _age(item["metadata"].get("creationTimestamp"), now),
                ]
            )
        print(_table(rows))
        return 0

    return _execute(args, action)


def _describe_run(run: dict[str, Any], namespace: str) -> str:
    spec, status = run.get("spec") or {}, run.get("status") or {}
    now = datetime.now(UTC)
    workflow = str((spec.get("workflowRef") or {}).get("name", "<none>"))
    version = status.get("workflowVersion") or spec.get("workflowVersion")
    fields: list[tuple[str, str]] = [
        ("Name", run["metadata"]["name"]),
        ("Namespace", namespace),
        ("Workflow", f"{workflow} (version {version})" if version else workflow),
        ("State", str(status.get("state") or "<none>")),
    ]
    if spec.get("cancel"):
        fields.append(("Cancel", "requested"))
    for label, key in (("Started", "startedAt"), ("Finished", "finishedAt")):
        if status.get(key):
            fields.append((label, f"{status[key]} ({_age(status[key], now)} ago)"))
    error = status.get("error") or {}
    if error.get("message"):
        step = f" (step {error['step']})" if error.get("step") else ""
        fields.append(("Error", " ".join(str(error["message"]).split()) + step))
    if spec.get("input") is not None:
        text = json.dumps(spec["input"], separators=(",", ":"))
        fields.append(("Input", text if len(text) <= 120 else text[:117] + "..."))
    width = max(len(label) for label, _ in fields) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in fields]
    records = status.get("steps") or []
    if not records:
        lines.append(f"{'Steps:':<{width}}<none>")
        return "\n".join(lines)
    lines.append("Steps:")
    rows = [["NAME", "STATE", "ATTEMPTS", "OUTCOME", "STARTED", "FINISHED", "ERROR"]]
    for record in records:
        message = (record.get("error") or {}).get("message")
        rows.append(
            [
                str(record.get("name", "")),
                str(record.get("state", "")),
                str(record.get("attempts", 0)),
                str((record.get("outcome") or {}).get("id") or "-"),
                str(record.get("startedAt") or "-"),
                str(record.get("finishedAt") or "-"),
                " ".join(str(message).split()) if message else "-",
            ]
        )
    lines.append(_table(rows, indent="  "))
    return "\n".join(lines)


def _cmd_run_get(args: argparse.Namespace) -> int:
    name: str = args.name

    async def action(client: RestClient, namespace: str) -> int:
        run = await _get(client, _run_path(namespace, name), "workflowrun", name, namespace)
        if args.output in ("json", "yaml"):
            _print_document(run, args.output)
        else:
            print(_describe_run(run, namespace))
        return 0

    return _execute(args, action)


def _cmd_run_stop(args: argparse.Namespace) -> int:
    name: str = args.name

    async def action(client: RestClient, namespace: str) -> int:
        from controller.kube.rest import MERGE_PATCH, KubeApiError

        try:
            run = await client.request(
                "PATCH",
                _run_path(namespace, name),
                body={"spec": {"cancel": True}},
                content_type=MERGE_PATCH,
            )
        except KubeApiError as exc:
            if exc.code == 404:
                raise CliError(f"workflowrun {name} not found in namespace {namespace}") from None
            raise
        print(f"workflowrun.blockflow.dev/{name} cancel requested")
        state = (run.get("status") or {}).get("state")
        if state in TERMINAL_RUN_STATES:
            print(f"note: the run has already finished ({state})", file=sys.stderr)
        return 0

    return _execute(args, action)


# -- the parsers -------------------------------------------------------------------------------


def _namespace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        dest="target_namespace",
        metavar="NS",
        help="namespace (default: the kubeconfig context's, else default)",
    )


def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=["table", "json", "yaml"], default="table", help="output format"
    )


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


def add_run_verbs(run: argparse.ArgumentParser) -> None:
    """`blockflow run get|list|stop`: WorkflowRuns (plain `blockflow run` runs the controller)."""
    verbs = run.add_subparsers(
        dest="run_verb",
        required=False,
        metavar="[get|list|stop]",
        help="inspect or stop WorkflowRuns instead of running the controller",
    )
    listing = verbs.add_parser("list", aliases=["ls"], help="list WorkflowRuns")
    _namespace_option(listing)
    listing.add_argument("-w", "--workflow", metavar="WORKFLOW", help="only this workflow's runs")
    _output_option(listing)
    listing.set_defaults(func=_cmd_run_list)

    get = verbs.add_parser("get", help="show a WorkflowRun and its steps")
    get.add_argument("name", metavar="NAME")
    _namespace_option(get)
    _output_option(get)
    get.set_defaults(func=_cmd_run_get)

    stop = verbs.add_parser("stop", help="cancel a WorkflowRun (sets spec.cancel)")
    stop.add_argument("name", metavar="NAME")
    _namespace_option(stop)
    stop.set_defaults(func=_cmd_run_stop)
