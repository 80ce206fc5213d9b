"""The byte side of a connection: its bounded outgoing queue and a fault-injecting transport.

Theory of operation: ``Outbox`` is the per-connection FIFO between producers (market fan-out,
command replies, replay) and the one sender task. Live producers use ``put_nowait``, which refuses
when the queue is full so the caller can shed the slow client instead of blocking the market or
growing memory; the replay feeder uses ``put``, which waits while the queue is more than half full.
``FaultStream`` sits between trio-websocket and the real transport (socket or memory stream): its
send gate implements *stall* (every write, protocol pongs included, blocks) and its ``aclose``
implements *drop* (the transport closes under trio-websocket, no close frame is sent).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

__all__ = ["CloseRequest", "FaultStream", "Outbox"]


@dataclass(frozen=True, slots=True)
class CloseRequest:
    """Queued instead of a frame: close the websocket with this code once earlier frames went."""

    code: int
    reason: str


class Outbox:
    """Bounded FIFO of frames; ``put_nowait`` refuses when full, ``put`` waits below half full."""

    def __init__(self, limit: int) -> None:
        self._items: deque[str | CloseRequest] = deque()
        self._limit = limit
        self._readers = trio.lowlevel.ParkingLot()
        self._writers = trio.lowlevel.ParkingLot()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: str | CloseRequest, *, force: bool = False) -> bool:
        if self.closed:
            return True  # the connection is going away: silently discard
        if len(self._items) >= self._limit and not force:
            return False
        self._items.append(item)
        self._readers.unpark()
        return True

    async def put(self, item: str) -> None:
        while not self.closed and len(self._items) >= max(1, self._limit // 2):
            await self._writers.park()
        await trio.lowlevel.checkpoint()
        self.put_nowait(item, force=True)

    async def get(self) -> str | CloseRequest:
        await trio.lowlevel.checkpoint()
        while not self._items:
            if self.closed:
                raise trio.EndOfChannel
            await self._readers.park()
        item = self._items.popleft()
        if len(self._items) < self._limit // 2:
            self._writers.unpark_all()
        return item

    def close(self, final: CloseRequest | None = None) -> None:
        """Discard what is queued; ``final`` (if any) is the one item still delivered."""
        self._items.clear()
        if final is not None:
            self._items.append(final)
        self.closed = True
        self._readers.unpark_all()
        self._writers.unpark_all()


class FaultStream(trio.abc.Stream):
    """The transport under trio-websocket, with a send gate (stall) and an abrupt close (drop)."""

    def __init__(self, transport: trio.abc.Stream) -> None:
        self.transport = transport
        self._flowing = trio.Event()
        self._flowing.set()
        self.dropped = False

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def stall(self) -> None:
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def unstall(self) -> None:
        self._flowing.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self._flowing.is_set():
            await self._flowing.wait()
        if self.dropped:
            raise trio.ClosedResourceError("connection dropped")
        await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.transport.receive_some(max_bytes)

    async def aclose(self) -> None:
        self.dropped = True
        self._flowing.set()  # wake a stalled sender so it sees the closed stream
        await self.transport.aclose()
