"""Driver for the 2021 library (bitmex-trio-websocket 0.16.1), run INSIDE its own venv.

Theory of operation: this file is executed as a script by the throwaway venv's Python (trio 0.21,
slurry), never imported by the benchmarks themselves, and imports nothing of ours (the old
package has the same name). It drives the library through its public ``open_bitmex_websocket``
and ``listen`` with three listeners; only the websocket section is swapped:

* ``inprocess``: the slurry ``Websocket`` section is replaced by a section that outputs the
  stream's frames, parsed with ``orjson.loads`` exactly as that section does, once the three
  listeners have subscribed (after a welcome, so the library considers itself connected);
* ``loopback``: the section is the library's own, pointed at the emulator's URL instead of
  BitMEX (the library only knows mainnet and testnet).

The clock runs from the first frame (in-process) or the first subscription (loopback) until every
listener has received every item the library yields for the stream (one per row; one per
``orderBookL2`` partial). Prints one JSON object per mode on stdout.

    /tmp/oldlib-venv/bin/python benchmarks/_oldlib_driver.py inprocess STREAM --runs 3
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import resource
import statistics
import time
from collections import Counter
from typing import Any

import orjson
import trio

TABLES = ("orderBookL2", "trade", "instrument")
WELCOME = {"info": "Welcome to the BitMEX Realtime API.", "version": "2.0.0"}
TIMEOUT = 1800.0


def load(path: str) -> list[str]:
    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as lines:
        rows = [orjson.loads(line) for line in lines if line.strip()]
    return [row["frame"] for row in rows if row.get("dir") == "recv"]


def expected_items(frames: list[str]) -> Counter[str]:
    """Items the 2021 library's ``listen(table)`` yields for these frames."""
    counts: Counter[str] = Counter()
    for text in frames:
        message = orjson.loads(text)
        table, rows = message["table"], message["data"]
        partial_book = message["action"] == "partial" and table == "orderBookL2"
        counts[table] += 1 if partial_book else len(rows)
    return counts


class _Gate:
    """Frames start once every listener has tapped the pipeline."""

    def __init__(self) -> None:
        self.open = trio.Event()
        self.first_frame_at = 0.0


def _replay_section(frames: list[str], gate: _Gate) -> Any:
    section_abc = importlib.import_module("slurry.sections.abc")

    class ReplayWebsocket(section_abc.Section):  # type: ignore[misc, name-defined]
        closed = None

        def __init__(self, url: str, extra_headers: Any = None) -> None:
            super().__init__()

        async def pump(self, input: Any, output: Any) -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, input)
                await output(WELCOME)
                await gate.open.wait()
                loads = orjson.loads
                gate.first_frame_at = time.perf_counter()
                for frame in frames:
                    await output(loads(frame))
                await trio.sleep_forever()

        async def _drain(self, input: Any) -> None:
            async for _ in input:  # the subscribe commands: nobody to send them to
                pass

    return ReplayWebsocket


async def run_once(mode: str, frames: list[str], url: str, expected: Counter[str]) -> float:
    websocket_module: Any = importlib.import_module("bitmex_trio_websocket.websocket")
    slurry_ws: Any = importlib.import_module("slurry_websocket")
    gate = _Gate()
    if mode == "inprocess":
        websocket_module.Websocket = _replay_section(frames, gate)
    else:

        def to_emulator(_url: str, extra_headers: Any = None) -> Any:
            return slurry_ws.Websocket(url, extra_headers=extra_headers)

        websocket_module.Websocket = to_emulator
    done = {table: trio.Event() for table in TABLES}
    counts: Counter[str] = Counter()

    async def listener(bws: Any, table: str) -> None:
        n = 0
        async for _ in bws.listen(table):
            n += 1
            counts[table] = n
            if n == expected[table]:
                done[table].set()

    async with websocket_module.open_bitmex_websocket("mainnet") as bws:
        async with trio.open_nursery() as nursery:
            start = time.perf_counter()
            for table in TABLES:
                nursery.start_soon(listener, bws, table)
            # Taps are the library's internals: nothing to wait on but their number.
            while len(bws._pipeline._taps) < len(TABLES):  # noqa: ASYNC110
                await trio.sleep(0.001)
            gate.open.set()
            with trio.move_on_after(TIMEOUT) as scope:
                for event in done.values():
                    await event.wait()
            end = time.perf_counter()
            if scope.cancelled_caught:
                raise RuntimeError(f"timed out: {dict(counts)} of {dict(expected)}")
            nursery.cancel_scope.cancel()
    if mode == "inprocess":
        start = gate.first_frame_at
    return len(frames) / (end - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["inprocess", "loopback"])
    parser.add_argument("stream")
    parser.add_argument("--url", default="")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    frames = load(args.stream)
    expected = expected_items(frames)
    rates = [trio.run(run_once, args.mode, frames, args.url, expected) for _ in range(args.runs)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    label = "in-process" if args.mode == "inprocess" else "loopback"
    result = {
        "path": f"{label}: 2021 library, 3 listeners",
        "rates": rates,
        "messages": len(frames),
        "peak_rss_mib": peak,
        "extra": {},
        "median": statistics.median(rates),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
