"""The byte side of a connection: its bounded outgoing queue and a fault-injecting transport.

Theory of operation: ``Outbox`` is the per-connection FIFO between producers (market fan-out,
command replies, replay) and the one sender task. Live producers use ``put_nowait``, which refuses
when the queue is full so the caller can shed the slow client instead of blocking the market or
growing memory; the replay feeder uses ``put``, which waits while the queue is more than half full
and otherwise queues runs of frames between checkpoints, so the sender finds batches.
``FaultStream`` sits between trio-websocket and the real transport (socket or memory stream): its
send gate implements *stall* (every write, protocol pongs included, blocks) and its ``aclose``
implements *drop* (the transport closes under trio-websocket, no close frame is sent).

Data frames bypass trio-websocket on the way out: the sender takes every frame queued (a batch,
``Outbox.take``), encodes them with ``encode_text_frames`` and writes them with one
``FaultStream.send_all``. ``send_message`` per frame costs a lock, a write and several task
switches each, which made the emulator, not the client, the bottleneck of a loopback benchmark.
trio-websocket keeps the handshake, reading, pongs and the close handshake; its writes and ours
go through the same ``FaultStream``, whose lock keeps whole writes from interleaving. Encoding
by hand is sound because the emulator never negotiates an extension (trio-websocket's server
accepts without any), so a server text message is exactly one unmasked frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from .._websocket import OP_TEXT, encode_frame

__all__ = ["CloseRequest", "FaultStream", "Outbox", "encode_text_frames"]

PUT_RUN = 64  # Outbox.put yields at least once per this many frames


def encode_text_frames(texts: Iterable[str]) -> bytes:
    """The websocket frames of these text messages, one unfragmented frame each, in order."""
    return b"".join(encode_frame(OP_TEXT, text.encode(), None) for text in texts)


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
        self._unchecked = 0  # put() calls since its last checkpoint
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
        """Queue ``item``, first waiting while the queue is at least half full.

        It yields to the scheduler only when it waits and once every ``PUT_RUN`` calls: a
        checkpoint per frame would hand the sender one frame per scheduler round, and its
        batches would never grow. ``PUT_RUN`` bounds how long a producer runs unchecked.
        """
        self._unchecked += 1
        half = max(1, self._limit // 2)
        if self._unchecked >= PUT_RUN or (not self.closed and len(self._items) >= half):
            self._unchecked = 0
            while not self.closed and len(self._items) >= half:
                await self._writers.park()
            await trio.lowlevel.checkpoint()
        self.put_nowait(item, force=True)

    async def wait(self) -> None:
        """Wait until something is queued (``EndOfChannel`` once closed and empty)."""
        await trio.lowlevel.checkpoint()
        while not self._items:
            if self.closed:
                raise trio.EndOfChannel
            await self._readers.park()

    def take(self, max_frames: int, max_chars: int) -> list[str] | CloseRequest:
        """The frames at the head of the queue, in order: at most ``max_frames``, and no more
        once ``max_chars`` is reached (the first is always taken, however long). A
        ``CloseRequest`` is never batched: it comes alone, after the frames queued before it.
        Call it right after ``wait()``, without an ``await`` in between."""
        items = self._items
        head = items[0]
        if isinstance(head, CloseRequest):
            items.popleft()
            return head
        batch: list[str] = []
        size = 0
        while items and len(batch) < max_frames and size < max_chars:
            item = items[0]
            if isinstance(item, CloseRequest):
                break
            batch.append(item)
            size += len(item)
            items.popleft()
        if len(items) < self._limit // 2:
            self._writers.unpark_all()
        return batch

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
        # trio-websocket (handshake, pongs, close frames) and the emulator's sender (data) both
        # write: one whole write at a time, in arrival order (a transport refuses concurrent
        # send_all calls, and two frames must never interleave).
        self._send_lock = trio.StrictFIFOLock()
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
        async with self._send_lock:
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
