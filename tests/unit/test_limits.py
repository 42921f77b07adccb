"""The per-key token bucket: bursts, refill, Retry-After values, bounded memory."""

from __future__ import annotations

import pytest

from controller.server.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_is_allowed_then_refused_with_the_wait_until_the_next_token() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.allow("a") for _ in range(3)] == [None, None, None]
    assert limiter.allow("a") == pytest.approx(0.5)  # one token per 0.5 s
    clock.advance(0.2)
    assert limiter.allow("a") == pytest.approx(0.3)
    clock.advance(0.3)
    assert limiter.allow("a") is None
    assert limiter.allow("a") == pytest.approx(0.5)


def test_refused_requests_take_no_token() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.allow("a") is None
    for _ in range(5):
        assert limiter.allow("a") == pytest.approx(1.0)
    clock.advance(1.0)
    assert limiter.allow("a") is None


def test_refill_is_capped_at_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(10.0, 2, clock=clock)
    assert limiter.allow("a") is None
    clock.advance(0.05)  # half a token back, not enough to matter yet
    assert limiter.allow("a") is None
    assert limiter.allow("a") == pytest.approx(0.05)
    clock.advance(3600)  # a long time: still only `burst` tokens
    assert [limiter.allow("a") for _ in range(2)] == [None, None]
    assert limiter.allow("a") is not None


def test_keys_are_independent() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    assert limiter.allow("a") is None
    assert limiter.allow("a") is not None
    assert limiter.allow("b") is None


def test_at_most_max_keys_are_kept_least_recently_used_first_out() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 1, max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.allow(key) is None
    assert limiter.allow("a") is not None  # touches "a": now "b" is the least recently used
    assert limiter.allow("d") is None
    assert len(limiter) == 3
    assert "b" not in limiter and {"a", "c", "d"} <= {k for k in "abcd" if k in limiter}
    assert limiter.allow("a") is not None  # "a" kept its (empty) bucket
    for n in range(100):
        limiter.allow(f"flood-{n}")
    assert len(limiter) == 3


def test_idle_buckets_are_forgotten_once_they_would_be_full_again() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 4, clock=clock)  # full again after 2 s
    limiter.allow("old")
    clock.advance(1.0)
    limiter.allow("recent")
    clock.advance(1.0)  # "old" idle for 2 s: full, so it can go
    limiter.allow("new")
    assert "old" not in limiter and "recent" in limiter and len(limiter) == 2
    # a forgotten key behaves exactly like a full bucket
    assert [limiter.allow("old") for _ in range(4)] == [None] * 4
    assert limiter.allow("old") is not None


@pytest.mark.parametrize(
    ("rate", "burst", "max_keys"), [(0, 1, 1), (-1.0, 1, 1), (1.0, 0, 1), (1.0, 1, 0)]
)
def test_parameters_are_checked(rate: float, burst: int, max_keys: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst, max_keys=max_keys)
