"""BitMEX's REST request limits, sans-IO: a per-minute bucket and a per-second order bucket.

Theory of operation: BitMEX limited REST requests with token buckets (its CTO: "one token is
added to your limit every second, and up to 60 tokens can be in the bucket", r/BitMEX, June
2020; the allowance became 120 a minute later, 30 for unauthenticated requests per IP). Since
December 2020 order management routes (``POST/PUT/DELETE /order``, ``DELETE /order/all``,
``POST /position/leverage``...) also drew from a second bucket of 10 requests a second
(BitMEX's "Second Layer Rate Limits" notice). Every response carried
``x-ratelimit-limit``, ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (UNIX seconds when
the bucket is full again), order routes also ``x-ratelimit-remaining-1s``; a request with no
token left got 429 ``RateLimitError`` ``Rate limit exceeded, retry in N seconds.`` with
``Retry-After: N`` and consumed nothing.

``RateLimiter.take(identity, limits, order_route, now)`` either takes the tokens and returns the
headers, or raises ``RestError`` 429. Identities are ``("account", id)`` for signed requests and
``("ip", client)`` for anonymous ones, each with its own buckets. ``now`` comes from the caller
(no clock is read); a ``now`` earlier than the last one never refills anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ._errors import RATE_LIMIT_ERROR, RestError, rate_limited_text

__all__ = ["DEFAULT_REST_LIMITS", "RateLimiter", "RestLimits"]

# Epoch seconds near 1.7e9 carry ~2e-7 s of float resolution: a token due "exactly" now may be
# computed a hair short, so this much of a token counts as a whole one.
_SLACK: Final = 1e-6


@dataclass(frozen=True, slots=True)
class RestLimits:
    """Request allowances: ``per_minute`` for an account (BitMEX: 120), ``anonymous_per_minute``
    per client address for unsigned requests (30), ``orders_per_second`` on order routes (10)."""

    per_minute: int = 120
    anonymous_per_minute: int = 30
    orders_per_second: int = 10

    def __post_init__(self) -> None:
        if min(self.per_minute, self.anonymous_per_minute, self.orders_per_second) < 1:
            raise ValueError("every REST limit must be at least 1")


DEFAULT_REST_LIMITS: Final = RestLimits()


class _Bucket:
    """``capacity`` tokens refilled at ``rate`` a second."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, capacity: int, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = float(capacity)
        self.last = now

    def refill(self, capacity: int, rate: float, now: float) -> None:
        if capacity != self.capacity:  # limits changed: keep what was used
            self.tokens = max(0.0, self.tokens + capacity - self.capacity)
            self.capacity, self.rate = capacity, rate
        if now > self.last:
            self.tokens = min(float(capacity), self.tokens + (now - self.last) * rate)
            self.last = now

    def wait(self) -> int:
        """Whole seconds until one token is back (at least 1)."""
        return max(1, math.ceil((1.0 - _SLACK - self.tokens) / self.rate))

    def full_at(self, now: float) -> int:
        return math.ceil(now + max(0.0, self.capacity - self.tokens - _SLACK) / self.rate)


class RateLimiter:
    """Token buckets per identity (see the module docstring)."""

    def __init__(self) -> None:
        self._minute: dict[tuple[str, object], _Bucket] = {}
        self._second: dict[tuple[str, object], _Bucket] = {}

    def take(
        self, identity: tuple[str, object], limits: RestLimits, order_route: bool, now: float
    ) -> list[tuple[str, str]]:
        """Take one request's tokens and return the ``x-ratelimit-*`` headers, or raise 429."""
        per_minute = limits.per_minute if identity[0] == "account" else limits.anonymous_per_minute
        minute = self._bucket(self._minute, identity, per_minute, per_minute / 60.0, now)
        second: _Bucket | None = None
        if order_route:
            per_second = limits.orders_per_second
            second = self._bucket(self._second, identity, per_second, float(per_second), now)
        blocked = [b for b in (minute, second) if b is not None and b.tokens < 1.0 - _SLACK]
        if blocked:
            retry = max(b.wait() for b in blocked)
            headers = _headers(minute, second, now)
            headers.append(("retry-after", str(retry)))
            raise RestError(
                429, rate_limited_text(retry), name=RATE_LIMIT_ERROR, headers=tuple(headers)
            )
        minute.tokens -= 1.0
        if second is not None:
            second.tokens -= 1.0
        return _headers(minute, second, now)

    @staticmethod
    def _bucket(
        buckets: dict[tuple[str, object], _Bucket],
        identity: tuple[str, object],
        capacity: int,
        rate: float,
        now: float,
    ) -> _Bucket:
        bucket = buckets.get(identity)
        if bucket is None:
            bucket = buckets[identity] = _Bucket(capacity, rate, now)
        else:
            bucket.refill(capacity, rate, now)
        return bucket


def _headers(minute: _Bucket, second: _Bucket | None, now: float) -> list[tuple[str, str]]:
    headers = [
        ("x-ratelimit-limit", str(minute.capacity)),
        ("x-ratelimit-remaining", str(max(0, math.floor(minute.tokens + _SLACK)))),
        ("x-ratelimit-reset", str(minute.full_at(now))),
    ]
    if second is not None:
        headers.append(
            ("x-ratelimit-remaining-1s", str(max(0, math.floor(second.tokens + _SLACK))))
        )
    return headers
