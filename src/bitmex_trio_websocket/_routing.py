"""Routing: listeners, the fan-out of changes to them (the hot path), and connection counters.

Theory of operation. A listener is a bounded trio memory channel plus what it needs to be failed or
dropped into; the session's reader task is its only producer. ``Router.routes`` maps a demand
topic ``(table, symbol)`` to its listeners. The reader hands each ``Change`` of a stored message to
the listeners of ``(table, symbol)`` and of ``(table, None)`` with ``offer_changes``, which never
awaits: a plain loop of ``send_nowait`` (no coroutine per frame). Only when a ``block`` listener
is full does the reader await, in ``route_rest``, which keeps each listener's order: nothing after
the stuck change is offered until every listener owed it has it. With ``overflow="drop"`` a full
listener loses the item instead and counts it. At the end of a replay's data every listener is
*finished*: it hands out what it holds, then its iteration ends normally.

While the reader waits for a slow listener, ``Router.on_wait`` is told (True, then False), so the
session's liveness does not mistake backpressure for a silent server. ``ConnectionStats`` are the
counters users read (``bws.stats``); the session updates them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import trio

from . import _protocol as proto
from ._events import LifecycleEvent
from ._storage import Change
from ._subscriptions import Topic

__all__ = ["ConnectionStats", "Listener", "Overflow", "Router"]

Overflow: TypeAlias = Literal["block", "drop"]
Item: TypeAlias = Change | LifecycleEvent


@dataclass(slots=True)
class ConnectionStats:
    """Counters a user can read at any time (``bws.stats``)."""

    connects: int = 0
    reconnects: int = 0
    resyncs: int = 0
    messages: int = 0
    bytes: int = 0
    protocol_errors: int = 0
    violations: int = 0
    dropped_before_partial: int = 0
    last_message_at: float | None = None  # trio.current_time() of the last frame
    connected: bool = False

    def last_message_age(self) -> float | None:
        return None if self.last_message_at is None else trio.current_time() - self.last_message_at


class Listener:
    """One consumer: a bounded channel plus the bookkeeping to fail or drop into it."""

    __slots__ = (
        "dropped",
        "error",
        "finished",
        "overflow",
        "receive",
        "send",
        "topic",
        "want_lifecycle",
    )

    def __init__(self, topic: Topic, buffer: int, overflow: Overflow, want_lifecycle: bool) -> None:
        self.topic = topic
        self.send, self.receive = trio.open_memory_channel[Item](buffer)
        self.overflow = overflow
        self.want_lifecycle = want_lifecycle
        self.error: BaseException | None = None
        self.finished = False
        self.dropped = 0

    async def next(self) -> Item | None:
        """The next item; ``None`` once finished and drained (the end of a replay's data); once
        failed and drained, the error it was failed with."""
        try:
            return await self.receive.receive()
        except trio.EndOfChannel:
            if self.error is not None:
                raise self.error from None
            if self.finished:
                return None
            raise RuntimeError("listener channel closed without an error") from None

    def fail(self, error: BaseException) -> None:
        # Buffered items are still delivered; the error is raised once they are drained.
        if self.error is None:
            self.error = error
        self.send.close()

    def finish(self) -> None:
        """The data ended: buffered items are still delivered, then the iteration ends."""
        self.finished = True
        self.send.close()

    def close(self) -> None:
        self.send.close()
        self.receive.close()

    @property
    def queued(self) -> int:
        return self.send.statistics().current_buffer_used


class Router:
    """Demand topic -> listeners, and delivery to them (see the module docstring)."""

    __slots__ = ("on_wait", "routes")

    def __init__(self) -> None:
        self.routes: dict[Topic, list[Listener]] = {}
        # Told True while the reader waits for a full ``block`` listener, then False.
        self.on_wait: Callable[[bool], None] | None = None

    def add(self, listener: Listener) -> None:
        self.routes.setdefault(listener.topic, []).append(listener)

    def remove(self, listener: Listener) -> bool:
        """Unregister and close ``listener``; True if it was registered (not already failed)."""
        listeners = self.routes.get(listener.topic)
        registered = listeners is not None and listener in listeners
        if listeners is not None and registered:
            listeners.remove(listener)
            if not listeners:
                del self.routes[listener.topic]
        listener.close()
        return registered

    def fail(self, topic: Topic, error: BaseException) -> None:
        """Fail and unregister every listener of ``topic``."""
        for listener in self.routes.pop(topic, []):
            listener.fail(error)

    def fail_all(self, error: BaseException) -> None:
        for topic in list(self.routes):
            self.fail(topic, error)

    def finish_all(self) -> None:
        """The end of the data (a replay): every listener ends normally once drained."""
        for listeners in self.routes.values():
            for listener in listeners:
                listener.finish()
        self.routes.clear()

    def listener_stats(self) -> list[tuple[str, int, int]]:
        """``(topic, queued items, dropped items)`` for every live listener."""
        return [
            (proto.make_topic(*listener.topic), listener.queued, listener.dropped)
            for listeners in self.routes.values()
            for listener in listeners
        ]

    # ------------------------------------------------------------------ the hot path

    def offer(self, listeners: list[Listener], item: Item) -> int:
        """Deliver without waiting. Returns the index of the first listener that must be
        waited for (full, ``block``), else -1."""
        for index, listener in enumerate(listeners):
            try:
                listener.send.send_nowait(item)
            except trio.WouldBlock:
                if listener.overflow != "drop":
                    return index
                listener.dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        return -1

    def offer_changes(
        self, table: str, changes: tuple[Change, ...], start: int
    ) -> tuple[int, list[Listener]] | None:
        """Offer ``changes[start:]`` to their listeners without waiting. On the first full
        ``block`` listener, stops and returns the change's index and the listeners still owed
        it, in order, for ``route_rest``."""
        routes = self.routes
        wide = routes.get((table, None))
        offer = self.offer
        for index in range(start, len(changes)):
            change = changes[index]
            if change.symbol is not None:
                narrow = routes.get((table, change.symbol))
                if narrow and (blocked := offer(narrow, change)) >= 0:
                    return index, [*narrow[blocked:], *(wide or ())]
            if wide and (blocked := offer(wide, change)) >= 0:
                return index, wide[blocked:]
        return None

    async def route_rest(
        self, table: str, changes: tuple[Change, ...], stuck: tuple[int, list[Listener]]
    ) -> None:
        """Finish what ``offer_changes`` stopped at, waiting for full listeners in turn."""
        while True:
            index, owed = stuck
            await self.deliver(owed, changes[index])
            resumed = self.offer_changes(table, changes, index + 1)
            if resumed is None:
                return
            stuck = resumed

    async def deliver(self, listeners: list[Listener], item: Item) -> None:
        """``offer``, waiting for each full ``block`` listener in turn."""
        remaining = list(listeners)  # listeners may leave while we wait
        while (blocked := self.offer(remaining, item)) >= 0:
            on_wait = self.on_wait
            if on_wait is not None:
                on_wait(True)
            try:
                await remaining[blocked].send.send(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                if on_wait is not None:
                    on_wait(False)
            remaining = remaining[blocked + 1 :]

    async def broadcast(self, event: LifecycleEvent) -> None:
        """A lifecycle event to every listener that asked for them (``events()``)."""
        for listeners in tuple(self.routes.values()):
            wanted = [listener for listener in listeners if listener.want_lifecycle]
            if wanted:
                await self.deliver(wanted, event)
