"""What every `blockflow` verb shares: errors, the API client, paths, tables and options.

Expected failures (API errors, a missing object, bad input) print one line on stderr and
exit 1 (2 for usage errors), never a traceback. The CLI's modules import only the standard
library at load time, so ``blockflow --help`` stays fast; the Kubernetes client is loaded
when a verb runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
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


async def _secret_value(
    client: RestClient, namespace: str, name: str, key: str, missing: CliError, what: str
) -> str:
    """One value of a Secret, through the Kubernetes client; ``missing`` when it is absent."""
    import binascii

    from controller.kube.api import KubeApi

    try:
        found = await KubeApi(client).read_secret(namespace, name)
    except (binascii.Error, UnicodeDecodeError):
        raise CliError(f"the {what} is not valid base64") from None
    if found is None or not found[0].get(key):
        raise missing
    return found[0][key]
