"""The client end to end against the emulator (in memory, and once over real loopback TCP)."""

from __future__ import annotations

import io
import sys
from contextlib import aclosing, redirect_stdout
from typing import Any

import pytest
import trio

from bitmex_trio_websocket import AuthenticationError, Change, open_bitmex_websocket
from bitmex_trio_websocket.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    open_emulator,
)


def book_of(
    levels: list[dict[str, Any]],
) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    bids = sorted(((r["price"], r["size"]) for r in levels if r["side"] == "Buy"), reverse=True)
    asks = sorted((r["price"], r["size"]) for r in levels if r["side"] == "Sell")
    return bids, asks


async def test_seed_readme_example_runs_unchanged_but_for_the_network() -> None:
    # The 2021 README's example, verbatim except for the network argument.
    from async_generator import aclosing as seed_aclosing
    from trio_websocket import ConnectionClosed

    async with open_emulator(seed=1, rate=200) as emulator:
        network = emulator.url

        async def main() -> None:
            async with open_bitmex_websocket(network) as bws:
                async with seed_aclosing(bws.listen("instrument")) as agen:
                    try:
                        async for msg in agen:
                            print(
                                f"Received message, symbol: '{msg['symbol']}', "
                                f"timestamp: '{msg['timestamp']}'"
                            )
                    except ConnectionClosed as e:
                        print(e)

        out = io.StringIO()
        with redirect_stdout(out), trio.move_on_after(3):
            await main()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2
    assert all(line.startswith("Received message, symbol: '") for line in lines)


async def test_loopback_smoke() -> None:
    with trio.fail_after(20):
        async with open_emulator(seed=3, rate=500, max_events=300) as emulator:
            async with open_bitmex_websocket(emulator.url) as bws:
                symbol = emulator.default_symbol
                async with aclosing(bws.events("orderBookL2", symbol)) as events:
                    partial = await events.__anext__()
                    assert isinstance(partial, Change) and partial.action == "partial"
                    assert len(partial.rows) > 100
                    await emulator.wait_still()
                    await trio.sleep(0.5)
                book = bws.storage.book(symbol)
                assert book.best_bid is not None and book.best_ask is not None
                assert book.best_bid[0] < book.best_ask[0]


async def test_books_and_tables_converge_to_the_emulators(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with open_emulator(seed=5, listen=False, rate=100, max_events=2000) as emulator:
            async with open_bitmex_websocket(
                "ws://emulator/realtime", connect=emulator.connect_in_memory
            ) as bws:
                symbols = emulator.market.symbols
                async with trio.open_nursery() as nursery:
                    for table in ("orderBookL2", "instrument", "trade", "quote"):
                        listener = bws.listen(table)

                        async def drain(agen: Any = listener) -> None:
                            async with aclosing(agen) as rows:
                                async for _ in rows:
                                    pass

                        nursery.start_soon(drain)
                    await emulator.wait_still()
                    await trio.sleep(5)
                    for symbol in symbols:
                        book = bws.storage.book(symbol)
                        bids, asks = book_of(emulator.market.book_levels(symbol))
                        assert list(book.bids) == bids
                        assert list(book.asks) == asks
                    instruments = emulator.market.snapshot("instrument").rows
                    for row in instruments:
                        stored = bws.storage.data["instrument"][(row["symbol"],)]
                        assert stored == row
                    nursery.cancel_scope.cancel()


async def test_private_tables_and_dead_mans_switch(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(300):
        async with open_emulator(seed=2, listen=False, max_events=0) as emulator:
            open_before = len(emulator.market.open_orders(DEFAULT_ACCOUNT))
            assert open_before > 0
            start = trio.current_time()
            async with open_bitmex_websocket(
                "ws://emulator/realtime",
                DEFAULT_API_KEY,
                DEFAULT_API_SECRET,
                dead_mans_switch=True,
                connect=emulator.connect_in_memory,
            ) as bws:
                async with aclosing(bws.listen("order")) as orders:
                    first = await orders.__anext__()
                    assert first["account"] == DEFAULT_ACCOUNT
                deadline = emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT)
                assert deadline == pytest.approx(start + 60)
                await trio.sleep(20)
                # Refreshed at t=15: the deadline moved.
                assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) == pytest.approx(
                    start + 75
                )
            # Clean exit disarms it: orders stay open long after.
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) is None
            await trio.sleep(120)
            assert len(emulator.market.open_orders(DEFAULT_ACCOUNT)) == open_before


async def test_dead_mans_switch_fires_when_the_client_vanishes(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(300):
        async with open_emulator(seed=2, listen=False, rate=5) as emulator:
            start = trio.current_time()
            with trio.CancelScope() as scope:
                async with open_bitmex_websocket(
                    "ws://emulator/realtime",
                    DEFAULT_API_KEY,
                    DEFAULT_API_SECRET,
                    dead_mans_switch=True,
                    connect=emulator.connect_in_memory,
                ):
                    connection = await emulator.wait_connection(0)
                    await trio.sleep(16)
                    connection.stall()  # our process "hangs": no more refreshes get through
                    await connection.drop()
                    scope.cancel()
            # Last refresh at t=15 -> cancel at t=75.
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) == pytest.approx(start + 75)
            await trio.sleep_until(start + 76)
            assert emulator.market.open_orders(DEFAULT_ACCOUNT) == []


async def test_wrong_credentials(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with open_emulator(seed=1, listen=False) as emulator:
            with pytest.raises(AuthenticationError) as info:
                async with open_bitmex_websocket(
                    "ws://emulator/realtime",
                    DEFAULT_API_KEY,
                    "not-the-secret",
                    connect=emulator.connect_in_memory,
                ):
                    pass
            assert info.value.status == 401
            assert "not-the-secret" not in repr(info.value)


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("loopback tests assume a POSIX host")
