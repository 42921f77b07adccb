"""HTTP handlers: POST a signed JSON request to ``<url>/<operation>``.

The handler may be written in any language, so everything it sends back is
untrusted: the reply size is capped, the JSON is validated against the protocol
models, and every failure becomes a :class:`HandlerError` whose message is fit
for ``status.lifecycle.lastError`` and Warning events.

Requests carry resolved config (secrets from ``configFrom`` included), so error
messages never contain the request body, the signing key or the signature, and
text the handler answers with (an error page that may echo the request, as many
web frameworks' validation errors do) has the request's string values redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError
from yarl import URL

from controller import safe_json
from controller.handlers.protocol import PROTOCOL_VERSION, HandlerInfo, HandlerRequest
from controller.handlers.transport import HandlerError, _summarise, validate_reply

SIGNATURE_HEADER: Final = "X-Blockflow-Signature"
PROTOCOL_HEADER: Final = "X-Blockflow-Protocol"
SIGNATURE_PREFIX: Final = "sha256="

#: Largest reply accepted; a handler has no reason to send more, and memory is shared.
MAX_REPLY_BYTES: Final = 1024 * 1024
#: How much of an error reply is read to quote from it.
_ERROR_READ_BYTES: Final = 64 * 1024
#: How much of an error reply is quoted in a message.
_SNIPPET_CHARS: Final = 200
#: Shorter strings are not redacted: they cannot be meaningful secrets, and replacing
#: every "a" or "id" would make the quoted text unreadable.
_MIN_REDACTED_LEN: Final = 4
_REDACTED: Final = "***"


# -- signatures ------------------------------------------------------------------------------


def sign(body: bytes, key: bytes) -> str:
    """The ``X-Blockflow-Signature`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(body: bytes, key: bytes, header_value: str | None) -> bool:
    """Whether ``header_value`` is the signature of ``body`` with ``key`` (constant time)."""
    if not header_value:
        return False
    given = header_value.strip().encode("utf-8", errors="replace")
    return hmac.compare_digest(sign(body, key).encode("ascii"), given)


# -- the transport ---------------------------------------------------------------------------


class HttpTransport:
    """Talks to one HTTP handler service.

    ``session`` lets many transports share one connection pool; without it the
    transport creates its own on first use (inside the running loop, as aiohttp
    requires) and :meth:`close` closes only that one.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 10.0,
        signing_key: bytes | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if signing_key is not None and not signing_key:
            # An empty HMAC key signs, but anyone can forge it: refuse rather than pretend.
            raise ValueError("signing_key is empty; pass None to send unsigned requests")
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._key = signing_key
        self._session = session
        self._owns_session = session is None
        self._where = _display_url(self.url)
        #: The handler this transport calls, for its concurrency limit: the endpoint's host.
        self.target = f"http {urlsplit(self.url).netloc}"

    def __repr__(self) -> str:
        # The default repr would show the key's bytes to anyone logging the transport.
        signed = "signed" if self._key is not None else "unsigned"
        return f"HttpTransport({self._where!r}, {signed}, timeout={self.timeout_seconds:g}s)"

    async def info(self) -> HandlerInfo:
        """``GET <url>/``: the handler's version and declarations."""
        reply = await self._exchange("GET", self.url + "/", None, "info")
        body = self._checked_body(reply, "info", _Redactor.empty())
        try:
            return HandlerInfo.model_validate(body)
        except ValidationError as exc:
            raise HandlerError(
                f"invalid handler info from {self._where}: {_summarise(exc)}",
                reason="InvalidReply",
            ) from None

    async def call(self, request: HandlerRequest) -> Any:
        """POST the request to ``<url>/<operation>``; return its validated reply."""
        operation = request.operation
        body = json.dumps(
            request.model_dump(by_alias=True, mode="json"), separators=(",", ":")
        ).encode("utf-8")
        url = f"{self.url}/{operation}"
        reply = await self._exchange("POST", url, body, operation)
        redactor = _Redactor.of(request)
        parsed = self._checked_body(reply, operation, redactor)
        try:
            return validate_reply(operation, parsed)
        except HandlerError as exc:
            raise HandlerError(redactor(exc.message), reason=exc.reason) from None

    async def close(self) -> None:
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    # -- internals ---------------------------------------------------------------------------

    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {PROTOCOL_HEADER: PROTOCOL_VERSION, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
            if self._key is not None:
                headers[SIGNATURE_HEADER] = sign(body, self._key)
        return headers

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _exchange(self, method: str, url: str, body: bytes | None, operation: str) -> _Reply:
        """Send one request; return the status, Retry-After and the (capped) body.

        Redirects are not followed: a 3xx would re-send the signed body, secrets
        included, to wherever the handler points.
        """
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        try:
            async with self._client().request(
                method,
                url,
                data=body,
                headers=self._headers(body),
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                limit = MAX_REPLY_BYTES if response.status < 300 else _ERROR_READ_BYTES
                data, truncated = await _read_capped(response, limit)
                return _Reply(response.status, response.headers.get("Retry-After"), data, truncated)
        except TimeoutError:
            # aiohttp's timeout errors are TimeoutErrors too, so this comes before ClientError.
            raise HandlerError(
                f"handler at {self._where} gave no reply to {operation} "
                f"within {self.timeout_seconds:g}s",
                reason="HandlerTimeout",
            ) from None
        except aiohttp.ClientError as exc:
            raise HandlerError(
                f"cannot reach handler at {self._where} for {operation}: {_describe(exc)}",
                reason="HandlerUnavailable",
            ) from None

    def _checked_body(self, reply: _Reply, operation: str, redact: _Redactor) -> Any:
        """The parsed JSON of a 2xx reply; a HandlerError for anything else."""
        status = reply.status
        if status == 429:
            retry_after = parse_retry_after(reply.retry_after)
            later = f"; retry after {retry_after:g}s" if retry_after is not None else ""
            raise HandlerError(
                f"handler at {self._where} is rate limiting {operation} (HTTP 429){later}",
                reason="RateLimited",
                retry_after=retry_after,
            )
        if not 200 <= status < 300:
            snippet = _snippet(reply, redact)
            raise HandlerError(
                f"handler at {self._where} answered {operation} with HTTP {status}"
                + (f": {snippet}" if snippet else ""),
                reason="HandlerHTTPError",
            )
        if reply.truncated:
            raise HandlerError(
                f"reply to {operation} from {self._where} is larger than {MAX_REPLY_BYTES} bytes",
                reason="InvalidReply",
            )
        try:
            return safe_json.loads(reply.data)
        except safe_json.JsonError as exc:  # invalid, not UTF-8, too deep, NaN, huge integers
            raise HandlerError(
                f"reply to {operation} from {self._where} is not JSON Blockflow accepts: {exc}",
                reason="InvalidReply",
            ) from None


# -- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    """What the transport keeps of a response, copied out before it is released."""

    status: int
    retry_after: str | None
    data: bytes
    truncated: bool  # the body was longer than the read limit


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes; say whether there was more (without reading it all)."""
    if response.content_length is not None and response.content_length > limit:
        return b"", True
    data = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), True
    return bytes(data), False


#: The longest a handler's ``Retry-After`` is honoured (a day): beyond that it is a mistake,
#: and an entity must not sleep for 1,000 days because of one header.
MAX_RETRY_AFTER = 86_400.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or HTTP-date), at most
    MAX_RETRY_AFTER; None if unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP-dates are GMT anyway
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)


def _display_url(url: str) -> str:
    """The handler URL for messages: no user-info, query or fragment (they may hold tokens)."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (TypeError, ValueError):
        return "(invalid URL)"


def _describe(exc: aiohttp.ClientError) -> str:
    """A one-line description of a client error in plain words, never a class name (aiohttp's
    texts carry no request data, but some quote the URL, whose user-info and query may hold
    credentials)."""
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return "not a usable http(s) URL"
    for kind, words in _PLAIN_WORDS:
        if isinstance(exc, kind):
            return words
    text = _USERINFO.sub("//", " ".join(str(exc).split()))
    return text or "the connection failed"


#: Errors whose own text says little: what each means.
_PLAIN_WORDS: Final = (
    (aiohttp.ServerDisconnectedError, "the server closed the connection without answering"),
    (aiohttp.ServerTimeoutError, "no answer in time"),
    (aiohttp.ClientPayloadError, "the answer was cut off"),
)


_USERINFO: Final = re.compile(r"//[^/\s@]*@")


def _snippet(reply: _Reply, redact: _Redactor) -> str:
    """At most ~200 characters of an error reply, on one line, secrets redacted first."""
    text = redact(reply.data.decode("utf-8", errors="replace"))
    if reply.truncated:
        # A secret cut by the read limit would escape redaction: drop the tail it could be in.
        text = text[: max(0, len(text) - redact.longest)]
    text = " ".join(text.split())
    if len(text) > _SNIPPET_CHARS:
        text = text[:_SNIPPET_CHARS].rstrip() + "…"
    return text


class _Redactor:
    """Replaces the request's string values (config, signals, state) in handler text."""

    def __init__(self, values: set[str]) -> None:
        forms = {form for value in values for form in _encodings(value)}
        forms = {form for form in forms if len(form) >= _MIN_REDACTED_LEN}
        # Longest first, so a secret containing another is replaced whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.longest = len(ordered[0]) if ordered else 0

    @classmethod
    def empty(cls) -> _Redactor:
        return cls(set())

    @classmethod
    def of(cls, request: HandlerRequest) -> _Redactor:
        sources: list[Any] = [request.entity.config, request.entity.signals, request.state]
        if request.app is not None:
            sources += [request.app.config, request.app.signals]
        return cls(set(_strings(sources)))

    def __call__(self, text: str) -> str:
        return self._pattern.sub(_REDACTED, text) if self._pattern else text


def _strings(value: Any) -> Iterator[str]:
    """Every string leaf of a JSON-like value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _encodings(value: str) -> set[str]:
    """How a string may appear in a reply: raw, or escaped once or twice inside JSON strings
    (an error whose text is the request body, itself inside a JSON error object)."""
    forms = {value}
    for ascii_only in (True, False):
        once = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        twice = json.dumps(once, ensure_ascii=ascii_only)[1:-1]
        forms |= {once, twice}
    return forms
