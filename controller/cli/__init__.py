"""The `blockflow` command line."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from controller import __version__
from controller.settings import Settings


def _cmd_run(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.namespace:
        overrides["namespaces"] = args.namespace
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
    asyncio.run(_run_until_signalled(config))
    return 0


async def _run_until_signalled(config: Settings) -> None:
    """Stop gracefully on SIGINT/SIGTERM, also before kopf has installed its own handlers."""
    from controller.operator import run_operator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_operator(config, stop_flag=stop)


def _cmd_crds(args: argparse.Namespace) -> int:
    from controller.api import crdgen

    if args.output is None:
        sys.stdout.write("---\n".join(crdgen.rendered_files().values()))
        return 0
    return crdgen.main([str(args.output)])


def _cmd_version(_: argparse.Namespace) -> int:
    print(f"blockflow {__version__}")
    return 0


def build_parser(prog: str = "blockflow") -> argparse.ArgumentParser:
    # stdlib-only at import
    from controller.cli import actions, admission, overview, runs, workflows

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Blockflow: Kubernetes-native lifecycle and workflow controller.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run the controller against the current kubeconfig (or: run get|list|stop)",
        description=(
            "Without a verb: run the controller against the current kubeconfig. "
            "With get, list or stop: inspect or cancel WorkflowRuns."
        ),
    )
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        metavar="NS",
        help="watch only this namespace (repeatable); default: the whole cluster",
    )
    run.add_argument("--log-format", choices=["auto", "json", "console"], default=None)
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_cmd_run)
    runs.add_run_verbs(run)
    workflows.add_workflow_commands(sub)
    overview.add_overview_commands(sub)
    actions.add_action_commands(sub)
    admission.add_admission_commands(sub)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions (or write them to DIR)")
    crds.add_argument("output", nargs="?", type=Path, default=None, metavar="DIR")
    crds.set_defaults(func=_cmd_crds)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=_cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Installed as `kubectl-blockflow` too: kubectl runs it for `kubectl blockflow ...`.
    invoked_as = Path(sys.argv[0]).name
    prog = "kubectl blockflow" if invoked_as.startswith("kubectl-blockflow") else "blockflow"
    args = build_parser(prog).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
