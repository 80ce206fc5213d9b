"""Latency at a fixed rate: frame arrival to listener receipt, p50/p99/max.

Theory of operation: a server task (``replay_server.serve_stream``) and the client share one process
and talk over a kernel socket pair. After the partials (sent unpaced and not measured) the server
writes the stream's deltas one frame per write at a fixed ``--rate`` (default 5,000 frames/s) and
notes ``perf_counter()`` just before each write: the frame's arrival. Three ``events()``
listeners (``orderBookL2``, ``trade``, ``instrument``) note when each ``Change`` reaches them. One
reader decodes frames in order and every delta frame here concerns one symbol, so a table's
changes match that table's frames one to one, in order (checked by action and row count).

    python -m benchmarks.latency --rate 5000 --latency-messages 25000 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import deque
from collections.abc import Sequence
from contextlib import aclosing

import orjson
import trio

from bitmex_trio_websocket import BitMEXWebsocket, Change, open_bitmex_websocket

from ._common import BENCH_TABLES, Result, add_common_arguments, emit, load_frames, text_frame
from .gen_stream import stream_path
from .replay_server import FakeBitMEX, encode_chunks, serve_stream

__all__ = ["main", "measure", "run_latency"]


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def run_latency(frames: Sequence[str], rate: float) -> list[float]:
    """One run: latency in seconds of every delta frame."""
    partials = [f for f in frames if '"action":"partial"' in f[:60]]
    deltas = [f for f in frames if '"action":"partial"' not in f[:60]]
    pending: dict[str, deque[tuple[int, str, int]]] = {t: deque() for t in BENCH_TABLES}
    for i, text in enumerate(deltas):
        message = orjson.loads(text)
        pending[message["table"]].append((i, message["action"], len(message["data"])))
    sent_at: list[float] = []
    latencies: list[float] = [0.0] * len(deltas)
    remaining = [len(deltas)]
    finished = trio.Event()
    server = FakeBitMEX(encode_chunks(partials), topics_needed=len(BENCH_TABLES))
    client_sock, server_sock = trio.socket.socketpair()
    client_stream = trio.SocketStream(client_sock)
    server_stream = trio.SocketStream(server_sock)
    encoded = [text_frame(text) for text in deltas]

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
                latencies[index] = now - sent_at[index]
                remaining[0] -= 1
                if not remaining[0]:
                    finished.set()

    async def connect() -> trio.abc.Stream:
        return client_stream

    try:
        async with trio.open_nursery() as outer:
            outer.start_soon(serve_stream, server_stream, server, encoded, rate, sent_at)
            async with open_bitmex_websocket("ws://bench.invalid/realtime", connect=connect) as bws:
                async with trio.open_nursery() as nursery:
                    for table in BENCH_TABLES:
                        nursery.start_soon(listener, bws, table)
                    with trio.fail_after(60 + 2 * len(deltas) / rate):
                        await finished.wait()
                    nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(server_stream)
        await trio.aclose_forcefully(client_stream)
    return latencies


def measure(frames: Sequence[str], rate: float, runs: int) -> list[Result]:
    result = Result(f"latency: ours, 3 listeners at {rate:,.0f} msg/s", [], 0)
    p50s, p99s, p999s, maxes = [], [], [], []
    for _ in range(runs):
        gc.collect()
        latencies = sorted(trio.run(run_latency, frames, rate))
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
    return [result]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument("--rate", type=float, default=5000.0, help="frames per second")
    parser.add_argument(
        "--latency-messages", type=int, default=25_000, help="frames per run (from the stream)"
    )
    args = parser.parse_args(argv)
    frames = load_frames(args.stream or stream_path(args.messages, args.seed))
    frames = frames[: args.latency_messages]
    emit(measure(frames, args.rate, args.runs), args.json, "Latency (frame arrival -> listener)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
