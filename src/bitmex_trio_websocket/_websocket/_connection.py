"""The client's websocket connection: ``_handshake`` and ``_frames`` over a trio stream.

Theory of operation
-------------------
``connect_websocket`` runs the upgrade handshake on a stream. The resulting ``ClientWebSocket``
has no task of its own: it is read by whoever calls ``receive_messages()``: one ``receive_some``,
then every complete data message in those bytes, in order (the client's reader task calls it in a
loop and decodes, stores and routes each message itself, so a 64 KiB read of 200 frames costs one
wake-up, not several per frame). Pings are answered and a close frame is echoed inside that call.
A server breaking the wire format (``FramingError``) fails the connection: our close frame carries
the code (1002, 1007 or 1009) and the reason, and reads then raise ``ConnectionClosed``.

Errors are the library's own, from ``bitmex_trio_websocket._exceptions``: ``ConnectionClosed``
(``reason``: a ``trio_websocket.CloseReason`` with the server's close code and text, 1006 for a
lost connection, or the code we failed it with), ``HandshakeError`` for a server that hangs up
or does not speak websocket, and its subclass ``ConnectionRejected`` (``status_code``,
``headers``, ``body``) for a refused upgrade. Each also subclasses the trio-websocket class of
the same name, so ``except trio_websocket.ConnectionClosed`` keeps working while
``except BitMEXError`` catches them too.

Closing: ``aclose()`` sends a close frame and reads until the server's reply (or end of stream),
then closes the stream. Reads are serialised by a lock, so if the reader task is still reading,
``aclose`` waits for it to see the reply instead of racing it for the socket.
"""

from __future__ import annotations

import os
from contextlib import suppress

import trio
from trio_websocket import CloseReason

from .._exceptions import ConnectionClosed, ConnectionRejected, HandshakeError
from .._storage._core import core_module
from . import _frames as wire
from . import _reader
from ._handshake import ClientHandshake, Rejected

__all__ = ["ClientWebSocket", "connect_websocket"]

# The frame reader of the active core (compiled where built: see _storage/_core).
_compiled_reader = core_module("_reader")
FrameReader: type[_reader.FrameReader] = (
    _reader.FrameReader if _compiled_reader is None else _compiled_reader.FrameReader
)

RECEIVE_SIZE = 64 * 1024


async def connect_websocket(
    stream: trio.abc.Stream, host: str, target: str, *, max_message_size: int
) -> ClientWebSocket:
    """Upgrade ``stream``; ``ConnectionRejected`` for a refusal, ``HandshakeError`` for a
    server that hangs up or does not speak websocket. The caller owns (and closes) ``stream``
    until this returns."""
    handshake = ClientHandshake(host, target, os.urandom(16))
    try:
        await stream.send_all(handshake.request_bytes())
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            outcome = handshake.receive_data(bytes(data))
            if outcome is not None:
                break
    except wire.FramingError as exc:
        raise HandshakeError(exc.reason) from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise HandshakeError("connection lost during the handshake") from exc
    if isinstance(outcome, Rejected):
        raise ConnectionRejected(outcome.status_code, outcome.headers, outcome.body)
    ws = ClientWebSocket(stream, max_message_size)
    if outcome.trailing:
        # Frames sent with the 101 are handled like any read (the server may send nothing more
        # until it has its pong or close echo).
        ws._backlog = await ws._ingest(outcome.trailing)
    return ws


class ClientWebSocket:
    """An open client connection (see the module docstring)."""

    def __init__(self, stream: trio.abc.Stream, max_message_size: int) -> None:
        self._stream = stream
        self._frames = FrameReader(max_message_size)
        self.bytes_received = 0  # every byte read from the stream after the handshake
        self._backlog: list[bytes] = []
        self._send_lock = trio.StrictFIFOLock()
        self._receive_lock = trio.Lock()
        self._close_sent = False
        # Set once the connection is over: the server's close code, or why it was lost.
        self.closed: CloseReason | None = None

    async def send_message(self, text: str) -> None:
        if self.closed is not None or self._close_sent:
            raise ConnectionClosed(self.closed or CloseReason(1000, "closing"))
        await self._send(wire.OP_TEXT, text.encode("utf-8"))

    async def _send(self, opcode: int, payload: bytes) -> None:
        frame = wire.encode_frame(opcode, payload, os.urandom(4))
        async with self._send_lock:
            try:
                await self._stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._lost("connection lost while sending")
                raise ConnectionClosed(self.closed) from None

    def _lost(self, why: str) -> None:
        if self.closed is None:
            self.closed = CloseReason(1006, why)

    async def receive_messages(self) -> list[bytes]:
        """The complete data messages of one read (possibly none: a partial frame, a ping).

        Raises ``ConnectionClosed`` once the connection is over.
        """
        if self._backlog:
            backlog, self._backlog = self._backlog, []
            return backlog
        lock = self._receive_lock
        # The read is the checkpoint: a free lock is taken without one of its own, which would
        # be a task switch per read and, at a few thousand frames a second, put the next read
        # between a frame and its listeners (docs/performance.rst, "Latency").
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()
        try:
            if self.closed is not None:
                await trio.lowlevel.checkpoint()
                raise ConnectionClosed(self.closed)
            try:
                data = bytes(await self._stream.receive_some(RECEIVE_SIZE))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._lost("connection lost")
                raise ConnectionClosed(self.closed)
            self.bytes_received += len(data)
            messages = await self._ingest(data)
            if not messages and self.closed is not None:
                raise ConnectionClosed(self.closed)
            return messages  # good data first, even before a close: the next call raises
        finally:
            lock.release()

    async def _ingest(self, data: bytes) -> list[bytes]:
        """Parse ``data`` into complete messages, answering pings and a close; a framing error
        fails the connection (the messages before the bad frame are still returned)."""
        try:
            messages = self._frames.feed(data)
        except wire.FramingError as exc:
            await self._fail(exc.code, exc.reason)
            return exc.messages
        if self._frames.controls:
            await self._answer_controls()
        return messages

    async def get_message(self) -> bytes:
        """The next data message (used for the welcome, before the reader task starts)."""
        while True:
            messages = await self.receive_messages()
            if messages:
                first, *self._backlog = messages
                return first

    async def _answer_controls(self) -> None:
        controls, self._frames.controls = self._frames.controls, []
        for control in controls:
            if control.opcode == wire.OP_PING:
                try:
                    await self._send(wire.OP_PONG, control.payload)
                except ConnectionClosed:
                    return
            elif control.opcode == wire.OP_CLOSE:
                try:
                    code, reason = wire.parse_close(control.payload)
                except wire.FramingError as exc:
                    await self._fail(exc.code, exc.reason)
                    return
                self.closed = CloseReason(code, reason)  # before any await: see _fail
                await self._send_close(code, reason)  # the echo completes the handshake
                return  # nothing may follow a close frame

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: tell the server why, without waiting for its reply."""
        # Set first: a task sending meanwhile must see why the connection is over.
        if self.closed is None:
            self.closed = CloseReason(code, reason)
        await self._send_close(code, reason)

    async def _send_close(self, code: int, reason: str | None) -> None:
        """Our close frame, at most once per connection; a dead socket is no error here."""
        if not self._close_sent:
            self._close_sent = True
            with suppress(ConnectionClosed):
                await self._send(wire.OP_CLOSE, wire.close_payload(code, reason))

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close handshake, then close the stream (always, even if cancelled)."""
        try:
            if self.closed is None:
                await self._send_close(code, reason)
            while self.closed is None:
                try:
                    await self.receive_messages()  # data still in flight is discarded
                except ConnectionClosed:
                    break
        finally:
            if self.closed is None:
                self.closed = CloseReason(code, reason)
            await trio.aclose_forcefully(self._stream)
