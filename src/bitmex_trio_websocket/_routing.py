"""Routing: listeners, the fan-out of changes to them (the hot path), and connection counters.

Theory of operation. A listener is a bounded queue with one producer (the session's reader task,
or a replay's feeder) and one consumer (its ``listen``/``events`` generator), plus what it needs
to be failed, finished or dropped into. ``Router.routes`` maps a demand topic ``(table, symbol)``
to its listeners; ``Router`` also keeps, per table, the listeners of the whole table and those of
each symbol, so a change finds its listeners with one dict lookup. The reader hands each
``Change`` of a stored message to the listeners of ``(table, symbol)`` and of ``(table, None)``
with ``offer_changes``, which never awaits: appending to a queue and, when its consumer sleeps
on an empty queue, rescheduling it (no coroutine, no channel object, no task switch per change).
Only when a ``block`` listener is full does the reader await, in ``route_rest``, which keeps
each listener's order: nothing after the stuck change is offered until every listener owed it
has it. With ``overflow="drop"`` a full listener loses the item instead and counts it. At the
end of a replay's data every listener is *finished*: it hands out what it holds, then its
iteration ends normally.

The queue keeps a trio memory channel's semantics, without its per-item cost: ``buffer`` items
wait at most (``0`` hands an item over only to a consumer already waiting), a consumer woken for
an item has that item handed over (it does not take a buffer place), receiving is a checkpoint,
items queued before a failure are still delivered, and a producer blocked on a full queue is
woken by the first item taken, or with ``buffer=0`` by a consumer that starts waiting.

While the reader waits for a slow listener, ``Router.on_wait`` is told (True, then False), so the
session's liveness does not mistake backpressure for a silent server. ``ConnectionStats`` are the
counters users read (``bws.stats``); the session updates them.
"""

from __future__ import annotations

import math
from collections import deque
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
# Per table: (listeners of the whole table, symbol -> listeners of that symbol).
_TableRoute: TypeAlias = tuple[list["Listener"], dict[str, list["Listener"]]]

_reschedule: Callable[[trio.lowlevel.Task], None] = trio.lowlevel.reschedule


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


def _abort_receive(listener: Listener) -> Callable[[object], trio.lowlevel.Abort]:
    def abort(_: object) -> trio.lowlevel.Abort:
        listener.receiver = None
        return trio.lowlevel.Abort.SUCCEEDED

    return abort


class Listener:
    """One consumer: a bounded queue plus the bookkeeping to fail, finish or drop into it.

    ``items`` is the queue, and ``capacity`` its bound (``-1`` once closed for the producer).
    ``receiver`` is the consumer's task while it sleeps on an empty queue; ``handed`` says that
    the first queued item was handed to it as it was woken (so it takes no buffer place), and
    ``blocked`` counts producers waiting for room.
    """

    __slots__ = (
        "_abort",
        "_room",
        "blocked",
        "capacity",
        "dropped",
        "error",
        "finished",
        "handed",
        "items",
        "overflow",
        "receiver",
        "topic",
        "want_lifecycle",
    )

    def __init__(self, topic: Topic, buffer: int, overflow: Overflow, want_lifecycle: bool) -> None:
        # As trio.open_memory_channel: an integer >= 0, or math.inf.
        if buffer != math.inf and not isinstance(buffer, int):
            raise TypeError("buffer must be an integer or math.inf")
        if buffer < 0:
            raise ValueError("buffer must be >= 0")
        self.topic = topic
        self.items: deque[Item] = deque()
        self.capacity: float = buffer
        self.overflow = overflow
        self.want_lifecycle = want_lifecycle
        self.error: BaseException | None = None
        self.finished = False
        self.dropped = 0
        self.receiver: trio.lowlevel.Task | None = None
        self.handed = False
        self.blocked = 0
        self._room = trio.lowlevel.ParkingLot()
        self._abort = _abort_receive(self)

    # ------------------------------------------------------------------ the producer's side

    def put_nowait(self, item: Item) -> bool:
        """Queue ``item`` if there is room (True); False if full. A closed listener swallows
        it (True): nobody will read it."""
        items = self.items
        capacity = self.capacity
        if capacity < 0:
            return True
        if len(items) - self.handed < capacity or self.receiver is not None:
            items.append(item)
            receiver = self.receiver
            if receiver is not None:
                self.receiver = None
                self.handed = True
                _reschedule(receiver)
            return True
        return False

    async def put(self, item: Item) -> None:
        """Queue ``item``, waiting for room (a checkpoint, as ``MemorySendChannel.send``)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.put_nowait(item):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        while True:
            self.blocked += 1  # until woken by took(), or cancelled
            try:
                await self._room.park()
            except BaseException:
                self.blocked -= 1
                raise
            if self.put_nowait(item):
                return

    def wake(self) -> None:
        """Hand the first queued item to the consumer sleeping on the empty queue (call when
        ``receiver`` is set, after queueing without ``put_nowait``)."""
        receiver = self.receiver
        assert receiver is not None
        self.receiver = None
        self.handed = True
        _reschedule(receiver)

    # ------------------------------------------------------------------ the consumer's side

    async def wait(self) -> bool:
        """Wait until items are queued (True), or the listener ended: ``False`` once finished and
        drained (the end of a replay's data); once failed and drained, the error it was failed
        with. A checkpoint, as ``MemoryReceiveChannel.receive``."""
        if self.items:
            await trio.lowlevel.checkpoint()
            if self.items:
                return True
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        while not self.items:
            if self.capacity < 0:
                if self.error is not None:
                    raise self.error
                if self.finished:
                    return False
                raise RuntimeError("listener closed without an error")
            self.receiver = trio.lowlevel.current_task()
            if self.blocked:
                # Only with ``buffer=0``: a producer waits for a consumer, as a channel's sender
                # does; it now finds one and hands its item over.
                self.took()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        self.handed = False  # the consumer runs: it takes the handed item before anyone else
        return True

    def took(self) -> None:
        """An item was taken: wake a producer waiting for room (call when ``blocked``)."""
        self.blocked -= 1
        self._room.unpark()

    async def next(self) -> Item | None:
        """The next item; ``None`` once finished and drained."""
        if not await self.wait():
            return None
        item = self.items.popleft()
        if self.blocked:
            self.took()
        return item

    # ------------------------------------------------------------------ ending

    def fail(self, error: BaseException) -> None:
        # Queued items are still delivered; the error is raised once they are drained.
        if self.error is None:
            self.error = error
        self._close_producer()

    def finish(self) -> None:
        """The data ended: queued items are still delivered, then the iteration ends."""
        self.finished = True
        self._close_producer()

    def close(self) -> None:
        self._close_producer()
        self.items.clear()

    def _close_producer(self) -> None:
        self.capacity = -1
        self.blocked = 0
        receiver = self.receiver
        if receiver is not None:
            self.receiver = None
            _reschedule(receiver)
        self._room.unpark_all()

    @property
    def queued(self) -> int:
        return len(self.items) - self.handed


class Router:
    """Demand topic -> listeners, and delivery to them (see the module docstring)."""

    __slots__ = ("_tables", "direct", "on_wait", "routes")

    def __init__(self) -> None:
        self.routes: dict[Topic, list[Listener]] = {}
        self._tables: dict[str, _TableRoute] = {}
        # Every table with a listener -> its listener when that is its only one and it takes the
        # whole table, else None: a replay's fast path hands most messages over with one lookup
        # (a new dict whenever listeners change, so a copy taken between awaits stays right).
        self.direct: dict[str, Listener | None] = {}
        # Told True while the reader waits for a full ``block`` listener, then False.
        self.on_wait: Callable[[bool], None] | None = None

    def add(self, listener: Listener) -> None:
        self.routes.setdefault(listener.topic, []).append(listener)
        self._index()

    def remove(self, listener: Listener) -> bool:
        """Unregister and close ``listener``; True if it was registered (not already failed)."""
        listeners = self.routes.get(listener.topic)
        registered = listeners is not None and listener in listeners
        if listeners is not None and registered:
            listeners.remove(listener)
            if not listeners:
                del self.routes[listener.topic]
            self._index()
        listener.close()
        return registered

    def fail(self, topic: Topic, error: BaseException) -> None:
        """Fail and unregister every listener of ``topic``."""
        for listener in self.routes.pop(topic, []):
            listener.fail(error)
        self._index()

    def fail_all(self, error: BaseException) -> None:
        for topic in list(self.routes):
            self.fail(topic, error)

    def finish_all(self) -> None:
        """The end of the data (a replay): every listener ends normally once drained."""
        for listeners in self.routes.values():
            for listener in listeners:
                listener.finish()
        self.routes.clear()
        self._index()

    def listener_stats(self) -> list[tuple[str, int, int]]:
        """``(topic, queued items, dropped items)`` for every live listener."""
        return [
            (proto.make_topic(*listener.topic), listener.queued, listener.dropped)
            for listeners in self.routes.values()
            for listener in listeners
        ]

    def _index(self) -> None:
        tables: dict[str, _TableRoute] = {}
        for (table, symbol), listeners in self.routes.items():
            route = tables.get(table)
            if route is None:
                route = tables[table] = ([], {})
            if symbol is None:
                route[0].extend(listeners)
            else:
                route[1][symbol] = list(listeners)
        self._tables = tables
        self.direct = {
            table: wide[0] if len(wide) == 1 and not by_symbol else None
            for table, (wide, by_symbol) in tables.items()
        }

    # ------------------------------------------------------------------ the hot path

    def offer(self, listeners: list[Listener], item: Item) -> int:
        """Deliver without waiting. Returns the index of the first listener that must be
        waited for (full, ``block``), else -1."""
        for index, listener in enumerate(listeners):
            items = listener.items
            if len(items) < listener.capacity:  # the usual case, put_nowait's first branch
                items.append(item)
                receiver = listener.receiver
                if receiver is not None:
                    listener.receiver = None
                    listener.handed = True
                    _reschedule(receiver)
            elif not listener.put_nowait(item):
                if listener.overflow != "drop":
                    return index
                listener.dropped += 1
        return -1

    def offer_changes(
        self, table: str, changes: tuple[Change, ...], start: int
    ) -> tuple[int, list[Listener]] | None:
        """Offer ``changes[start:]`` to their listeners without waiting. On the first full
        ``block`` listener, stops and returns the change's index and the listeners still owed
        it, in order, for ``route_rest``."""
        route = self._tables.get(table)
        if route is None:
            return None
        wide, by_symbol = route
        # A while loop, and no enumerate below: most messages make one change for one listener,
        # and the range and enumerate objects cost more than the rest of such a hand-out.
        index = start
        end = len(changes)
        while index < end:
            change = changes[index]
            if by_symbol and change.symbol is not None:
                narrow = by_symbol.get(change.symbol)
                if narrow and (blocked := self.offer(narrow, change)) >= 0:
                    return index, [*narrow[blocked:], *wide]
            # offer(wide, change), inlined: most changes go to whole-table listeners only.
            for listener in wide:
                items = listener.items
                if len(items) < listener.capacity:
                    items.append(change)
                    receiver = listener.receiver
                    if receiver is not None:
                        listener.receiver = None
                        listener.handed = True
                        _reschedule(receiver)
                elif not listener.put_nowait(change):
                    if listener.overflow != "drop":
                        return index, wide[wide.index(listener) :]
                    listener.dropped += 1
            index += 1
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
                await remaining[blocked].put(item)
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
