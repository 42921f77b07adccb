"""Writing generated files (CRDs, the protocol's JSON Schema, the reference docs): one entry
point shape for ``make crds``, ``make protocol`` and ``make docs``; tests compare the same
``rendered_files()`` with what is checked in."""

from __future__ import annotations

import sys
from pathlib import Path


def write_files(files: dict[str, str], argv: list[str] | None, default_dir: str) -> int:
    """Write ``files`` (name → text) into the directory named by ``argv[0]`` (default
    ``default_dir``); a ``main()``'s exit code."""
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0] if args else default_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out_dir / name).write_text(text)
    print(f"wrote {len(files)} files to {out_dir}")
    return 0
