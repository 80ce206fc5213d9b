"""BitMEX's in-band limits on one session, sans-IO: command bursts, pending subscriptions, errors.

Theory of operation: BitMEX answered a burst of commands with an in-band
``{"status":429,"error":"Rate limit exceeded, retry in N seconds.","meta":{"retryAfter":N}}``
(ccxt's example, ``../shared/captures/ccxt_pro_bitmex_comment_examples.jsonl``; protocol reference
section 4.5), a subscribe that would leave too many partials pending with
``{"status":503,"error":"Max Pending subscription limit reached, please try again later."}``
(no ``meta``; gobitmex's example, protocol reference section 4.5), and closed a session that
made too many errors (BitMEX's announcement on authentication commands, section 13). It never
published the thresholds, so these are our choices, documented in ``docs/emulator.rst`` and
settable per emulator with ``Limits``:

* subscribe and unsubscribe commands draw from a token bucket of ``command_burst`` tokens that
  refills at ``commands_per_second``; a command with no token left is refused whole with 429,
  ``retryAfter`` being the whole seconds until a token is back (at least 1);
* one subscribe command may open ``max_pending_subscriptions`` topics (their partials are pending
  until sent); each topic past that gets its own 503;
* after ``max_errors`` error replies the session is closed with ``error_close_code`` and
  ``error_close_reason`` (BitMEX's code and text are unknown).

``CommandBucket`` reads no clock: the session passes the time of each command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_LIMITS", "CommandBucket", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The thresholds of BitMEX's in-band limits (BitMEX never published them; see module).

    Defaults are generous enough that a client resubscribing dozens of topics after a reconnect
    (in commands of 10 topics, as large clients did) never meets them.
    """

    command_burst: int = 40
    commands_per_second: float = 10.0
    max_pending_subscriptions: int = 20
    max_errors: int = 100
    error_close_code: int = 1008
    error_close_reason: str = "Too many errors in this session."

    def __post_init__(self) -> None:
        if self.command_burst < 1 or self.commands_per_second <= 0:
            raise ValueError("command_burst must be >= 1 and commands_per_second > 0")
        if self.max_pending_subscriptions < 1 or self.max_errors < 1:
            raise ValueError("max_pending_subscriptions and max_errors must be >= 1")


DEFAULT_LIMITS: Final = Limits()


class CommandBucket:
    """A token bucket of commands; ``take(now)`` returns 0 when a token was taken, otherwise
    the whole seconds until one is back (``retryAfter``)."""

    __slots__ = ("_last", "_limits", "_tokens")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._tokens = float(limits.command_burst)
        self._last: float | None = None

    def take(self, now: float) -> int:
        limits = self._limits
        if self._last is not None and now > self._last:
            refill = (now - self._last) * limits.commands_per_second
            self._tokens = min(float(limits.command_burst), self._tokens + refill)
        self._last = now if self._last is None else max(now, self._last)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - self._tokens) / limits.commands_per_second))
