"""Latency at a fixed rate: frame arrival to listener receipt, p50/p99/max.

Theory of operation: a server task (``replay_server.serve_stream``) and the client share one process
and talk over a kernel socket pair. After the partials (sent unpaced and not measured) the server
writes the stream's deltas one frame per write at a fixed ``--rate`` (default 5,000 frames/s) and
notes ``perf_counter()`` just before each write: the frame's arrival. Three ``events()``
listeners (``orderBookL2``, ``trade``, ``instrument``) note when each ``Change`` reaches them. One
reader decodes frames in order and every delta frame here concerns one symbol, so a table's
changes match that table's frames one to one, in order (checked by action and row count).

Sharing the loop keeps the client's process awake: the server's timer wakes the loop just
before each write, so the figure is the library's and trio's path, not the operating system's
wake-up of an idle process. ``--child-server`` adds a second row, measured in alternation with
the first: the same server in a child process (forked before the run, its end of the socket
pair inherited), so the client's loop sleeps in ``epoll`` between frames as a user's does and
its wake-up is inside the figure (``perf_counter`` is the system-wide monotonic clock on Linux, so
the child's send times compare with the parent's receipt times).

    python -m benchmarks.latency --rate 5000 --latency-messages 25000 --runs 3 [--child-server]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import socket
import statistics
import time
from collections import deque
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from multiprocessing.connection import Connection

import orjson
import trio

from bitmex_trio_websocket import BitMEXWebsocket, Change, open_bitmex_websocket

from ._common import BENCH_TABLES, Result, add_common_arguments, emit, load_frames, text_frame
from .gen_stream import stream_path
from .replay_server import FakeBitMEX, encode_chunks, serve_stream

__all__ = ["main", "measure", "run_latency"]


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _split(frames: Sequence[str]) -> tuple[list[str], list[str]]:
    """The partials (sent unpaced) and the deltas (paced and measured)."""
    partials = [f for f in frames if '"action":"partial"' in f[:60]]
    deltas = [f for f in frames if '"action":"partial"' not in f[:60]]
    return partials, deltas


@dataclass
class ChildServer:
    """The server of one run in a child process: the client's end of the socket pair, and the
    pipe the child sends its frames' send times back on once the client has closed."""

    sock: socket.socket
    times: Connection
    process: multiprocessing.process.BaseProcess


def _serve_child(
    sock: socket.socket, partials: list[str], encoded: list[bytes], rate: float, out: Connection
) -> None:
    sent_at: list[float] = []

    async def serve() -> None:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        server = FakeBitMEX(encode_chunks(partials), topics_needed=len(BENCH_TABLES))
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await serve_stream(stream, server, encoded, rate, sent_at)

    trio.run(serve)
    out.send(sent_at)


def start_child_server(frames: Sequence[str], rate: float) -> ChildServer:
    """Fork the server of one run (before ``trio.run``: a child cannot start a loop inside one)."""
    partials, deltas = _split(frames)
    client_sock, server_sock = socket.socketpair()
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(
        target=_serve_child,
        args=(server_sock, partials, [text_frame(text) for text in deltas], rate, send),
        daemon=True,
    )
    process.start()
    server_sock.close()
    send.close()
    return ChildServer(client_sock, receive, process)


async def run_latency(
    frames: Sequence[str], rate: float, child: ChildServer | None = None
) -> list[float]:
    """One run: latency in seconds of every delta frame (server in this loop unless ``child``)."""
    partials, deltas = _split(frames)
    pending: dict[str, deque[tuple[int, str, int]]] = {t: deque() for t in BENCH_TABLES}
    for i, text in enumerate(deltas):
        message = orjson.loads(text)
        pending[message["table"]].append((i, message["action"], len(message["data"])))
    sent_at: list[float] = []
    received_at: list[float] = [0.0] * len(deltas)
    remaining = [len(deltas)]
    finished = trio.Event()
    if child is None:
        server = FakeBitMEX(encode_chunks(partials), topics_needed=len(BENCH_TABLES))
        client_sock, server_sock = trio.socket.socketpair()
        server_stream: trio.SocketStream | None = trio.SocketStream(server_sock)
        encoded = [text_frame(text) for text in deltas]
    else:
        client_sock = trio.socket.from_stdlib_socket(child.sock)
        server_stream = None
    client_stream = trio.SocketStream(client_sock)

    async def listener(bws: BitMEXWebsocket, table: str) -> None:
        queue = pending[table]
        async with aclosing(bws.events(table)) as events:
            async for item in events:
                now = time.perf_counter()
                if not isinstance(item, Change) or item.action == "partial":
                    continue
                index, action, rows = queue.popleft()
                if action != item.action or rows != len(item.rows):
                    raise RuntimeError(f"frame {index} does not match {item.action} change")
                received_at[index] = now
                remaining[0] -= 1
                if not remaining[0]:
                    finished.set()

    async def connect() -> trio.abc.Stream:
        return client_stream

    try:
        async with trio.open_nursery() as outer:
            if server_stream is not None:
                outer.start_soon(serve_stream, server_stream, server, encoded, rate, sent_at)
            async with open_bitmex_websocket("ws://bench.invalid/realtime", connect=connect) as bws:
                async with trio.open_nursery() as nursery:
                    for table in BENCH_TABLES:
                        nursery.start_soon(listener, bws, table)
                    with trio.fail_after(60 + 2 * len(deltas) / rate):
                        await finished.wait()
                    nursery.cancel_scope.cancel()
    finally:
        if server_stream is not None:
            await trio.aclose_forcefully(server_stream)
        await trio.aclose_forcefully(client_stream)
    if child is not None:
        # The child sends its times once it sees the close; it is gone within the timeout.
        with trio.fail_after(60):
            sent_at = await trio.to_thread.run_sync(child.times.recv)
        child.process.join()
    return [received - sent for received, sent in zip(received_at, sent_at, strict=True)]


def _summarise(result: Result, rate: float, runs: list[list[float]]) -> Result:
    """Medians over the runs of each run's p50, p99, p99.9 and max, in milliseconds."""
    p50s, p99s, p999s, maxes = [], [], [], []
    for latencies in runs:
        latencies = sorted(latencies)
        result.messages = len(latencies)
        p50s.append(_quantile(latencies, 0.50) * 1e3)
        p99s.append(_quantile(latencies, 0.99) * 1e3)
        p999s.append(_quantile(latencies, 0.999) * 1e3)
        maxes.append(latencies[-1] * 1e3)
        result.rates.append(rate)
    result.extra = {
        "p50_ms": round(statistics.median(p50s), 3),
        "p99_ms": round(statistics.median(p99s), 3),
        "p99.9_ms": round(statistics.median(p999s), 3),
        "max_ms": round(statistics.median(maxes), 3),
        "runs_p99_ms": [round(v, 3) for v in p99s],
        "runs_max_ms": [round(v, 3) for v in maxes],
    }
    return result


def measure(
    frames: Sequence[str], rate: float, runs: int, *, child_server: bool = False
) -> list[Result]:
    """The default row (server in the client's loop); with ``child_server`` a second row, the
    server in a child process, each run of it right after one of the first."""
    in_loop: list[list[float]] = []
    in_child: list[list[float]] = []
    for _ in range(runs):
        gc.collect()
        in_loop.append(trio.run(run_latency, frames, rate))
        if child_server:
            child = start_child_server(frames, rate)
            gc.collect()
            in_child.append(trio.run(run_latency, frames, rate, child))
    results = [
        _summarise(Result(f"latency: ours, 3 listeners at {rate:,.0f} msg/s", [], 0), rate, in_loop)
    ]
    if child_server:
        name = f"latency, server in a child process: ours, 3 listeners at {rate:,.0f} msg/s"
        results.append(_summarise(Result(name, [], 0), rate, in_child))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument("--rate", type=float, default=5000.0, help="frames per second")
    parser.add_argument(
        "--latency-messages", type=int, default=25_000, help="frames per run (from the stream)"
    )
    parser.add_argument(
        "--child-server",
        action="store_true",
        help="also measure with the server in a child process (the client idles between frames)",
    )
    args = parser.parse_args(argv)
    frames = load_frames(args.stream or stream_path(args.messages, args.seed))
    frames = frames[: args.latency_messages]
    results = measure(frames, args.rate, args.runs, child_server=args.child_server)
    emit(results, args.json, "Latency (frame arrival -> listener)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
