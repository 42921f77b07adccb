"""What every `blockflow` verb shares: errors, the API client, global flags, paths, tables.

Expected failures (API errors, a missing object, bad input) print one line on stderr and
exit 1 (2 for usage errors), never a traceback and never a Python class name. The CLI's
modules import only the standard library at load time, and the client
(:mod:`controller.cli.client`) is the standard library's too, so a read command costs about
what `kubectl get` costs.

Every verb takes kubectl's global flags, before or after the verb (kubectl passes them to a
plugin after its name): ``-n/--namespace``, ``-A/--all-namespaces`` (list verbs),
``--kubeconfig``, ``--context`` and ``-o/--output json|yaml|name|wide``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.times import parse_time

if TYPE_CHECKING:
    from controller.cli.client import Client

API = "/apis/blockflow.dev/v1alpha1"
GROUP = "blockflow.dev"
TERMINAL_RUN_STATES = ("completed", "failed", "cancelled", "terminated")
FINISHED_STEP_STATES = ("completed", "failed", "skipped", "cancelled")
ARCHIVED = "Archived"
USAGE_ERROR = 2
POLL_INTERVAL = 0.5
OUTPUTS = ("table", "wide", "json", "yaml", "name")

#: verb -> (the spec.state it sets, its past participle for messages)
STATE_VERBS = {
    "activate": ("Active", "activated"),
    "pause": ("Paused", "paused"),
    "archive": (ARCHIVED, "archived"),
}

#: every spelling kubectl accepts for a Blockflow kind (lower case) -> (plural, Kind)
KINDS = {
    **dict.fromkeys(("app", "apps", "bfapp"), ("apps", "App")),
    **dict.fromkeys(("block", "blocks", "blk"), ("blocks", "Block")),
    **dict.fromkeys(("workflow", "workflows", "bfwf", "wf"), ("workflows", "Workflow")),
    **dict.fromkeys(
        ("workflowrun", "workflowruns", "wfr", "run", "runs"), ("workflowruns", "WorkflowRun")
    ),
}
for _spelling, (_plural, _) in list(KINDS.items()):
    KINDS.setdefault(f"{_spelling}.{GROUP}", KINDS[_spelling])
    KINDS.setdefault(f"{_plural}.{GROUP}", KINDS[_spelling])

Action = Callable[["Client", str], int]
SubParsers = argparse._SubParsersAction  # the type argparse's add_subparsers returns


class CliError(Exception):
    """An expected failure: its message is printed as one line, then the CLI exits `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def _error(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)


def _api_message(exc: Any) -> str:
    return f"Error from server ({exc.reason}): {exc.message or exc.reason}"


def resource(plural: str) -> str:
    """``workflowruns`` -> ``workflowrun.blockflow.dev``, as `kubectl -o name` prints it."""
    singular = {"apps": "app", "blocks": "block", "workflows": "workflow"}.get(plural)
    return f"{singular or 'workflowrun'}.{GROUP}"


def named(plural: str, name: str) -> str:
    return f"{resource(plural)}/{name}"


def object_name(ref: str, plural: str, what: str) -> str:
    """NAME, or KIND/NAME with any spelling of ``plural``'s kind (``wfr/x``, ``wf/x``)."""
    kind, sep, name = ref.partition("/")
    if not sep:
        return ref
    found = KINDS.get(kind.lower())
    if found is None or found[0] != plural or not name or "/" in name:
        raise CliError(
            f"{what}: expected NAME or {resource(plural)}/NAME, got {ref!r}", USAGE_ERROR
        )
    return name


def split_ref(ref: str, plurals: tuple[str, ...], what: str) -> tuple[str, str, str]:
    """KIND/NAME -> (plural, Kind, name) for kinds of ``plurals``; CliError(2) when wrong."""
    kind, sep, name = ref.partition("/")
    found = KINDS.get(kind.lower())
    if not sep or not name or "/" in name or found is None or found[0] not in plurals:
        spellings = sorted(k for k, v in KINDS.items() if v[0] in plurals and "." not in k)
        raise CliError(
            f"{what}: expected KIND/NAME with KIND one of {'|'.join(spellings)}, got {ref!r}",
            USAGE_ERROR,
        )
    return found[0], found[1], name


def spec_of(body: dict[str, Any] | None) -> dict[str, Any]:
    """The object's spec, or an empty one (as :mod:`controller.kube.objects`, whose
    dataclasses would cost a read command a tenth of its time to load)."""
    return (body or {}).get("spec") or {}


def status_of(body: dict[str, Any] | None) -> dict[str, Any]:
    """The object's status, or an empty one."""
    return (body or {}).get("status") or {}


def workflow_ref(run: dict[str, Any]) -> str:
    """The name of the Workflow a WorkflowRun runs (``spec.workflowRef.name``)."""
    return str((spec_of(run).get("workflowRef") or {}).get("name", ""))


def _namespace_arg(args: argparse.Namespace) -> str | None:
    chosen = getattr(args, "target_namespace", None)
    return str(chosen) if chosen else None


def _execute(args: argparse.Namespace, action: Action) -> int:
    """Run one verb against the kubeconfig's cluster; expected errors become one line."""
    from controller.cli.client import ApiError, Client, ConfigError, Unreachable, load_credentials

    if getattr(args, "all_namespaces", False) and not getattr(args, "lists", False):
        _error("-A/--all-namespaces only applies to list verbs (list, events)")
        return USAGE_ERROR
    allowed = getattr(args, "outputs", OUTPUTS)
    if (args.output or "table") not in allowed:
        _error(f"-o {args.output} is not available here; use one of {', '.join(allowed)}")
        return USAGE_ERROR
    client: Client | None = None
    try:
        creds = load_credentials(args.kubeconfig, args.context)
        namespace = _namespace_arg(args) or creds.namespace or "default"
        client = Client(creds)
        return action(client, namespace)
    except CliError as exc:
        _error(exc.message)
        return exc.code
    except ApiError as exc:
        _error(_api_message(exc))
        return 1
    except ConfigError as exc:
        _error(str(exc))
        return 1
    except Unreachable as exc:
        server = client.creds.server if client else "the API server"
        _error(f"cannot reach the API server at {server}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `blockflow run list | head`
        return 0
    finally:
        if client is not None:
            client.close()


def _get(client: Client, path: str, kind: str, name: str, namespace: str) -> Any:
    from controller.cli.client import ApiError

    try:
        return client.request("GET", path)
    except ApiError as exc:
        if exc.code == 404:
            raise CliError(f"{kind} {name} not found in namespace {namespace}") from None
        raise


def _path(plural: str, namespace: str | None, name: str = "") -> str:
    where = f"/namespaces/{namespace}" if namespace is not None else ""
    return f"{API}{where}/{plural}" + (f"/{name}" if name else "")


def _workflow_path(namespace: str | None, name: str = "") -> str:
    return _path("workflows", namespace, name)


def _run_path(namespace: str | None, name: str = "") -> str:
    return _path("workflowruns", namespace, name)


def _print_document(document: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(document, indent=2))
    else:
        import yaml

        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        sys.stdout.write(yaml.dump(document, Dumper=dumper, sort_keys=False, allow_unicode=True))


def print_list(items: list[dict[str, Any]], output: str, plural: str) -> bool:
    """Print ``items`` for -o json|yaml|name; False when the caller prints a table."""
    if output in ("json", "yaml"):
        _print_document({"apiVersion": "v1", "kind": "List", "items": items}, output)
        return True
    if output == "name":
        for item in items:
            print(named(plural, item["metadata"]["name"]))
        return True
    return False


def report(
    args: argparse.Namespace, body: dict[str, Any], message: str, plural: str = "workflowruns"
) -> None:
    """What an action prints: its message, or with -o the object it changed."""
    output = args.output or "table"
    if output in ("json", "yaml"):
        _print_document(body, output)
    elif output == "name":
        print(named(plural, body["metadata"]["name"]))
    else:
        print(message)


def no_resources(namespace: str, all_namespaces: bool) -> None:
    where = "" if all_namespaces else f" in {namespace} namespace"
    print(f"No resources found{where}.", file=sys.stderr)


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


def plural_s(count: int, word: str) -> str:
    """1 run, 2 runs."""
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- global flags ------------------------------------------------------------------------------

#: commands that talk to no cluster: no kubectl flags
NO_CLUSTER = ("controller", "crds", "version", "completion")


def add_global_flags(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """kubectl's global flags. Below the top they default to "not given" (SUPPRESS), so a
    flag given before the verb is not reset by the verb's parser."""
    keep: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    group = parser.add_argument_group("kubectl flags")
    group.add_argument(
        "-n",
        "--namespace",
        dest="target_namespace",
        metavar="NS",
        help="namespace (default: the kubeconfig context's, else default)",
        **keep,
    )
    group.add_argument(
        "-A",
        "--all-namespaces",
        dest="all_namespaces",
        action="store_true",
        help="list across all namespaces",
        **({"default": False} if top else keep),
    )
    group.add_argument("--kubeconfig", metavar="PATH", help="the kubeconfig file to use", **keep)
    group.add_argument("--context", metavar="NAME", help="the kubeconfig context to use", **keep)
    group.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        metavar="FORMAT",
        help="output format: json|yaml|name|wide (default: a table or text)",
        **keep,
    )


def add_selector(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-l", "--selector", metavar="SELECTOR", help="label selector, as kubectl's (-l app=x)"
    )


def add_global_flags_everywhere(parser: argparse.ArgumentParser) -> None:
    """Every verb (and group of verbs) below ``parser`` takes the global flags."""
    seen: set[int] = set()

    def visit(node: argparse.ArgumentParser, depth: int) -> None:
        for action in node._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            for name, child in action.choices.items():
                if id(child) in seen or (depth == 0 and name in NO_CLUSTER):
                    continue
                seen.add(id(child))
                add_global_flags(child)
                visit(child, depth + 1)

    visit(parser, 0)


def _secret_value(
    client: Client, namespace: str, name: str, key: str, missing: CliError, what: str
) -> str:
    """One value of a Secret; ``missing`` when it is absent."""
    import base64
    import binascii

    from controller.cli.client import ApiError

    try:
        secret = client.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    except ApiError as exc:
        if exc.code == 404:
            raise missing from None
        raise
    encoded = (secret.get("data") or {}).get(key)
    if not encoded:
        raise missing
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise CliError(f"the {what} is not valid base64") from None
