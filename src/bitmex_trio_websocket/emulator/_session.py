"""One BitMEX realtime session, sans-IO: client commands in, reply frames and effects out.

Theory of operation: a ``Session`` is the protocol state of one logical BitMEX connection (a
``/realtime`` socket, or one stream of a ``/realtimemd`` socket): who is authenticated and which
topics are subscribed. ``handle(command, now)`` takes one decoded client command
(``_protocol.decode_client_frame``) and returns, in order, what the server must do:

* ``str``: a frame to send (acks, errors with BitMEX's texts, ``help``, ``pong``);
* ``TopicOpened``: a subscription was accepted; its ack was the frame before. The connection
  sends the topic's data (partial first) right away and routes its deltas from then on;
* ``TopicClosed``: a subscription ended; stop routing it (it is already inactive);
* ``SwitchSet``: (re)arm, or with 0 disarm, the account's dead man's switch;
* ``CloseSession``: close the session (it made too many errors, see ``_limits``).

BitMEX's in-band limits (``_limits``) apply here: a burst of subscribe/unsubscribe commands is
refused with 429, topics of one subscribe past the pending limit get 503, and an error reply past
the error limit closes the session.

Nothing here does I/O, reads a clock or knows about the market: credentials are checked by the
shared ``Authenticator`` (sans-IO too; its fail-next-auth fault is server-wide), the time for
``cancelAllAfter`` replies is the ``now`` passed in, and symbols come from the constructor. The
connection (``_connection``) executes the outputs synchronously, so a subscribe's ack, partial
and registration stay one atomic step with respect to the market.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .._protocol import (
    PONG,
    PRIVATE_TABLES,
    PUBLIC_TABLES,
    SYMBOL_TABLES,
    AuthKeyExpires,
    CancelAllAfter,
    ClientCommand,
    Help,
    Ping,
    Subscribe,
    Unrecognized,
    Unsubscribe,
    encode_auth_ack,
    encode_cancel_all_after_ack,
    encode_error,
    encode_help,
    encode_subscribe_ack,
    encode_unsubscribe_ack,
    parse_topic,
)
from ._handshake import Authenticator
from ._json import dumps
from ._limits import DEFAULT_LIMITS, CommandBucket, Limits
from ._texts import (
    ACCOUNT_LOCKED,
    ACCOUNT_LOCKED_META,
    ALREADY_AUTHENTICATED,
    BAD_SYMBOL,
    DMS_UNAUTHENTICATED,
    DOCS_SUFFIX,
    INVALID_TIMEOUT,
    MAX_PENDING,
    PLATFORM_TABLES,
    RATE_LIMITED,
    UNRECOGNIZED,
    iso_timestamp,
    switch_too_long,
)

__all__ = [
    "CloseSession",
    "Output",
    "Session",
    "Subscription",
    "SwitchSet",
    "TopicClosed",
    "TopicOpened",
]

PLATFORM_PATH = "/realtimePlatform"


@dataclass(eq=False, slots=True)
class Subscription:
    """One subscribed topic of one session (identity-hashed: the router keys sets by it).

    ``account`` is set for private tables only; ``active`` turns false when the topic is
    unsubscribed or the session ends, so frames already on their way are not delivered.
    """

    topic: str
    table: str
    symbol: str | None
    account: int | None
    active: bool = True

    def route_key(self) -> tuple[str, str | None, int | None]:
        return (self.table, self.symbol, self.account)


@dataclass(frozen=True, slots=True)
class TopicOpened:
    """Send this topic's data (partial first) now, then route its deltas."""

    subscription: Subscription


@dataclass(frozen=True, slots=True)
class TopicClosed:
    """Stop routing this topic's deltas."""

    subscription: Subscription


@dataclass(frozen=True, slots=True)
class SwitchSet:
    """(Re)arm the account's dead man's switch for ``timeout_ms``; 0 disarms it."""

    account: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class CloseSession:
    """Close the session with this websocket close code and reason."""

    code: int
    reason: str


Output = str | TopicOpened | TopicClosed | SwitchSet | CloseSession


class Session:
    """The protocol state of one BitMEX session; see the module docstring.

    ``path`` is the endpoint (``/realtimePlatform`` serves only the platform tables);
    ``account``/``api_key`` are set when the handshake already authenticated.
    """

    def __init__(
        self,
        *,
        path: str,
        symbols: Collection[str],
        authenticator: Authenticator,
        account: int | None = None,
        api_key: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.path = path
        self.errors = 0  # error replies sent so far
        self._limits = limits
        self._bucket = CommandBucket(limits)
        self.account = account
        self.api_key = api_key
        self.closed = False
        self._symbols = symbols
        self._authenticator = authenticator
        self._subs: dict[tuple[str, str | None], Subscription] = {}

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """Active subscriptions, in subscription order."""
        return tuple(self._subs.values())

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sub.topic for sub in self._subs.values())

    def close(self) -> list[Subscription]:
        """End the session: every subscription turns inactive and is returned (to unroute).
        Later commands get no answer."""
        self.closed = True
        ended = list(self._subs.values())
        for sub in ended:
            sub.active = False
        self._subs.clear()
        return ended

    def handle(self, command: ClientCommand, now: float) -> list[Output]:
        """What to do about one client command; ``now`` is the wall clock (epoch seconds)."""
        if self.closed:
            return []
        out: list[Output] = []
        if isinstance(command, Subscribe | Unsubscribe) and (retry := self._bucket.take(now)):
            meta = {"retryAfter": retry}
            out.append(encode_error(429, RATE_LIMITED.format(retry), meta=meta,
                                    request=command.request))  # fmt: skip
        elif isinstance(command, Subscribe):
            opened = 0
            for topic in command.topics:
                if opened >= self._limits.max_pending_subscriptions:
                    # BitMEX's 503 carries no meta (gobitmex's example, protocol section 4.5).
                    out.append(dumps({"status": 503, "error": MAX_PENDING,
                                      "request": command.request}))  # fmt: skip
                    continue
                before = len(out)
                self._subscribe(topic, command.request, out)
                opened += any(isinstance(item, TopicOpened) for item in out[before:])
        elif isinstance(command, Unsubscribe):
            for topic in command.topics:
                self._unsubscribe(topic, command.request, out)
        elif isinstance(command, AuthKeyExpires):
            self._authenticate(command, out)
        elif isinstance(command, CancelAllAfter):
            self._cancel_all_after(command, now, out)
        elif isinstance(command, Help):
            out.append(encode_help())
        elif isinstance(command, Unrecognized):
            out.append(encode_error(400, UNRECOGNIZED, request=command.request))
        elif isinstance(command, Ping):
            out.append(PONG)
        self.errors += sum(1 for item in out if isinstance(item, str) and item[:10] == '{"status":')
        if self.errors >= self._limits.max_errors:
            limits = self._limits
            out.append(CloseSession(limits.error_close_code, limits.error_close_reason))
        return out

    # ------------------------------------------------------------------ commands

    def _table_allowed(self, table: str) -> bool:
        if self.path == PLATFORM_PATH:
            return table in PLATFORM_TABLES
        return table not in PLATFORM_TABLES and (table in PUBLIC_TABLES or table in PRIVATE_TABLES)

    def _subscribe(self, topic: str, request: Any, out: list[Output]) -> None:
        table, symbol = parse_topic(topic)
        if not self._table_allowed(table):
            out.append(encode_error(400, f"Unknown table: {table}", request=request))
        elif symbol is not None and table not in SYMBOL_TABLES:
            out.append(encode_error(400, f"Unknown table: {topic}", request=request))
        elif table in PRIVATE_TABLES and self.account is None:
            out.append(encode_error(401, ACCOUNT_LOCKED, meta=ACCOUNT_LOCKED_META, request=request))
        elif symbol is not None and symbol not in self._symbols:
            out.append(encode_error(400, BAD_SYMBOL, request=request))
        elif (table, symbol) in self._subs:
            message = f"You are already subscribed to this topic:{topic}." + DOCS_SUFFIX
            out.append(encode_error(400, message, request=request))
        else:
            account = self.account if table in PRIVATE_TABLES else None
            sub = self._subs[(table, symbol)] = Subscription(topic, table, symbol, account)
            out.append(encode_subscribe_ack(topic, request))
            out.append(TopicOpened(sub))

    def _unsubscribe(self, topic: str, request: Any, out: list[Output]) -> None:
        table, symbol = parse_topic(topic)
        if table not in PUBLIC_TABLES and table not in PRIVATE_TABLES:
            out.append(encode_error(400, f"Unknown table: {table}", request=request))
            return
        sub = self._subs.pop((table, symbol), None)
        if sub is not None:
            sub.active = False
            out.append(TopicClosed(sub))
        # BitMEX (reportedly) acknowledges unsubscribing from a topic that was never subscribed.
        out.append(encode_unsubscribe_ack(topic, request))

    def _authenticate(self, command: AuthKeyExpires, out: list[Output]) -> None:
        if self.account is not None:
            out.append(encode_error(400, ALREADY_AUTHENTICATED, request=command.request))
            return
        account, error = self._authenticator.verify(
            command.api_key, command.expires, command.signature, check_expiry=not command.legacy
        )
        if account is None:
            out.append(encode_error(401, error or "Signature not valid.", request=command.request))
            return
        self.account, self.api_key = account, command.api_key
        out.append(encode_auth_ack(command.request))

    def _cancel_all_after(self, command: CancelAllAfter, now: float, out: list[Output]) -> None:
        if self.account is None:
            out.append(encode_error(401, DMS_UNAUTHENTICATED, request=command.request))
            return
        timeout = command.timeout_ms
        if switch_too_long(now, timeout):
            out.append(encode_error(400, INVALID_TIMEOUT, request=command.request))
            return
        cancel_time: str | int = 0 if timeout == 0 else iso_timestamp(now + timeout / 1000)
        out.append(SwitchSet(self.account, timeout))
        out.append(encode_cancel_all_after_ack(iso_timestamp(now), cancel_time, command.request))
