"""Driver for the 2021 library's storage section, run INSIDE its own venv (see ``oldlib``).

Theory of operation: executed as a script by the throwaway venv's Python, importing nothing of
ours. The library's ``Storage`` is a slurry section: ``pump(input, output)`` reads parsed messages
from an async iterator and awaits ``output`` once per item it yields. Here the input yields the
stream's messages, parsed with ``orjson`` before the clock starts (as ``benchmarks.cores`` does
for ours), and the output does nothing. Prints one JSON object: rates and CPU us per message.

With ``--segment N`` it runs paired with ``benchmarks.cores``, which applies the same stream to our
stores segment by segment and wants this section timed on the same segments, alternating with
them, so that load on a shared machine hits both alike (it changes within seconds there). Per
run: the messages are parsed afresh (it mutates rows), then ``ready`` is printed; each ``go`` line
read on stdin lets the next ``N`` messages through the section, timed from the line to the moment
the section asks for the message after them (it has then handled the last), and ``<seconds>
<cpu seconds>`` is printed. Reading stdin blocks the one thread between segments, on purpose:
nothing of the section runs while ours does.

    /tmp/oldlib-venv/bin/python benchmarks/_oldlib_storage.py STREAM --runs 3
    /tmp/oldlib-venv/bin/python benchmarks/_oldlib_storage.py STREAM --runs 3 --segment 10000
"""

from __future__ import annotations

import argparse
import gc
import gzip
import importlib
import json
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import trio


def read_frames(stream: str) -> list[str]:
    """The server frames of a benchmark stream file (``gen_stream``'s recording, maybe gzip)."""
    opener: Any = gzip.open if stream.endswith(".gz") else open
    with opener(stream, "rt") as file:
        return [orjson.loads(line)["frame"] for line in file if line.strip()]


def table_messages(frames: list[str]) -> list[Any]:
    """The table messages, parsed afresh: the section mutates the rows it stores."""
    return [m for m in map(orjson.loads, frames) if "table" in m]


def storage_class() -> Any:
    """The 2021 library's ``Storage`` (the venv's own package of our name, hence importlib)."""
    return importlib.import_module("bitmex_trio_websocket.storage").Storage


async def _ignore(item: Any) -> None:
    pass


async def pump(storage: Any, messages: Iterable[Any]) -> None:
    """``messages`` through a fresh ``storage`` section, its output dropped."""

    async def source() -> Any:
        for message in messages:
            yield message

    await storage().pump(source(), _ignore)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stream")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--segment", type=int, default=0, help="paired with benchmarks.cores")
    args = parser.parse_args()
    frames = read_frames(args.stream)
    storage = storage_class()

    if args.segment > 0:
        return paired(storage, frames, args.runs, args.segment)

    rates: list[float] = []
    cpu: list[float] = []
    for _ in range(args.runs):
        messages = table_messages(frames)
        gc.collect()
        gc.freeze()  # the parsed stream is not the store's to scan (as in benchmarks.cores)
        start_cpu, start = time.process_time(), time.perf_counter()
        trio.run(pump, storage, messages)
        rates.append(len(messages) / (time.perf_counter() - start))
        cpu.append((time.process_time() - start_cpu) / len(messages) * 1e6)
        gc.unfreeze()
    print(
        json.dumps(
            {
                "path": "2021 library: storage section (Storage.pump)",
                "rates": rates,
                "messages": len(frames),
                "cpu_us_per_msg": round(statistics.median(cpu), 2),
            }
        )
    )
    return 0


def _segments(messages: list[Any], segment: int) -> Iterator[Any]:
    """``messages``, ``segment`` at a time on each ``go`` read, each timed (module docstring)."""
    for begin in range(0, len(messages), segment):
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("benchmarks.cores stopped asking")
        chunk = messages[begin : begin + segment]
        start_cpu, start = time.process_time(), time.perf_counter()
        yield from chunk
        # Resumed: the section has handled the segment's last message.
        elapsed = time.perf_counter() - start
        print(f"{elapsed} {time.process_time() - start_cpu}", flush=True)


def paired(storage: Any, frames: list[str], runs: int, segment: int) -> int:
    """Segment by segment on command from ``benchmarks.cores`` (see the module docstring)."""
    for _ in range(runs):
        messages = table_messages(frames)
        gc.collect()
        gc.freeze()
        print("ready", flush=True)
        trio.run(pump, storage, _segments(messages, segment))
        gc.unfreeze()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
