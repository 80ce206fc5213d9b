"""The client's facade: ``open_bitmex_websocket`` and ``BitMEXWebsocket``.

Theory of operation. ``open_bitmex_websocket`` validates its options, builds the connection's
parts and starts the supervisor (``_supervisor.Supervisor``: sessions, reconnects), returning once
the first session is up. ``BitMEXWebsocket`` is what users hold: ``listen``/``events`` register a
listener (``_routing``) and add demand for its ``(table, symbol)`` (``_subscriptions``); the
session's subscription manager turns demand into BitMEX topics and sends the difference. Listener
cleanup is therefore synchronous and works on every exit path (break, aclose, cancellation,
garbage collection). ``storage`` and ``stats`` are kept current by the session's reader.

A listener that joins a topic already served gets the stored rows first, registered without a
checkpoint in between, so the reader cannot slip a change in between the snapshot and the live
stream. When the connection is closed for good, listeners raise ``ConnectionClosed`` (ours, a
``BitMEXError`` and a ``trio_websocket.ConnectionClosed``).
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import trio
from trio_websocket import CloseReason

from . import _protocol as proto
from ._auth import Credentials
from ._events import LifecycleEvent
from ._exceptions import ConnectionClosed
from ._networks import NETWORKS, resolve_network
from ._retry import collapse
from ._routing import ConnectionStats, Listener, Overflow, Router
from ._session import ClientOptions, FrameHook, StreamFactory
from ._storage import Change, Storage
from ._subscriptions import Subscriptions, Topic
from ._supervisor import Supervisor

__all__ = [
    "NETWORKS",
    "BitMEXWebsocket",
    "Driver",
    "is_replay_server_url",
    "open_bitmex_websocket",
    "open_client",
    "resolve_network",
]

# Large multi-symbol partials exceed trio-websocket's 1 MiB default (the 2021 library died on
# them); 64 MiB still bounds memory against a hostile server.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
DEFAULT_BUFFER = 256
ClientT = TypeVar("ClientT", bound="BitMEXWebsocket")


class Driver(Protocol):
    """What feeds a ``BitMEXWebsocket``: the live supervisor, or a replay of files."""

    closed: BaseException | None  # once set, new listeners raise it
    finished: bool  # the data ended (a replay): new listeners end at once

    def check_listener(self, table: str, symbol: str | None) -> None:
        """``ValueError`` for a topic this connection cannot serve."""

    def demand_changed(self) -> None:
        """A listener came or left (``Subscriptions`` holds the demand)."""

    async def wait_finished(self) -> None:
        """Return at the end of a replay's data; raise what closed the connection otherwise."""


class BitMEXWebsocket:
    """A live, self-healing view of BitMEX. Create it with ``open_bitmex_websocket``."""

    def __init__(
        self,
        url: str,
        storage: Storage,
        *,
        stats: ConnectionStats,
        router: Router,
        subscriptions: Subscriptions,
        driver: Driver,
        buffer: int,
        credentials: Credentials | None = None,
    ) -> None:
        self.url = url
        self.storage = storage
        self.stats = stats
        self._credentials = credentials
        self._buffer = buffer
        self._router = router
        self._subscriptions = subscriptions
        self._driver = driver

    @property
    def authenticated(self) -> bool:
        return self._credentials is not None

    async def listen(
        self,
        table: str,
        symbol: str | None = None,
        *,
        buffer: int | None = None,
        overflow: Overflow = "block",
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Rows of ``table`` (optionally one ``symbol``): partial rows, inserts, merged updates.

        Each row is a snapshot that later messages never change; treat it as read-only (the
        same dict may be shared with storage and with other listeners).
        """
        listener = self._add_listener(table, symbol, buffer, overflow, lifecycle=False)
        items = listener.items
        take = items.popleft
        wait = listener.wait
        try:
            # One wake-up per batch of queued changes: once awake, hand out everything queued
            # without a checkpoint per item (the queue is bounded, so this never runs long).
            while await wait():
                while items:
                    item = take()
                    if listener.blocked:
                        listener.took()
                    if type(item) is Change and item.action != "delete":
                        for row in item.rows:
                            yield row
            # The end of a replay's data.
        finally:
            self._remove_listener(listener)

    async def events(
        self,
        table: str,
        symbol: str | None = None,
        *,
        buffer: int | None = None,
        overflow: Overflow = "block",
    ) -> AsyncGenerator[Change | LifecycleEvent, None]:
        """Typed changes (``Change`` with action, table, symbol, rows) and lifecycle events."""
        listener = self._add_listener(table, symbol, buffer, overflow, lifecycle=True)
        items = listener.items
        take = items.popleft
        wait = listener.wait
        try:
            while await wait():
                while items:  # drain what is queued, as listen() does
                    item = take()
                    if listener.blocked:
                        listener.took()
                    yield item
        finally:
            self._remove_listener(listener)

    def listener_stats(self) -> list[tuple[str, int, int]]:
        """``(topic, queued items, dropped items)`` for every live listener."""
        return self._router.listener_stats()

    def _add_listener(
        self,
        table: str,
        symbol: str | None,
        buffer: int | None,
        overflow: Overflow,
        *,
        lifecycle: bool,
    ) -> Listener:
        proto.make_topic(table, symbol)  # validates names before anything is registered
        if overflow not in ("block", "drop"):
            raise ValueError("overflow must be 'block' or 'drop'")
        driver = self._driver
        driver.check_listener(table, symbol)
        if driver.closed is not None:
            raise driver.closed
        topic: Topic = (table, symbol)
        listener = Listener(topic, self._buffer if buffer is None else buffer, overflow, lifecycle)
        if driver.finished:
            listener.finish()  # after the end of a replay's data: nothing more is coming
            return listener
        # No checkpoint from the snapshot to registration (see the module docstring).
        if self._subscriptions.covers(topic) and self.storage.has_partial(table, symbol):
            rows = tuple(self.storage.rows(table, symbol))
            listener.items.append(Change(table, "partial", symbol, rows))  # even if buffer=0
        self._router.add(listener)
        self._subscriptions.want(topic)
        driver.demand_changed()
        return listener

    def _remove_listener(self, listener: Listener) -> None:
        # A failed or finished listener was unregistered (its demand moot) when it ended.
        if self._router.remove(listener):
            self._subscriptions.unwant(listener.topic)
            self._driver.demand_changed()


@asynccontextmanager
async def open_bitmex_websocket(
    network: str,
    api_key: str | None = None,
    api_secret: str | None = None,
    *,
    dead_mans_switch: bool = False,
    reconnect: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    connect: StreamFactory | None = None,
    timeout: float = 10.0,
    heartbeat_interval: float = 5.0,
    heartbeat_timeout: float = 5.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    buffer: int = DEFAULT_BUFFER,
    backoff_initial: float = 1.0,
    backoff_max: float = 60.0,
    storage: Storage | None = None,
    frame_hook: FrameHook | None = None,
    replay_server: bool | None = None,
) -> AsyncIterator[BitMEXWebsocket]:
    """Connect to BitMEX (``"mainnet"``, ``"testnet"`` or a ws/wss URL) and yield the client.

    Returns once the welcome has arrived and, with credentials, authentication succeeded (and
    the dead man's switch is armed when asked for). ``connect`` replaces TCP with any stream
    (tests run the emulator in memory this way). On exit the dead man's switch is disarmed and
    the socket closed with a close frame.

    ``replay_server``: the URL is a replay server of BitMEX's history (tardis-machine's
    ``/ws-replay``): no welcome, one subscribe in its first 2 s, no acks, no text pings, and the
    end of its data ends every listener instead of a reconnect. ``None`` (the default) decides
    by the URL: a path ending in ``/ws-replay`` is one.
    """
    url = resolve_network(network)
    if (api_key is None) != (api_secret is None):
        raise ValueError("pass both api_key and api_secret, or neither")
    credentials = Credentials(api_key, api_secret) if api_key and api_secret else None
    if dead_mans_switch and credentials is None:
        raise ValueError("the dead man's switch needs api_key and api_secret")
    for name, value in (
        ("timeout", timeout),
        ("heartbeat_interval", heartbeat_interval),
        ("heartbeat_timeout", heartbeat_timeout),
    ):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number of seconds")
    if replay_server is None:
        replay_server = is_replay_server_url(url)
    if replay_server and dead_mans_switch:
        raise ValueError("a replay server has no dead man's switch")
    options = ClientOptions(
        dead_mans_switch, reconnect, ssl_context, connect, timeout, heartbeat_interval,
        heartbeat_timeout, max_message_size, buffer, backoff_initial, backoff_max, frame_hook,
        replay_server,
    )  # fmt: skip
    async with open_client(BitMEXWebsocket, url, credentials, options, storage) as bws:
        yield bws


def is_replay_server_url(url: str) -> bool:
    """Whether ``url`` names tardis-machine's replay endpoint (its path ends in ``/ws-replay``)."""
    return urlsplit(url).path.rstrip("/").endswith("/ws-replay")


@asynccontextmanager
async def open_client(
    client_class: type[ClientT],
    url: str,
    credentials: Credentials | None,
    options: ClientOptions,
    storage: Storage | None,
    topics: Iterable[Topic] = (),
    stats: ConnectionStats | None = None,
) -> AsyncIterator[ClientT]:
    """Build a connection's parts, start its supervisor and yield ``client_class`` over them;
    ``topics`` are demanded for the whole connection (as if listened to from the start)."""
    storage = Storage() if storage is None else storage
    stats = ConnectionStats() if stats is None else stats
    router, subscriptions = Router(), Subscriptions()
    for topic in topics:
        subscriptions.want(topic)
    supervisor = Supervisor(url, credentials, options, storage, stats, router, subscriptions)
    bws = client_class(
        url, storage, stats=stats, router=router, subscriptions=subscriptions, driver=supervisor,
        buffer=options.buffer, credentials=credentials,
    )  # fmt: skip
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            try:
                yield bws
            finally:
                graceful = trio.current_effective_deadline() != -math.inf
                with trio.CancelScope(shield=True):
                    await supervisor.close(graceful=graceful)
                supervisor.shutdown(ConnectionClosed(CloseReason(1000, "client closed")))
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Users catch AuthenticationError, not a group around it (as trio-websocket does). The
        # error keeps its own cause; only the group is dropped from the chain.
        error = collapse(group)
        raise error from error.__cause__
