"""The `blockflow` command line (also `kubectl blockflow`, as a kubectl plugin).

`blockflow controller` runs the controller; every other command reads or edits Blockflow's
objects through the API server like kubectl does, with kubectl's global flags. Loading this
package imports only the standard library: a read command must not pay for the controller's
libraries (kopf, aiohttp, pydantic).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from controller.cli.common import CliError, _error, add_global_flags, add_global_flags_everywhere

if TYPE_CHECKING:
    from controller.settings import Settings


def _cmd_controller(args: argparse.Namespace) -> int:
    from controller.settings import Settings

    overrides: dict[str, object] = {}
    if args.watch_namespaces:
        overrides["namespaces"] = args.watch_namespaces
    if args.log_format:
        overrides["log_format"] = args.log_format
    if args.verbose:
        overrides["log_level"] = "DEBUG"
    config = Settings(**overrides)  # type: ignore[arg-type]
    if config.log_format == "json" or (config.log_format == "auto" and not sys.stderr.isatty()):
        # structlog imports rich (for pretty console tracebacks) whenever it is installed (it
        # comes with the CEL package's command line): about 5 MiB of memory that JSON logs
        # never use. Not loading it is what a controller in a cluster wants.
        sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    from controller.logs import configure_logging

    configure_logging(config.log_format, config.log_level)
    import asyncio

    asyncio.run(_run_until_signalled(config))
    return 0


async def _run_until_signalled(config: Settings) -> None:
    """Stop gracefully on SIGINT/SIGTERM, also before kopf has installed its own handlers."""
    import asyncio
    import signal

    from controller.operator import run_operator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_operator(config, stop_flag=stop)


def _cmd_crds(args: argparse.Namespace) -> int:
    from controller.api import crdgen

    if args.directory is None:
        sys.stdout.write("---\n".join(crdgen.rendered_files().values()))
        return 0
    return crdgen.main([str(args.directory)])


def _version() -> str:
    from controller import __version__

    return f"blockflow {__version__}"


def _cmd_version(_: argparse.Namespace) -> int:
    print(_version())
    return 0


class _VersionAction(argparse.Action):
    """--version: the version, computed only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        help_text = kwargs.get("help")
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help=str(help_text) if help_text else None,
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(_version())
        parser.exit()


class _Formatter(argparse.HelpFormatter):
    """argparse's help, sized to the terminal without loading shutil (argparse makes a
    formatter for every argument it is given, and shutil brings compression modules)."""

    def __init__(self, prog: str) -> None:
        try:
            width = int(os.environ.get("COLUMNS") or 0) or os.get_terminal_size(1).columns
        except (OSError, ValueError):
            width = 80
        super().__init__(prog, width=max(40, width - 2))


class Parser(argparse.ArgumentParser):
    """The CLI's parsers (subcommands' too: argparse makes them of the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def build_parser(prog: str = "blockflow") -> argparse.ArgumentParser:
    # stdlib-only at import
    from controller.cli import actions, admission, completion, overview, runs, workflows

    parser: argparse.ArgumentParser = Parser(
        prog=prog,
        description="Blockflow: Kubernetes-native lifecycle and workflow controller.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version")
    add_global_flags(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    controller = sub.add_parser(
        "controller",
        help="run the controller against the current kubeconfig",
        description="Run the controller against the current kubeconfig (in a Pod: its service "
        "account) until SIGINT or SIGTERM.",
    )
    controller.add_argument(
        "-n",
        "--namespace",
        dest="watch_namespaces",
        action="append",
        metavar="NS",
        help="watch only this namespace (repeatable); default: the whole cluster",
    )
    controller.add_argument("--log-format", choices=["auto", "json", "console"], default=None)
    controller.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    controller.set_defaults(func=_cmd_controller)

    run = sub.add_parser(
        "run",
        aliases=["runs", "wfr", "workflowrun", "workflowruns"],
        help="WorkflowRuns: list, get, watch, logs, stop, delete, retry, pause, resume",
        description="Inspect and steer WorkflowRuns. (The controller is `blockflow controller`.)",
    )
    runs.add_run_verbs(run)
    workflows.add_workflow_commands(sub)
    overview.add_overview_commands(sub)
    actions.add_action_commands(sub)
    admission.add_admission_commands(sub)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions (or write them to DIR)")
    crds.add_argument("directory", nargs="?", default=None, metavar="DIR")
    crds.set_defaults(func=_cmd_crds)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    completion.add_completion_command(sub)
    add_global_flags_everywhere(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Installed as `kubectl-blockflow` too: kubectl runs it for `kubectl blockflow ...`.
    invoked_as = os.path.basename(sys.argv[0])
    prog = "kubectl blockflow" if invoked_as.startswith("kubectl-blockflow") else "blockflow"
    # argparse looks each of its words up in the system's translations, three lookups per
    # parser (a tenth of a read command's time); its messages here are English anyway.
    setattr(argparse, "_", str)  # noqa: B010
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        _error(exc.message)
        return exc.code
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
