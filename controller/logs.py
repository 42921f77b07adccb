"""structlog setup: JSON in a cluster, readable on a terminal.

kopf's stdlib logs go through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

#: stdlib ``extra`` keys kopf adds that must not reach the output.
_KOPF_INTERNAL_KEYS = ("settings", "k8s_skip")


def _flatten_kopf_ref(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """kopf's per-object loggers carry ``k8s_ref``; show it as kind/namespace/name fields."""
    ref = event_dict.pop("k8s_ref", None)
    for key in _KOPF_INTERNAL_KEYS:
        event_dict.pop(key, None)
    if isinstance(ref, dict):
        for key in ("kind", "namespace", "name"):
            if ref.get(key) and key not in event_dict:
                event_dict[key] = ref[key]
    return event_dict


def _renderer(fmt: str, stream: Any) -> Processor:
    use_console = fmt == "console" or (
        fmt == "auto" and hasattr(stream, "isatty") and stream.isatty()
    )
    if use_console:
        # Plain tracebacks: a rich one shows local variables, and a local may hold a secret.
        return structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.processors.JSONRenderer()


def configure_logging(fmt: str = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Route structlog and stdlib logging to one handler with one renderer."""
    stream = stream or sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _flatten_kopf_ref,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(fmt, stream),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log and asyncio debug chatter are noise at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # One line per API request (httpx, under lightkube) or per watch event (kopf) drowns
    # what matters at scale; Blockflow logs its own decisions. DEBUG shows them all.
    if logging.getLevelName(level) > logging.DEBUG:
        for noisy in ("httpx", "httpx2", "httpcore", "kopf.objects"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
