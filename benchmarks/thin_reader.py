"""Transport alternative, measured before any switch: a thin reader instead of trio-websocket's.

Theory of operation: trio-websocket runs its own reader task that parses frames with wsproto and
hands every message to the application through a memory channel, so each message costs several
task switches before the client even sees it. This prototype keeps everything else of the
client's per-frame path (``decode_server_frame``, ``Storage.apply``, one bounded trio channel per
listener, listeners counting rows as ``listen()`` yields them) but reads the socket itself: wsproto
only for the opening handshake, then a minimal parser for the server's unmasked frames that hands
each payload's bytes straight to ``orjson`` (no UTF-8 decode to ``str``), in the same task that
stores and routes. A second variant also drains each listener's channel without a checkpoint
per item once woken (one wake-up per 64 KiB chunk instead of one per change). It is not the
client (no heartbeat, reconnects or resync), only a measure of what switching the transport
would buy; ``ConnectionClosed`` would stay the public error. ``--settings`` first tries
trio-websocket's own knobs (receive buffer, message queue) on a bare client.

    python -m benchmarks.thin_reader --messages 200000 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from bitmex_trio_websocket._protocol import TableMessage, decode_server_frame
from bitmex_trio_websocket._storage import Change, Storage

from ._common import BENCH_TABLES, Result, add_common_arguments, emit, load_frames
from ._fakeserver import FakeBitMEX, ReplayStream, encode_chunks
from .gen_stream import stream_path
from .inprocess import expected_rows, run_bare
from .loopback import server_process

__all__ = ["FrameParser", "in_process", "main", "measure", "thin_client"]

TIMEOUT = 600.0


class FrameParser:
    """Complete frames ``(first header byte, payload)`` out of unmasked server bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos, n = 0, len(buf)
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4]), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10]), 10
            end = pos + head + length
            if end > n:
                break
            out.append((buf[pos], bytes(buf[pos + head : end])))
            pos = end
        del buf[:pos]
        return out


async def _handshake(stream: trio.abc.Stream, host: str) -> None:
    """Open the websocket with wsproto and read up to the welcome (the server sends nothing
    more until we subscribe, so the frame parser starts on a frame boundary)."""
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host=host, target="/realtime")))
    accepted = False
    while True:
        data = await stream.receive_some(65536)
        if not data:
            raise trio.BrokenResourceError("closed during handshake")
        ws.receive_data(bytes(data))
        for event in ws.events():
            accepted = accepted or isinstance(event, AcceptConnection)
            if accepted and isinstance(event, TextMessage) and event.message_finished:
                return


async def thin_client(
    stream: trio.abc.Stream, expected: Counter[str], drain: bool = False
) -> tuple[float, float]:
    """Read, decode, store and route until every listener has its rows; returns the
    ``perf_counter()`` times of the subscription and of the last row."""
    await _handshake(stream, "bench.invalid")
    parser = FrameParser()
    storage = Storage()
    apply = storage.apply
    channels = {t: trio.open_memory_channel[Change](256) for t in BENCH_TABLES}
    done = {t: trio.Event() for t in BENCH_TABLES}
    start = end = time.perf_counter()

    async def listener(table: str) -> None:
        n, receive = 0, channels[table][1]
        while True:
            change = await receive.receive()
            while True:  # drain what is buffered: one wake-up per chunk, not per change
                if change.action != "delete":
                    for _ in change.rows:
                        n += 1
                if n >= expected[table]:
                    done[table].set()
                if not drain:
                    break
                try:
                    change = receive.receive_nowait()
                except trio.WouldBlock:
                    break

    async def reader() -> None:
        nonlocal start
        mask = bytes(4)  # client frames must be masked; an all-zero key leaves the payload as is
        payload = orjson.dumps({"op": "subscribe", "args": BENCH_TABLES})
        start = time.perf_counter()
        await stream.send_all(bytes((0x81, 0x80 | len(payload))) + mask + payload)
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for _head, body in parser.feed(data):
                event = decode_server_frame(body)
                if isinstance(event, TableMessage):
                    for change in apply(event.message).changes:
                        send = channels[change.table][0]
                        try:
                            send.send_nowait(change)
                        except trio.WouldBlock:
                            await send.send(change)

    async with trio.open_nursery() as nursery:
        for table in BENCH_TABLES:
            nursery.start_soon(listener, table)
        nursery.start_soon(reader)
        with trio.fail_after(TIMEOUT):
            for event in done.values():
                await event.wait()
        end = time.perf_counter()
        nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(stream)
    return start, end


async def in_process(
    chunks: Sequence[bytes], n_frames: int, expected: Counter[str], drain: bool = False
) -> float:
    server = FakeBitMEX(chunks, topics_needed=len(BENCH_TABLES))
    _, end = await thin_client(ReplayStream(server), expected, drain)
    assert server.first_data_at is not None
    return n_frames / (end - server.first_data_at)


async def _loopback(url: str, n_frames: int, expected: Counter[str], drain: bool) -> float:
    host, _, port = url.removeprefix("ws://").partition("/")[0].partition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    start, end = await thin_client(stream, expected, drain)
    return n_frames / (end - start)


VARIANTS = {
    "prototype thin reader, 3 listeners": False,
    "prototype thin reader + draining listeners": True,
}


# trio-websocket settings tried first: (receive buffer, message queue).
SETTINGS = ((4 * 1024, 1), (64 * 1024, 1), (64 * 1024, 256))


def measure(
    stream: Path,
    frames: Sequence[str],
    runs: int,
    loopback: bool = True,
    settings: Sequence[tuple[int, int]] = (),
) -> list[Result]:
    """The prototype in-process (and over TCP from ``replay_server``), and, for each of
    ``settings``, a bare trio-websocket client in-process with that receive buffer and queue."""
    chunks = encode_chunks(frames)
    expected = expected_rows(frames)
    inproc = {
        drain: Result(f"in-process: {name}", [], len(frames)) for name, drain in VARIANTS.items()
    }
    bare = {
        (size, queue): Result(
            f"in-process: bare trio-websocket, buffer {size // 1024} KiB, queue {queue}",
            [],
            len(frames),
        )
        for size, queue in settings
    }
    results = [*bare.values(), *inproc.values()]
    for _ in range(runs):
        for (size, queue), result in bare.items():
            gc.collect()
            result.rates.append(trio.run(run_bare, chunks, len(frames), size, queue))
        for drain, result in inproc.items():
            gc.collect()
            result.rates.append(trio.run(in_process, chunks, len(frames), expected, drain))
    if loopback:
        loop = {
            drain: Result(f"loopback/raw: {name}", [], len(frames))
            for name, drain in VARIANTS.items()
        }
        results += loop.values()
        with server_process("raw", stream) as url:
            for _ in range(runs):
                for drain, result in loop.items():
                    gc.collect()
                    result.rates.append(trio.run(_loopback, url, len(frames), expected, drain))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.thin_reader", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument(
        "--settings", action="store_true", help="also bare trio-websocket buffer/queue settings"
    )
    args = parser.parse_args(argv)
    stream = Path(args.stream) if args.stream else stream_path(args.messages, args.seed)
    frames = load_frames(stream)
    settings = SETTINGS if args.settings else ()
    results = measure(stream, frames, args.runs, settings=settings)
    emit(results, args.json, "Transport alternatives")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
