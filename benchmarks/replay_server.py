"""The benchmarks' BitMEX stand-in: handshake, welcome, acks, then pre-encoded frames.

Theory of operation: the transport ceiling of a websocket *client* is only visible when the server
costs next to nothing, so this server does no work per frame. ``FakeBitMEX`` is the server side of
one connection, sans-IO, on wsproto: it takes the client's bytes and queues replies (the HTTP
upgrade response, the welcome, subscribe acks, pongs, the close reply). Once ``topics_needed``
topics were subscribed it releases the data: the stream's frames, already encoded as websocket
frames and cut into chunks at frame boundaries (``encode_chunks``). Three ways to serve it:

- ``ReplayStream``: an in-memory trio ``Stream`` for the client's ``connect=`` hook; every
  ``receive_some`` hands over one chunk, as a socket with a full receive buffer would
  (``benchmarks.inprocess``, ``benchmarks.profile``);
- ``serve_stream``: over any real trio stream, optionally followed by frames paced at a fixed rate
  (``benchmarks.latency`` over a socket pair);
- ``python -m benchmarks.replay_server --stream FILE``: over TCP on 127.0.0.1, one connection after
  another, one ``send_all`` per 64 KiB chunk; prints its URL as the first stdout line and runs
  until terminated (``benchmarks.loopback`` runs it in a child process). The emulator does the
  same work live (merges topics, queues, encodes, writes each queued batch at once), so it costs
  more per frame, though far less than a client reading it.

    python -m benchmarks.replay_server --stream stream.jsonl.gz
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Sequence
from functools import partial

import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)

from ._common import BENCH_TABLES, load_frames, text_frame

__all__ = [
    "WELCOME",
    "FakeBitMEX",
    "ReplayStream",
    "encode_chunks",
    "main",
    "serve",
    "serve_stream",
]

WELCOME = (
    '{"info":"Welcome to the BitMEX Realtime API.","version":"2.0.0",'
    '"timestamp":"2025-01-01T00:00:00.000Z","docs":"https://www.bitmex.com/app/wsAPI",'
    '"heartbeatEnabled":false,"limit":{"remaining":40}}'
)
CHUNK = 64 * 1024


def encode_chunks(frames: Iterable[str], chunk: int = CHUNK) -> list[bytes]:
    """The frames as websocket bytes, in chunks of at most ``chunk`` bytes ending on a frame
    boundary (a larger frame is a chunk of its own)."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for frame in frames:
        data = text_frame(frame)
        if current and size + len(data) > chunk:
            chunks.append(b"".join(current))
            current, size = [], 0
        current.append(data)
        size += len(data)
    if current:
        chunks.append(b"".join(current))
    return chunks


class FakeBitMEX:
    """Server side of one benchmark connection (sans-IO)."""

    def __init__(self, chunks: Sequence[bytes], topics_needed: int) -> None:
        self._ws = WSConnection(ConnectionType.SERVER)
        self.control: deque[bytes] = deque()  # replies, sent between data chunks
        self.data: deque[bytes] = deque(chunks)
        self.topics: list[str] = []
        self.topics_needed = topics_needed
        self.streaming = False
        self.closed = False
        self.first_data_at: float | None = None  # perf_counter() when data started to flow
        self._text: list[str] = []

    def receive(self, data: bytes) -> None:
        ws = self._ws
        ws.receive_data(data or None)
        for event in ws.events():
            if isinstance(event, Request):
                self.control.append(ws.send(AcceptConnection()))
                self.control.append(text_frame(WELCOME))
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self._command("".join(self._text))
                    self._text.clear()
            elif isinstance(event, Ping):
                self.control.append(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    self.control.append(ws.send(event.response()))
                self.closed = True

    def _command(self, text: str) -> None:
        if text == "ping":
            self.control.append(text_frame("pong"))
            return
        command = orjson.loads(text)
        op, args = command.get("op"), command.get("args")
        topics = args if isinstance(args, list) else [args]
        for topic in topics:
            reply = {"success": True, op: topic, "request": command}
            self.control.append(text_frame(orjson.dumps(reply)))
        if op == "subscribe":
            self.topics.extend(topics)
            if len(self.topics) >= self.topics_needed and not self.streaming:
                self.streaming = True

    def take(self) -> bytes | None:
        """The next bytes to send, or ``None`` when there is nothing to send right now."""
        if self.control:
            return self.control.popleft()
        if self.streaming and self.data:
            if self.first_data_at is None:
                self.first_data_at = time.perf_counter()
            return self.data.popleft()
        return None


class ReplayStream(trio.abc.Stream):
    """``FakeBitMEX`` as an in-memory trio stream (what the client's ``connect=`` returns)."""

    def __init__(self, server: FakeBitMEX) -> None:
        self.server = server
        self._lot = trio.lowlevel.ParkingLot()
        self._rest = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        if self.server.closed:
            raise trio.BrokenResourceError("benchmark server closed")
        self.server.receive(bytes(data))
        self._lot.unpark_all()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        while True:
            data = self._rest or self.server.take()
            if data is not None and data:
                if max_bytes is not None and len(data) > max_bytes:
                    data, self._rest = data[:max_bytes], data[max_bytes:]
                else:
                    self._rest = b""
                return data
            if self.server.closed:
                return b""
            await self._lot.park()

    async def aclose(self) -> None:
        self.server.closed = True
        self._lot.unpark_all()
        await trio.lowlevel.checkpoint()


async def serve_stream(
    stream: trio.abc.Stream,
    server: FakeBitMEX,
    frames: Sequence[bytes] = (),
    rate: float = 1.0,
    sent_at: list[float] | None = None,
) -> None:
    """Serve one connection over a real stream: replies at once; once subscribed, the server's
    chunks as fast as the client takes them, then ``frames`` paced at ``rate`` per second
    (``sent_at`` gets each frame's ``perf_counter()`` just before it is written). Returns when
    the client has closed the connection."""
    lock = trio.Lock()
    streaming = trio.Event()

    async def send(data: bytes, stamped: bool = False) -> None:
        async with lock:
            # Taking the lock is a schedule point: the time is noted once it is held, so that
            # what is measured starts at the write (the frame's arrival), not a pass before it.
            if stamped and sent_at is not None:
                sent_at.append(time.perf_counter())
            await stream.send_all(data)

    async def reader() -> None:
        while True:
            data = await stream.receive_some(65536)
            server.receive(bytes(data))
            if server.streaming:
                streaming.set()
            while server.control:
                await send(server.control.popleft())
            if not data or server.closed:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await streaming.wait()
        while server.data:
            await send(server.data.popleft())
        if not frames:
            return
        await trio.sleep(0.2)
        start = trio.current_time()
        for i, frame in enumerate(frames):
            await trio.sleep_until(start + i / rate)
            await send(frame, stamped=True)


async def _connection(chunks: list[bytes], stream: trio.SocketStream) -> None:
    server = FakeBitMEX(chunks, topics_needed=len(BENCH_TABLES))
    try:
        await serve_stream(stream, server)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve(stream_file: str, port: int) -> None:
    """Serve the recording ``stream_file`` over TCP on 127.0.0.1 until cancelled."""
    chunks = encode_chunks(load_frames(stream_file))
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    print(f"ws://127.0.0.1:{port}/realtime", flush=True)
    await trio.serve_listeners(partial(_connection, chunks), listeners)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay_server", description=__doc__)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, args.stream, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
