"""Where the in-process time goes: cProfile of one run, grouped by layer, plus the top entries.

Theory of operation: one in-process run (``benchmarks.inprocess``, three listeners) under
``cProfile``; every function's own time is attributed to a layer by the package or module it
lives in (trio's scheduler and channels, trio-websocket and wsproto, ``_storage``, decoding,
``_websocket``, the rest of the client: session, routing, listeners) and the layers are printed
with their share, then the top entries by own time. Profiling slows everything down several
times, and not evenly: use it for shares, not rates.

    python -m benchmarks.profile --messages 50000 --top 20
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from collections.abc import Sequence

import trio

from ._common import BENCH_TABLES, load_frames
from .gen_stream import stream_path
from .inprocess import expected_rows, run_client
from .replay_server import encode_chunks

__all__ = ["layer", "main"]


def layer(filename: str, function: str) -> str:
    """The layer a profiled function belongs to (by the package or module it lives in)."""
    path = filename.replace("\\", "/")
    # The compiled core's methods have no file: cProfile names them "<method 'apply' of
    # 'Storage' objects>" under "~".
    compiled = path == "~" and "of 'Storage' objects" in function
    if compiled or "bitmex_trio_websocket/_storage/" in path or "sortedcontainers" in path:
        return "storage (Storage.apply, SortedDict)"
    if "bitmex_trio_websocket/_websocket/" in path:
        return "transport (_websocket)"
    if "bitmex_trio_websocket/_protocol.py" in path or "orjson" in function:
        return "decode (decode_server_frame, orjson)"
    if "bitmex_trio_websocket/" in path and "/emulator/" not in path:
        return "client (session, routing, listen)"
    if "wsproto" in path or "site-packages/trio_websocket" in path:
        return "trio-websocket + wsproto"
    if "/trio/" in path or "outcome" in path:
        return "trio scheduler + channels"
    if "benchmarks" in path:
        return "benchmark transport + listeners"
    return "other (builtins)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stream", default=None)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    frames = load_frames(args.stream or stream_path(args.messages, args.seed))
    chunks = encode_chunks(frames)
    expected = expected_rows(frames)
    profiler = cProfile.Profile()
    profiler.runcall(trio.run, run_client, chunks, len(frames), BENCH_TABLES, expected)
    stats = pstats.Stats(profiler)
    layers: dict[str, float] = {}
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = stats.stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, own, _, _) in raw.items():
        name = layer(filename, function)
        layers[name] = layers.get(name, 0.0) + own
    total = sum(layers.values())
    print(f"client: {len(frames):,} frames, {total:.2f} s profiled\n")
    for name, seconds in sorted(layers.items(), key=lambda item: -item[1]):
        print(f"  {name:<40} {seconds:7.2f} s {100 * seconds / total:5.1f}%")
    print()
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
