"""Memory: bytes per stored order-book level, for one 20,000-level ``orderBookL2`` book.

Theory of operation: a seeded partial of ``--levels`` levels for one symbol (half bids, half
asks; opaque 11-digit ids, prices on a 0.5 tick, lot-sized sizes, each level with its own
millisecond timestamp as BitMEX sends them) is encoded as a frame. With ``tracemalloc`` running,
the frame is decoded and applied to a fresh ``Storage`` as the client does, every reference but
the store's is dropped, and what is still allocated, divided by the number of levels, is the
cost of one stored level (level records, indexes, everything). The peak during the apply is
reported too. Then the book is churned with ``--levels`` updates (new size and timestamps for a
random level each) and measured again, since updates replace stored values.

    python -m benchmarks.memory --levels 20000
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import random
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from bitmex_trio_websocket import Storage
from bitmex_trio_websocket._protocol import TableMessage, decode_server_frame

from ._common import Result, emit

__all__ = ["book_frames", "main", "measure"]

SYMBOL = "XBTUSD"


def _ts(ms: int) -> str:
    when = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def book_frames(levels: int, seed: int = 1) -> tuple[str, list[str]]:
    """A partial with ``levels`` levels, and ``levels`` single-row size updates of it."""
    rng = random.Random(seed)
    start_ms = 1_735_689_600_000
    rows: list[dict[str, Any]] = []
    ids = rng.sample(range(10**10, 10**11), levels)
    half = levels // 2
    for n, level_id in enumerate(ids):
        buy = n >= half
        tick = (n - half + 1) if buy else (half - n)  # asks high to low, then bids high to low
        price = 100_000.0 - 0.5 * tick if buy else 100_000.0 + 0.5 * tick
        ts = _ts(start_ms - rng.randrange(86_400_000))
        rows.append(
            {
                "symbol": SYMBOL, "id": level_id, "side": "Buy" if buy else "Sell",
                "size": 100 * rng.randrange(1, 5000), "price": price, "timestamp": ts,
                "transactTime": ts,
            }
        )  # fmt: skip
    partial = {
        "table": "orderBookL2", "action": "partial", "keys": ["symbol", "id", "side"],
        "types": {}, "foreignKeys": {}, "attributes": {}, "filter": {"symbol": SYMBOL},
        "data": rows,
    }  # fmt: skip
    updates = []
    for n in range(levels):
        row = rows[rng.randrange(levels)]
        ts = _ts(start_ms + n)
        update = {
            "symbol": SYMBOL, "id": row["id"], "side": row["side"],
            "size": 100 * rng.randrange(1, 5000), "price": row["price"], "timestamp": ts,
            "transactTime": ts,
        }  # fmt: skip
        updates.append(orjson.dumps({"table": "orderBookL2", "action": "update", "data": [update]}))
    return orjson.dumps(partial).decode(), [u.decode() for u in updates]


def _apply(storage: Storage, frame: str) -> None:
    event = decode_server_frame(frame)
    assert isinstance(event, TableMessage)
    result = storage.apply(event.message)
    assert not result.violations and not result.dropped


def measure(levels: int, factory: Callable[[], Storage] = Storage) -> list[Result]:
    """Bytes per level of a ``factory()`` store (``benchmarks.cores`` passes each core's)."""
    partial, updates = book_frames(levels)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        storage = factory()
        _apply(storage, partial)
        gc.collect()
        after_partial, peak = tracemalloc.get_traced_memory()
        for frame in updates:
            _apply(storage, frame)
        gc.collect()
        after_updates = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    book = storage.book(SYMBOL)
    stored = len(book.bids) + len(book.asks)
    assert stored == levels, stored
    per_level = (after_partial - base) / levels
    result = Result(f"memory: {levels:,}-level book", [], levels)
    result.extra = {
        "bytes_per_level": round(per_level, 1),
        "bytes_per_level_after_updates": round((after_updates - base) / levels, 1),
        "stored_bytes": after_partial - base,
        "peak_bytes_during_partial": peak - base,
        "frame_bytes": len(partial),
    }
    return [result]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--levels", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = measure(args.levels)
    if args.json:
        emit(results, True, "")
    else:
        print(json.dumps(results[0].extra, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
