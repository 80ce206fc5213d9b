"""Self-healing: each emulator fault, ridden through by the client (virtual time, in memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import pytest
import trio

from bitmex_trio_websocket import (
    BitMEXWebsocket,
    Change,
    Disconnected,
    Reconnected,
    Resyncing,
    open_bitmex_websocket,
)
from bitmex_trio_websocket.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    Emulator,
    FaultKind,
    open_emulator,
)

URL = "ws://emulator/realtime"


@asynccontextmanager
async def session(
    rate: float = 20, max_events: int | None = None, **client: Any
) -> AsyncIterator[tuple[Emulator, BitMEXWebsocket]]:
    async with open_emulator(seed=7, listen=False, rate=rate, max_events=max_events) as emulator:
        async with open_bitmex_websocket(
            URL, connect=emulator.connect_in_memory, backoff_max=2.0, **client
        ) as bws:
            yield emulator, bws


async def next_event(events: Any, kind: type) -> Any:
    while True:
        item = await events.__anext__()
        if isinstance(item, kind):
            return item


async def next_partial(events: Any) -> Change:
    while True:
        item = await events.__anext__()
        if isinstance(item, Change) and item.action == "partial":
            return item


@pytest.mark.parametrize(
    ("fault", "code", "reason"),
    [("drop", 1006, None), ("bye", 1000, "Bye"), ("going_away", 1001, "Going away")],
)
async def test_closes_are_ridden_through(
    autojump_clock: trio.abc.Clock, fault: str, code: int, reason: str | None
) -> None:
    with trio.fail_after(120):
        async with session() as (emulator, bws):
            symbol = emulator.default_symbol
            async with aclosing(bws.events("orderBookL2", symbol)) as events:
                await next_partial(events)
                connection = await emulator.wait_connection(0)
                if fault == "drop":
                    await connection.drop()
                elif fault == "bye":
                    await connection.close(1000, "Bye")
                else:
                    await connection.close(1001, "Going away")
                lost = await next_event(events, Disconnected)
                assert lost.code == code
                if reason is not None:
                    assert lost.reason == reason
                await next_event(events, Reconnected)
                fresh = await next_partial(events)
                assert len(fresh.rows) > 100
                # And it keeps iterating live deltas afterwards.
                later = await events.__anext__()
                assert isinstance(later, Change)
            assert bws.stats.reconnects == 1


async def test_stall_is_detected_by_the_heartbeat_at_the_configured_time(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(120):
        async with session(heartbeat_interval=3, heartbeat_timeout=2) as (emulator, bws):
            async with aclosing(bws.events("orderBookL2", emulator.default_symbol)) as events:
                await next_partial(events)
                (await emulator.wait_connection(0)).stall()
                await next_event(events, Disconnected)
                last = bws.stats.last_message_at
                assert last is not None
                assert trio.current_time() == pytest.approx(last + 3 + 2)
                await next_event(events, Reconnected)
                await next_partial(events)


async def test_429_on_reconnect_waits_retry_after(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with session() as (emulator, bws):
            async with aclosing(bws.events("instrument")) as events:
                await next_partial(events)
                emulator.refuse_next_handshakes(1, status=429, retry_after=7)
                await (await emulator.wait_connection(0)).drop()
                lost_at = trio.current_time()
                await next_event(events, Reconnected)
                assert trio.current_time() - lost_at >= 7
                assert bws.stats.reconnects == 1


async def test_failed_reauth_is_retried_and_private_feed_resumes(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(120):
        async with session(api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET) as (
            emulator,
            bws,
        ):
            async with aclosing(bws.events("order")) as events:
                first = await next_partial(events)
                assert all(row["account"] == DEFAULT_ACCOUNT for row in first.rows)
                emulator.fail_next_auth(1)
                await (await emulator.wait_connection(0)).drop()
                await next_event(events, Reconnected)
                again = await next_partial(events)
                assert again.rows
                assert all(row["account"] == DEFAULT_ACCOUNT for row in again.rows)
            assert bws.stats.reconnects == 1
            assert emulator.fault_counts()[FaultKind.FAIL_AUTH] == 1


async def test_deltas_before_partial_are_dropped(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with session(rate=50, max_events=400) as (emulator, bws):
            emulator.deltas_before_partial(1)
            symbol = emulator.default_symbol
            async with aclosing(bws.events("orderBookL2", symbol)) as events:
                await next_partial(events)
                await emulator.wait_still()
                await trio.sleep(2)
            assert bws.stats.dropped_before_partial > 0
            assert bws.stats.violations == 0
            levels = emulator.market.book_levels(symbol)
            bids = sorted(
                ((r["price"], r["size"]) for r in levels if r["side"] == "Buy"), reverse=True
            )
            assert list(bws.storage.book(symbol).bids) == bids


async def test_unknown_id_update_resyncs_one_topic(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with session() as (emulator, bws):
            symbol = emulator.default_symbol
            async with (
                aclosing(bws.events("orderBookL2", symbol)) as book,
                aclosing(bws.events("instrument")) as instrument,
            ):
                await next_partial(book)
                await next_partial(instrument)
                (await emulator.wait_connection(0)).send_unknown_id_update("orderBookL2", symbol)
                assert await next_event(book, Resyncing) == Resyncing(
                    "orderBookL2", symbol, "violation"
                )
                await next_partial(book)
            assert (bws.stats.resyncs, bws.stats.reconnects) == (1, 0)


async def test_dead_mans_switch_is_rearmed_after_reconnect(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(300):
        async with session(
            api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET, dead_mans_switch=True
        ) as (emulator, bws):
            async with aclosing(bws.events("instrument")) as events:
                await next_partial(events)
                await trio.sleep(5)
                await (await emulator.wait_connection(0)).drop()
                await next_event(events, Reconnected)
                rearmed_at = trio.current_time()
                deadline = emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT)
                assert deadline == pytest.approx(rearmed_at + 60)
                await trio.sleep(100)  # refreshed all along: nothing cancelled
            assert emulator.market.open_orders(DEFAULT_ACCOUNT)


async def test_malformed_frame_resyncs_instead_of_drifting(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        async with session() as (emulator, bws):
            async with aclosing(bws.events("instrument")) as events:
                await next_partial(events)
                (await emulator.wait_connection(0)).send_malformed_frame()
                assert await next_event(events, Resyncing) == Resyncing(
                    "instrument", None, "undecodable frame"
                )
                await next_partial(events)
                assert isinstance(await events.__anext__(), Change)
            assert (bws.stats.protocol_errors, bws.stats.resyncs, bws.stats.reconnects) == (1, 1, 0)
