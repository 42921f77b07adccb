"""Give memory back to the operating system after bursts of work.

CPython's allocator and glibc's malloc keep the high-water mark of a burst (a thousand
runs started at once) long after the objects are gone, so the process's RSS would tell
the size of its worst minute rather than of what it holds. Once the work queues have
been idle for a moment, a full collection and ``malloc_trim(0)`` return the free pages:
RSS then tracks live memory — which for waiting runs is a small index entry each.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable

from controller.logs import get_logger

log = get_logger("blockflow.memory")


def _malloc_trim() -> Callable[[], object] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return lambda: trim(0)


async def trim_when_idle(
    busy: Callable[[], int], *, settle: float = 2.0, interval: float = 1.0
) -> None:
    """Forever: after each burst of work (`busy()` counts work done so far), once nothing
    happened for `settle` seconds, collect and trim once."""
    trim = _malloc_trim()
    trimmed_at = busy()
    quiet_since = busy()
    while True:
        await asyncio.sleep(interval)
        now = busy()
        if now != quiet_since:
            quiet_since = now  # still working
            continue
        if now == trimmed_at:
            continue  # nothing happened since the last trim
        await asyncio.sleep(settle)
        if busy() != now:
            continue
        gc.collect()
        if trim is not None:
            trim()
        trimmed_at = now
        log.debug("memory trimmed after a burst", work_done=now)
