"""Every exception this library raises on purpose, in one tree.

Theory of operation: callers catch at the level they care about. ``BitMEXError`` is the root;
protocol errors split by who broke the protocol (us or the server), and ``BitMEXAPIError`` is a
well-formed error reply from BitMEX carrying its structured fields. ::

    BitMEXError
    ├── ProtocolError
    │   ├── LocalProtocolError       we were asked to send something BitMEX would not accept
    │   └── RemoteProtocolError      the server sent something we cannot interpret
    ├── BitMEXAPIError               an error reply: status, message, meta, request
    │   ├── AuthenticationError      the server refused our credentials
    │   └── SubscriptionError        the server refused a subscribe/unsubscribe
    ├── ConnectionClosed*            the connection is closed and was not recovered: reason
    ├── HandshakeError*              the websocket upgrade failed
    │   └── ConnectionRejected*      the server answered the upgrade with an HTTP error
    ├── ConnectionTimeout*           connect, welcome, auth or a command reply took too long
    ├── ExchangeClosedError          mainnet/testnet: BitMEX closed on 2026-09-23
    └── DeadMansSwitchError          cancelAllAfter was refused or never acknowledged

Classes marked * also subclass the trio-websocket exception of the same name, so code written for
the 2021 library (``except trio_websocket.ConnectionClosed``) keeps working, while
``except BitMEXError`` catches everything this library raises on purpose.

Secrets never reach these objects' text: requests echoed by the server are redacted before they
are stored (see ``redact_request``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio_websocket

__all__ = [
    "AuthenticationError",
    "BitMEXAPIError",
    "BitMEXError",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionTimeout",
    "DeadMansSwitchError",
    "ExchangeClosedError",
    "HandshakeError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SubscriptionError",
    "redact_request",
]

# Ops whose args carry a signature (authKey, authKeyExpires: [key, expires/nonce, signature]).
_SIGNED_OPS = frozenset({"authKey", "authKeyExpires"})
_REDACTED = "<redacted>"


def redact_request(request: Any) -> Any:
    """Return ``request`` with any signature replaced, so it is safe to log or show."""
    if not isinstance(request, Mapping):
        return request
    if request.get("op") in _SIGNED_OPS:
        args = request.get("args")
        if isinstance(args, list) and len(args) >= 3:
            return {**request, "args": [*args[:2], _REDACTED, *args[3:]]}
        return {**request, "args": _REDACTED}
    return dict(request)


class BitMEXError(Exception):
    """Root of every error raised on purpose by bitmex_trio_websocket."""


class ProtocolError(BitMEXError):
    """A message broke the BitMEX realtime protocol."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something invalid (caller bug); nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The server sent a frame we cannot interpret.

    ``frame`` holds a bounded prefix of the offending text, enough to debug without flooding logs.
    """

    FRAME_PREFIX = 200

    def __init__(self, message: str, frame: str | bytes | None = None) -> None:
        if isinstance(frame, bytes | bytearray | memoryview):
            frame = bytes(frame[: self.FRAME_PREFIX * 4]).decode("utf-8", "replace")
        prefix = None if frame is None else frame[: self.FRAME_PREFIX]
        self.message = message
        self.frame = prefix
        if prefix is not None:
            more = "..." if frame is not None and len(frame) > self.FRAME_PREFIX else ""
            message = f"{message}: {prefix!r}{more}"
        super().__init__(message)


class BitMEXAPIError(BitMEXError):
    """BitMEX answered a command with an error reply.

    ``status`` is BitMEX's HTTP-like status (``None`` when the reply had none), ``message`` its
    error text, ``meta`` its meta object (``retryAfter`` lives there on 429) and ``request`` the
    command it echoed, with signatures redacted.
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        meta: Mapping[str, Any] | None = None,
        request: Any = None,
    ) -> None:
        self.status = status
        self.message = message
        self.meta: dict[str, Any] = dict(meta or {})
        self.request = redact_request(request)
        super().__init__(f"{status if status is not None else '?'} {message}")

    @property
    def retry_after(self) -> float | None:
        """Seconds BitMEX asked us to wait (429 replies), else ``None``."""
        value = self.meta.get("retryAfter")
        return float(value) if isinstance(value, int | float) else None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, message={self.message!r}, "
            f"request={self.request!r})"
        )


class AuthenticationError(BitMEXAPIError):
    """The server refused our API key or signature."""


class SubscriptionError(BitMEXAPIError):
    """The server refused a subscribe or unsubscribe command."""


class ConnectionClosed(BitMEXError, trio_websocket.ConnectionClosed):
    """The connection is closed and was not (or is not to be) recovered.

    ``reason`` is a ``trio_websocket.CloseReason``: the close code and text (1006 for a lost
    connection, 1000 after the user's own exit).
    """


class HandshakeError(BitMEXError, trio_websocket.HandshakeError):
    """The websocket upgrade failed (not a websocket server, or a broken answer)."""


class ConnectionRejected(HandshakeError, trio_websocket.ConnectionRejected):
    """The server answered the upgrade with an HTTP error: ``status_code``, ``headers``, ``body``.

    A 429 carries BitMEX's ``Retry-After``, which the reconnect backoff honours.
    """


class ConnectionTimeout(BitMEXError, trio_websocket.ConnectionTimeout):
    """Connecting, the welcome, authentication or a command's reply took longer than allowed."""


class ExchangeClosedError(BitMEXError):
    """A connection to ``mainnet``/``testnet`` failed: BitMEX closed on 2026-09-23.

    The message names what still speaks BitMEX's protocol; ``__cause__`` holds the underlying
    network error.
    """


class DeadMansSwitchError(BitMEXError):
    """A cancelAllAfter command was refused or never acknowledged.

    Raised in the connection's task: with money at stake, a dead man's switch that silently
    stopped working is worse than a closed connection.
    """
