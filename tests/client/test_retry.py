"""The reconnect policy on its own: backoff, retry-after, what is retried, exception groups."""

from __future__ import annotations

import random

import trio_websocket

from bitmex_trio_websocket import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DeadMansSwitchError,
    SubscriptionError,
)
from bitmex_trio_websocket._retry import (
    MAX_AUTH_FAILURES,
    backoff_delay,
    collapse,
    retry_after_seconds,
    should_retry,
    stops,
)


def test_backoff_is_jittered_capped_and_floored_by_retry_after() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 0, 1.0, 60.0, rng) for n in range(40) for _ in range(20)]
    assert all(0 <= d <= 60 for d in delays)
    assert max(backoff_delay(0, 0, 1.0, 60.0, rng) for _ in range(100)) <= 1.0
    assert max(backoff_delay(10, 0, 1.0, 60.0, rng) for _ in range(100)) > 30
    assert backoff_delay(0, 7.0, 1.0, 60.0, rng) == 7.0


def test_retry_after_from_a_429_header_then_body() -> None:
    header = ConnectionRejected(429, ((b"Retry-After", b"3"),), b"")
    assert retry_after_seconds(header) == 3.0
    body = ConnectionRejected(429, (), b'{"retryAfter": 5}')
    assert retry_after_seconds(body) == 5.0
    assert retry_after_seconds(ConnectionRejected(429, (), b"garbage")) == 1.0
    assert retry_after_seconds(ConnectionRejected(503, (), b"")) == 0.0
    assert retry_after_seconds(OSError()) == 0.0


def test_what_is_retried() -> None:
    closed = ConnectionClosed(trio_websocket.CloseReason(1006, None))
    for error in [
        closed,
        trio_websocket.ConnectionClosed(None),
        OSError(),
        ConnectionTimeout(),
        AuthenticationError(401, "x"),
    ]:
        assert should_retry(error, started=True, auth_failures=0), error
        # Before the first session is up, every failure is the caller's to see.
        assert not should_retry(error, started=False, auth_failures=0), error
    for error in [DeadMansSwitchError("refused"), SubscriptionError(400, "x"), ValueError()]:
        assert not should_retry(error, started=True, auth_failures=0), error
    refused = AuthenticationError(401, "x")
    assert should_retry(refused, started=True, auth_failures=MAX_AUTH_FAILURES - 2)
    assert not should_retry(refused, started=True, auth_failures=MAX_AUTH_FAILURES - 1)


def test_one_exception_group_policy() -> None:
    auth = AuthenticationError(401, "x")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [auth]), ValueError()])
    assert collapse(nested) is auth  # users catch the error, not a group around it
    assert not stops(auth)
    assert collapse(auth) is auth
    interrupt = KeyboardInterrupt()
    mixed = BaseExceptionGroup("g", [ValueError(), BaseExceptionGroup("h", [interrupt])])
    stopping = collapse(mixed)
    # Cancellation and Ctrl-C win, alone, keeping trio's structure.
    assert isinstance(stopping, BaseExceptionGroup) and stops(stopping)
    assert stopping.split(KeyboardInterrupt)[1] is None
    assert stops(KeyboardInterrupt())
