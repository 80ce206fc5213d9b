"""Loopback end to end: the emulator replays the stream from another process over TCP.

Theory of operation: ``python -m bitmex_trio_websocket emulator --replay STREAM --port 0`` runs
as a child process (its first stdout line is its URL) and replays the recording to every
connection as fast as that connection reads, writing whatever frames are queued in one batch.
The same is repeated with ``benchmarks.replay_server`` (pre-encoded frames, 64 KiB per write),
which costs next to nothing and so shows the clients' own limits. In the same run, alternating,
two clients read the same frames from each server: ours with three listeners
(``orderBookL2``, ``trade``, ``instrument``), and the ceiling, a bare trio-websocket client (same
64 KiB receive buffer) that subscribes to the same topics and only receives and parses each frame
with ``orjson``. With ``--oldlib`` the 2021 library (see ``benchmarks.oldlib``) reads them too.
The clock runs from the subscription until the last row (ours, 2021) or the last frame (bare) has
arrived. With ``--capacity`` a third reader, a frame counter (blocking socket, frame headers
parsed, payloads skipped, a few microseconds per frame), shows what each server can serve when
the client is not the bottleneck. The servers are terminated on the way out, whatever happens.

    python -m benchmarks.loopback --messages 200000 --runs 3 --oldlib
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import trio
import trio_websocket

from bitmex_trio_websocket import open_bitmex_websocket

from . import oldlib
from ._common import BENCH_TABLES, Result, add_common_arguments, emit, load_frames
from .gen_stream import stream_path
from .inprocess import consume, expected_rows

__all__ = ["SERVERS", "main", "measure", "run_bare", "run_ours", "server_process"]

TIMEOUT = 900.0
RECEIVE_BUFFER = 64 * 1024
MAX_MESSAGE = 64 * 1024 * 1024


SERVERS = ("emulator", "raw")


@contextmanager
def server_process(kind: str, stream: Path) -> Iterator[str]:
    """Run the replaying server (``emulator`` or ``raw``) in a child process; yields its URL."""
    if kind == "emulator":
        command = [sys.executable, "-m", "bitmex_trio_websocket", "emulator"]
        command += ["--replay", str(stream), "--replay-mode", "session", "--port", "0"]
    else:
        command = [sys.executable, "-m", "benchmarks.replay_server", "--stream", str(stream)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("ws://"):
            raise RuntimeError(f"{kind} server did not start (exit status {process.poll()})")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def run_ours(url: str, n_frames: int, expected: Counter[str]) -> float:
    done = {table: trio.Event() for table in BENCH_TABLES}
    received: Counter[str] = Counter()
    async with open_bitmex_websocket(url) as bws:
        async with trio.open_nursery() as nursery:
            start = time.perf_counter()
            for table in BENCH_TABLES:
                nursery.start_soon(consume, bws, table, expected[table], done[table], received)
            with trio.move_on_after(TIMEOUT) as scope:
                for event in done.values():
                    await event.wait()
            end = time.perf_counter()
            nursery.cancel_scope.cancel()
        if scope.cancelled_caught or bws.stats.resyncs or bws.stats.violations:
            raise RuntimeError(f"loopback run went wrong: {dict(received)} {bws.stats}")
    return n_frames / (end - start)


async def run_bare(url: str, n_frames: int) -> float:
    loads = orjson.loads
    async with trio_websocket.open_websocket_url(
        url, max_message_size=MAX_MESSAGE, receive_buffer_size=RECEIVE_BUFFER
    ) as ws:
        await ws.get_message()  # welcome
        start = time.perf_counter()
        await ws.send_message(orjson.dumps({"op": "subscribe", "args": BENCH_TABLES}).decode())
        n = 0
        with trio.fail_after(TIMEOUT):
            while n < n_frames:
                message = loads(await ws.get_message())
                n += "table" in message
        end = time.perf_counter()
    return n_frames / (end - start)


def _read_frame(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """Next server frame as ``(opcode, first bytes of the payload)``; ``buffer`` keeps the rest."""
    while True:
        if len(buffer) >= 2:
            size, start = buffer[1] & 0x7F, 2
            if size >= 126:  # a 16- or 64-bit length follows
                start = 4 if size == 126 else 10
                size = int.from_bytes(buffer[2:start]) if len(buffer) >= start else -1
            if size >= 0 and len(buffer) >= start + size:
                opcode, head = buffer[0] & 0x0F, bytes(buffer[start : start + 16])
                del buffer[: start + size]
                return opcode, head
        chunk = sock.recv(RECEIVE_BUFFER)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk


def run_counter(url: str, n_frames: int) -> float:
    """Read the stream counting table frames without decoding them: the server's capacity."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request.encode())
        buffer = bytearray()
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(RECEIVE_BUFFER)
            if not chunk:
                raise ConnectionError("handshake failed")
            buffer += chunk
        response, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        if b" 101 " not in response.split(b"\r\n", 1)[0]:
            raise ConnectionError(response.decode(errors="replace"))
        buffer = bytearray(rest)
        _read_frame(sock, buffer)  # welcome
        start = time.perf_counter()
        payload = orjson.dumps({"op": "subscribe", "args": BENCH_TABLES})
        # A masked client frame; the all-zero mask leaves the payload as it is.
        assert len(payload) < 126
        sock.sendall(bytes((0x81, 0x80 | len(payload))) + bytes(4) + payload)
        n = 0
        while n < n_frames:
            opcode, head = _read_frame(sock, buffer)
            n += opcode == 1 and head.startswith(b'{"table"')
        end = time.perf_counter()
    return n_frames / (end - start)


def measure(
    stream: Path,
    frames: Sequence[str],
    runs: int,
    servers: Sequence[str] = SERVERS,
    oldlib_runs: int = 0,
    oldlib_servers: Sequence[str] = ("emulator",),
    capacity: bool = False,
) -> list[Result]:
    """Per server: the bare ceiling and ours alternating ``runs`` times (with ``capacity``, the
    frame counter too), then (on ``oldlib_servers``) the 2021 library ``oldlib_runs`` times (0:
    not at all). The 2021 library is far slower than either server, so by default it only reads
    from the emulator."""
    expected = expected_rows(frames)
    results: list[Result] = []
    for kind in servers:
        bare = Result(f"loopback/{kind}: bare trio-websocket (ceiling)", [], len(frames))
        ours = Result(f"loopback/{kind}: ours, 3 listeners", [], len(frames))
        results += [bare, ours]
        counter = Result(f"loopback/{kind}: frame counter (server capacity)", [], len(frames))
        if capacity:
            results.append(counter)
        with server_process(kind, stream) as url:
            for _ in range(runs):
                gc.collect()
                bare.rates.append(trio.run(run_bare, url, len(frames)))
                gc.collect()
                ours.rates.append(trio.run(run_ours, url, len(frames), expected))
                if capacity:
                    gc.collect()
                    counter.rates.append(run_counter(url, len(frames)))
            if oldlib_runs and kind in oldlib_servers:
                old = oldlib.run_driver("loopback", stream, oldlib_runs, url)
                old.path = f"loopback/{kind}: 2021 library, 3 listeners"
                results.append(old)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loopback", description=__doc__)
    add_common_arguments(parser)
    parser.add_argument("--oldlib", action="store_true", help="also run the 2021 library")
    parser.add_argument("--oldlib-runs", type=int, default=None, help="default: --runs")
    parser.add_argument(
        "--oldlib-servers", default="emulator", help="comma-separated: emulator,raw"
    )
    parser.add_argument("--server", choices=[*SERVERS, "both"], default="both")
    parser.add_argument(
        "--capacity", action="store_true", help="also read with a frame counter (server-bound)"
    )
    args = parser.parse_args(argv)
    stream = Path(args.stream) if args.stream else stream_path(args.messages, args.seed)
    frames = load_frames(stream)
    servers = SERVERS if args.server == "both" else (args.server,)
    old_runs = args.runs if args.oldlib_runs is None else args.oldlib_runs
    old_servers = [s for s in args.oldlib_servers.split(",") if s]
    results = measure(
        stream,
        frames,
        args.runs,
        servers,
        old_runs if args.oldlib else 0,
        old_servers,
        capacity=args.capacity,
    )
    emit(results, args.json, "Loopback end to end (server in another process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
