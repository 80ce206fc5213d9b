"""A bot's tests against the emulator: in memory, in virtual time, with faults."""

from contextlib import aclosing

import pytest
import trio

from bitmex_trio_websocket import BitMEXWebsocket, Reconnected, open_bitmex_websocket
from bitmex_trio_websocket.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    Emulator,
    FaultKind,
)


async def best_prices(bws: BitMEXWebsocket, symbol: str) -> tuple[float, float]:
    """The "bot" under test: the best bid and ask, once the book has both."""
    async with aclosing(bws.listen("orderBookL2", symbol)) as rows:
        async for _ in rows:
            book = bws.storage.book(symbol)
            if book.best_bid is not None and book.best_ask is not None:
                return book.best_bid[0], book.best_ask[0]
    raise AssertionError("the listener ended")


async def test_the_book_is_not_crossed(
    bitmex_emulator: Emulator, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(60):
        async with open_bitmex_websocket(
            "ws://emulator/realtime", connect=bitmex_emulator.connect_in_memory
        ) as bws:
            bid, ask = await best_prices(bws, "XBTUSD")
    assert bid < ask


async def test_a_dropped_connection_heals(
    bitmex_emulator: Emulator, autojump_clock: trio.abc.Clock
) -> None:
    # The first connection loses its socket (no close frame) after 100 messages.
    bitmex_emulator.schedule_fault(FaultKind.DROP, connection=0, after_messages=100)
    with trio.fail_after(120):  # virtual seconds: the reconnect backoff takes no real time
        async with open_bitmex_websocket(
            "ws://emulator/realtime", connect=bitmex_emulator.connect_in_memory
        ) as bws:
            async with aclosing(bws.events("orderBookL2", "XBTUSD")) as events:
                async for event in events:
                    if isinstance(event, Reconnected):
                        break
            bid, ask = await best_prices(bws, "XBTUSD")
    assert bws.stats.reconnects == 1
    assert bitmex_emulator.fault_counts()[FaultKind.DROP] == 1
    assert bid < ask


async def test_the_dead_mans_switch_fires_when_the_bot_hangs(
    bitmex_emulator: Emulator, autojump_clock: trio.abc.Clock
) -> None:
    with trio.fail_after(300):
        start = trio.current_time()
        with trio.CancelScope() as hang:
            async with open_bitmex_websocket(
                "ws://emulator/realtime",
                DEFAULT_API_KEY,
                DEFAULT_API_SECRET,
                dead_mans_switch=True,  # cancelAllAfter 60 s, refreshed every 15 s
                connect=bitmex_emulator.connect_in_memory,
            ):
                connection = await bitmex_emulator.wait_connection(0)
                await trio.sleep(16)  # one refresh, at 15 s
                connection.stall()  # the bot "hangs": nothing gets through any more
                await connection.drop()
                hang.cancel()
        await trio.sleep(61)
    # The last refresh got through at 15 s: the server cancelled the orders 60 s later.
    [(account, fired_at)] = bitmex_emulator.dead_mans_switch_fired
    assert account == DEFAULT_ACCOUNT
    assert fired_at == pytest.approx(start + 75)
