"""In-process pipeline: the client's own per-frame path fed from an in-memory transport.

Theory of operation: ``open_bitmex_websocket(..., connect=...)`` gets a ``ReplayStream`` (see
``replay_server``) that answers the handshake and subscriptions and then hands over the whole
stream, pre-encoded, 64 KiB at a time. Everything the client does per frame runs for real:
its own frame reader (``_websocket``), ``decode_server_frame``, ``Storage.apply``, routing and
the listeners' channels; a bare trio-websocket client on the same transport is the comparison.
Every frame is decoded and stored in both variants; with one listener only ``orderBookL2`` rows
are consumed, with three ``orderBookL2``, ``trade`` and ``instrument``.
The clock runs from the first data chunk until every listener has received every row it must
(``listen()`` yields the rows of partials, inserts and updates). The 2021 library's in-process
figure comes from ``benchmarks.oldlib`` on the same stream.

    python -m benchmarks.inprocess --messages 200000 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import aclosing

import orjson
import trio
import trio_websocket

from bitmex_trio_websocket import BitMEXWebsocket, open_bitmex_websocket

from ._common import BENCH_TABLES, Result, add_common_arguments, emit, load_frames
from .gen_stream import stream_path
from .replay_server import FakeBitMEX, ReplayStream, encode_chunks

__all__ = ["expected_rows", "main", "measure", "run_client"]

TIMEOUT = 600.0


def expected_rows(frames: Sequence[str]) -> Counter[str]:
    """Rows ``listen(table)`` yields per table for these frames (deletes yield none)."""
    counts: Counter[str] = Counter()
    for text in frames:
        message = orjson.loads(text)
        if message["action"] != "delete":
            counts[message["table"]] += len(message["data"])
    return counts


async def consume(
    bws: BitMEXWebsocket, table: str, expected: int, done: trio.Event, received: Counter[str]
) -> None:
    """A listener that counts rows and sets ``done`` once it has seen ``expected`` of them."""
    n = 0
    if expected == 0:
        done.set()
    async with aclosing(bws.listen(table)) as rows:
        async for _ in rows:
            n += 1
            received[table] = n
            if n == expected:
                done.set()


async def run_client(
    chunks: Sequence[bytes], n_frames: int, tables: Sequence[str], expected: Counter[str]
) -> float:
    """One run: messages per second from first data byte to last listener row."""
    server = FakeBitMEX(chunks, topics_needed=len(tables))
    stream = ReplayStream(server)

    async def connect() -> trio.abc.Stream:
        return stream

    done = {table: trio.Event() for table in tables}
    received: Counter[str] = Counter()
    async with open_bitmex_websocket("ws://bench.invalid/realtime", connect=connect) as bws:
        async with trio.open_nursery() as nursery:
            for table in tables:
                nursery.start_soon(consume, bws, table, expected[table], done[table], received)
            with trio.move_on_after(TIMEOUT) as scope:
                for event in done.values():
                    await event.wait()
            end = time.perf_counter()
            nursery.cancel_scope.cancel()
        stats = bws.stats
        if scope.cancelled_caught or stats.resyncs or stats.violations or stats.protocol_errors:
            raise RuntimeError(
                f"benchmark run went wrong: received {dict(received)} of {dict(expected)}, "
                f"stats {stats}"
            )
    assert server.first_data_at is not None
    return n_frames / (end - server.first_data_at)


async def run_bare(
    chunks: Sequence[bytes],
    n_frames: int,
    receive_buffer_size: int = 64 * 1024,
    message_queue_size: int = 1,
) -> float:
    """One run of a bare trio-websocket client (receive and ``orjson.loads`` every frame) on
    the same in-memory transport: the transport's own ceiling (with the client's settings:
    64 KiB receive buffer, trio-websocket's default queue of one message)."""
    server = FakeBitMEX(chunks, topics_needed=len(BENCH_TABLES))
    stream = ReplayStream(server)
    loads = orjson.loads
    async with trio.open_nursery() as nursery:
        ws = await trio_websocket.wrap_client_stream(
            nursery,
            stream,  # type: ignore[arg-type]
            "bench.invalid",
            "/realtime",
            max_message_size=64 * 1024 * 1024,
            receive_buffer_size=receive_buffer_size,
            message_queue_size=message_queue_size,
        )
        await ws.get_message()  # welcome
        await ws.send_message(orjson.dumps({"op": "subscribe", "args": BENCH_TABLES}).decode())
        n = 0
        with trio.fail_after(TIMEOUT):
            while n < n_frames:
                n += "table" in loads(await ws.get_message())
        end = time.perf_counter()
        await ws.aclose()
    assert server.first_data_at is not None
    return n_frames / (end - server.first_data_at)


def measure(frames: Sequence[str], runs: int) -> list[Result]:
    chunks = encode_chunks(frames)
    expected = expected_rows(frames)
    variants = {
        "in-process: ours, 1 listener": ("orderBookL2",),
        "in-process: ours, 3 listeners": BENCH_TABLES,
    }
    bare = Result("in-process: bare trio-websocket + orjson", [], len(frames))
    results = {name: Result(name, [], len(frames)) for name in variants}
    for _ in range(runs):
        gc.collect()
        bare.rates.append(trio.run(run_bare, chunks, len(frames)))
        for name, tables in variants.items():
            gc.collect()
            rate = trio.run(run_client, chunks, len(frames), tables, expected)
            results[name].rates.append(rate)
    return [bare, *results.values()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inprocess", description=__doc__)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    frames = load_frames(args.stream or stream_path(args.messages, args.seed))
    emit(measure(frames, args.runs), args.json, "In-process pipeline (in-memory transport)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
