"""The CLI's own kubeconfig loader and HTTP client: what kubectl would find, and nothing heavy
loaded for a read command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.cli import client, kubeconfig
from controller.cli.kubeconfig import ConfigError, load_credentials

#: what a read command must not load (the controller's libraries, and the slow parts of
#: the standard library the client avoids)
HEAVY = {
    "kopf",
    "aiohttp",
    "pydantic",
    "pydantic_settings",
    "lightkube",
    "structlog",
    "yaml",
    "asyncio",
    "email",
    "http",
    "dataclasses",
    "shutil",
}


def test_a_read_command_loads_only_what_it_needs() -> None:
    probe = (
        "import sys\n"
        "import controller.cli as cli\n"
        "args = cli.build_parser().parse_args(['run', 'list', '-n', 'x', '-o', 'wide'])\n"
        "import controller.cli.client, controller.cli.kubeconfig\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def config(
    *,
    current: str | None = None,
    clusters: dict[str, dict[str, Any]] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
    contexts: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": k, "cluster": v} for k, v in (clusters or {}).items()],
        "users": [{"name": k, "user": v} for k, v in (users or {}).items()],
        "contexts": [{"name": k, "context": v} for k, v in (contexts or {}).items()],
    }
    if current:
        document["current-context"] = current
    return document


def test_kubeconfig_files_merge_as_kubectl_merges_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a" / "config", tmp_path / "b" / "config.yaml"
    first.parent.mkdir()
    second.parent.mkdir()
    first.write_text(
        json.dumps(
            config(
                clusters={"c": {"server": "https://first:6443", "certificate-authority": "ca.crt"}},
                users={"u": {"tokenFile": "token"}},
            )
        )
    )
    # YAML, and the only file naming a current context and the contexts.
    second.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: main\n"
        "clusters:\n- name: c\n  cluster: {server: 'https://second:6443'}\n"
        "- name: other\n"
        "  cluster: {server: 'https://other:443/prefix/', insecure-skip-tls-verify: true}\n"
        "users:\n- name: u\n  user: {token: ignored}\n- name: plain\n  user: {token: abc}\n"
        "contexts:\n- name: main\n  context: {cluster: c, user: u, namespace: team-a}\n"
        "- name: side\n  context: {cluster: other, user: plain}\n"
    )
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")
    creds = load_credentials()
    assert creds.server == "https://first:6443"  # the first file naming cluster c wins
    assert creds.ca_file == str(first.parent / "ca.crt")  # relative to its own file
    assert creds.token_file == str(first.parent / "token") and creds.token is None
    assert creds.namespace == "team-a" and creds.context == "main"
    side = load_credentials(context="side")
    assert (side.server, side.token, side.insecure, side.namespace) == (
        "https://other:443/prefix",
        "abc",
        True,
        None,
    )
    with pytest.raises(ConfigError, match='context "nope" does not exist'):
        load_credentials(context="nope")
    # --kubeconfig is one file, whatever $KUBECONFIG says.
    with pytest.raises(ConfigError, match="no current context"):
        load_credentials(str(first))
    with pytest.raises(ConfigError, match="no such file"):
        load_credentials(str(tmp_path / "absent"))


def test_unsupported_or_missing_credentials_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config"
    path.write_text(
        json.dumps(
            config(
                current="x",
                clusters={"c": {"server": "https://h:1"}},
                users={"u": {"auth-provider": {"name": "gcp"}}},
                contexts={"x": {"cluster": "c", "user": "u"}, "y": {"cluster": "gone"}},
            )
        )
    )
    with pytest.raises(ConfigError, match="auth-provider entries are not supported"):
        load_credentials(str(path))
    with pytest.raises(ConfigError, match='names cluster "gone", which does not exist'):
        load_credentials(str(path), "y")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="no kubeconfig found"):
        load_credentials()


def test_in_cluster_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "namespace").write_text("team-b")
    monkeypatch.setattr(kubeconfig, "SERVICE_ACCOUNT", str(tmp_path))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    creds = load_credentials()
    assert (creds.server, creds.namespace) == ("https://10.0.0.1:443", "team-b")
    assert creds.token_file == str(tmp_path / "token")
    assert creds.ca_file == str(tmp_path / "ca.crt")


@pytest.mark.parametrize(
    ("server", "parts"),
    [
        ("https://127.0.0.1:6443", ("https", "127.0.0.1", 6443, "")),
        ("https://example.com", ("https", "example.com", 443, "")),
        ("http://h:8080/k8s/clusters/c1/", ("http", "h", 8080, "/k8s/clusters/c1")),
        ("https://[::1]:6443", ("https", "::1", 6443, "")),
    ],
)
def test_server_urls(server: str, parts: tuple[str, str, int, str]) -> None:
    assert client._split_server(server) == parts


@pytest.mark.parametrize("server", ["ftp://h", "h:6443", "https://h:port", "https://"])
def test_bad_server_urls(server: str) -> None:
    with pytest.raises(ConfigError, match="is not an http"):
        client._split_server(server)


def test_query_values_are_percent_encoded() -> None:
    assert client._quote("blockflow.dev/workflow=a b&c") == "blockflow.dev%2Fworkflow%3Da%20b%26c"


@pytest.mark.parametrize(
    ("host", "no_proxy", "proxied"),
    [
        ("api.example.com", "", True),
        ("api.example.com", "example.com", False),
        ("api.example.com", ".example.com", False),
        ("api.example.com", "other.com, *", False),
        ("api.example.com", "example.com:6443", True),  # another port
        ("api.example.com", "example.com:443", False),
        ("notexample.com", "example.com", True),
        ("10.1.2.3", "10.0.0.0/8", False),
        ("10.1.2.3", "192.168.0.0/16", True),
        ("127.0.0.1", "", False),  # loopback never goes through $HTTPS_PROXY
        ("localhost", "", False),
    ],
)
def test_https_proxy_and_no_proxy(
    host: str, no_proxy: str, proxied: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    found = client._proxy_for(None, True, host, 443)
    assert (found is not None) == proxied
    if found is not None:
        assert (found.host, found.port, found.authorization) == ("proxy.example", 3128, None)


def test_a_socks_proxy_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="only http:// proxies"):
        client._proxy_for("socks5://127.0.0.1:1080", True, "h", 443)
