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
from typing import Any

import orjson
import trio


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stream")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--segment", type=int, default=0, help="paired with benchmarks.cores")
    args = parser.parse_args()
    opener: Any = gzip.open if args.stream.endswith(".gz") else open
    with opener(args.stream, "rt") as file:
        frames = [orjson.loads(line)["frame"] for line in file if line.strip()]
    # The 2021 library's (the venv's own package of the same name as ours, hence importlib).
    storage_class: Any = importlib.import_module("bitmex_trio_websocket.storage").Storage

    if args.segment > 0:
        return paired(storage_class, frames, args.runs, args.segment)

    rates: list[float] = []
    cpu: list[float] = []
    for _ in range(args.runs):
        messages = [m for m in map(orjson.loads, frames) if "table" in m]  # it mutates rows
        gc.collect()
        gc.freeze()  # the parsed stream is not the store's to scan (as in benchmarks.cores)

        async def source(messages: list[Any] = messages) -> Any:
            for message in messages:
                yield message

        async def output(item: Any) -> None:
            pass

        async def run() -> None:
            await storage_class().pump(source(), output)

        start_cpu, start = time.process_time(), time.perf_counter()
        trio.run(run)
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


def paired(storage_class: Any, frames: list[Any], runs: int, segment: int) -> int:
    """Segment by segment on command from ``benchmarks.cores`` (see the module docstring)."""
    for _ in range(runs):
        messages = [m for m in map(orjson.loads, frames) if "table" in m]
        gc.collect()
        gc.freeze()

        async def source(messages: list[Any] = messages) -> Any:
            for begin in range(0, len(messages), segment):
                if sys.stdin.readline().strip() != "go":
                    raise SystemExit("benchmarks.cores stopped asking")
                chunk = messages[begin : begin + segment]
                start_cpu, start = time.process_time(), time.perf_counter()
                for message in chunk:
                    yield message
                # Resumed: the section has handled the segment's last message.
                elapsed = time.perf_counter() - start
                print(f"{elapsed} {time.process_time() - start_cpu}", flush=True)

        async def output(item: Any) -> None:
            pass

        async def run() -> None:
            await storage_class().pump(source(), output)

        print("ready", flush=True)
        trio.run(run)
        gc.unfreeze()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
