"""Replay throughput: a "day file" of Tardis slice lines through ``open_bitmex_replay``.

Theory of operation: the seeded benchmark stream (``gen_stream``: the emulator's market, ~93%
order-book deltas) is written once as a plain Tardis raw slice file (``<28-char timestamp>
<message>`` lines, the times spread over one day). Each run then measures, interleaved so drift
hits every path alike:

* ``orjson parse``: ``orjson.loads`` of every line's message, in memory (the ceiling);
* ``parse + Storage.apply``: the same plus a fresh ``Storage`` (the work no replay can avoid);
* ``read slices (iter_frames)``: reading the file into frames (the public iterator);
* ``read slices (iter_batches)``: the same in the replay's batches (text and time read lazily);
* ``open_bitmex_replay, topics, no listener``: the replay into the store, nobody taking rows;
* ``open_bitmex_replay, 3 listeners``: the whole replay from the file, with three ``listen``
  listeners (``orderBookL2``, ``trade``, ``instrument``) taking every row, as fast as they can;
* ``read slices, gzip (iter_batches)`` and ``open_bitmex_replay gzip, 3 listeners``: the same
  two from a gzip copy of the day file (level 6, as Tardis serves slices; written once, in
  ``cache_dir()``): what decompressing (on the replay's thread) adds;
* ``contract floor``: what the public contract alone makes any replay do after parsing, and
  nothing else: every ``instrument`` update merged into a new whole-row snapshot (``listen``
  yields "every updated row merged with its stored state", and "later messages never mutate
  it"), and every partial, insert and update row handed out by one of three bare async
  generators (``listen`` is an async generator). No validation, no book, no price order, no
  routing, no trio scheduling, no file: the texts are in memory, as for ``orjson parse``.

The replay's ratios to the first two are printed with its figures, and the floor's ratio to
orjson: no replay through this API can beat it, whatever its store costs; the gzip replay's
ratio to the plain one says what decompressing costs a replay.

    python -m benchmarks.replay --messages 200000 --runs 3
"""

from __future__ import annotations

import argparse
import datetime
import gc
import gzip
import hashlib
import os
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any, Final

import orjson
import trio

from bitmex_trio_websocket import BitMEXReplay, Storage, open_bitmex_replay
from bitmex_trio_websocket._replay import iter_frames
from bitmex_trio_websocket._replay._feeder import CHECKPOINT_EVERY
from bitmex_trio_websocket._replay._sources import FrameBatch, iter_batches

from ._common import BENCH_TABLES, Result, add_common_arguments, cache_dir, emit
from .gen_stream import generate

__all__ = ["day_file", "gzip_copy", "main", "measure", "write_day_file"]

DAY = 86_400.0


def _stamp(t: float) -> str:
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def write_day_file(path: str | os.PathLike[str], messages: int, seed: int = 1) -> None:
    """``messages`` frames of the seeded stream as Tardis slice lines over one day."""
    frames = generate(messages, seed, rate=max(1.0, messages / DAY))
    tmp = Path(f"{os.fspath(path)}.tmp")
    tmp.write_bytes(b"".join(f"{_stamp(t)} {text}\n".encode() for t, text in frames))
    tmp.replace(path)


def day_file(messages: int, seed: int = 1) -> Path:
    """The cached day file for ``(messages, seed)``, written on first use."""
    path = cache_dir() / f"day-{messages}-seed{seed}.json"
    if not path.exists():
        write_day_file(path, messages, seed)
    return path


def gzip_copy(path: Path) -> Path:
    """A gzip (level 6) copy of ``path`` in ``cache_dir()``, written once per version of it."""
    info = path.stat()
    key = f"{path.resolve()}:{info.st_size}:{info.st_mtime_ns}".encode()
    copy = cache_dir() / f"{path.name}-{hashlib.sha256(key).hexdigest()[:12]}.gz"
    if not copy.exists():
        tmp = copy.with_name(f"{copy.name}.tmp")
        tmp.write_bytes(gzip.compress(path.read_bytes(), compresslevel=6, mtime=0))
        tmp.replace(copy)
    return copy


def _messages_of(path: Path) -> list[str]:
    return [frame.text for frame in iter_frames(path)]


def _parse(path: Path, texts: Sequence[str]) -> int:
    loads = orjson.loads
    for text in texts:
        loads(text)
    return 0


def _parse_store(path: Path, texts: Sequence[str]) -> int:
    loads = orjson.loads
    apply = Storage().apply
    for text in texts:
        apply(loads(text))
    return 0


def _read(path: Path, texts: Sequence[str]) -> int:
    count = 0
    for _ in iter_frames(path):
        count += 1
    assert count == len(texts)
    return 0


def _batches(path: Path, texts: Sequence[str]) -> int:
    count = sum(len(batch) for batch in iter_batches(path) if type(batch) is FrameBatch)
    assert count == len(texts)
    return 0


def _topics(path: Path, texts: Sequence[str]) -> int:
    async def main() -> None:
        async with open_bitmex_replay(path, topics=list(BENCH_TABLES)) as bws:
            await bws.wait_finished()
            assert bws.stats.messages == len(texts)

    trio.run(main)
    return 0


def _replay(path: Path, texts: Sequence[str]) -> int:
    """The replay with three listeners; returns the rows they took."""
    counts = dict.fromkeys(BENCH_TABLES, 0)

    async def take(bws: BitMEXReplay, table: str) -> None:
        async with aclosing(bws.listen(table)) as rows:
            for_table = 0
            async for _ in rows:
                for_table += 1
            counts[table] = for_table

    async def main() -> None:
        async with open_bitmex_replay(path) as bws:
            async with trio.open_nursery() as nursery:
                for table in BENCH_TABLES:
                    nursery.start_soon(take, bws, table)
            assert bws.stats.messages == len(texts)

    trio.run(main)
    return sum(counts.values())


def _batches_gzip(path: Path, texts: Sequence[str]) -> int:
    return _batches(gzip_copy(path), texts)


def _replay_gzip(path: Path, texts: Sequence[str]) -> int:
    return _replay(gzip_copy(path), texts)


REPLAY: Final = "open_bitmex_replay, 3 listeners"
REPLAY_GZIP: Final = "open_bitmex_replay gzip, 3 listeners"
FLOOR: Final = "contract floor (parse, snapshots, 3 bare generators)"


def _floor(path: Path, texts: Sequence[str]) -> int:
    """The contract's own work after parsing (see the module docstring); returns rows taken."""
    loads = orjson.loads
    queues: dict[str, deque[Any]] = {table: deque() for table in BENCH_TABLES}
    instruments: dict[Any, dict[str, Any]] = {}

    async def bare(queue: deque[Any]) -> AsyncGenerator[Any, None]:
        while True:
            while queue:
                yield queue.popleft()
            yield None  # drained: back to the driver

    async def main() -> int:
        generators = [(bare(queue), queue) for queue in queues.values()]
        taken = 0

        async def drain() -> int:
            count = 0
            for generator, queue in generators:
                while queue:
                    await generator.__anext__()
                    count += 1
                await generator.__anext__()  # the None that says drained
            return count

        for index, text in enumerate(texts, 1):
            message = loads(text)
            table = message.get("table")
            action = message.get("action")
            if table not in queues or action == "delete":
                continue
            queue = queues[table]
            if table == "instrument":
                for row in message["data"]:
                    old = instruments.get(row["symbol"])
                    row = row if old is None or action == "partial" else {**old, **row}
                    instruments[row["symbol"]] = row
                    queue.append(row)
            else:
                queue.extend(message["data"])
            if index % CHECKPOINT_EVERY == 0:
                taken += await drain()
        taken += await drain()
        for generator, _ in generators:
            await generator.aclose()
        return taken

    return trio.run(main)


PATHS: dict[str, Callable[[Path, Sequence[str]], int]] = {
    "orjson parse": _parse,
    "parse + Storage.apply": _parse_store,
    "read slices (iter_frames)": _read,
    "read slices (iter_batches)": _batches,
    "read slices, gzip (iter_batches)": _batches_gzip,
    "open_bitmex_replay, topics, no listener": _topics,
    REPLAY: _replay,
    REPLAY_GZIP: _replay_gzip,
    FLOOR: _floor,
}


def measure(path: Path, runs: int) -> list[Result]:
    texts = _messages_of(path)
    gzip_copy(path)  # written before the clock starts
    results = {name: Result(name, [], len(texts)) for name in PATHS}
    rows: dict[str, int] = {}
    for _ in range(runs):
        for name, run in PATHS.items():
            gc.collect()
            start = time.perf_counter()
            rows[name] = run(path, texts)
            results[name].rates.append(len(texts) / (time.perf_counter() - start))
    replay = results[REPLAY]
    floor = results[FLOOR]
    replay.extra["rows_delivered"] = rows[REPLAY]
    assert rows[REPLAY_GZIP] == rows[REPLAY], (rows[REPLAY_GZIP], rows[REPLAY])
    results[REPLAY_GZIP].extra["ratio to the plain replay"] = round(
        results[REPLAY_GZIP].median / replay.median, 3
    )
    # The floor hands out exactly the rows the replay's listeners took, or it is no floor.
    assert rows[FLOOR] == rows[REPLAY], (rows[FLOOR], rows[REPLAY])
    for name in ("orjson parse", "parse + Storage.apply"):
        replay.extra[f"ratio to {name}"] = round(replay.median / results[name].median, 3)
    floor.extra["ratio to orjson parse"] = round(floor.median / results["orjson parse"].median, 3)
    return list(results.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    path = Path(args.stream) if args.stream else day_file(args.messages, args.seed)
    emit(measure(path, args.runs), args.json, f"Replay of a day file ({path.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
