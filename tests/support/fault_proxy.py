"""A byte-level fault proxy between the client and a server: TCP faults, scripted per direction.

Theory of operation. A ``FaultProxy`` relays each client connection to the upstream server (any
factory returning a trio ``Stream``: the emulator's ``connect_in_memory`` or a TCP connect) with
two pumps, one per direction, each a ``Pipe``. A pump reads what its source sent and writes it to
its sink unless a fault says otherwise:

- ``lose()``: bytes read are discarded (one-way loss; the other direction keeps flowing);
- ``throttle(rate)``: at most ``rate`` bytes per second (on an absolute schedule, so exact under
  trio's virtual clock); ``throttle(0.5)`` is the hostile one-byte-every-two-seconds trickle;
- ``hold(seconds)``: nothing is read or written for that long (a one-way stall; bytes queue in
  the source, nothing is lost);
- ``split(rng)``: every write is cut at random byte positions into separate writes;
- ``close()``: a clean half-close (FIN) of this direction's sink;
- ``ProxyConnection.reset()``: RST of both sides (TCP: ``SO_LINGER`` 0, then close; in memory:
  both ends' reads and writes raise ``BrokenResourceError``, pending bytes are discarded);
- ``black_hole()``: both directions lose everything while both sockets stay open;
- ``FaultProxy.refuse(n)``: the next ``n`` connects are refused.

Any of them can fire at an exact byte offset of a direction's stream: ``Pipe.when(offset=N)`` or
``Pipe.when(pattern=b'"action":"partial"', skip=K)`` (server frames are unmasked, so JSON is
visible on the wire) runs a callback with the pump stopped between byte N-1 and byte N. Offsets
count bytes read from the source, whatever was lost. Faults for a connection not made yet go in
``on_next_connection`` (or ``on_connection`` for every one), so a cut can land inside the HTTP 101
head. Loss drops data, not the end of a stream: a lost direction still passes its source's EOF or
reset on, so that a connection nobody uses any more is torn down instead of leaking.

The in-memory client end (``MemoryEnd``) keeps the boundaries of the proxy's writes (one
``receive_some`` never joins two), so a split write reaches the client's reader in pieces, the
worst case TCP is allowed to produce. With ``listen=True`` the proxy also accepts TCP on
127.0.0.1 (``url``, ``port``); ``connect()`` then dials it, and a refused connect there is a real
``ECONNREFUSED`` from a port bound but not listening (a client that dials ``url`` itself gets a
connection reset at accept instead).
"""

from __future__ import annotations

import errno
import math
import random
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TypeAlias

import trio

__all__ = [
    "FaultProxy",
    "MemoryEnd",
    "Pipe",
    "ProxyConnection",
    "memory_pair",
    "open_fault_proxy",
]

Upstream: TypeAlias = Callable[[], Awaitable[trio.abc.Stream]]
CHUNK = 65536
# A throttled pump writes a slice this often (the rate's granularity), at least one byte.
THROTTLE_QUANTUM = 0.05
# Errors that mean "this transport is gone" (a peer's RST, a closed stream).
TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


# ---------------------------------------------------------------------- in-memory transport


@dataclass(eq=False)
class _Channel:
    """One direction of an in-memory connection: written segments in order."""

    segments: deque[bytes] = field(default_factory=deque)
    eof: bool = False  # the writer half-closed (FIN)
    reset: bool = False  # RST: both ends fail, pending bytes are gone
    reader_closed: bool = False  # writes now fail, as on a socket whose peer closed
    lot: trio.lowlevel.ParkingLot = field(default_factory=trio.lowlevel.ParkingLot)

    def wake(self) -> None:
        self.lot.unpark_all()


class MemoryEnd(trio.abc.HalfCloseableStream):
    """One end of ``memory_pair()``: a byte stream that can also be reset (``abort``)."""

    def __init__(self, incoming: _Channel, outgoing: _Channel) -> None:
        self._in = incoming
        self._out = outgoing
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self._closed or self._out.eof:
            raise trio.ClosedResourceError("this end is closed for writing")
        if self._out.reset or self._out.reader_closed:
            raise trio.BrokenResourceError("connection reset by peer")
        if data:
            self._out.segments.append(bytes(data))
            self._out.wake()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()
        self._out.eof = True
        self._out.wake()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("this end is closed")
            if self._in.reset:
                raise trio.BrokenResourceError("connection reset by peer")
            if self._in.segments:
                segment = self._in.segments.popleft()
                if max_bytes is not None and len(segment) > max_bytes:
                    self._in.segments.appendleft(segment[max_bytes:])
                    segment = segment[:max_bytes]
                return segment
            if self._in.eof:
                return b""
            await self._in.lot.park()

    def abort(self) -> None:
        """RST: every pending and later read or write on either end fails."""
        for channel in (self._in, self._out):
            channel.reset = True
            channel.segments.clear()
            channel.wake()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.eof = True  # FIN to the peer
            self._in.reader_closed = True
            self._in.segments.clear()
            self._in.wake()
            self._out.wake()
        await trio.lowlevel.checkpoint()


def memory_pair() -> tuple[MemoryEnd, MemoryEnd]:
    """Two connected ``MemoryEnd`` objects, like the ends of a TCP connection."""
    a_to_b, b_to_a = _Channel(), _Channel()
    return MemoryEnd(b_to_a, a_to_b), MemoryEnd(a_to_b, b_to_a)


async def _reset(stream: trio.abc.Stream) -> None:
    """Abort ``stream`` so that its peer sees a reset, not a clean close."""
    if isinstance(stream, MemoryEnd):
        stream.abort()
    elif isinstance(stream, trio.SocketStream):
        with suppress(OSError):
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await trio.aclose_forcefully(stream)


async def _send_eof(stream: trio.abc.Stream) -> None:
    if isinstance(stream, trio.abc.HalfCloseableStream):
        await stream.send_eof()
    else:
        await stream.aclose()


# ---------------------------------------------------------------------- one direction


@dataclass(eq=False)
class _Trigger:
    offset: int | None
    pattern: bytes | None
    skip: int
    since: int  # a pattern must start at or after this offset
    action: Callable[[], object]


class Pipe:
    """One direction of a proxied connection and its faults (see the module docstring)."""

    def __init__(self, name: str, connection: ProxyConnection) -> None:
        self.name = name  # "up" (client to server) or "down" (server to client)
        self.connection = connection
        self.received = 0  # bytes read from the source: the offsets of ``when``
        self.position = 0  # offset of the next byte to pass on (or lose)
        self.forwarded = 0
        self.lost = 0
        self.ended = trio.Event()  # the pump has stopped (EOF, close, reset)
        self.idle = False  # waiting for the source: everything read so far has been passed on
        self._lose = False
        self._rate: float | None = None
        self._next_slice_at = -math.inf
        self._held_until = -math.inf
        self._changed = trio.Event()
        self._rng: random.Random | None = None
        self._closing = False
        self._triggers: list[_Trigger] = []
        self._tail = b""  # the end of the last chunk, for patterns that straddle two
        self._scope = trio.CancelScope()

    # -- faults (synchronous, so a trigger's callback can call them)

    def lose(self, lose: bool = True) -> None:
        self._lose = lose
        self._poke()

    def throttle(self, rate: float | None) -> None:
        """At most ``rate`` bytes per second from now on (``None``: full speed)."""
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (use hold() to stop a direction)")
        self._rate = rate
        self._next_slice_at = -math.inf
        self._poke()

    def hold(self, seconds: float = math.inf) -> None:
        """Stop this direction for ``seconds`` (for ever by default; see ``release``)."""
        self._held_until = trio.current_time() + seconds
        self._poke()

    def release(self) -> None:
        self._held_until = -math.inf
        self._poke()

    def split(self, rng: random.Random | None) -> None:
        """Cut every write at random positions (``None``: stop cutting)."""
        self._rng = rng

    def close(self) -> None:
        """FIN: half-close this direction's sink now (the other direction keeps flowing)."""
        self._closing = True
        self._scope.cancel()

    def when(
        self,
        action: Callable[[], object],
        *,
        offset: int | None = None,
        pattern: bytes | None = None,
        skip: int = 0,
    ) -> None:
        """Call ``action`` once byte ``offset`` (or ``skip`` bytes past the start of the next
        occurrence of ``pattern`` read from now on) is next: everything before it has been
        forwarded, nothing after it yet. An offset already passed fires with the next read."""
        if (offset is None) == (pattern is None):
            raise ValueError("give exactly one of offset and pattern")
        self._triggers.append(_Trigger(offset, pattern, skip, self.position, action))
        self._poke()

    @property
    def held(self) -> bool:
        return trio.current_time() < self._held_until

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- the pump

    async def run(self, source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        try:
            with self._scope:
                await self._pump(source, sink)
            if not self.connection.was_reset:
                with suppress(*TRANSPORT_ERRORS):
                    await _send_eof(sink)  # close(), or the source's EOF passed on
        except TRANSPORT_ERRORS:
            self.connection.reset()  # a reset on one side is passed on to the other
        finally:
            self.ended.set()

    async def _pump(self, source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        while True:
            await self._wait_flowing()
            self.idle = True
            data = await source.receive_some(CHUNK)
            self.idle = False
            if not data:
                return
            start = self.received
            self.received += len(data)
            window, window_start = self._tail + bytes(data), start - len(self._tail)
            position = start
            while True:
                self._locate_patterns(window, window_start, position)
                due = self._next_due(position)
                end = self.received if due is None else due
                if end > position:
                    await self._forward(sink, data[position - start : end - start])
                    position = self.position = end
                if due is None:
                    break
                self._fire(due)
                if self._closing or self.connection.was_reset:
                    return  # not one byte more
            # Keep enough of this chunk's end for a pattern that starts here and ends in the next.
            longest = max((len(t.pattern) for t in self._triggers if t.pattern), default=1)
            self._tail = window[len(window) - longest + 1 :] if longest > 1 else b""

    def _locate_patterns(self, window: bytes, window_start: int, position: int) -> None:
        for trigger in self._triggers:
            if trigger.pattern is None:
                continue
            found = window.find(trigger.pattern, max(trigger.since - window_start, 0))
            if found >= 0:
                trigger.offset = max(position, window_start + found + trigger.skip)
                trigger.pattern = None

    def _next_due(self, position: int) -> int | None:
        """The offset of the next trigger within the bytes read so far (``None``: none)."""
        due = [
            max(t.offset, position)
            for t in self._triggers
            if t.pattern is None and t.offset is not None and t.offset <= self.received
        ]
        return min(due, default=None)

    def _fire(self, offset: int) -> None:
        for trigger in list(self._triggers):
            if trigger.pattern is None and trigger.offset is not None and trigger.offset <= offset:
                self._triggers.remove(trigger)
                trigger.action()

    async def _wait_flowing(self) -> None:
        while self.held:
            with trio.move_on_at(self._held_until):
                await self._changed.wait()
        await trio.lowlevel.checkpoint()

    async def _forward(self, sink: trio.abc.Stream, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            await self._wait_flowing()
            if self._lose:
                self.lost += len(view)
                return
            size = len(view)
            if self._rate is not None:
                size = min(size, max(1, int(self._rate * THROTTLE_QUANTUM)))
            if self._rng is not None and size > 1:
                size = self._rng.randint(1, size)
            await sink.send_all(view[:size])
            self.forwarded += size
            view = view[size:]
            if self._rate is not None:
                now = trio.current_time()
                self._next_slice_at = max(self._next_slice_at, now) + size / self._rate
                await trio.sleep_until(self._next_slice_at)


# ---------------------------------------------------------------------- connections, proxy


class ProxyConnection:
    """One relayed connection: ``up`` (client to server) and ``down`` (server to client)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.up = Pipe("up", self)
        self.down = Pipe("down", self)
        self.was_reset = False
        self.closed = trio.Event()
        self._scope = trio.CancelScope()

    def reset(self) -> None:
        """RST both sides now."""
        self.was_reset = True
        self._scope.cancel()

    def black_hole(self) -> None:
        """Both directions lose everything; both sockets stay open."""
        self.up.lose()
        self.down.lose()

    async def relay(self, client: trio.abc.Stream, server: trio.abc.Stream) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.up.run, client, server)
                    nursery.start_soon(self.down.run, server, client)
        finally:
            with trio.CancelScope(shield=True):
                if self.was_reset:
                    await _reset(client)
                    await _reset(server)
                else:
                    await trio.aclose_forcefully(client)
                    await trio.aclose_forcefully(server)
            self.closed.set()


class FaultProxy:
    """The proxy (use ``open_fault_proxy``). ``connect`` is a client ``connect=`` factory."""

    def __init__(self, nursery: trio.Nursery, upstream: Upstream) -> None:
        self._nursery = nursery
        self._upstream = upstream
        self.connections: list[ProxyConnection] = []
        self.refused = 0  # connects refused so far
        self.on_connection: Callable[[ProxyConnection], None] | None = None
        self._next: deque[Callable[[ProxyConnection], None]] = deque()
        self._refuse = 0
        self._new = trio.Event()
        self.port: int | None = None
        self._closed_port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("this proxy does not listen on TCP (listen=False)")
        return f"ws://127.0.0.1:{self.port}/realtime"

    def refuse(self, n: int = 1) -> None:
        """Refuse the next ``n`` connects."""
        self._refuse += n

    def on_next_connection(self, configure: Callable[[ProxyConnection], None]) -> None:
        """Apply ``configure`` to the next connection before any byte passes (queued in order)."""
        self._next.append(configure)

    async def wait_connection(self, index: int) -> ProxyConnection:
        """The connection with this index (0 = first relayed), once it exists."""
        while len(self.connections) <= index:
            await self._new.wait()
        return self.connections[index]

    async def connect(self) -> trio.abc.Stream:
        """A new client connection through the proxy (in memory, or TCP when listening)."""
        if self.port is not None:
            if self._take_refusal():
                assert self._closed_port is not None
                return await trio.open_tcp_stream("127.0.0.1", self._closed_port)
            return await trio.open_tcp_stream("127.0.0.1", self.port)
        await trio.lowlevel.checkpoint()
        if self._take_refusal():
            raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused (fault proxy)")
        client, ours = memory_pair()
        connection, server_side = await self._open(ours)
        self._nursery.start_soon(connection.relay, ours, server_side)
        return client

    def _take_refusal(self) -> bool:
        if self._refuse <= 0:
            return False
        self._refuse -= 1
        self.refused += 1
        return True

    async def _open(self, client_side: trio.abc.Stream) -> tuple[ProxyConnection, trio.abc.Stream]:
        """Dial upstream for a new client connection and configure its faults."""
        try:
            server_side = await self._upstream()
        except BaseException:
            await _reset(client_side)
            raise
        connection = ProxyConnection(len(self.connections))
        if self.on_connection is not None:
            self.on_connection(connection)
        if self._next:
            self._next.popleft()(connection)
        self.connections.append(connection)
        self._new.set()
        self._new = trio.Event()
        return connection, server_side

    async def _accept(self, stream: trio.SocketStream) -> None:
        # serve_listeners closes the stream when this returns: the relay runs in here.
        if self._take_refusal():
            await _reset(stream)
            return
        try:
            connection, server_side = await self._open(stream)
        except TRANSPORT_ERRORS:
            return  # upstream unreachable: the client saw a reset
        await connection.relay(stream, server_side)

    async def serve_tcp(
        self,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = int(listeners[0].socket.getsockname()[1])
        # Bound but never listening: connecting to it is refused by the kernel.
        closed = trio.socket.socket()
        await closed.bind(("127.0.0.1", 0))
        self._closed_port = int(closed.getsockname()[1])
        with closed:
            await trio.serve_listeners(self._accept, listeners, task_status=task_status)


@asynccontextmanager
async def open_fault_proxy(
    upstream: Upstream, *, listen: bool = False
) -> AsyncIterator[FaultProxy]:
    """Run a fault proxy to ``upstream`` for the duration of the block (TCP too if ``listen``)."""
    async with trio.open_nursery() as nursery:
        proxy = FaultProxy(nursery, upstream)
        if listen:
            await nursery.start(proxy.serve_tcp)
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
