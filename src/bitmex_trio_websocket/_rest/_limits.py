"""BitMEX's REST request limits as the client sees them, sans-IO: never send what will be refused.

Theory of operation: BitMEX limited REST requests with token buckets and told each client where
it stood in every answer: ``x-ratelimit-limit`` (requests a minute), ``x-ratelimit-remaining``
(whole tokens left after this request) and ``x-ratelimit-reset`` (UNIX seconds when the bucket
is full again); order routes also drew on a per-second bucket, reported as
``x-ratelimit-remaining-1s``. A request with no token left was refused with 429 and
``Retry-After`` and, repeated, led to bans, so the client keeps a *lower bound* of the tokens
in each bucket and waits until it is at least one before sending:

* after an answer the bound is ``remaining`` at the time the answer arrived (the server counted
  it earlier, and buckets only fill up with time);
* it grows at the bucket's rate: ``limit / 60`` a second for the minute bucket; for the
  second bucket, whose size BitMEX never sent, ``(largest remaining-1s seen + 1)`` a second,
  which is never more than the true rate, so the estimate errs on the side of waiting;
* sending takes one token from the bound (an answer replaces it anyway);
* a 429 blocks everything for its ``Retry-After``.

Times are the caller's monotonic clock (trio's, so MockClock tests and backtests wait in
virtual time); nothing here reads a clock. Before any answer nothing is known and nothing
waits. ``RateLimit`` is the latest figures as BitMEX sent them, for users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["RateLimit", "RateLimitTracker"]

MINUTE: Final = 60.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The latest ``x-ratelimit-*`` figures (``None`` where the answer had none): ``limit``
    requests a minute, ``remaining`` of them, ``reset`` (UNIX seconds) when the bucket is full,
    ``remaining_1s`` on the order routes' per-second bucket."""

    limit: int | None = None
    remaining: int | None = None
    reset: int | None = None
    remaining_1s: int | None = None


class _Bound:
    """A lower bound of a bucket's tokens: ``tokens`` at time ``at``, refilled at ``rate``."""

    __slots__ = ("at", "capacity", "rate", "tokens")

    def __init__(self) -> None:
        self.tokens: float | None = None  # unknown until an answer says
        self.at = 0.0
        self.capacity = 1.0
        self.rate = 1.0

    def set(self, tokens: float, capacity: float, rate: float, now: float) -> None:
        self.tokens, self.capacity, self.rate, self.at = tokens, capacity, rate, now

    def available(self, now: float) -> float:
        if self.tokens is None:
            return float("inf")
        return min(self.capacity, self.tokens + max(0.0, now - self.at) * self.rate)

    def ready_at(self, now: float) -> float:
        """When at least one token is there (``now`` if already)."""
        have = self.available(now)
        if have >= 1.0:
            return now
        return now + (1.0 - have) / self.rate

    def take(self, now: float) -> None:
        if self.tokens is not None:
            self.tokens = max(0.0, self.available(now) - 1.0)
            self.at = now


class RateLimitTracker:
    """See the module docstring. ``ready_at(now, order_route=...)`` is when a request may go;
    ``sent`` takes its tokens, ``observe`` reads an answer's headers, ``refused`` a 429."""

    def __init__(self) -> None:
        self._minute = _Bound()
        self._second = _Bound()
        self._largest_1s = 0
        self._blocked_until = float("-inf")
        self.latest = RateLimit()

    def ready_at(self, now: float, *, order_route: bool) -> float:
        """The earliest time (on the caller's clock) the next request will not be refused."""
        ready = max(now, self._blocked_until, self._minute.ready_at(now))
        if order_route:
            ready = max(ready, self._second.ready_at(now))
        return ready

    def sent(self, now: float, *, order_route: bool) -> None:
        self._minute.take(now)
        if order_route:
            self._second.take(now)

    def observe(self, headers: Mapping[str, str], now: float) -> None:
        """Learn from an answer's headers (lower-case names) received at ``now``."""
        limit = _integer(headers.get("x-ratelimit-limit"))
        remaining = _integer(headers.get("x-ratelimit-remaining"))
        reset = _integer(headers.get("x-ratelimit-reset"))
        remaining_1s = _integer(headers.get("x-ratelimit-remaining-1s"))
        if limit is None and remaining is None and remaining_1s is None:
            return  # an answer before the limiter (404, 401): nothing learned
        self.latest = RateLimit(limit, remaining, reset, remaining_1s)
        if limit is not None and limit > 0 and remaining is not None:
            self._minute.set(float(remaining), float(limit), limit / MINUTE, now)
        if remaining_1s is not None:
            self._largest_1s = max(self._largest_1s, remaining_1s)
            size = float(self._largest_1s + 1)
            self._second.set(float(remaining_1s), size, size, now)

    def refused(self, retry_after: float, now: float) -> None:
        """A 429: nothing goes before ``now + retry_after``."""
        self._blocked_until = max(self._blocked_until, now + max(0.0, retry_after))


def _integer(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        try:
            return int(float(value))
        except ValueError:
            return None
