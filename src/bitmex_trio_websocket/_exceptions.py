"""Every exception this library raises on purpose, in one tree.

Theory of operation: callers catch at the level they care about. ``BitMEXError`` is the root;
protocol errors split by who broke the protocol (us or the server), and ``BitMEXAPIError`` is a
well-formed error reply from BitMEX carrying its structured fields. ::

    BitMEXError
    ├── ProtocolError
    │   ├── LocalProtocolError       we were asked to send something BitMEX would not accept
    │   └── RemoteProtocolError      the server sent something we cannot interpret
    ├── BitMEXAPIError               an error reply: status, name, message, meta, request
    │   ├── AuthenticationError      the server refused our credentials
    │   ├── SubscriptionError        the server refused a subscribe/unsubscribe
    │   ├── RateLimited              REST 429, still refused after waiting: retry_after
    │   └── Overloaded               REST 503 "overloaded", not retried or still shed
    ├── ConnectionClosed*            the connection is closed and was not recovered: reason
    │   ├── ReplayRefused*           tardis-machine refused the replay (1011): why, what to do
    │   └── ReplayInterrupted*       a replay server's connection dropped before the end
    ├── HandshakeError*              the websocket upgrade failed
    │   └── ConnectionRejected*      the server answered the upgrade with an HTTP error
    ├── ConnectionTimeout*           connect, welcome, auth or a command reply took too long
    ├── ExchangeClosedError          mainnet/testnet: BitMEX closed on 2026-09-23
    ├── DeadMansSwitchError          cancelAllAfter was refused or never acknowledged
    └── ReplaySourceError            a replay source cannot be read: path, line

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
    "Overloaded",
    "ProtocolError",
    "RateLimited",
    "RemoteProtocolError",
    "ReplayInterrupted",
    "ReplayRefused",
    "ReplaySourceError",
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
    error text, ``name`` its error name where it gave one (REST: ``HTTPError``,
    ``ValidationError``...), ``meta`` its meta object (``retryAfter`` lives there on 429) and
    ``request`` the command it answered, with signatures redacted (a REST request is kept as
    method, path and parameters: never its headers, so never its key's signature).
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        meta: Mapping[str, Any] | None = None,
        request: Any = None,
        name: str | None = None,
    ) -> None:
        self.status = status
        self.message = message
        self.name = name
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


class RateLimited(BitMEXAPIError):
    """A REST request was refused with 429 and still was after waiting ``Retry-After`` as many
    times as the client allows. ``retry_after`` holds the server's last ``Retry-After`` (s)."""

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        retry_after: float | None,
        meta: Mapping[str, Any] | None = None,
        request: Any = None,
        name: str | None = None,
    ) -> None:
        super().__init__(status, message, meta=meta, request=request, name=name)
        self._retry_after = retry_after

    @property
    def retry_after(self) -> float | None:
        return self._retry_after


class Overloaded(BitMEXAPIError):
    """BitMEX shed a REST request with 503 "The system is currently overloaded.": raised when a
    retry was not safe (it could double an order) or every retry was shed too."""


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


class ReplayRefused(ConnectionClosed):
    """A replay server (tardis-machine's ``/ws-replay``) closed the connection with 1011: it got
    no subscription within its 2 s window, or a table it cannot replay (a private or unknown
    one). ``reason`` is the server's close reason; the text says why and what to do.
    """

    def __init__(self, reason: trio_websocket.CloseReason | None, explanation: str) -> None:
        super().__init__(reason)
        self.explanation = explanation

    def __str__(self) -> str:
        return self.explanation


class ReplayInterrupted(ConnectionClosed):
    """A replay server's connection ended before its end-of-data close.

    Never retried: a replay server starts the window again on every connection, so a reconnect
    would deliver every row a second time. ``reason`` is the close (1006 for a lost socket),
    ``messages`` how many messages arrived before it.
    """

    def __init__(self, reason: trio_websocket.CloseReason | None, messages: int) -> None:
        super().__init__(reason)
        self.messages = messages

    def __str__(self) -> str:
        code = self.reason.code if self.reason is not None else 1006
        text = self.reason.reason if self.reason is not None else None
        return (
            f"the replay's connection ended before the end of the data ({code}"
            f"{f' {text}' if text else ''}) after {self.messages} messages; not reconnected, "
            "since a new connection would replay the window again from its start"
        )


class ReplaySourceError(BitMEXError):
    """A replay source cannot be read: an unknown format, a truncated gzip or zstd stream, a
    malformed line, a frame that is not BitMEX data, or files that go back in time.

    ``path`` names the file (``None`` when the problem is the source as a whole) and ``line`` its
    1-based line number (``None`` when no single line is to blame).
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        where = path if path is not None else ""
        if path is not None and line is not None:
            where = f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
