"""Blockflow: a Kubernetes controller for Apps, Blocks and Workflows, built on kopf."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("blockflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
