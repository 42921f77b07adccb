"""The runtime's REST client against the real API server: auth, errors, re-login on 401."""

from __future__ import annotations

import kopf
import pytest

from controller.kube.connection import connection_info, load_config
from controller.kube.rest import KubeApiError, RestClient
from tests.conftest import Cluster, Kubectl


async def _login_for(cluster: Cluster) -> kopf.ConnectionInfo:
    """The admin credentials, loaded the way the controller loads them (KUBECONFIG is set)."""
    return await connection_info(load_config())


async def test_requests_errors_and_relogin_after_401(
    cluster: Cluster, kubectl: Kubectl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    good = await _login_for(cluster)
    logins: list[str] = []

    async def login() -> kopf.ConnectionInfo:
        # The first credentials are stale (as an expired exec-plugin token would be).
        logins.append("login")
        if len(logins) == 1:
            return kopf.ConnectionInfo(server=good.server, ca_data=good.ca_data, token="expired")
        return good

    client = RestClient(login)
    try:
        namespaces = await client.request("GET", "/api/v1/namespaces")
        assert {"default", "kube-system"} <= {n["metadata"]["name"] for n in namespaces["items"]}
        assert len(logins) == 2  # one 401, one fresh login, then success
        with pytest.raises(KubeApiError) as missing:
            await client.request("GET", "/api/v1/namespaces/default/secrets/no-such-secret")
        assert missing.value.code == 404 and missing.value.reason == "NotFound"
    finally:
        await client.close()


async def test_credentials_that_stay_refused_raise(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    good = await _login_for(cluster)

    async def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=good.server, ca_data=good.ca_data, token="wrong")

    client = RestClient(login)
    try:
        with pytest.raises(KubeApiError) as refused:
            await client.request("GET", "/api/v1/namespaces")
        assert refused.value.code == 401
    finally:
        await client.close()
