"""The OAuth example for tests: the fake provider (examples/oauth/provider.py, loaded from
its file) served on loopback, and the example's manifests pointed at it."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from tests.support.threaded_server import ThreadedServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "oauth"


def _load_provider() -> ModuleType:
    spec = importlib.util.spec_from_file_location("oauth_provider", EXAMPLE / "provider.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_provider = _load_provider()
Provider: Any = _provider.Provider
CLIENT_SECRET: str = _provider.CLIENT_SECRET


@contextmanager
def serving_provider() -> Iterator[tuple[Any, ThreadedServer]]:
    """The fake provider on a free loopback port: (its state, its server)."""
    fake = Provider()
    server = ThreadedServer(fake.app).start()
    try:
        yield fake, server
    finally:
        server.stop()


def example_manifests(
    provider_url: str, timeout: float, name: str = "example-oauth"
) -> list[dict[str, Any]]:
    """examples/oauth/app.yaml, pointed at this provider, with this timeout (and App name)."""
    docs = list(yaml.safe_load_all((EXAMPLE / "app.yaml").read_text()))
    app = next(d for d in docs if d["kind"] == "App")
    app["metadata"]["name"] = name
    for field in ("authorizeUrl", "tokenUrl", "userUrl"):
        app["spec"]["config"][field] = app["spec"]["config"][field].replace(
            "http://127.0.0.1:8091", provider_url
        )
    app["spec"]["config"]["timeoutSeconds"] = timeout
    return docs
