"""Reconnect policy: which failures are retried, how long to wait, and which exception propagates.

Theory of operation. The supervisor (``_supervisor.Supervisor``) runs one session after another and
asks this module three things when one ends:

* ``collapse``: trio wraps whatever a nursery's tasks raised in exception groups. One policy, used
  by the supervisor and by ``open_bitmex_websocket`` alike, reduces a group to what propagates:
  cancellation and KeyboardInterrupt win (only they propagate: they belong to trio and to the
  user, and whatever else failed while shutting down is moot); otherwise the first leaf, so users
  catch ``AuthenticationError`` and not a group around it.
* ``should_retry``: a failure before the first session was up is the caller's to see; after it,
  network-shaped failures (``RETRYABLE``) are retried, except credentials refused
  ``MAX_AUTH_FAILURES`` times in a row (revoked keys stay revoked).
* ``backoff_delay`` and ``retry_after_seconds``: exponential backoff with full jitter and a cap,
  never shorter than what a 429 asked for.

Nothing here does I/O or reads a clock: the random generator is passed in.
"""

from __future__ import annotations

import random

import orjson
import trio
import trio_websocket

from ._exceptions import AuthenticationError, ConnectionTimeout, RemoteProtocolError

__all__ = [
    "MAX_AUTH_FAILURES",
    "RETRYABLE",
    "backoff_delay",
    "collapse",
    "retry_after_seconds",
    "should_retry",
    "stops",
]

# Consecutive refused re-authentications before giving up.
MAX_AUTH_FAILURES = 5

# trio-websocket's classes are the bases of ours (``_exceptions``): both are caught.
RETRYABLE = (
    trio_websocket.ConnectionRejected,
    trio_websocket.ConnectionClosed,  # e.g. closed before the welcome
    trio_websocket.HandshakeError,
    OSError,
    ConnectionTimeout,
    RemoteProtocolError,
    AuthenticationError,
    trio.BrokenResourceError,
)

_STOPS = (trio.Cancelled, KeyboardInterrupt)


def collapse(exc: BaseException) -> BaseException:
    """The exception to propagate for ``exc`` (see the module docstring): its cancellation and
    KeyboardInterrupt part if it has one (a group keeps trio's structure), else its first leaf."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    stopping, _ = exc.split(_STOPS)
    if stopping is not None:
        return stopping
    leaf: BaseException = exc
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def stops(exc: BaseException) -> bool:
    """Whether ``collapse`` returned a cancellation (or KeyboardInterrupt): re-raise it as is."""
    return isinstance(exc, (BaseExceptionGroup, *_STOPS))


def should_retry(error: BaseException, *, started: bool, auth_failures: int) -> bool:
    """Whether a failed connect or session is retried; ``auth_failures`` counts the refused
    authentications in a row before this one."""
    if not started or not isinstance(error, RETRYABLE):
        return False
    return not (isinstance(error, AuthenticationError) and auth_failures + 1 >= MAX_AUTH_FAILURES)


def backoff_delay(
    attempt: int, retry_after: float, initial: float, maximum: float, rng: random.Random
) -> float:
    """Exponential backoff with full jitter and a cap; a server-requested wait is a floor."""
    ceiling = min(maximum, initial * 2 ** min(attempt, 30))
    return max(retry_after, rng.uniform(0, ceiling))


def retry_after_seconds(error: BaseException) -> float:
    """Seconds a 429 refusal of the handshake asked us to wait (header, then body), else 0."""
    if isinstance(error, trio_websocket.ConnectionRejected) and error.status_code == 429:
        for name, value in error.headers or ():
            if name.lower() == b"retry-after":
                try:
                    return float(value)
                except ValueError:
                    break
        try:
            body = orjson.loads(error.body or b"{}")
            return float(body.get("retryAfter", 1.0))
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            return 1.0
    return 0.0
