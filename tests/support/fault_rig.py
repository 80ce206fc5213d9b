"""The client, the emulator and a fault proxy between them, with the measurements faults need.

Theory of operation: ``open_rig`` runs an emulator (in memory, so trio's virtual clock drives
everything), a ``FaultProxy`` in front of it and a client connected through the proxy, plus one
``events()`` listener per topic of ``topics`` that counts partials and lifecycle events and notes
when they came. A test injects a fault on ``rig.connection`` (the live proxied connection) or on
the next one (``proxy.on_next_connection``), then measures: ``wait_disconnected(mark)`` and
``wait_recovered(mark)`` wait until the session died, or until every topic has a new partial,
after a ``mark()``; ``wait_caught_up`` waits until the link has delivered everything the server
sent; ``compare_with_fresh`` stills the market, lets the link drain and lists the differences
between the client's store and what a fresh, direct connection builds from scratch (order books
level by level, every row of the other tables).

``measure_link`` gives what the throttling faults are scaled by: the feed's rate in bytes per
second and the size of the order book partial on the wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from bitmex_trio_websocket import (
    BitMEXWebsocket,
    Change,
    Disconnected,
    Storage,
    open_bitmex_websocket,
)
from bitmex_trio_websocket.emulator import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    Emulator,
    open_emulator,
)

from .fault_proxy import FaultProxy, ProxyConnection, open_fault_proxy

__all__ = [
    "BOOK_PARTIAL",
    "SYMBOL",
    "TOPICS",
    "URL",
    "Link",
    "Mark",
    "Rig",
    "book_partial_cut",
    "differences",
    "open_rig",
]

URL = "ws://emulator/realtime"
SYMBOL = "XBTUSD"
Topic = tuple[str, "str | None"]
TOPICS: tuple[Topic, ...] = (("orderBookL2", SYMBOL), ("instrument", SYMBOL), ("order", None))
# Server frames are unmasked: the start of the book partial is visible on the wire.
BOOK_PARTIAL = b'"table":"orderBookL2","action":"partial"'


@dataclass(frozen=True, slots=True)
class Mark:
    """A point in a rig's history: the time and how many partials/disconnects there were."""

    time: float
    partials: Mapping[Topic, int]
    disconnects: int


@dataclass(frozen=True, slots=True)
class Link:
    """What a healthy link carried: the feed's bytes per second and the book partial's bytes."""

    feed_rate: float
    book_partial: int


@dataclass(eq=False)
class Rig:
    emulator: Emulator
    proxy: FaultProxy
    bws: BitMEXWebsocket
    topics: tuple[Topic, ...]
    credentials: tuple[str | None, str | None]
    partials: dict[Topic, list[float]] = field(default_factory=dict)
    disconnects: list[float] = field(default_factory=list)
    in_sync: dict[Topic, bool] = field(default_factory=dict)  # no gap since the last partial
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def connection(self) -> ProxyConnection:
        """The newest proxied connection (the live one once the client is connected)."""
        return self.proxy.connections[-1]

    @property
    def synced(self) -> bool:
        """Connected, and every topic's listener has had a partial since its last gap."""
        return self.bws.stats.connected and all(self.in_sync.values())

    def mark(self) -> Mark:
        counts = {topic: len(times) for topic, times in self.partials.items()}
        return Mark(trio.current_time(), counts, len(self.disconnects))

    async def wait_disconnected(self, since: Mark) -> float:
        """Seconds from ``since`` to the first ``Disconnected`` after it."""
        while len(self.disconnects) <= since.disconnects:
            await self._wait_change()
        return self.disconnects[since.disconnects] - since.time

    async def wait_recovered(self, since: Mark) -> float:
        """Seconds from ``since`` until every topic had a new partial after it."""
        while any(len(self.partials[t]) <= since.partials[t] for t in self.topics):
            await self._wait_change()
        return max(self.partials[t][since.partials[t]] for t in self.topics) - since.time

    async def wait_caught_up(self, quiet: float = 1.0) -> None:
        """Wait until the client got a frame and then nothing for ``quiet`` seconds (use it once
        the market is still: the link has then delivered everything)."""
        stats = self.bws.stats
        while True:
            age = stats.last_message_age()
            if stats.connected and age is not None and age >= quiet:
                return
            await trio.sleep(quiet if age is None else max(quiet - age, 0.01))

    async def compare_with_fresh(self, *, quiet: float = 3.0) -> list[str]:
        """Still the market, let the link drain, compare with a fresh direct connection."""
        self.emulator.stop_market()
        await self.wait_caught_up(quiet)
        key, secret = self.credentials
        async with open_bitmex_websocket(
            URL, key, secret, connect=self.emulator.connect_in_memory
        ) as fresh:
            async with trio.open_nursery() as nursery:
                ready = [trio.Event() for _ in self.topics]
                for topic, event in zip(self.topics, ready, strict=True):
                    nursery.start_soon(_hold_after_partial, fresh, topic, event)
                for event in ready:
                    await event.wait()
                # Compared while the listeners are alive: leaving a topic clears its rows.
                problems = differences(self.bws.storage, fresh.storage, self.topics)
                nursery.cancel_scope.cancel()
        return problems

    async def _wait_change(self) -> None:
        await self._changed.wait()

    def _note(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _watch(self, topic: Topic, lifecycle: bool) -> None:
        times = self.partials[topic]
        async with aclosing(self.bws.events(*topic)) as events:
            async for item in events:
                if isinstance(item, Change):
                    if item.action == "partial":
                        times.append(trio.current_time())
                        self.in_sync[topic] = True
                        self._note()
                    continue
                self.in_sync[topic] = False  # Disconnected, Resyncing: a partial follows
                if lifecycle and isinstance(item, Disconnected):
                    self.disconnects.append(trio.current_time())
                    self._note()


async def _hold_after_partial(bws: BitMEXWebsocket, topic: Topic, ready: trio.Event) -> None:
    async with aclosing(bws.events(*topic)) as events:
        async for item in events:
            if isinstance(item, Change) and item.action == "partial":
                ready.set()


def differences(ours: Storage, fresh: Storage, topics: Sequence[Topic]) -> list[str]:
    """What differs between two stores over ``topics`` (empty: equal)."""
    problems = []
    for table, symbol in topics:
        if table.startswith("orderBookL2") and symbol is not None:
            a, b = ours.book(symbol, table), fresh.book(symbol, table)
            if list(a.bids) != list(b.bids) or list(a.asks) != list(b.asks):
                problems.append(
                    f"{table}:{symbol}: {len(a.bids)}/{len(a.asks)} levels vs "
                    f"{len(b.bids)}/{len(b.asks)}, or prices or sizes differ"
                )
            continue
        mine, theirs = ours.rows(table, symbol), fresh.rows(table, symbol)
        if mine != theirs:
            problems.append(
                f"{table}:{symbol}: {len(mine)} rows vs {len(theirs)}, or values differ"
            )
    return problems


def book_partial_cut(
    action: Callable[[ProxyConnection], object], skip: int
) -> Callable[[ProxyConnection], None]:
    """Configure a connection to call ``action(connection)`` ``skip`` bytes into its order book
    partial (for ``FaultProxy.on_next_connection``)."""

    def configure(connection: ProxyConnection) -> None:
        connection.down.when(lambda: action(connection), pattern=BOOK_PARTIAL, skip=skip)

    return configure


@asynccontextmanager
async def open_rig(
    *,
    seed: int = 1,
    rate: float = 25.0,
    topics: tuple[Topic, ...] = TOPICS,
    authenticated: bool = True,
    connection_budget: int = 720,
    **options: Any,
) -> AsyncIterator[Rig]:
    """Emulator, proxy and client (``options`` go to ``open_bitmex_websocket``), every topic's
    first partial received."""
    key, secret = (DEFAULT_API_KEY, DEFAULT_API_SECRET) if authenticated else (None, None)
    async with open_emulator(
        seed=seed, listen=False, rate=rate, connection_budget=connection_budget
    ) as emulator:
        async with open_fault_proxy(emulator.connect_in_memory) as proxy:
            async with open_bitmex_websocket(
                URL, key, secret, connect=proxy.connect, **options
            ) as bws:
                rig = Rig(emulator, proxy, bws, topics, (key, secret))
                rig.partials = {topic: [] for topic in topics}
                rig.in_sync = dict.fromkeys(topics, False)
                async with trio.open_nursery() as nursery:
                    for i, topic in enumerate(topics):
                        nursery.start_soon(rig._watch, topic, i == 0)
                    await rig.wait_recovered(Mark(trio.current_time(), dict.fromkeys(topics, 0), 0))
                    yield rig
                    nursery.cancel_scope.cancel()


async def measure_link(rig: Rig, seconds: float = 20.0) -> Link:
    """The feed's rate on the live connection over ``seconds``, and the book partial's size
    (measured on a connection made for it, after a reset of the live one)."""
    down = rig.connection.down
    before, started = down.received, trio.current_time()
    await trio.sleep(seconds)
    feed_rate = (down.received - before) / (trio.current_time() - started)
    bounds: list[int] = []
    measured = trio.Event()

    def configure(connection: ProxyConnection) -> None:
        pipe = connection.down

        def partial_ends() -> None:
            bounds.append(pipe.position)
            measured.set()

        def partial_starts() -> None:
            bounds.append(pipe.position - 1)  # its "{"; the next table frame ends it
            pipe.when(partial_ends, pattern=b'{"table":"')

        pipe.when(partial_starts, pattern=BOOK_PARTIAL)

    mark = rig.mark()
    rig.proxy.on_next_connection(configure)
    rig.connection.reset()
    await rig.wait_recovered(mark)
    await measured.wait()
    return Link(feed_rate, bounds[1] - bounds[0])
