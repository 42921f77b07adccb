"""`blockflow run get|list|stop`: WorkflowRuns in a table, one run in detail, a run stopped
(``spec.cancel``). Plain `blockflow run` runs the controller (see the package)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.cli.common import (
    FINISHED_STEP_STATES,
    TERMINAL_RUN_STATES,
    CliError,
    _age,
    _execute,
    _get,
    _namespace_option,
    _output_option,
    _print_document,
    _run_path,
    _table,
)
from controller.cli.run_actions import add_run_action_verbs
from controller.kube.objects import spec_of, status_of, workflow_ref

if TYPE_CHECKING:
    from controller.kube.rest import RestClient


def _steps_summary(run: dict[str, Any]) -> str:
    """Steps finished / steps of the run (its workflow's, as snapshotted when it started;
    fallback steps count once they run), not only those begun so far."""
    status = status_of(run)
    records = status.get("steps") or []
    done = sum(1 for r in records if r.get("state") in FINISHED_STEP_STATES)
    planned = len((status.get("workflowSpec") or {}).get("steps") or [])
    return f"{done}/{max(planned, len(records))}"


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
            items = [i for i in items if workflow_ref(i) == workflow]
        if args.output in ("json", "yaml"):
            _print_document({"apiVersion": "v1", "kind": "List", "items": items}, args.output)
            return 0
        if not items:
            print(f"No resources found in {namespace} namespace.", file=sys.stderr)
            return 0
        now = datetime.now(UTC)
        rows = [["NAME", "WORKFLOW", "STATE", "STEPS", "STARTED", "AGE"]]
        for item in items:
            status = status_of(item)
            rows.append(
                [
                    item["metadata"]["name"],
                    workflow_ref(item) or "<none>",
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
    spec, status = spec_of(run), status_of(run)
    now = datetime.now(UTC)
    workflow = workflow_ref(run) or "<none>"
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
        state = status_of(run).get("state")
        if state in TERMINAL_RUN_STATES:
            print(f"note: the run has already finished ({state})", file=sys.stderr)
        return 0

    return _execute(args, action)


def add_run_verbs(run: argparse.ArgumentParser) -> None:
    """`blockflow run get|list|stop`: WorkflowRuns (plain `blockflow run` runs the controller)."""
    verbs = run.add_subparsers(
        dest="run_verb",
        required=False,
        metavar="[get|list|stop|retry|pause|resume]",
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
    add_run_action_verbs(verbs)
