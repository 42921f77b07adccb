"""`blockflow admission local|remove`: register the validating webhook of a controller that
runs outside the cluster (the demo, the tests). In a cluster the Helm chart does this."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from controller.cli.common import CliError, _error, _execute

if TYPE_CHECKING:
    from controller.cli.client import Client

DEFAULT_NAME = "blockflow-local"


def _labels(pairs: list[str] | None) -> dict[str, str]:
    labels = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--namespace-label: expected KEY=VALUE, not {pair!r}", code=2)
        labels[key] = value
    return labels


def _cmd_local(args: argparse.Namespace) -> int:
    from controller.admission.registration import (
        API_PATH,
        ensure_loopback_cert,
        webhook_configuration,
    )
    from controller.cli.client import ApiError
    from controller.pki import PkiError

    try:
        labels = _labels(args.namespace_label)
        from pathlib import Path

        ca = ensure_loopback_cert(Path(args.dir))
    except CliError as exc:
        _error(exc.message)
        return exc.code
    except (PkiError, OSError) as exc:
        _error(f"--dir {args.dir}: {exc}")
        return 1
    body = webhook_configuration(
        args.name,
        f"https://127.0.0.1:{args.port}/validate",
        ca,
        failure_policy=args.failure_policy,
        namespace_labels=labels,
    )

    def apply(client: Client, _: str) -> int:
        try:
            client.request("POST", API_PATH, body=body)
        except ApiError as exc:
            if exc.code != 409:
                raise
            current = client.request("GET", f"{API_PATH}/{args.name}")
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            client.request("PUT", f"{API_PATH}/{args.name}", body=body)
        print(
            f"validatingwebhookconfiguration/{args.name} → https://127.0.0.1:{args.port}/validate "
            f"(failurePolicy {args.failure_policy}); serve it with "
            f"BLOCKFLOW_ADMISSION_PORT={args.port} BLOCKFLOW_ADMISSION_CERT_DIR={args.dir}"
        )
        return 0

    return _execute(args, apply)


def _cmd_remove(args: argparse.Namespace) -> int:
    from controller.admission.registration import API_PATH
    from controller.cli.client import ApiError

    def remove(client: Client, _: str) -> int:
        try:
            client.request("DELETE", f"{API_PATH}/{args.name}")
        except ApiError as exc:
            if exc.code != 404:
                raise
        print(f"validatingwebhookconfiguration/{args.name} removed")
        return 0

    return _execute(args, remove)


def add_admission_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admission = sub.add_parser(
        "admission", help="register the validating webhook of a controller run outside a cluster"
    )
    verbs = admission.add_subparsers(dest="verb", required=True)
    local = verbs.add_parser(
        "local",
        help="make a loopback serving certificate and point a ValidatingWebhookConfiguration at it",
    )
    local.add_argument("--port", type=int, default=8443, help="the controller's admission port")
    local.add_argument(
        "--dir",
        default=".local/admission",
        help="where the certificate is kept (tls.crt, tls.key, ca.crt); made once",
    )
    local.add_argument("--name", default=DEFAULT_NAME, help="the configuration's name")
    local.add_argument(
        "--failure-policy",
        choices=["Ignore", "Fail"],
        default="Ignore",
        help="what the API server does when the controller does not answer (default Ignore: "
        "a stopped local controller does not block applies)",
    )
    local.add_argument(
        "--namespace-label",
        action="append",
        metavar="KEY=VALUE",
        help="only namespaces with this label (repeatable); default: every namespace",
    )
    local.set_defaults(func=_cmd_local)
    remove = verbs.add_parser("remove", help="delete the ValidatingWebhookConfiguration")
    remove.add_argument("--name", default=DEFAULT_NAME)
    remove.set_defaults(func=_cmd_remove)
