"""Handler calls as the runtimes make them: timed, by operation and transport."""

from __future__ import annotations

import time
from typing import Any

from controller import metrics
from controller.handlers.protocol import HandlerRequest
from controller.handlers.transport import Transport


async def timed_call(transport: Transport, request: HandlerRequest) -> Any:
    """A handler call, its latency recorded by operation and transport."""
    started = time.monotonic()
    try:
        return await transport.call(request)
    finally:
        metrics.HANDLER_CALL_SECONDS.labels(request.operation, type(transport).__name__).observe(
            time.monotonic() - started
        )
