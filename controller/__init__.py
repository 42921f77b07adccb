"""Blockflow: a Kubernetes controller for Apps, Blocks and Workflows, built on kopf."""

from __future__ import annotations

from functools import cache


@cache
def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("blockflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0.0.0+unknown"


def __getattr__(name: str) -> str:
    # The version is read from the installed metadata only when asked: importlib.metadata
    # costs a command line more than the rest of what a read command loads.
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
