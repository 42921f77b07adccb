"""The `noop` handler: every block type is ready at once (benchmarks, smoke tests)."""

from __future__ import annotations

from controller import __version__
from controller.handlers.sdk import BlockType, Handler

handler = Handler(version=__version__, block_types={"noop": BlockType()})
