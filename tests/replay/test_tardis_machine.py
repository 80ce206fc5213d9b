"""tardis-machine's ``/ws-replay`` through ``open_bitmex_websocket`` and ``open_bitmex_replay``."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from bitmex_trio_websocket import (
    BitMEXWebsocket,
    ReplayInterrupted,
    ReplayRefused,
    SubscriptionError,
    open_bitmex_replay,
    open_bitmex_websocket,
)
from bitmex_trio_websocket._client import is_replay_server_url

from ..support.tardis_machine import URL, TardisMachine
from .helpers import book_levels, captured_session, expected_rows, reference_book, table_frames

SYMBOL = "XBTUSD"


def window() -> list[str]:
    return [text for _, text in table_frames(captured_session())]


async def collect(bws: BitMEXWebsocket, table: str, symbol: str | None) -> list[dict[str, Any]]:
    async with aclosing(bws.listen(table, symbol)) as rows:
        return [row async for row in rows]


def subscribes(machine: TardisMachine) -> list[list[str]]:
    return [
        orjson.loads(frame)["args"]
        for _, frame in machine.received
        if frame.startswith('{"op":"subscribe"')
    ]


def test_replay_semantics_are_chosen_by_the_path() -> None:
    assert is_replay_server_url(URL)
    assert is_replay_server_url("wss://host/ws-replay/")
    assert not is_replay_server_url("ws://127.0.0.1:1234/realtime")
    assert not is_replay_server_url("ws://host/ws-replay-normalized?exchange=bitmex")


async def test_a_whole_replay_ends_the_listeners_and_never_reconnects(
    autojump_clock: trio.testing.MockClock,
) -> None:
    texts = window()
    frames = [(0.0, text) for text in texts]
    results: dict[str, list[dict[str, Any]]] = {}
    with trio.fail_after(300):
        async with trio.open_nursery() as servers:
            machine = TardisMachine(servers, texts, pace=0.05)  # ~100 s: pings on the way
            async with open_bitmex_websocket(URL, connect=machine.connect) as bws:

                async def listen(table: str) -> None:
                    results[table] = await collect(bws, table, SYMBOL)

                async with trio.open_nursery() as nursery:
                    for table in ("orderBookL2", "trade", "quote"):
                        nursery.start_soon(listen, table)
                assert book_levels(bws.storage, SYMBOL) == reference_book(frames, SYMBOL)
                await trio.sleep(120)  # after the end: nothing reconnects
                assert await collect(bws, "trade", SYMBOL) == []  # ends at once
            servers.cancel_scope.cancel()
    for table in ("orderBookL2", "trade", "quote"):
        assert results[table] == expected_rows(frames, table, SYMBOL), table
    assert machine.connections == 1
    # One subscribe with every topic, inside the window; no text pings; server pings answered.
    [subscribe] = subscribes(machine)
    assert machine.received[0][0] < 2.0  # the test (and the connection) began at 0
    assert sorted(subscribe) == ["orderBookL2:XBTUSD", "quote:XBTUSD", "trade:XBTUSD"]
    assert all(frame != "ping" for _, frame in machine.received)
    assert machine.pongs >= 2


async def test_open_bitmex_replay_takes_the_url_and_topics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    texts = window()
    frames = [(0.0, text) for text in texts]
    with trio.fail_after(60):
        async with trio.open_nursery() as servers:
            machine = TardisMachine(servers, texts)
            topics = ["orderBookL2:XBTUSD", "trade"]
            async with open_bitmex_replay(URL, topics=topics, connect=machine.connect) as bws:
                await bws.wait_finished()  # nobody listens: topics are subscribed anyway
                assert book_levels(bws.storage, SYMBOL) == reference_book(frames, SYMBOL)
            servers.cancel_scope.cancel()
    assert subscribes(machine) == [["orderBookL2:XBTUSD", "trade"]]
    assert machine.connections == 1


async def test_no_subscription_in_the_window_is_a_refusal_saying_why(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as servers:
            machine = TardisMachine(servers, window())
            with pytest.raises(ReplayRefused, match="no subscription in the first 2 s") as caught:
                async with open_bitmex_websocket(URL, connect=machine.connect):
                    await trio.sleep(10)  # nobody listens
            servers.cancel_scope.cancel()
    assert caught.value.reason is not None and caught.value.reason.code == 1011
    assert machine.connections == 1


async def test_an_unknown_table_is_a_refusal_in_its_listener(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as servers:
            machine = TardisMachine(servers, window())
            with pytest.raises(ReplayRefused, match="cannot replay a table") as caught:
                async with open_bitmex_websocket(URL, connect=machine.connect) as bws:
                    await collect(bws, "orderBookL3", SYMBOL)
            assert machine.connections == 1
            # Private tables need keys, as live: refused before anything is sent.
            with pytest.raises(ValueError, match="private table"):
                async with open_bitmex_websocket(URL, connect=machine.connect) as bws:
                    await collect(bws, "order", None)
            servers.cancel_scope.cancel()
    assert "filters[].channel" in str(caught.value)


async def test_a_late_topic_fails_its_listener_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    texts = window()
    with trio.fail_after(300):
        async with trio.open_nursery() as servers:
            machine = TardisMachine(servers, texts, pace=0.01)
            async with open_bitmex_websocket(URL, connect=machine.connect) as bws:
                async with trio.open_nursery() as nursery:
                    rows: list[dict[str, Any]] = []

                    async def book() -> None:
                        rows.extend(await collect(bws, "orderBookL2", SYMBOL))

                    nursery.start_soon(book)
                    await trio.sleep(5)
                    with pytest.raises(SubscriptionError, match="first 2 s") as caught:
                        await collect(bws, "trade", SYMBOL)
                    # A topic already served is fine: the second book listener gets the state.
                    again = await collect(bws, "orderBookL2", SYMBOL)
            servers.cancel_scope.cancel()
    assert caught.value.status is None
    assert rows == expected_rows([(0.0, t) for t in texts], "orderBookL2", SYMBOL)
    assert again and len(again) < len(rows)
    assert subscribes(machine) == [["orderBookL2:XBTUSD"]]


async def test_a_drop_mid_replay_is_an_error_never_a_second_replay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    texts = window()
    with trio.fail_after(300):
        async with trio.open_nursery() as servers:
            machine = TardisMachine(servers, texts, cut_after=500)
            rows: list[dict[str, Any]] = []
            with pytest.raises(ReplayInterrupted, match="not reconnected") as caught:
                async with open_bitmex_websocket(URL, connect=machine.connect) as bws:
                    async with aclosing(bws.listen("orderBookL2", SYMBOL)) as stream:
                        async for row in stream:
                            rows.append(row)
            servers.cancel_scope.cancel()
    assert machine.connections == 1
    assert caught.value.messages == 500
    delivered = expected_rows([(0.0, t) for t in texts], "orderBookL2", SYMBOL)
    assert rows == delivered[: len(rows)] and 0 < len(rows) < len(delivered)
