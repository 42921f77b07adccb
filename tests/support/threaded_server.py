"""An aiohttp application served on 127.0.0.1 from a thread with its own event loop, for
tests that run real HTTP peers (fake providers, handler services) beside the controller."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web


class ThreadedServer:
    """``make_app()`` is called in the server's thread; ``port`` 0 picks a free one (a fixed
    port lets a test stop a server and start another at the same address); ``runner``
    options go to aiohttp's AppRunner."""

    def __init__(
        self, make_app: Callable[[], web.Application], *, port: int = 0, **runner: Any
    ) -> None:
        self._make_app = make_app
        self._runner_options: dict[str, Any] = {"access_log": None, **runner}
        self.port = port
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise AssertionError(f"the server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        runner = web.AppRunner(self._make_app(), **self._runner_options)
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", self.port)
            await site.start()
            address = runner.addresses[0]
            self.port = int(address[1])
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
