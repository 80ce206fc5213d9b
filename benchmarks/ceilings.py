"""Ceilings: what parsing alone, and parsing plus storage, can do on the benchmark stream.

Theory of operation: no trio, no websocket, no listeners. ``parse`` is ``orjson.loads`` per frame;
``parse+store`` adds ``Storage.apply`` (a fresh ``Storage`` per run), the work no client can
avoid; ``decode+store`` uses the client's own ``decode_server_frame`` instead of bare
``orjson.loads``. The in-process pipeline is judged against ``parse+store``. Besides the wall-clock
rate, each path reports the median CPU time per message (``time.process_time``), which other
processes on a shared machine disturb less.

    python -m benchmarks.ceilings --messages 200000 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence

import orjson

from bitmex_trio_websocket import Storage
from bitmex_trio_websocket._protocol import TableMessage, decode_server_frame

from ._common import Result, add_common_arguments, emit, load_frames
from .gen_stream import stream_path

__all__ = ["main", "measure"]


def _parse(frames: Sequence[str]) -> None:
    loads = orjson.loads
    for frame in frames:
        loads(frame)


def _parse_store(frames: Sequence[str]) -> None:
    loads = orjson.loads
    apply = Storage().apply
    for frame in frames:
        apply(loads(frame))


def _decode_store(frames: Sequence[str]) -> None:
    apply = Storage().apply
    for frame in frames:
        event = decode_server_frame(frame)
        if isinstance(event, TableMessage):
            apply(event.message)


PATHS: dict[str, Callable[[Sequence[str]], None]] = {
    "ceiling: orjson parse": _parse,
    "ceiling: parse + Storage.apply": _parse_store,
    "ceiling: decode_server_frame + Storage.apply": _decode_store,
}


def measure(frames: Sequence[str], runs: int) -> list[Result]:
    results = {name: Result(name, [], len(frames)) for name in PATHS}
    cpu: dict[str, list[float]] = {name: [] for name in PATHS}
    for _ in range(runs):
        for name, path in PATHS.items():  # interleaved, so drift hits every path alike
            gc.collect()
            start_cpu = time.process_time()
            start = time.perf_counter()
            path(frames)
            results[name].rates.append(len(frames) / (time.perf_counter() - start))
            cpu[name].append((time.process_time() - start_cpu) / len(frames) * 1e6)
    for name, result in results.items():
        result.extra["cpu_us_per_msg"] = round(statistics.median(cpu[name]), 2)
    return list(results.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceilings", description=__doc__)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    frames = load_frames(args.stream or stream_path(args.messages, args.seed))
    emit(measure(frames, args.runs), args.json, "Ceilings (no trio, no websocket)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
