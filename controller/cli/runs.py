"""`blockflow run list|get|watch|logs|stop|delete`: WorkflowRuns in a table, one run in
detail, a run followed until it ends, its history in time order, a run stopped
(``spec.cancel``) or deleted. `blockflow run` alone prints its usage: the controller is
`blockflow controller`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controller.cli.common import (
    FINISHED_STEP_STATES,
    TERMINAL_RUN_STATES,
    USAGE_ERROR,
    CliError,
    _age,
    _execute,
    _get,
    _print_document,
    _run_path,
    _table,
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
from controller.cli.run_actions import add_run_action_verbs

if TYPE_CHECKING:
    from controller.cli.client import Client

PLURAL = "workflowruns"


def _steps_summary(run: dict[str, Any]) -> str:
    """Steps finished / steps of the run (its workflow's, as snapshotted when it started;
    fallback steps count once they run), not only those begun so far."""
    status = status_of(run)
    records = status.get("steps") or []
    done = sum(1 for r in records if r.get("state") in FINISHED_STEP_STATES)
    planned = len((status.get("workflowSpec") or {}).get("steps") or [])
    return f"{done}/{max(planned, len(records))}"


def _ready_message(run: dict[str, Any]) -> str:
    for condition in status_of(run).get("conditions") or []:
        if condition.get("type") == "Ready":
            return " ".join(str(condition.get("message") or "").split()) or "<none>"
    return "<none>"


def _run_name(args: argparse.Namespace) -> str:
    return object_name(str(args.name), PLURAL, "NAME")


def _cmd_run_list(args: argparse.Namespace) -> int:
    workflow: str | None = args.workflow
    everywhere = bool(args.all_namespaces)

    def action(client: Client, namespace: str) -> int:
        selectors = [args.selector] if args.selector else []
        if workflow:
            from controller.workflows.naming import WORKFLOW_LABEL, label_value

            selectors.append(f"{WORKFLOW_LABEL}={label_value(workflow)}")
        params = {"labelSelector": ",".join(selectors)} if selectors else None
        path = _run_path(None if everywhere else namespace)
        listed = client.request("GET", path, params=params)
        items = sorted(
            listed.get("items") or [],
            key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"]),
        )
        if workflow:  # a long name's label is a digest: keep only this workflow's runs
            items = [i for i in items if workflow_ref(i) == workflow]
        output = args.output or "table"
        if print_list(items, output, PLURAL):
            return 0
        if not items:
            no_resources(namespace, everywhere)
            return 0
        now = datetime.now(UTC)
        head = ["NAME", "WORKFLOW", "STATE", "STEPS", "STARTED", "AGE"]
        if output == "wide":
            head.append("MESSAGE")
        rows = [["NAMESPACE", *head] if everywhere else head]
        for item in items:
            status = status_of(item)
            row = [
                item["metadata"]["name"],
                workflow_ref(item) or "<none>",
                str(status.get("state") or "<none>"),
                _steps_summary(item),
                _age(status.get("startedAt"), now),
                _age(item["metadata"].get("creationTimestamp"), now),
            ]
            if output == "wide":
                row.append(_ready_message(item))
            rows.append([item["metadata"].get("namespace", ""), *row] if everywhere else row)
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
    if spec.get("paused"):
        fields.append(("Paused", "yes"))
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
    name = _run_name(args)

    def action(client: Client, namespace: str) -> int:
        run = _get(client, _run_path(namespace, name), "workflowrun", name, namespace)
        output = args.output or "table"
        if output in ("json", "yaml"):
            _print_document(run, output)
        elif output == "name":
            print(named(PLURAL, name))
        else:
            print(_describe_run(run, namespace))
        return 0

    return _execute(args, action)


def _cmd_run_stop(args: argparse.Namespace) -> int:
    name = _run_name(args)

    def action(client: Client, namespace: str) -> int:
        from controller.cli.client import MERGE_PATCH, ApiError

        try:
            run = client.request(
                "PATCH",
                _run_path(namespace, name),
                body={"spec": {"cancel": True}},
                content_type=MERGE_PATCH,
            )
        except ApiError as exc:
            if exc.code == 404:
                raise CliError(f"workflowrun {name} not found in namespace {namespace}") from None
            raise
        report(args, run, f"{named(PLURAL, name)} cancel requested")
        state = status_of(run).get("state")
        if state in TERMINAL_RUN_STATES:
            print(f"note: the run has already finished ({state})", file=sys.stderr)
        return 0

    return _execute(args, action)


def _cmd_run_delete(args: argparse.Namespace) -> int:
    names = [object_name(str(n), PLURAL, "NAME") for n in args.names]

    def action(client: Client, namespace: str) -> int:
        from controller.cli.client import ApiError

        failed = 0
        for name in names:
            try:
                client.request("DELETE", _run_path(namespace, name))
            except ApiError as exc:
                if exc.code != 404:
                    raise
                print(
                    f"error: workflowrun {name} not found in namespace {namespace}",
                    file=sys.stderr,
                )
                failed = 1
                continue
            if args.output == "name":
                print(named(PLURAL, name))
            else:
                print(f'{named(PLURAL, name).split("/")[0]} "{name}" deleted')
        return failed

    return _execute(args, action)


# -- watch and logs ----------------------------------------------------------------------------


def _clock(value: object) -> str:
    """An API time as the local wall clock (HH:MM:SS), or now."""
    from controller.times import parse_time

    when = parse_time(value) or datetime.now(UTC)
    return when.astimezone().strftime("%H:%M:%S")


def _step_line(record: dict[str, Any]) -> str:
    state = str(record.get("state") or "pending")
    text = f"step {record.get('name')} {state}"
    outcome = (record.get("outcome") or {}).get("id")
    if outcome and state in FINISHED_STEP_STATES:
        text += f" ({outcome})"
    if int(record.get("attempts") or 0) > 1 and state in ("running", "retrying"):
        text += f" (attempt {record['attempts']})"
    message = (record.get("error") or {}).get("message")
    if message and state in ("failed", "retrying", "running"):
        text += ": " + " ".join(str(message).split())
    if record.get("progress"):
        text += f" [{record['progress']}]"
    return text


class _Follower:
    """Prints what changed between two observations of a run."""

    def __init__(self) -> None:
        self.state: str | None = None
        self.steps: dict[str, str] = {}

    def observe(self, run: dict[str, Any]) -> None:
        status = status_of(run)
        state = str(status.get("state") or "queued")
        ended = state in TERMINAL_RUN_STATES
        if ended:  # the last steps' transitions, then how the run ended
            self._steps(status)
        if state != self.state:
            self.state = state
            line = f"run {run['metadata']['name']} {state}"
            error = status.get("error") or {}
            if ended and error.get("message"):
                where = f" (step {error['step']})" if error.get("step") else ""
                line += ": " + " ".join(str(error["message"]).split()) + where
            when = status.get("finishedAt") if ended else None
            print(f"{_clock(when)}  {line}", flush=True)
        if not ended:
            self._steps(status)

    def _steps(self, status: dict[str, Any]) -> None:
        for record in status.get("steps") or []:
            line = _step_line(record)
            name = str(record.get("name"))
            if self.steps.get(name) == line:
                continue
            self.steps[name] = line
            finished = record.get("state") in FINISHED_STEP_STATES
            print(f"{_clock(record.get('finishedAt') if finished else None)}  {line}", flush=True)


def follow_run(client: Client, namespace: str, name: str, timeout: float | None) -> int:
    """Print the run's step transitions until it ends: 0 when it completed, else 1."""
    follower = _Follower()
    state = status_of(wait_for_end(client, namespace, name, timeout, follower.observe)).get("state")
    return 0 if state == "completed" else 1


def wait_for_end(
    client: Client,
    namespace: str,
    name: str,
    timeout: float | None,
    observe: Callable[[dict[str, Any]], None] = lambda _: None,
) -> dict[str, Any]:
    """Watch the run until it ends (``observe`` sees each version of it); the ended run."""
    import time

    from controller.cli.client import ApiError

    deadline = None if timeout is None else time.monotonic() + timeout
    run: dict[str, Any] = _get(client, _run_path(namespace, name), "workflowrun", name, namespace)
    while True:
        observe(run)
        state = status_of(run).get("state")
        if state in TERMINAL_RUN_STATES:
            return run
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise CliError(
                f"timed out after {timeout:g}s waiting for workflowrun {name} to end "
                f"(state: {state or 'not started'})"
            )
        params = {
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": str(run["metadata"]["resourceVersion"]),
        }
        window = 300.0 if left is None else max(1.0, min(300.0, left))
        try:
            for event in client.watch(_run_path(namespace), params, timeout=window):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "DELETED":
                    raise CliError(f"workflowrun {name} was deleted while waiting for it")
                if kind == "ERROR":
                    break  # too old a resourceVersion: read the run again
                if kind in ("ADDED", "MODIFIED"):
                    run = obj
                    if status_of(run).get("state") in TERMINAL_RUN_STATES:
                        break
                    observe(run)
        except ApiError as exc:
            if exc.code != 410:
                raise
        run = _get(client, _run_path(namespace, name), "workflowrun", name, namespace)


def _cmd_run_watch(args: argparse.Namespace) -> int:
    name = _run_name(args)
    if args.timeout is not None and args.timeout <= 0:
        print("error: --timeout must be positive", file=sys.stderr)
        return USAGE_ERROR
    return _execute(args, lambda client, ns: follow_run(client, ns, name, args.timeout))


def _history(run: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The run's records and Events as (time, source, message), oldest first."""
    entries: list[dict[str, str]] = []

    def add(when: object, source: str, message: str) -> None:
        if isinstance(when, str) and when:
            entries.append({"time": when, "source": source, "message": message})

    meta, status = run["metadata"], status_of(run)
    add(meta.get("creationTimestamp"), "run", f"created (workflow {workflow_ref(run)})")
    add(status.get("startedAt"), "run", "started")
    for number, retry in enumerate(status.get("retries") or [], 1):
        by = f" by {retry['by']}" if retry.get("by") else ""
        previous = f" (was {retry['previousState']})" if retry.get("previousState") else ""
        add(retry.get("at"), "run", f"retry {number}{by}{previous}")
    if status.get("pausedAt"):
        add(status["pausedAt"], "run", "paused")
    for record in status.get("steps") or []:
        source = f"step/{record.get('name')}"
        add(record.get("startedAt"), source, "started")
        attempt_at = record.get("attemptStartedAt")
        if attempt_at and attempt_at != record.get("startedAt"):
            add(attempt_at, source, f"attempt {record.get('attempts')} started")
        state = str(record.get("state") or "")
        if record.get("finishedAt"):
            add(record["finishedAt"], source, _step_line(record).split(" ", 2)[2])
        elif state in ("waiting", "retrying") and record.get("startedAt"):
            message = (record.get("error") or {}).get("message")
            detail = f": {' '.join(str(message).split())}" if message else ""
            add(attempt_at or record["startedAt"], source, f"{state}{detail}")
    if status.get("finishedAt"):
        error = status.get("error") or {}
        detail = f": {' '.join(str(error['message']).split())}" if error.get("message") else ""
        add(status["finishedAt"], "run", f"{status.get('state')}{detail}")
    for event in events:
        when = (
            event.get("lastTimestamp")
            or event.get("eventTime")
            or event.get("firstTimestamp")
            or event["metadata"].get("creationTimestamp")
        )
        count = int(event.get("count") or 1)
        times = f" (x{count})" if count > 1 else ""
        message = " ".join(str(event.get("message") or "").split())
        add(when, f"event/{event.get('type')}", f"{event.get('reason')}: {message}{times}")
    # RFC 3339 UTC sorts as text; same-second entries keep the order above.
    return sorted(entries, key=lambda e: _sort_key(e["time"]))


def _sort_key(value: str) -> str:
    from controller.times import parse_time

    when = parse_time(value)
    return when.astimezone(UTC).isoformat() if when else value


def _cmd_run_logs(args: argparse.Namespace) -> int:
    name = _run_name(args)

    def action(client: Client, namespace: str) -> int:
        run = _get(client, _run_path(namespace, name), "workflowrun", name, namespace)
        selector = f"involvedObject.kind=WorkflowRun,involvedObject.name={name}"
        listed = client.request(
            "GET", f"/api/v1/namespaces/{namespace}/events", params={"fieldSelector": selector}
        )
        entries = _history(run, list(listed.get("items") or []))
        output = args.output or "table"
        if output in ("json", "yaml"):
            _print_document({"run": name, "namespace": namespace, "entries": entries}, output)
            return 0
        rows = [["TIME", "SOURCE", "MESSAGE"]]
        rows += [[e["time"], e["source"], e["message"]] for e in entries]
        print(_table(rows))
        if args.follow and status_of(run).get("state") not in TERMINAL_RUN_STATES:
            print("--- following (Ctrl-C stops) ---", flush=True)
            return follow_run(client, namespace, name, None)
        return 0

    return _execute(args, action)


def _cmd_run_usage(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.run_parser
    parser.print_usage(sys.stderr)
    print(
        f"{parser.prog}: error: a verb is required: "
        "list|get|watch|logs|stop|delete|retry|pause|resume "
        "(the controller itself is `blockflow controller`)",
        file=sys.stderr,
    )
    return USAGE_ERROR


def add_run_verbs(run: argparse.ArgumentParser) -> None:
    """`blockflow run list|get|watch|logs|stop|delete|retry|pause|resume`."""
    run.set_defaults(func=_cmd_run_usage, run_parser=run)
    verbs = run.add_subparsers(
        dest="run_verb",
        metavar="{list,get,watch,logs,stop,delete,retry,pause,resume}",
    )
    listing = verbs.add_parser("list", aliases=["ls"], help="list WorkflowRuns")
    listing.add_argument("-w", "--workflow", metavar="WORKFLOW", help="only this workflow's runs")
    add_selector(listing)
    listing.set_defaults(func=_cmd_run_list, lists=True)

    get = verbs.add_parser("get", help="show a WorkflowRun and its steps")
    get.add_argument("name", metavar="NAME")
    get.set_defaults(func=_cmd_run_get)

    watch = verbs.add_parser(
        "watch",
        help="follow a run until it ends, printing step transitions "
        "(exit 0 when it completed, 1 when not)",
    )
    watch.add_argument("name", metavar="NAME")
    watch.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")
    watch.set_defaults(func=_cmd_run_watch, outputs=("table",))

    logs = verbs.add_parser("logs", help="a run's history: steps, retries and Events in order")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("-f", "--follow", action="store_true", help="then follow it until it ends")
    logs.set_defaults(func=_cmd_run_logs, outputs=("table", "wide", "json", "yaml"))

    stop = verbs.add_parser("stop", help="cancel a WorkflowRun (sets spec.cancel)")
    stop.add_argument("name", metavar="NAME")
    stop.set_defaults(func=_cmd_run_stop)

    delete = verbs.add_parser("delete", help="delete WorkflowRuns")
    delete.add_argument("names", nargs="+", metavar="NAME")
    delete.set_defaults(func=_cmd_run_delete, outputs=("table", "name"))
    add_run_action_verbs(verbs)
