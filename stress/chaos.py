"""Chaos run: the client rides through seeded random faults; its state must end exact.

The emulator's market runs while a seeded fault plan hits every connection (drops, closes,
stalls, malformed frames, unknown ids, refused handshakes, failed auth, delayed acks, deltas
before partials). After the requested number of faults the faults stop and the market is stilled;
then the client's ``Storage`` is compared with the one a fresh connection builds from scratch.
Everything runs on trio's virtual clock, so hours of outages take seconds. Its small version
runs in the test suite (``tests/client/test_chaos.py``); TCP-level faults are
``stress.tcp_chaos``'s.

Faults the plan armed for the next handshake or authentication (a 429 refusal, a failed auth)
outlive ``stop_random_faults``, and the emulator limits connection attempts as BitMEX did, so the
fresh comparison connection may be refused: like a careful client it then waits as long as the
429 asks (``Retry-After``) or backs off, and tries again, ``FRESH_ATTEMPTS`` times at most.

    python -m stress.chaos --faults 1000 --seed 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

import trio
import trio.testing

from bitmex_trio_websocket import (
    AuthenticationError,
    BitMEXWebsocket,
    Change,
    ConnectionRejected,
    Disconnected,
    Resyncing,
    Storage,
    open_bitmex_websocket,
)
from bitmex_trio_websocket._retry import backoff_delay, retry_after_seconds
from bitmex_trio_websocket.emulator import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    Emulator,
    open_emulator,
)

URL = "ws://emulator/realtime"
TOPICS: tuple[tuple[str, str | None], ...] = (
    ("orderBookL2", None),
    ("instrument", None),
    ("trade", None),
    ("quote", None),
    ("order", None),
    ("position", None),
)
# Tries of the fresh comparison connection, refused ones included (each armed fault refuses one).
FRESH_ATTEMPTS = 8
# Statuses of a refused upgrade that a careful client waits out: rate limit, service unavailable,
# and 401 (an armed failed authentication; the credentials are known good).
REFUSALS_WAITED = frozenset({429, 503, 401})


@dataclass
class ChaosReport:
    faults: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    resyncs: int = 0
    recovery_times: list[float] = field(default_factory=list)
    messages: int = 0
    mismatches: list[str] = field(default_factory=list)
    fresh_refusals: list[int] = field(default_factory=list)  # statuses, waited out and retried
    virtual_seconds: float = 0.0

    def summary(self) -> str:
        times = self.recovery_times or [0.0]
        return "\n".join(
            [
                f"faults injected: {sum(self.faults.values())} {dict(sorted(self.faults.items()))}",
                f"reconnects: {self.reconnects}  resyncs: {self.resyncs}",
                f"time to recover (virtual s): median {statistics.median(times):.3f}, "
                f"max {max(times):.3f} over {len(self.recovery_times)} outages",
                f"messages received: {self.messages}  virtual time: {self.virtual_seconds:.0f} s",
                f"fresh comparison connection refused first: {self.fresh_refusals or 'no'}",
                f"mismatches: {len(self.mismatches)}",
                *self.mismatches[:20],
            ]
        )


def compare(ours: Storage, fresh: Storage, symbols: Sequence[str]) -> list[str]:
    """Differences between two stores over everything a fresh connection can know."""
    problems = []
    for symbol in symbols:
        a, b = ours.book(symbol), fresh.book(symbol)
        if list(a.bids) != list(b.bids) or list(a.asks) != list(b.asks):
            problems.append(f"orderBookL2 {symbol}: {len(a.bids)}/{len(a.asks)} levels vs "
                            f"{len(b.bids)}/{len(b.asks)}")  # fmt: skip
    for table in ("instrument", "order", "position"):
        mine, theirs = dict(ours.data.get(table, {})), dict(fresh.data.get(table, {}))
        if mine != theirs:
            keys = set(mine) ^ set(theirs) or {k for k in mine if mine[k] != theirs.get(k)}
            problems.append(f"{table}: {len(keys)} rows differ, e.g. {sorted(keys)[:3]}")
    for table in ("trade", "quote"):
        for symbol in symbols:
            last_mine = [r for r in ours.rows(table, symbol)][-1:]
            last_fresh = [r for r in fresh.rows(table, symbol)][-1:]
            if last_mine != last_fresh:
                ours_at = [r.get("timestamp") for r in last_mine]
                fresh_at = [r.get("timestamp") for r in last_fresh]
                problems.append(f"{table} {symbol}: last row differs ({ours_at} vs {fresh_at})")
    return problems


async def _drain(bws: BitMEXWebsocket, table: str, symbol: str | None, report: ChaosReport) -> None:
    lost_at: float | None = None
    async with aclosing(bws.events(table, symbol)) as events:
        async for item in events:
            if isinstance(item, Disconnected | Resyncing):
                lost_at = trio.current_time() if lost_at is None else lost_at
            elif isinstance(item, Change) and item.action == "partial" and lost_at is not None:
                if table == "orderBookL2":
                    report.recovery_times.append(trio.current_time() - lost_at)
                lost_at = None


async def _compare_with_fresh(
    emulator: Emulator, ours: Storage, report: ChaosReport, seed: int
) -> list[str]:
    """Compare ``ours`` with what a brand-new connection builds once every partial is in; a
    refused connection is tried again after the wait it asked for, or a backoff."""
    rng = random.Random(seed)  # the jitter repeats with the run
    for attempt in range(FRESH_ATTEMPTS):
        try:
            return await _fresh_comparison(emulator, ours)
        except (ConnectionRejected, AuthenticationError) as exc:
            status = exc.status_code if isinstance(exc, ConnectionRejected) else exc.status
            if status not in REFUSALS_WAITED or attempt + 1 == FRESH_ATTEMPTS:
                raise
            delay = backoff_delay(attempt, retry_after_seconds(exc), 0.5, 10.0, rng)
            report.fresh_refusals.append(status)
            await trio.sleep(delay)
    raise AssertionError("unreachable")


async def _fresh_comparison(emulator: Emulator, ours: Storage) -> list[str]:
    async with open_bitmex_websocket(
        URL, DEFAULT_API_KEY, DEFAULT_API_SECRET, connect=emulator.connect_in_memory
    ) as fresh:
        async with trio.open_nursery() as nursery:
            ready = [trio.Event() for _ in TOPICS]
            for (table, symbol), event in zip(TOPICS, ready, strict=True):
                nursery.start_soon(_hold_after_partial, fresh, table, symbol, event)
            for event in ready:
                await event.wait()
            # Compared while its listeners are alive: leaving a topic clears its rows.
            problems = compare(ours, fresh.storage, emulator.market.symbols)
            nursery.cancel_scope.cancel()
    return problems


async def _hold_after_partial(
    bws: BitMEXWebsocket, table: str, symbol: str | None, ready: trio.Event
) -> None:
    async with aclosing(bws.events(table, symbol)) as events:
        async for item in events:
            if isinstance(item, Change) and item.action == "partial":
                ready.set()


async def run_chaos(
    faults: int, *, seed: int = 1, every_messages: int = 300, rate: float = 500.0
) -> ChaosReport:
    report = ChaosReport()
    start = trio.current_time()
    async with open_emulator(seed=seed, listen=False, rate=rate) as emulator:
        emulator.inject_random_faults(seed, every_messages=every_messages)
        async with open_bitmex_websocket(
            URL,
            DEFAULT_API_KEY,
            DEFAULT_API_SECRET,
            dead_mans_switch=True,
            connect=emulator.connect_in_memory,
            backoff_initial=0.5,
            backoff_max=10.0,
        ) as bws:
            async with trio.open_nursery() as nursery:
                for table, symbol in TOPICS:
                    nursery.start_soon(_drain, bws, table, symbol, report)
                while sum(emulator.fault_counts().values()) < faults:  # noqa: ASYNC110 - polls emulator counters
                    await trio.sleep(1)
                emulator.stop_random_faults()
                emulator.stop_market()
                # Outlast every fault still in flight: a stall (heartbeat 10 s), a refused
                # handshake's retryAfter, backoff, delayed acks.
                while True:
                    await trio.sleep(30)
                    if bws.stats.connected and (bws.stats.last_message_age() or 0) < 30:
                        break
                await trio.sleep(30)
                report.mismatches = await _compare_with_fresh(emulator, bws.storage, report, seed)
                report.reconnects = bws.stats.reconnects
                report.resyncs = bws.stats.resyncs
                report.messages = bws.stats.messages
                nursery.cancel_scope.cancel()
        report.faults = Counter(str(kind) for kind in emulator.fault_counts().elements())
    report.virtual_seconds = trio.current_time() - start
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stress.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--faults", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=int, default=300, help="messages between faults")
    args = parser.parse_args(argv)
    report = trio.run(
        lambda: run_chaos(args.faults, seed=args.seed, every_messages=args.every),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    print(report.summary())
    return 1 if report.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
