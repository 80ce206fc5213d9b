"""A bare replay server: pre-encoded frames over TCP as fast as the client reads them.

Theory of operation: the transport ceiling of a websocket *client* is only visible when the server
costs next to nothing. This server (one process, trio) accepts connections one after another on
127.0.0.1, answers the handshake, the welcome and the subscriptions (see ``_fakeserver``) and,
once three topics are subscribed, writes the whole stream, encoded once at start-up into 64 KiB
chunks of whole websocket frames, with one ``send_all`` per chunk. The emulator does the same
work live (merges topics, queues, encodes, writes each queued batch at once), so it costs more
per frame, though far less than a client reading it. Prints its URL as the first stdout line;
runs until terminated.

    python -m benchmarks.replay_server --stream stream.jsonl.gz
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from functools import partial

import trio

from ._common import BENCH_TABLES, load_frames
from ._fakeserver import FakeBitMEX, encode_chunks, serve_stream

__all__ = ["main", "serve"]


async def _connection(chunks: list[bytes], stream: trio.SocketStream) -> None:
    server = FakeBitMEX(chunks, topics_needed=len(BENCH_TABLES))
    try:
        await serve_stream(stream, server)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def serve(stream_file: str, port: int) -> None:
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
