"""CloudEvents 1.0 over HTTP, structured and binary content modes, for `POST /events`.

Parsing is pure: headers and body bytes in, an :class:`Event` or an
:class:`EventError` (an HTTP status and a message naming what is wrong) out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller import safe_json

STRUCTURED = "application/cloudevents+json"
REQUIRED = ("id", "source", "specversion", "type")


class EventError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Event:
    id: str
    source: str
    type: str
    data: Any = None
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    extensions: dict[str, str] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        """CloudEvents are unique by (source, id): at most one run per workflow per key."""
        return f"{self.source}\n{self.id}"

    def as_input(self) -> dict[str, Any]:
        """What a run sees as `event`."""
        out: dict[str, Any] = {"id": self.id, "source": self.source, "type": self.type}
        for key in ("subject", "time", "datacontenttype"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["data"] = self.data
        return {**self.extensions, **out}


def _decode_json(body: bytes, what: str) -> Any:
    try:
        return safe_json.loads(body)
    except safe_json.JsonError as exc:
        raise EventError(400, f"{what} is not valid JSON: {exc}") from None


def _check(attributes: dict[str, Any], where: str) -> None:
    missing = [name for name in REQUIRED if not attributes.get(name)]
    if missing:
        raise EventError(400, f"missing CloudEvents attribute(s) {', '.join(missing)} in {where}")
    if str(attributes["specversion"]) != "1.0":
        raise EventError(400, f"unsupported specversion {attributes['specversion']!r}; send 1.0")
    for name in REQUIRED:
        if not isinstance(attributes[name], str):
            raise EventError(400, f"CloudEvents attribute {name} must be a string")


def parse(headers: dict[str, str], body: bytes) -> Event:
    """One event from an HTTP request (header names case-insensitive)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if content_type == STRUCTURED:
        doc = _decode_json(body, "the structured event")
        if not isinstance(doc, dict):
            raise EventError(400, "a structured event must be a JSON object")
        _check(doc, "the event body")
        data = doc.get("data")
        if data is None and "data_base64" in doc:
            raise EventError(415, "data_base64 is not supported; send JSON data")
        extensions = {
            k: str(v)
            for k, v in doc.items()
            if k not in (*REQUIRED, "data", "subject", "time", "datacontenttype", "dataschema")
        }
        return Event(
            id=doc["id"],
            source=doc["source"],
            type=doc["type"],
            data=data,
            subject=doc.get("subject"),
            time=doc.get("time"),
            datacontenttype=doc.get("datacontenttype"),
            extensions=extensions,
        )
    attributes = {k[len("ce-") :]: v for k, v in lowered.items() if k.startswith("ce-")}
    if not attributes:
        raise EventError(
            415,
            f"not a CloudEvent: send Content-Type {STRUCTURED} (structured mode) or ce-* "
            "headers with the data as the body (binary mode)",
        )
    _check(attributes, "the ce-* headers")
    if content_type in ("", "application/json") or content_type.endswith("+json"):
        data = _decode_json(body, "the event data") if body else None
    elif content_type.startswith("text/"):
        data = body.decode(errors="replace")
    else:
        raise EventError(415, f"unsupported data content type {content_type!r}; send JSON or text")
    extensions = {k: v for k, v in attributes.items() if k not in (*REQUIRED, "subject", "time")}
    return Event(
        id=attributes["id"],
        source=attributes["source"],
        type=attributes["type"],
        data=data,
        subject=attributes.get("subject"),
        time=attributes.get("time"),
        datacontenttype=content_type or None,
        extensions=extensions,
    )
