"""`blockflow status|events`: a namespace at a glance, and its Events.

``status`` reads Apps, Blocks, Workflows and WorkflowRuns of one namespace and prints them as a
tree (or, with ``-o json|yaml``, the same data structured): lifecycle status, signal names
(values of sensitive signals are never read: status only names them), workflow counters,
active runs, pending prompts and pending approvals. ``events`` lists the Kubernetes Events
about Blockflow objects. ``sync`` and ``drain`` set the request annotations the lifecycle
engine acts on; ``approve`` and ``reject`` answer a waiting approval step through the
controller's ``/hooks/<token>`` with the workflow's hookKey.

Same conventions as :mod:`controller.cli.common`: one-line errors, exit 1 for failures,
2 for usage errors, the Kubernetes client loaded only when a verb runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from controller.cli.common import (
    API,
    SubParsers,
    _execute,
    _print_document,
    _run_path,
    _table,
    plural_s,
    spec_of,
    split_ref,
    status_of,
    workflow_ref,
)

if TYPE_CHECKING:
    from controller.cli.client import Client


SYNC_ANNOTATION = "blockflow.dev/requested-sync-at"
DRAIN_ANNOTATION = "blockflow.dev/requested-drain-at"
ACTIVE_RUN_STATES = ("queued", "running", "waiting")
SIGNAL_VALUE_WIDTH = 40


def default_url() -> str:
    """The controller's HTTP server: $BLOCKFLOW_URL, else 127.0.0.1 on $BLOCKFLOW_HTTP_PORT
    (the port the controller itself listens on, 8080 unless set)."""
    import os

    url = os.environ.get("BLOCKFLOW_URL")
    if url:
        return url
    return f"http://127.0.0.1:{os.environ.get('BLOCKFLOW_HTTP_PORT') or 8080}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= SIGNAL_VALUE_WIDTH else text[: SIGNAL_VALUE_WIDTH - 3] + "..."


def _entity(item: dict[str, Any]) -> dict[str, Any]:
    status = status_of(item)
    lifecycle = status.get("lifecycle") or {}
    signals = status.get("signals") or {}
    sensitive = (status.get("sensitiveSignals") or {}).get("names") or []
    entry: dict[str, Any] = {
        "name": item["metadata"]["name"],
        "status": lifecycle.get("status"),
        "description": lifecycle.get("description"),
        "signals": dict(signals) if isinstance(signals, dict) else {},
        "sensitiveSignals": [str(n) for n in sensitive],
    }
    if item.get("kind") == "Block":
        spec = spec_of(item)
        entry = {"name": entry["name"], "app": spec.get("app"), "type": spec.get("type"), **entry}
    return entry


def _prompts(kind: str, item: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for prompt in status_of(item).get("prompts") or []:
        out.append(
            {
                "kind": kind,
                "name": item["metadata"]["name"],
                "key": prompt.get("key"),
                "description": prompt.get("description"),
                "url": (prompt.get("redirect") or {}).get("url"),
            }
        )
    return out


def _snapshot_steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = status_of(run).get("workflowSpec") or {}
    steps = [*(spec.get("steps") or []), *(spec.get("fallback") or [])]
    return {str(s.get("name")): s for s in steps if isinstance(s, dict)}


def _is_approval(step: dict[str, Any]) -> bool:
    uses = step.get("uses") or {}
    return uses.get("type") == "approval" and not uses.get("app")


def _hook_token(namespace: str, run: str, step: dict[str, Any]) -> str | None:
    """The approval's hook token; None when computed by CEL (only the controller knows it)."""
    token = (step.get("with") or {}).get("token")
    if not token:
        return f"approval:{namespace}:{run}:{step.get('name')}"
    if not isinstance(token, str) or "${{" in token:
        return None
    return token


def _hook_path(token: str) -> str:
    from urllib.parse import quote

    return "/hooks/" + quote(token, safe=":")


def _waiting_approvals(run: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """The run's steps that wait for an approval, with their hook path."""
    status = status_of(run)
    if status.get("state") != "waiting":
        return []
    name = run["metadata"]["name"]
    snapshot = _snapshot_steps(run)
    out = []
    for record in status.get("steps") or []:
        step = snapshot.get(str(record.get("name")).split("[", 1)[0])  # a fan-out's item too
        if record.get("state") != "waiting" or step is None or not _is_approval(step):
            continue
        token = _hook_token(namespace, name, step)
        out.append(
            {
                "run": name,
                "workflow": workflow_ref(run) or None,
                "step": record.get("name"),
                "since": record.get("startedAt"),
                "hookPath": _hook_path(token) if token else None,
            }
        )
    return out


def _list(client: Client, path: str) -> list[dict[str, Any]]:
    listed = client.request("GET", path)
    items = listed.get("items") or []
    return sorted(items, key=lambda item: str(item["metadata"]["name"]))


def collect_status(client: Client, namespace: str) -> dict[str, Any]:
    """The overview of one namespace as plain data (what `-o json` prints)."""
    base = f"{API}/namespaces/{namespace}"
    apps = _list(client, f"{base}/apps")
    blocks = _list(client, f"{base}/blocks")
    workflows = _list(client, f"{base}/workflows")
    runs = _list(client, _run_path(namespace))
    app_names = {a["metadata"]["name"] for a in apps}
    app_entries = []
    for app in apps:
        entry = _entity(app)
        entry["blocks"] = [_entity(b) for b in blocks if spec_of(b).get("app") == entry["name"]]
        app_entries.append(entry)
    orphans = [_entity(b) for b in blocks if spec_of(b).get("app") not in app_names]

    active: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        status = status_of(run)
        state = status.get("state") or "queued"  # not admitted yet: about to be queued
        if state not in ACTIVE_RUN_STATES:
            continue
        owner = workflow_ref(run)
        waiting = [
            str(r.get("name")) for r in status.get("steps") or [] if r.get("state") == "waiting"
        ]
        active.setdefault(owner, []).append(
            {
                "name": run["metadata"]["name"],
                "state": state,
                "startedAt": status.get("startedAt"),
                "waitingSteps": waiting,
            }
        )
    workflow_entries = []
    for workflow in workflows:
        status = status_of(workflow)
        name = workflow["metadata"]["name"]
        workflow_entries.append(
            {
                "name": name,
                "state": spec_of(workflow).get("state"),
                "phase": status.get("phase"),
                "version": status.get("version"),
                "runCount": status.get("runCount", 0),
                "successCount": status.get("successCount", 0),
                "failureCount": status.get("failureCount", 0),
                "lastRunAt": status.get("lastRunAt"),
                "activeRuns": active.get(name, []),
            }
        )

    prompts = [p for a in apps for p in _prompts("App", a)]
    prompts += [p for b in blocks for p in _prompts("Block", b)]
    approvals = [a for run in runs for a in _waiting_approvals(run, namespace)]
    return {
        "namespace": namespace,
        "apps": app_entries,
        "blocksWithoutApp": orphans,
        "workflows": workflow_entries,
        "pendingPrompts": prompts,
        "pendingApprovals": approvals,
    }


def _signals_line(entry: dict[str, Any]) -> str | None:
    parts = [f"{k}={_short(v)}" for k, v in sorted(entry["signals"].items())]
    parts += [f"{name} (sensitive)" for name in entry["sensitiveSignals"]]
    return "signals: " + ", ".join(parts) if parts else None


def _entity_lines(label: str, entry: dict[str, Any], indent: str) -> list[str]:
    status = entry.get("status") or "<no status>"
    head = f"{indent}{label} {status}"
    if entry.get("description"):
        head += f": {' '.join(str(entry['description']).split())}"
    lines = [head]
    signals = _signals_line(entry)
    if signals:
        lines.append(f"{indent}    {signals}")
    return lines


def render_status(data: dict[str, Any]) -> str:
    """The tree `blockflow status` prints."""
    lines = [f"Namespace {data['namespace']}"]
    lines.append("Apps:" if data["apps"] else "Apps: <none>")
    for app in data["apps"]:
        lines += _entity_lines(f"App {app['name']}", app, "  ")
        for block in app["blocks"]:
            label = f"Block {block['name']} ({block.get('type') or '?'})"
            lines += _entity_lines(label, block, "    ")
    if data["blocksWithoutApp"]:
        lines.append("Blocks whose App is missing:")
        for block in data["blocksWithoutApp"]:
            label = f"Block {block['name']} (app {block.get('app')}, {block.get('type') or '?'})"
            lines += _entity_lines(label, block, "  ")
    lines.append("Workflows:" if data["workflows"] else "Workflows: <none>")
    for wf in data["workflows"]:
        version = f"v{wf['version']}" if wf["version"] is not None else "v-"
        lines.append(
            f"  Workflow {wf['name']} {wf['phase'] or wf['state'] or '<no phase>'} {version}: "
            f"{plural_s(wf['runCount'], 'run')}, "
            f"{wf['successCount']} succeeded, {wf['failureCount']} failed"
        )
        for run in wf["activeRuns"]:
            waiting = f" (waiting: {', '.join(run['waitingSteps'])})" if run["waitingSteps"] else ""
            lines.append(f"    Run {run['name']} {run['state']}{waiting}")
    if data["pendingPrompts"]:
        lines.append("Pending prompts:")
        for prompt in data["pendingPrompts"]:
            text = f"  {prompt['kind'].lower()}/{prompt['name']} {prompt['key']}"
            if prompt["description"]:
                text += f": {' '.join(str(prompt['description']).split())}"
            if prompt["url"]:
                text += f" -> {prompt['url']}"
            lines.append(text)
    if data["pendingApprovals"]:
        lines.append("Pending approvals:")
        for approval in data["pendingApprovals"]:
            where = approval["hookPath"] or "/hooks/<the token its with.token computes>"
            lines.append(
                f"  Run {approval['run']} step {approval['step']}: "
                f"blockflow approve|reject {approval['run']} -n {data['namespace']} "
                f"(or POST {where})"
            )
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    def action(client: Client, namespace: str) -> int:
        data = collect_status(client, namespace)
        if args.output in ("json", "yaml"):
            _print_document(data, args.output)
        else:
            print(render_status(data))
        return 0

    return _execute(args, action)


def _event_time(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or event["metadata"].get("creationTimestamp")
        or ""
    )


def _cmd_events(args: argparse.Namespace) -> int:
    wanted: tuple[str, str] | None = None
    if args.for_ref:
        _, kind, name = split_ref(
            args.for_ref, ("apps", "blocks", "workflows", "workflowruns"), "--for"
        )
        wanted = (kind, name)
    everywhere = bool(args.all_namespaces)

    def action(client: Client, namespace: str) -> int:
        params = None
        if wanted:
            kind, name = wanted
            params = {"fieldSelector": f"involvedObject.kind={kind},involvedObject.name={name}"}
        where = "" if everywhere else f"/namespaces/{namespace}"
        listed = client.request("GET", f"/api/v1{where}/events", params=params)
        events = []
        for event in listed.get("items") or []:
            involved = event.get("involvedObject") or {}
            if not str(involved.get("apiVersion") or "").startswith("blockflow.dev/"):
                continue
            events.append(
                {
                    "namespace": event["metadata"].get("namespace", ""),
                    "time": _event_time(event),
                    "type": event.get("type"),
                    "object": f"{str(involved.get('kind')).lower()}/{involved.get('name')}",
                    "reason": event.get("reason"),
                    "message": event.get("message"),
                    "count": event.get("count", 1),
                }
            )
        events.sort(key=lambda e: e["time"])  # RFC 3339 UTC sorts as text; newest last
        if args.output in ("json", "yaml"):
            scoped = {} if everywhere else {"namespace": namespace}
            _print_document({**scoped, "events": events}, args.output)
            return 0
        if not events:
            scope = "" if everywhere else f" in {namespace} namespace"
            print(f"No Blockflow events found{scope}.", file=sys.stderr)
            return 0
        rows = [["TIME", "TYPE", "OBJECT", "REASON", "MESSAGE"]]
        if everywhere:
            rows = [["NAMESPACE", *rows[0]]]
        for e in events:
            message = " ".join(str(e["message"] or "").split())
            row = [e["time"], str(e["type"]), e["object"], str(e["reason"]), message]
            rows.append([e["namespace"], *row] if everywhere else row)
        print(_table(rows))
        return 0

    return _execute(args, action)


def add_overview_commands(sub: SubParsers[argparse.ArgumentParser]) -> None:
    """`blockflow status`, `events`."""
    status = sub.add_parser(
        "status", help="a namespace at a glance: apps, blocks, workflows, prompts, approvals"
    )
    status.set_defaults(func=_cmd_status, outputs=("table", "wide", "json", "yaml"))

    events = sub.add_parser("events", help="recent Kubernetes Events about Blockflow objects")
    events.add_argument(
        "--for", dest="for_ref", metavar="KIND/NAME", help="only this object's events"
    )
    events.set_defaults(func=_cmd_events, lists=True, outputs=("table", "wide", "json", "yaml"))
