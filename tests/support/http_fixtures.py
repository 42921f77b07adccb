"""The example HTTP handler service (``examples/http-handler/server.py``) as a real server on
127.0.0.1 for cluster tests, with every request it receives recorded.

The server runs on its own event loop in a thread, so tests stay synchronous (kubectl
calls block) while the controller subprocess talks to the server over loopback. The
test changes the server's behaviour while it runs through ``server.controls``
(faults, reported version) and reads what it received from ``server.received()``.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from aiohttp import web

from controller.handlers.http_transport import SIGNATURE_HEADER, verify
from tests.conftest import Kubectl
from tests.support.threaded_server import ThreadedServer

SERVER_PATH = Path(__file__).resolve().parents[2] / "examples" / "http-handler" / "server.py"
_MODULE_NAME = "blockflow_example_http_handler"


def load_example_server() -> ModuleType:
    """Import the example by path (its directory name is not a package name), once."""
    loaded = sys.modules.get(_MODULE_NAME)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, SERVER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


example = load_example_server()


def free_port() -> int:
    """A loopback port nothing listens on (for a handler that is not up yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    at: float  # time.monotonic() on arrival
    body: dict[str, Any] | None  # the parsed JSON request, for POSTs
    signature_valid: bool  # X-Blockflow-Signature verifies with the server's key
    status: int | None = None  # the answer's status; None while pending or when cancelled
    reply: str = ""  # the answer's body text

    @property
    def operation(self) -> str:
        return self.path.strip("/")

    @property
    def entity(self) -> dict[str, Any]:
        return dict((self.body or {}).get("entity") or {})

    def about(self, kind: str, name: str) -> bool:
        return self.entity.get("kind") == kind and self.entity.get("name") == name


@dataclass
class HandlerServer:
    """The example handler service on 127.0.0.1, in a thread with its own event loop."""

    key: bytes
    port: int = 0  # 0: any free port
    controls: Any = None  # the running app's ``Controls`` (faults, version)
    _received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadedServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HandlerServer:
        # handler_cancellation: a delayed reply stops when the controller gives up on it.
        self._server = ThreadedServer(
            self._make_app, port=self.port, shutdown_timeout=1, handler_cancellation=True
        ).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    # -- what it received ----------------------------------------------------------------------

    def received(
        self, operation: str | None = None, *, kind: str | None = None, name: str | None = None
    ) -> list[Received]:
        """Requests so far (oldest first): all, or of one operation (``info`` is ``GET /``)
        about one entity."""
        with self._lock:
            requests = list(self._received)
        if operation is not None:
            path = "/" if operation == "info" else f"/{operation}"
            requests = [r for r in requests if r.path == path]
        if kind is not None and name is not None:
            requests = [r for r in requests if r.about(kind, name)]
        return requests

    def wait_for(
        self,
        count: int,
        operation: str,
        *,
        kind: str = "Block",
        name: str | None = None,
        answered: bool = True,
        timeout: float = 30,
    ) -> list[Received]:
        """Until at least ``count`` such requests arrived (and were answered); returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.received(operation, kind=kind, name=name)
            if answered:
                found = [r for r in found if r.status is not None]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the handler received {len(found)} {operation} request(s) about "
                    f"{kind} {name} within {timeout}s, expected {count}"
                )
            time.sleep(0.05)

    # -- the server thread ---------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app: web.Application = example.make_app(self.key)
        app.middlewares.append(self._recorder())
        self.controls = app[example.CONTROLS]
        return app

    def _recorder(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def record(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            raw = await request.read()  # cached: the handler reads the same bytes
            body = None
            if request.method == "POST":
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
            entry = Received(
                method=request.method,
                path=request.path,
                at=time.monotonic(),
                body=body if isinstance(body, dict) else None,
                signature_valid=verify(raw, self.key, request.headers.get(SIGNATURE_HEADER)),
            )
            with self._lock:
                self._received.append(entry)
            response = await handler(request)
            if isinstance(response, web.Response) and response.body is not None:
                entry.reply = response.text or ""
            entry.status = response.status
            return response

        return record


class Watch:
    """``kubectl get <resource> -n <namespace> --watch -o json`` in the background: every
    version of every object, as someone watching would see them."""

    def __init__(self, kubectl: Kubectl, namespace: str, resource: str) -> None:
        self._proc = subprocess.Popen(
            [kubectl.binary, "get", resource, "-n", namespace, "--watch", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            env=kubectl.env(),
        )
        self._objects: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        buffer = ""
        decoder = json.JSONDecoder()
        for line in self._proc.stdout:
            buffer += line
            if line.rstrip("\n") != "}":  # objects are pretty-printed; "}" closes one
                continue
            try:
                obj, _ = decoder.raw_decode(buffer.strip())
            except ValueError:
                continue
            buffer = ""
            with self._lock:
                self._objects.append(obj)

    def versions(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [o for o in self._objects if o["metadata"]["name"] == name]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
        self._proc.wait(timeout=10)
        self._reader.join(timeout=5)
