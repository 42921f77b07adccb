"""Token-bucket rate limiting per key (a token URL, a namespace), with bounded memory.

Each key has a bucket holding up to ``burst`` tokens that refills at ``rate_per_second``; a
request takes one token or is refused with the number of seconds until one is available.

Memory stays bounded however many keys appear (token URLs are attacker-chosen): a bucket
that has been idle long enough to be full again is indistinguishable from a new one and is
dropped, and at most ``max_keys`` buckets are kept — beyond that the least recently used
one is evicted (which at worst forgives that key's recent requests).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: ``allow(key)`` is None when allowed, else seconds to wait."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, not {rate_per_second!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys!r}")
        self.rate_per_second = float(rate_per_second)
        self.burst = int(burst)
        self.max_keys = int(max_keys)
        self._clock = clock
        # Least recently used first: every allow() moves its key to the end.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def refill_seconds(self) -> float:
        """How long an empty bucket takes to be full again (after which it is forgotten)."""
        return self.burst / self.rate_per_second

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def allow(self, key: str) -> float | None:
        """Take one token from ``key``'s bucket: None if there was one, else seconds until
        one will be (always > 0)."""
        now = self._clock()
        self._evict_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_second)
            bucket.updated = now
            self._buckets.move_to_end(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate_per_second

    def _evict_idle(self, now: float) -> None:
        """Drop buckets untouched long enough to be full again, oldest first (LRU order is
        also order of last use, so the scan stops at the first recent one)."""
        horizon = now - self.refill_seconds
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if oldest.updated > horizon:
                break
            self._buckets.popitem(last=False)
