"""The controller, made to die as `kill -9` would right after its Nth run status write.

Run as ``python -m tests.support.crashing_controller <controller CLI arguments>`` with
``BLOCKFLOW_CRASH_AFTER_RUN_WRITES=N``: crash-safety tests use it to stop a run at every
durable transition in turn. The fault lives here, in the tests; the controller only
offers the seam (``run_operator(on_run_write=...)``).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Any

import controller.operator
from controller.cli import main


def crash_after(writes: int) -> Any:
    count = 0

    def on_run_write(_: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        if count >= writes:
            os.kill(os.getpid(), signal.SIGKILL)

    return on_run_write


if __name__ == "__main__":
    limit = int(os.environ["BLOCKFLOW_CRASH_AFTER_RUN_WRITES"])
    controller.operator.run_operator = functools.partial(
        controller.operator.run_operator, on_run_write=crash_after(limit)
    )
    sys.exit(main())
