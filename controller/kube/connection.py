"""Kubernetes credentials: one loader for kopf's login and the runtime's REST client.

lightkube's loader reads kubeconfigs (tokens, client certificates, exec credential
plugins) and in-cluster service accounts; :func:`connection_info` turns what it finds
into kopf's ConnectionInfo, which both kopf and :mod:`controller.kube.rest` use.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import kopf
from lightkube import ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import User


class CredentialsError(RuntimeError):
    """No usable Kubernetes credentials (kubeconfig or in-cluster service account)."""


def load_config() -> SingleConfig:
    """The active context: $KUBECONFIG / ~/.kube/config, else the in-cluster service account."""
    try:
        single = KubeConfig.from_env().get()
    except ConfigError as exc:
        raise CredentialsError(f"no usable kubeconfig or service account: {exc}") from exc
    if single is None:
        raise CredentialsError("the kubeconfig has no current context; set one with kubectl")
    return single


async def _run_exec_plugin(single: SingleConfig) -> dict[str, Any]:
    """Run a client-go exec credential plugin (EKS, GKE, OIDC helpers) and return its status."""
    user_exec = single.user.exec if single.user else None
    if user_exec is None:
        raise CredentialsError("the kubeconfig user has no exec plugin")
    env = dict(os.environ)
    for item in user_exec.env or []:
        env[item.name] = item.value
    proc = await asyncio.create_subprocess_exec(
        user_exec.command,
        *(user_exec.args or []),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise CredentialsError(
            f"exec credential plugin {user_exec.command!r} failed ({proc.returncode}): "
            f"{err.decode(errors='replace').strip()[:500]}"
        )
    status: dict[str, Any] = json.loads(out).get("status", {})
    return status


async def connection_info(single: SingleConfig | None = None) -> kopf.ConnectionInfo:
    """Translate lightkube's view of the credentials into kopf's, so both share one auth path."""
    single = single or load_config()
    cluster, user = single.cluster, single.user or User()
    token = user.token
    if user.token_file:
        # Read afresh at every login: projected service-account tokens rotate.
        token_path = Path(single.abs_file(user.token_file))
        token = (await asyncio.to_thread(token_path.read_text)).strip()
    cert_data = user.client_cert_data
    key_data = user.client_key_data
    expiration = None
    if user.exec is not None:
        status = await _run_exec_plugin(single)
        token = status.get("token", token)
        if status.get("clientCertificateData"):
            cert_data = base64.b64encode(status["clientCertificateData"].encode()).decode()
            key_data = base64.b64encode(status["clientKeyData"].encode()).decode()
        if status.get("expirationTimestamp"):
            expiration = datetime.fromisoformat(
                status["expirationTimestamp"].replace("Z", "+00:00")
            )
    if user.auth_provider:
        raise CredentialsError(
            "kubeconfig auth-provider entries are not supported; use an exec credential plugin"
        )
    return kopf.ConnectionInfo(
        server=cluster.server,
        ca_path=str(single.abs_file(cluster.certificate_auth))
        if cluster.certificate_auth
        else None,
        ca_data=base64.b64decode(cluster.certificate_auth_data)
        if cluster.certificate_auth_data
        else None,
        insecure=cluster.insecure,
        username=user.username,
        password=user.password,
        token=token,
        certificate_path=str(single.abs_file(user.client_cert)) if user.client_cert else None,
        certificate_data=base64.b64decode(cert_data) if cert_data else None,
        private_key_path=str(single.abs_file(user.client_key)) if user.client_key else None,
        private_key_data=base64.b64decode(key_data) if key_data else None,
        default_namespace=single.namespace,
        expiration=expiration,
    )
