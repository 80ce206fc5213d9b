"""Soak: the emulator's market runs for a long time with one client; memory must stay flat.

One process runs a TCP emulator (real loopback sockets, real clock) and an authenticated client
with the dead man's switch, listening to order books, trades, quotes, instruments and the private
tables. Every ``--interval`` seconds it prints the messages processed so far, rows delivered to
listeners, the store's size, Python heap in use (tracemalloc) and the process RSS. Optionally the
emulator drops the connection every ``--drop-every`` seconds, so reconnect, resubscribe and resync
paths are soaked too.

At the end it compares the heap after warm-up (the first sample) with the last sample and lists
the allocation sites that grew most, so that a leak names its line. Exit status 0 when memory
stayed flat (growth below ``--max-growth-mb``), 1 otherwise. Its small version (in memory, on a
virtual clock) runs in the test suite (``tests/client/test_limits.py``).

    python -m stress.soak --minutes 30
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

import trio

from bitmex_trio_websocket import BitMEXWebsocket, Storage, open_bitmex_websocket
from bitmex_trio_websocket.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, open_emulator

TOPICS: tuple[tuple[str, str | None], ...] = (
    ("orderBookL2", None),
    ("trade", None),
    ("quote", None),
    ("instrument", None),
    ("order", None),
    ("position", None),
    ("execution", None),
)
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Sample:
    elapsed: float
    messages: int
    rows: int
    stored_rows: int
    heap_mib: float
    rss_mib: float
    reconnects: int
    resyncs: int

    def line(self) -> str:
        return (
            f"{self.elapsed / 60:7.2f} min  messages {self.messages:>10}  rows {self.rows:>10}  "
            f"stored {self.stored_rows:>6}  heap {self.heap_mib:7.2f} MiB  "
            f"rss {self.rss_mib:7.1f} MiB  reconnects {self.reconnects}  resyncs {self.resyncs}"
        )


@dataclass
class SoakReport:
    samples: list[Sample] = field(default_factory=list)
    rows_by_table: Counter[str] = field(default_factory=Counter)
    top_growth: list[str] = field(default_factory=list)
    drops: int = 0

    @property
    def growth_mib(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        return self.samples[-1].heap_mib - self.samples[0].heap_mib

    @property
    def rss_growth_mib(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        return self.samples[-1].rss_mib - self.samples[0].rss_mib

    def summary(self) -> str:
        if not self.samples:
            return "no samples"
        first, last = self.samples[0], self.samples[-1]
        middle = self.samples[len(self.samples) // 2]
        rate = last.messages / last.elapsed if last.elapsed else 0.0
        return "\n".join(
            [
                f"duration: {last.elapsed / 60:.1f} min, messages processed: {last.messages} "
                f"({rate:.0f}/s), rows delivered: {last.rows}, drops injected: {self.drops}",
                f"rows by table: {dict(sorted(self.rows_by_table.items()))}",
                (
                    f"heap (tracemalloc) start/middle/end: {first.heap_mib:.2f} / "
                    f"{middle.heap_mib:.2f} / {last.heap_mib:.2f} MiB "
                    f"(growth {self.growth_mib:+.2f} MiB)"
                    if last.heap_mib
                    else "heap: not traced (--no-tracemalloc)"
                ),
                f"rss start/middle/end: {first.rss_mib:.1f} / {middle.rss_mib:.1f} / "
                f"{last.rss_mib:.1f} MiB",
                "largest heap growth since the first sample, by line:",
                *self.top_growth,
            ]
        )


def rss_mib() -> float:
    """Resident set size of this process (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stored_rows(storage: Storage) -> int:
    total = 0
    for table, store in storage.data.items():
        if table in ("orderBookL2", "orderBookL2_25"):
            total += sum(len(sides["Buy"]) + len(sides["Sell"]) for sides in store.values())
        else:
            total += len(store)
    return total


async def _consume(
    bws: BitMEXWebsocket, table: str, symbol: str | None, report: SoakReport
) -> None:
    async with aclosing(bws.listen(table, symbol)) as rows:
        async for _ in rows:
            report.rows_by_table[table] += 1


async def run_soak(
    seconds: float,
    *,
    interval: float = 60.0,
    rate: float = 100.0,
    seed: int = 1,
    drop_every: float = 0.0,
    echo: bool = True,
    in_memory: bool = False,
) -> SoakReport:
    """Run the soak for ``seconds`` (trio's clock); samples every ``interval`` seconds.

    ``in_memory`` skips TCP (the test suite runs it on a virtual clock)."""
    report = SoakReport()
    started = trio.current_time()
    snapshot: tracemalloc.Snapshot | None = None

    def sample(bws: BitMEXWebsocket) -> None:
        nonlocal snapshot
        gc.collect()
        heap, _ = tracemalloc.get_traced_memory()  # 0 when not tracing
        point = Sample(
            trio.current_time() - started,
            bws.stats.messages,
            sum(report.rows_by_table.values()),
            stored_rows(bws.storage),
            heap / MIB,
            rss_mib(),
            bws.stats.reconnects,
            bws.stats.resyncs,
        )
        report.samples.append(point)
        if snapshot is None and tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot()
        if echo:
            print(point.line(), flush=True)

    async with open_emulator(seed=seed, rate=rate, listen=not in_memory) as emulator:
        async with open_bitmex_websocket(
            "ws://emulator/realtime" if in_memory else emulator.url,
            DEFAULT_API_KEY,
            DEFAULT_API_SECRET,
            dead_mans_switch=True,
            connect=emulator.connect_in_memory if in_memory else None,
        ) as bws:
            async with trio.open_nursery() as nursery:
                for table, symbol in TOPICS:
                    nursery.start_soon(_consume, bws, table, symbol, report)
                deadline = trio.current_time() + seconds
                next_drop = trio.current_time() + drop_every if drop_every > 0 else math.inf
                # Warm up: books, orders and buffers reach their working size first.
                await trio.sleep(min(interval, seconds / 10))
                sample(bws)
                next_sample = trio.current_time() + interval
                while trio.current_time() < deadline:
                    await trio.sleep_until(min(next_sample, deadline, next_drop))
                    now = trio.current_time()
                    if now >= next_sample and now < deadline:
                        sample(bws)
                        next_sample += interval
                    if now >= next_drop:
                        next_drop += drop_every
                        for connection in list(emulator.connections):
                            await connection.drop()
                            report.drops += 1
                sample(bws)
                nursery.cancel_scope.cancel()
    if snapshot is not None:
        gc.collect()
        growth = tracemalloc.take_snapshot().compare_to(snapshot, "lineno")
        report.top_growth = [f"  {stat}" for stat in growth if stat.size_diff > 0][:8]
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stress.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="duration (default 30)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=100.0, help="market events per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--drop-every", type=float, default=300.0, help="drop the connection every S s (0: never)"
    )
    parser.add_argument(
        "--max-growth-mb", type=float, default=4.0, help="heap growth that fails the soak"
    )
    parser.add_argument(
        "--no-tracemalloc",
        action="store_true",
        help="do not trace the heap (full speed; judge by RSS, --max-rss-growth-mb)",
    )
    parser.add_argument("--max-rss-growth-mb", type=float, default=16.0)
    args = parser.parse_args(argv)
    if not args.no_tracemalloc:
        tracemalloc.start()
    report = trio.run(
        lambda: run_soak(
            args.minutes * 60,
            interval=args.interval,
            rate=args.rate,
            seed=args.seed,
            drop_every=args.drop_every,
        )
    )
    print(report.summary())
    if args.no_tracemalloc:
        growth, limit, what = report.rss_growth_mib, args.max_rss_growth_mb, "RSS"
    else:
        growth, limit, what = report.growth_mib, args.max_growth_mb, "heap"
    flat = growth < limit
    print(f"memory flat ({what} {growth:+.2f} MiB)" if flat else f"{what} grew {growth:.2f} MiB")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
