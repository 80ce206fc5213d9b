"""``open_bitmex_replay``: BitMEX's history through the live client's API.

Theory of operation. A replay is a ``BitMEXReplay``: the live client's facade (``listen``,
``events``, ``storage``, ``stats``, the same listener registration and ``Router``) over another
driver. For files that driver is ``_feeder.ReplayFeeder`` (no socket); for a tardis-machine URL it
is the live supervisor with ``replay_server`` semantics (``open_bitmex_websocket`` does the same
for a ``/ws-replay`` URL). Either way every listener's iteration ends by itself at the end of the
data, nothing is delivered twice, and ``storage`` keeps the state as of the last message.

``topics`` fixes what is replayed up front: its slices are kept in ``storage`` whether or not
anyone listens, and a listener outside them is a ``ValueError``. Without ``topics`` the listeners
decide, as subscriptions do live. When the replay starts, and how a listener that joins late is
served, is said in ``_feeder`` (files) and ``_supervisor`` (tardis-machine).
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio
from trio_websocket import CloseReason

from .. import _protocol as proto
from .._client import DEFAULT_BUFFER, DEFAULT_MAX_MESSAGE_SIZE, BitMEXWebsocket, open_client
from .._exceptions import ConnectionClosed
from .._routing import Router
from .._session import ClientOptions, StreamFactory
from .._storage import Storage
from .._subscriptions import Subscriptions, Topic
from ._feeder import ReplayFeeder, ReplayStats
from ._sources import ReplaySource

__all__ = ["BitMEXReplay", "open_bitmex_replay", "parse_topics"]


class BitMEXReplay(BitMEXWebsocket):
    """A replay of BitMEX's history: a ``BitMEXWebsocket`` whose data ends.

    Create it with ``open_bitmex_replay``.
    """

    stats: ReplayStats

    async def wait_finished(self) -> None:
        """Start the replay if no listener did, and return at the end of its data (raising the
        error that ended it early, e.g. a ``ReplaySourceError``)."""
        await self._driver.wait_finished()


def parse_topics(topics: Iterable[str] | str | None) -> tuple[Topic, ...] | None:
    """``"table"`` / ``"table:SYMBOL"`` strings -> demand topics (``LocalProtocolError`` for a
    name that cannot be a topic)."""
    if topics is None:
        return None
    names = [topics] if isinstance(topics, str) else list(topics)
    parsed: list[Topic] = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"a topic is a 'table' or 'table:SYMBOL' string, not {name!r}")
        table, symbol = proto.parse_topic(name)
        proto.make_topic(table, symbol)
        if (table, symbol) not in parsed:
            parsed.append((table, symbol))
    if not parsed:
        raise ValueError("topics is empty: pass None to replay what the listeners ask for")
    return tuple(parsed)


@asynccontextmanager
async def open_bitmex_replay(
    source: ReplaySource,
    *,
    topics: Iterable[str] | None = None,
    speed: float | None = None,
    buffer: int = DEFAULT_BUFFER,
    storage: Storage | None = None,
    connect: StreamFactory | None = None,
    timeout: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> AsyncIterator[BitMEXReplay]:
    """Replay ``source`` through the live client's API; yields a ``BitMEXReplay``.

    ``source``: a recording (``.jsonl``, ``.jsonl.gz``), a Tardis raw slice file (plain, gzip or
    zstd), a folder of slices, a list of these, or a tardis-machine ``ws://.../ws-replay?...``
    URL. ``topics``: ``"table"`` or ``"table:SYMBOL"`` strings, replayed whether or not anyone
    listens (``None``: what the listeners ask for). ``speed``: ``None`` replays as fast as the
    listeners take rows; a positive number paces the frames by their recorded receive times on
    trio's clock (files only: tardis-machine sends as fast as we read). ``connect``, ``timeout``
    and ``max_message_size`` are for a URL, as for ``open_bitmex_websocket``.
    """
    parsed = parse_topics(topics)
    if speed is not None and not (speed > 0 and math.isfinite(speed)):
        raise ValueError("speed must be None or a positive number")
    if isinstance(source, str) and source.startswith(("ws://", "wss://")):
        if speed is not None:
            raise ValueError("a replay server sends as fast as we read: speed is for files")
        options = ClientOptions(
            False, False, None, connect, timeout, 5.0, 5.0, max_message_size, buffer, 1.0, 60.0,
            None, True,
        )  # fmt: skip
        opened = open_client(
            BitMEXReplay, source, None, options, storage, parsed or (), stats=ReplayStats()
        )
        async with opened as bws:
            yield bws
        return
    storage = Storage() if storage is None else storage
    stats, router, subscriptions = ReplayStats(), Router(), Subscriptions()
    for topic in parsed or ():
        subscriptions.want(topic)
    feeder = ReplayFeeder(
        source, topics=parsed, speed=speed, storage=storage, stats=stats, router=router,
        subscriptions=subscriptions,
    )  # fmt: skip
    bws = BitMEXReplay(
        _describe(source), storage, stats=stats, router=router, subscriptions=subscriptions,
        driver=feeder, buffer=buffer,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(feeder.run)
        try:
            yield bws
        finally:
            nursery.cancel_scope.cancel()
            error, reported = feeder.closed, feeder.reported
            # As live: after the block, listeners raise ConnectionClosed.
            feeder.closed = ConnectionClosed(CloseReason(1000, "client closed"))
            router.fail_all(feeder.closed)
    if error is not None and not reported:
        # The replay failed and nobody was told (no listener, no wait_finished): never silent.
        raise error


def _describe(source: ReplaySource) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return ", ".join(os.fspath(item) for item in source)
