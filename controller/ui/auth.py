"""Who is asking, and what may they see: TokenReview and SubjectAccessReview, cached briefly.

The page never trusts its own idea of a person: a bearer token is checked by the API server
(``authentication.k8s.io/v1`` TokenReview) and every read or action is asked of the API
server's authorizer for *that person's* identity (``authorization.k8s.io/v1``
SubjectAccessReview: user, groups, uid, extra). The controller itself only needs
``create`` on those two review resources. Answers are cached for a few seconds (by a hash of
the token; by identity and request attributes) so that a page and its live refreshes cost
almost nothing; a revoked token or RoleBinding stops working within that time.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp

from controller.api.kinds import GROUP
from controller.kube.rest import KubeApiError, Requester
from controller.server.tokens import derived_token, same

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
#: Seconds a review's answer is reused.
CACHE_SECONDS = 10.0
#: Entries per cache (least recently used evicted beyond that).
CACHE_ENTRIES = 4096

T = TypeVar("T")


@dataclass(frozen=True)
class Identity:
    """A person (or service account) as the API server's authenticator sees them."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def user_info(self) -> dict[str, Any]:
        """The identity fields of a SubjectAccessReview spec."""
        info: dict[str, Any] = {"user": self.username, "groups": list(self.groups)}
        if self.uid:
            info["uid"] = self.uid
        if self.extra:
            info["extra"] = {key: list(values) for key, values in self.extra}
        return info


@dataclass(frozen=True)
class Access:
    """One request attribute set of a SubjectAccessReview (``resourceAttributes``)."""

    verb: str
    resource: str
    namespace: str = ""
    name: str = ""
    group: str = GROUP

    def attributes(self) -> dict[str, str]:
        out = {"verb": self.verb, "group": self.group, "resource": self.resource}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.name:
            out["name"] = self.name
        return out


class ReviewUnavailable(Exception):
    """The API server could not be asked (down, or the controller may not create reviews)."""


class TtlCache(Generic[T]):
    """A small LRU cache whose entries expire ``ttl`` seconds after they were stored."""

    def __init__(
        self,
        ttl: float = CACHE_SECONDS,
        max_entries: int = CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.max_entries, self._clock = ttl, max_entries, clock
        self._entries: OrderedDict[Any, tuple[float, T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Any) -> tuple[bool, T | None]:
        found = self._entries.get(key)
        if found is None:
            return False, None
        expires, value = found
        if expires <= self._clock():
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def put(self, key: Any, value: T) -> None:
        self._entries[key] = (self._clock() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def through(self, key: Any, compute: Callable[[], Awaitable[T]]) -> T:
        hit, value = self.get(key)
        if hit:
            return value  # type: ignore[return-value]
        value = await compute()
        self.put(key, value)
        return value


def token_digest(token: str) -> str:
    """Tokens are never kept, only a hash of them (as cache keys)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Reviewer:
    """TokenReview and SubjectAccessReview through the controller's own client, cached."""

    def __init__(
        self,
        client: Requester,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._tokens: TtlCache[Identity | None] = TtlCache(ttl, clock=clock)
        self._access: TtlCache[bool] = TtlCache(ttl, clock=clock)
        self.reviews = 0  # requests made to the API server (the cache's effect, in tests)

    async def authenticate(self, token: str) -> Identity | None:
        """The identity behind ``token``, or None when the API server does not accept it."""
        if not token or len(token) > 16384 or any(c.isspace() for c in token):
            return None
        return await self._tokens.through(token_digest(token), lambda: self._review(token))

    async def _review(self, token: str) -> Identity | None:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        answer = await self._post(TOKEN_REVIEWS, body)
        status = answer.get("status") or {}
        user = status.get("user") or {}
        if not status.get("authenticated") or not user.get("username"):
            return None
        extra = user.get("extra") or {}
        return Identity(
            username=str(user["username"]),
            uid=str(user.get("uid") or ""),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            extra=tuple(
                sorted((str(k), tuple(str(v) for v in values or ())) for k, values in extra.items())
            ),
        )

    async def allowed(self, who: Identity, access: Access) -> bool:
        """May ``who`` do ``access``? (The API server's authorizer answers, for them.)"""
        return await self._access.through((who, access), lambda: self._authorize(who, access))

    async def _authorize(self, who: Identity, access: Access) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {**who.user_info(), "resourceAttributes": access.attributes()},
        }
        answer = await self._post(ACCESS_REVIEWS, body)
        status = answer.get("status") or {}
        return bool(status.get("allowed")) and not status.get("denied")

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.reviews += 1
        try:
            return await self.client.request("POST", path, body=body)
        except KubeApiError as exc:
            raise ReviewUnavailable(f"{exc.code} {exc.reason}") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ReviewUnavailable(type(exc).__name__) from None


def csrf_token(key: bytes, bearer: str) -> str:
    """The CSRF token of a session: derived from the controller's key and the session's
    bearer token (so nothing is stored, and it changes with the token)."""
    return derived_token(key, "ui-csrf:" + token_digest(bearer))


def csrf_ok(key: bytes, bearer: str, presented: str | None) -> bool:
    return bool(presented) and same(str(presented), csrf_token(key, bearer))
