"""Where the cluster is and who we are, found the way kubectl finds it (standard library).

``--kubeconfig``, else ``$KUBECONFIG`` (a list of files merged: the first file that names a
cluster, user or context wins, and the first that sets ``current-context``), else
``~/.kube/config``, else the in-cluster service account. ``--context`` picks a context. A
user may have a token, a token file, a client certificate (files or inline data), a username
and password, or an exec credential plugin (EKS, GKE, OIDC helpers).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


class ConfigError(Exception):
    """No usable credentials: the message says what is missing or wrong."""


class Credentials:
    """Where the API server is and how to prove who we are."""

    def __init__(
        self,
        server: str,
        *,
        namespace: str | None = None,
        context: str | None = None,
        ca_file: str | None = None,
        insecure: bool = False,
        tls_server_name: str | None = None,
        proxy_url: str | None = None,
        token: str | None = None,
        token_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        exec_plugin: dict[str, Any] | None = None,
    ) -> None:
        self.server, self.namespace, self.context = server, namespace, context
        self.ca_file = ca_file
        self.ca_data: bytes | None = None
        self.insecure, self.tls_server_name = insecure, tls_server_name
        self.proxy_url = proxy_url
        self.token, self.token_file = token, token_file
        self.cert_file: str | None = None
        self.key_file: str | None = None
        self.cert_data: bytes | None = None
        self.key_data: bytes | None = None
        self.username, self.password = username, password
        self.exec_plugin = exec_plugin
        #: the exec plugin's credential is in hand (cleared to run it again after a 401)
        self.exec_done = False


def _read_document(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    try:
        document: Any = json.loads(text)  # kubeconfigs written by tools are often JSON
    except ValueError:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            document = yaml.load(text, Loader=loader)
        except yaml.YAMLError as exc:
            raise ConfigError(f"kubeconfig {path} is not valid YAML: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"kubeconfig {path} is not a kubeconfig (not a mapping)")
    return document


def _kubeconfig_files(explicit: str | None) -> list[str]:
    if explicit:
        path = os.path.expanduser(explicit)
        if not os.path.isfile(path):
            raise ConfigError(f"--kubeconfig {explicit}: no such file")
        return [path]
    listed = os.environ.get("KUBECONFIG")
    if listed:
        return [os.path.expanduser(p) for p in listed.split(os.pathsep) if p]
    home = os.path.expanduser("~/.kube/config")
    return [home] if os.path.isfile(home) else []


def _merged(files: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """kubectl's merge: first wins. (current-context and tables, {kind: {name: (entry, dir)}})."""
    merged: dict[str, Any] = {"current-context": None}
    tables: dict[str, dict[str, Any]] = {"clusters": {}, "users": {}, "contexts": {}}
    for path in files:
        if not os.path.isfile(path):
            continue  # kubectl skips missing files of $KUBECONFIG
        document = _read_document(path)
        if not merged["current-context"] and document.get("current-context"):
            merged["current-context"] = document["current-context"]
        for kind, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in document.get(kind) or []:
                if isinstance(entry, dict) and entry.get("name") is not None:
                    value = entry.get(inner) or {}
                    base = os.path.dirname(os.path.abspath(path))
                    tables[kind].setdefault(str(entry["name"]), (value, base))
    return merged, tables


def _path(value: Any, base: str) -> str:
    return os.path.join(base, os.path.expanduser(str(value)))  # an absolute path stays


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=False)
    except ValueError:
        raise ConfigError(f"kubeconfig: {what} is not valid base64") from None


def load_credentials(kubeconfig: str | None = None, context: str | None = None) -> Credentials:
    """The credentials of ``context`` (else the current one), as kubectl would find them."""
    files = _kubeconfig_files(kubeconfig)
    if not files or not any(os.path.isfile(f) for f in files):
        token_file = os.path.join(SERVICE_ACCOUNT, "token")
        if os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.isfile(token_file):
            return _in_cluster()
        where = os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConfigError(
            f"no kubeconfig found ({where}) and not running in a Pod: "
            "set KUBECONFIG or --kubeconfig"
        )
    merged, tables = _merged(files)
    name = context or merged["current-context"]
    if not name:
        raise ConfigError("the kubeconfig has no current context: pass --context or set one")
    if name not in tables["contexts"]:
        raise ConfigError(f'context "{name}" does not exist in the kubeconfig')
    ctx, _ = tables["contexts"][name]
    cluster_name = ctx.get("cluster")
    if cluster_name not in tables["clusters"]:
        raise ConfigError(f'context "{name}" names cluster "{cluster_name}", which does not exist')
    cluster, cluster_dir = tables["clusters"][cluster_name]
    user, user_dir = tables["users"].get(ctx.get("user"), ({}, os.getcwd()))
    if not cluster.get("server"):
        raise ConfigError(f'cluster "{cluster_name}" has no server')
    creds = Credentials(
        server=str(cluster["server"]).rstrip("/"),
        namespace=ctx.get("namespace") or None,
        context=name,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        proxy_url=cluster.get("proxy-url"),
        token=user.get("token"),
        username=user.get("username"),
        password=user.get("password"),
        exec_plugin=user.get("exec"),
    )
    if cluster.get("certificate-authority-data"):
        creds.ca_data = _b64(cluster["certificate-authority-data"], "certificate-authority-data")
    elif cluster.get("certificate-authority"):
        creds.ca_file = _path(cluster["certificate-authority"], cluster_dir)
    if user.get("tokenFile"):
        creds.token_file = _path(user["tokenFile"], user_dir)
    if user.get("client-certificate-data"):
        creds.cert_data = _b64(user["client-certificate-data"], "client-certificate-data")
    elif user.get("client-certificate"):
        creds.cert_file = _path(user["client-certificate"], user_dir)
    if user.get("client-key-data"):
        creds.key_data = _b64(user["client-key-data"], "client-key-data")
    elif user.get("client-key"):
        creds.key_file = _path(user["client-key"], user_dir)
    if user.get("auth-provider"):
        raise ConfigError(
            "kubeconfig auth-provider entries are not supported; use an exec credential plugin"
        )
    return creds


def _in_cluster() -> Credentials:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT")
    host = f"[{host}]" if ":" in host else host
    namespace = None
    try:
        with open(os.path.join(SERVICE_ACCOUNT, "namespace"), encoding="utf-8") as handle:
            namespace = handle.read().strip() or None
    except OSError:
        pass
    return Credentials(
        server=f"https://{host}:{port or 443}",
        namespace=namespace,
        ca_file=os.path.join(SERVICE_ACCOUNT, "ca.crt"),
        token_file=os.path.join(SERVICE_ACCOUNT, "token"),
    )


def _run_exec_plugin(creds: Credentials) -> None:
    """Run the client-go exec credential plugin; its token or certificate replaces ours."""
    import subprocess

    plugin = creds.exec_plugin or {}
    command = plugin.get("command")
    if not command:
        raise ConfigError("the kubeconfig user's exec plugin has no command")
    env = dict(os.environ)
    for item in plugin.get("env") or []:
        env[str(item.get("name"))] = str(item.get("value"))
    version = plugin.get("apiVersion") or "client.authentication.k8s.io/v1beta1"
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": version, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    try:
        done = subprocess.run(
            [str(command), *(str(a) for a in plugin.get("args") or [])],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"exec credential plugin {command!r} could not run: {exc}") from None
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()[:500]
        raise ConfigError(f"exec credential plugin {command!r} failed ({done.returncode}): {err}")
    try:
        status = json.loads(done.stdout).get("status") or {}
    except (ValueError, AttributeError):
        raise ConfigError(f"exec credential plugin {command!r} printed no ExecCredential") from None
    if status.get("token"):
        creds.token = str(status["token"])
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        creds.cert_data = str(status["clientCertificateData"]).encode()
        creds.key_data = str(status["clientKeyData"]).encode()
    creds.exec_done = True


def _temp_pem(data: bytes) -> str:
    import tempfile

    handle = tempfile.NamedTemporaryFile(prefix="blockflow-", suffix=".pem", delete=False)  # noqa: SIM115
    with handle:
        handle.write(data)
    return handle.name
