"""A deep book: inserts and deletes near the top of a 20,000-level ``orderBookL2`` book.

Theory of operation: the benchmark stream's books have a few hundred levels a side, while a
full XBTUSD book held thousands (a capture in ../shared/captures has a 9,346-row partial), and
most of its churn is near the best price. This module applies ``benchmarks.memory``'s seeded
``--levels`` partial (half bids, half asks, 0.5 ticks), then times ``--messages`` one-row
messages built beforehand: a new level inserted within ``--near`` ticks of the best on either
side, later deleted (so the depth stays put), and every tenth level placed anywhere in the book
(deep churn, the index's worst case). Each available core (pure Python, compiled) applies the
same messages to its own freshly filled store, interleaved per run; CPU time per message is
``time.process_time`` (less disturbed by other processes on a shared machine).

    python -m benchmarks.deep_book --levels 20000 --messages 100000 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

import orjson

from . import cores, memory
from ._common import Result, emit

__all__ = ["churn", "main", "measure"]


def churn(levels: int, messages: int, near: int, seed: int = 1) -> list[dict[str, Any]]:
    """``messages`` one-row inserts and deletes against ``memory.book_frames(levels)``'s book."""
    rng = random.Random(seed)
    half = levels // 2
    live: list[tuple[int, str, float]] = []
    out: list[dict[str, Any]] = []
    next_id = 10**12
    for n in range(messages):
        if live and (n % 2 or len(live) > 64):
            level_id, side, price = live.pop(rng.randrange(len(live)))
            row = {"symbol": memory.SYMBOL, "id": level_id, "side": side, "price": price}
            out.append({"table": "orderBookL2", "action": "delete", "data": [row]})
            continue
        buy = rng.random() < 0.5
        ticks = rng.randrange(1, half) if n % 10 == 0 else rng.randrange(1, near + 1)
        # Between existing levels (quarter ticks): a new price, never one already held.
        offset = 0.5 * ticks - 0.25
        price = 100_000.0 - offset if buy else 100_000.0 + offset
        side = "Buy" if buy else "Sell"
        next_id += 1
        ts = f"2025-01-01T00:00:{n // 1000 % 60:02d}.{n % 1000:03d}Z"
        row = {
            "symbol": memory.SYMBOL, "id": next_id, "side": side, "size": 100 * (n % 50 + 1),
            "price": price, "timestamp": ts, "transactTime": ts,
        }  # fmt: skip
        live.append((next_id, side, price))
        out.append({"table": "orderBookL2", "action": "insert", "data": [row]})
    return out


def measure(levels: int, messages: int, near: int, runs: int) -> list[Result]:
    partial_text, _ = memory.book_frames(levels)
    partial = orjson.loads(partial_text)
    stream = churn(levels, messages, near)
    factories = cores.cores()
    results = {name: Result(f"{name}: deep book", [], messages) for name in factories}
    cpu: dict[str, list[float]] = {name: [] for name in factories}
    for _ in range(runs):
        for name, factory in factories.items():
            storage = factory()
            storage.apply(partial)
            apply = storage.apply
            gc.collect()
            wall, used = time.perf_counter(), time.process_time()
            for message in stream:
                apply(message)
            used = time.process_time() - used
            results[name].rates.append(messages / (time.perf_counter() - wall))
            cpu[name].append(used / messages * 1e6)
            book = storage.book(memory.SYMBOL)
            assert len(book.bids) + len(book.asks) == levels + _held(stream)
    for name, result in results.items():
        result.extra["cpu_us_per_msg"] = round(statistics.median(cpu[name]), 2)
        result.extra["levels"] = levels
    return list(results.values())


def _held(stream: list[dict[str, Any]]) -> int:
    """Levels the churn leaves in the book (inserted and not deleted)."""
    inserted = sum(1 for m in stream if m["action"] == "insert")
    return inserted - (len(stream) - inserted)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.deep_book", description=__doc__)
    parser.add_argument("--levels", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--near", type=int, default=50, help="ticks from the best, most churn")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    emit(measure(args.levels, args.messages, args.near, args.runs), args.json, "Deep book churn")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
