"""Listener semantics, backpressure, errors and recovery against the scripted server."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket

from bitmex_trio_websocket import (
    BitMEXError,
    Change,
    ConnectionClosed,
    Disconnected,
    Reconnected,
    Resyncing,
    open_bitmex_websocket,
)

from ..support.scripted_server import ScriptedServer, l2_row

URL = "ws://bitmex.test/realtime"
BOOK_KEYS = {"orderBookL2": ["symbol", "id", "side"], "trade": []}
BOOK = [l2_row(7, "Sell", 10, 101.0), l2_row(3, "Buy", 5, 100.0)]


def book_server(nursery: trio.Nursery, **kwargs: Any) -> ScriptedServer:
    return ScriptedServer(nursery, partials={"orderBookL2:XBTUSD": BOOK}, keys=BOOK_KEYS, **kwargs)


async def test_bad_arguments_are_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="mainnet"):
        async with open_bitmex_websocket("bitmex"):
            pass
    with pytest.raises(ValueError, match="dead man"):
        async with open_bitmex_websocket("ws://x/realtime", dead_mans_switch=True):
            pass
    with pytest.raises(ValueError, match="both"):
        async with open_bitmex_websocket("ws://x/realtime", api_key="k"):
            pass


async def test_rows_are_snapshots(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = book_server(nursery)
            async with open_bitmex_websocket(URL, connect=server.connect) as bws:
                async with aclosing(bws.listen("orderBookL2", "XBTUSD")) as rows:
                    first = [await rows.__anext__(), await rows.__anext__()]
                    kept = [dict(r) for r in first]
                    await server.push(
                        {
                            "table": "orderBookL2",
                            "action": "update",
                            "data": [{"symbol": "XBTUSD", "id": 7, "side": "Sell", "size": 99}],
                        }
                    )
                    updated = await rows.__anext__()
                assert updated == {**BOOK[0], "size": 99}
                assert first == kept  # the earlier dicts did not change
                assert bws.storage.book("XBTUSD").best_ask == (101.0, 99)
                with pytest.raises(ValueError, match="private"):
                    bws.listen("order").__aiter__()
                    await bws.listen("order").__anext__()
            nursery.cancel_scope.cancel()


async def test_wide_listener_covers_symbol_listener(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = book_server(nursery)
            server.partials["orderBookL2"] = [*BOOK, l2_row(9, "Buy", 1, 50.0, "ETHUSD")]
            async with open_bitmex_websocket(URL, connect=server.connect) as bws:
                async with aclosing(bws.listen("orderBookL2", "XBTUSD")) as narrow:
                    assert (await narrow.__anext__())["id"] == 7
                    async with aclosing(bws.events("orderBookL2")) as wide:
                        change = await wide.__anext__()
                        assert isinstance(change, Change) and change.action == "partial"
                        await trio.sleep(1)
                        await server.push(
                            {
                                "table": "orderBookL2",
                                "action": "delete",
                                "data": [{"symbol": "XBTUSD", "id": 3, "side": "Buy"}],
                            }
                        )
                        # Each row reaches each listener once: no duplicate subscriptions.
                        seen: list[tuple[str, str | None]] = []
                        while True:
                            item = await wide.__anext__()
                            assert isinstance(item, Change)
                            seen.append((item.action, item.symbol))
                            if item.action == "delete":
                                break
                        assert seen.count(("delete", "XBTUSD")) == 1
                    await trio.sleep(1)
                subs = [args for _, args in server.commands("subscribe")]
                unsubs = [args for _, args in server.commands("unsubscribe")]
                assert subs[:2] == [["orderBookL2:XBTUSD"], ["orderBookL2"]]
                assert unsubs[0] == ["orderBookL2:XBTUSD"]
            nursery.cancel_scope.cancel()


async def test_slow_listener_is_lossless_and_bounded(autojump_clock: trio.abc.Clock) -> None:
    trades = 200
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, keys=BOOK_KEYS)
            async with open_bitmex_websocket(URL, connect=server.connect, buffer=4) as bws:
                async with aclosing(bws.events("trade", "XBTUSD")) as events:
                    assert isinstance(await events.__anext__(), Change)  # empty partial

                    async def flood() -> None:
                        for i in range(trades):
                            await server.push(
                                {
                                    "table": "trade",
                                    "action": "insert",
                                    "data": [{"symbol": "XBTUSD", "size": i, "price": 1.0}],
                                }
                            )

                    nursery.start_soon(flood)
                    sizes: list[int] = []
                    max_queued = 0
                    while len(sizes) < trades:
                        await trio.sleep(0.01)  # a slow consumer (virtual time)
                        item = await events.__anext__()
                        assert isinstance(item, Change)
                        sizes.extend(row["size"] for row in item.rows)
                        max_queued = max(max_queued, *(q for _, q, _ in bws.listener_stats()))
                assert sizes == list(range(trades))
                assert max_queued <= 4
            nursery.cancel_scope.cancel()


async def test_drop_policy_counts_losses(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, keys=BOOK_KEYS)
            async with open_bitmex_websocket(URL, connect=server.connect) as bws:
                async with aclosing(bws.events("trade", buffer=2, overflow="drop")) as events:
                    await events.__anext__()
                    for i in range(10):
                        await server.push(
                            {
                                "table": "trade",
                                "action": "insert",
                                "data": [{"symbol": "XBTUSD", "size": i, "price": 1.0}],
                            }
                        )
                    await trio.sleep(1)
                    assert bws.listener_stats() == [("trade", 2, 8)]
                    # The store itself lost nothing.
                    assert len(bws.storage.data["trade"]) == 10
            nursery.cancel_scope.cancel()


async def test_remote_close_without_reconnect_raises_connection_closed(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = book_server(nursery)
            async with open_bitmex_websocket(URL, connect=server.connect, reconnect=False) as bws:
                with pytest.raises(ConnectionClosed) as info:
                    async with aclosing(bws.listen("orderBookL2", "XBTUSD")) as rows:
                        async for _ in rows:
                            await server.connections[0].aclose(1000, "Bye")
                assert info.value.reason is not None
                assert (info.value.reason.code, info.value.reason.reason) == (1000, "Bye")
                # One tree: ours, so `except BitMEXError` catches it, and the 2021 library's.
                assert isinstance(info.value, BitMEXError)
                assert isinstance(info.value, trio_websocket.ConnectionClosed)
                # A listener opened after the close fails the same way at once.
                with pytest.raises(ConnectionClosed) as late:
                    async with aclosing(bws.listen("trade")) as rows:
                        await rows.__anext__()
                assert late.value is info.value
            nursery.cancel_scope.cancel()


async def test_reconnect_resubscribes_and_listener_keeps_iterating(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = book_server(nursery)
            async with open_bitmex_websocket(
                URL, connect=server.connect, backoff_initial=0.5, backoff_max=2.0
            ) as bws:
                async with aclosing(bws.events("orderBookL2", "XBTUSD")) as events:
                    first = await events.__anext__()
                    assert isinstance(first, Change) and first.action == "partial"
                    await server.connections[0].aclose(1001, "going away")
                    lost = await events.__anext__()
                    assert lost == Disconnected(1001, "going away")
                    back = await events.__anext__()
                    assert isinstance(back, Reconnected)
                    again = await events.__anext__()
                    assert isinstance(again, Change) and again.action == "partial"
                    assert again.rows == tuple(BOOK)
                assert bws.stats.reconnects == 1
                assert len(server.connections) == 2
                assert [args for _, args in server.commands("subscribe")] == [
                    ["orderBookL2:XBTUSD"],
                    ["orderBookL2:XBTUSD"],
                ]
            nursery.cancel_scope.cancel()


async def test_unknown_id_update_resyncs_that_topic_only(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = book_server(nursery)
            server.partials["trade:XBTUSD"] = []
            async with open_bitmex_websocket(URL, connect=server.connect) as bws:
                async with (
                    aclosing(bws.events("orderBookL2", "XBTUSD")) as events,
                    aclosing(bws.events("trade", "XBTUSD")) as trades,
                ):
                    await trades.__anext__()
                    await events.__anext__()
                    await server.push(
                        {
                            "table": "orderBookL2",
                            "action": "update",
                            "data": [{"symbol": "XBTUSD", "id": 12345, "side": "Buy", "size": 1}],
                        }
                    )
                    resync = await events.__anext__()
                    assert resync == Resyncing("orderBookL2", "XBTUSD", "violation")
                    fresh = await events.__anext__()
                    assert isinstance(fresh, Change) and fresh.action == "partial"
                    await trio.sleep(1)
                assert bws.stats.resyncs == 1
                assert bws.stats.reconnects == 0
                unsubs = [args for _, args in server.commands("unsubscribe")]
                assert unsubs[0] == ["orderBookL2:XBTUSD"]
                subs = [topic for _, args in server.commands("subscribe") for topic in args]
                assert subs.count("trade:XBTUSD") == 1
                assert subs.count("orderBookL2:XBTUSD") == 2
            nursery.cancel_scope.cancel()


async def test_repeated_violations_escalate_to_a_reconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    bogus = {
        "table": "orderBookL2",
        "action": "delete",
        "data": [{"symbol": "XBTUSD", "id": 424242, "side": "Sell"}],
    }
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = book_server(nursery)
            async with open_bitmex_websocket(URL, connect=server.connect, backoff_max=1) as bws:
                async with aclosing(bws.events("orderBookL2", "XBTUSD")) as events:
                    await events.__anext__()
                    for _ in range(4):
                        await server.push(bogus)
                        item = await events.__anext__()
                        while not (isinstance(item, Change) and item.action == "partial"):
                            item = await events.__anext__()
                assert bws.stats.resyncs == 3
                assert bws.stats.reconnects == 1
            nursery.cancel_scope.cancel()
