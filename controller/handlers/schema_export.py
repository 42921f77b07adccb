"""Publish the handler protocol as JSON Schema (``docs/protocol/``), generated from the models.

``python -m controller.handlers.schema_export docs/protocol`` writes one request
and one reply schema per operation plus the handler-info schema; a test fails
when the files are stale.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from controller.generated import write_files
from controller.handlers.protocol import OPERATIONS, PROTOCOL_VERSION, HandlerInfo


def _schema(target: Any, title: str) -> dict[str, Any]:
    schema = TypeAdapter(target).json_schema(by_alias=True, mode="serialization")
    schema["title"] = title
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://blockflow.dev/protocol/v1/{title}.json"
    return schema


def rendered_files() -> dict[str, str]:
    files: dict[str, Any] = {}
    for operation, (request, reply) in OPERATIONS.items():
        files[f"{operation}.request.json"] = _schema(request, f"{operation}.request")
        reply_schema = _schema(reply, f"{operation}.reply")
        files[f"{operation}.reply.json"] = reply_schema
    files["handler-info.json"] = _schema(HandlerInfo, "handler-info")
    files["index.json"] = {
        "protocolVersion": PROTOCOL_VERSION,
        "operations": {
            op: {"request": f"{op}.request.json", "reply": f"{op}.reply.json"} for op in OPERATIONS
        },
        "handlerInfo": "handler-info.json",
    }
    return {name: json.dumps(body, indent=2, sort_keys=True) + "\n" for name, body in files.items()}


def main(argv: list[str] | None = None) -> int:
    return write_files(rendered_files(), argv, "docs/protocol")


if __name__ == "__main__":
    raise SystemExit(main())
