"""Reconnect policy helpers: which failures are retried, how long to wait, trio group handling.

Kept apart from the client so the policy can be read (and tested) on its own.
"""

from __future__ import annotations

import random

import orjson
import trio
import trio_websocket
from trio_websocket import ConnectionClosed, ConnectionRejected

from ._exceptions import AuthenticationError, ConnectionTimeout, RemoteProtocolError

__all__ = [
    "RETRYABLE",
    "backoff_delay",
    "cancellation_only",
    "primary_exception",
    "retry_after_seconds",
]


def backoff_delay(
    attempt: int, retry_after: float, initial: float, maximum: float, rng: random.Random
) -> float:
    """Exponential backoff with full jitter and a cap; a server-requested wait is a floor."""
    ceiling = min(maximum, initial * 2 ** min(attempt, 30))
    return max(retry_after, rng.uniform(0, ceiling))


RETRYABLE = (
    ConnectionRejected,
    ConnectionClosed,  # e.g. closed before the welcome
    OSError,
    trio_websocket.HandshakeError,
    ConnectionTimeout,
    RemoteProtocolError,
    AuthenticationError,
    trio.BrokenResourceError,
)


def primary_exception(exc: BaseException) -> BaseException:
    """The exception that matters inside trio's exception groups.

    Cancellation and KeyboardInterrupt win (they must propagate); otherwise the first leaf.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        else:
            leaves.append(current)
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt | trio.Cancelled):
            return exc  # let trio see its own group untouched
    return leaves[0] if leaves else exc


def cancellation_only(exc: BaseException) -> BaseException | None:
    """``exc`` reduced to its cancellation parts, or ``None`` if it holds no cancellation."""
    if isinstance(exc, BaseExceptionGroup):
        cancelled, _ = exc.split((trio.Cancelled, KeyboardInterrupt))
        return cancelled
    return exc if isinstance(exc, trio.Cancelled | KeyboardInterrupt) else None


def retry_after_seconds(error: BaseException) -> float:
    if isinstance(error, ConnectionRejected) and error.status_code == 429:
        for name, value in error.headers:
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
