"""Table frames written as BitMEX writes them skip the general decoder; faults are named as before.

The session's reader hands a frame that starts ``{"table":"`` straight to orjson and
``Storage.apply``; whatever the store refuses is read again by the general decoder. These tests
check that a user sees what the general path always gave: a frame the decoder cannot take
re-fetches every topic ("undecodable frame") and is logged with the decoder's own error; a table
message the decoder takes but the store refuses re-fetches its table only ("bad message"); a
frame that only looks like table data (a repeated ``table`` key hiding an error reply) is a reply.
Each fault is counted once, and the feed goes on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from bitmex_trio_websocket import (
    BitMEXWebsocket,
    Change,
    RemoteProtocolError,
    Resyncing,
    open_bitmex_websocket,
)
from bitmex_trio_websocket import _protocol as proto

from ..support.scripted_server import ScriptedServer, l2_row

URL = "ws://bitmex.test/realtime"
KEYS = {"trade": [], "orderBookL2": ["symbol", "id", "side"]}
TIMEOUT = 60


def trade(size: int) -> dict[str, Any]:
    row = {"symbol": "XBTUSD", "side": "Buy", "size": size, "price": 1.0}
    return {"table": "trade", "action": "insert", "data": [row]}


@asynccontextmanager
async def scripted() -> AsyncIterator[tuple[ScriptedServer, BitMEXWebsocket]]:
    async with trio.open_nursery() as nursery:
        server = ScriptedServer(nursery, keys=KEYS)
        server.partials["orderBookL2"] = [l2_row(1, "Buy", 10, 100.0)]
        async with open_bitmex_websocket(URL, connect=server.connect) as bws:
            yield server, bws
        nursery.cancel_scope.cancel()


async def next_item(events: AsyncIterator[Any], kind: type, action: str | None = None) -> Any:
    async for item in events:
        if isinstance(item, kind) and (action is None or getattr(item, "action", None) == action):
            return item
    raise AssertionError(f"events ended before a {kind.__name__}")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# Each starts as BitMEX writes table data, and the general decoder refuses each.
UNDECODABLE = [
    b'{"table":"trade","action":"upsert","data":[]}',
    b'{"table":"trade","action":"insert","data":{}}',
    b'{"table":"trade","action":[],"data":[]}',
    b'{"table":"trade","action":"insert","data":[',
    b'{"table":"trade","action":"insert","data":[NaN]}',
    b'{"table":"trade\xff\xfe","action":"insert","data":[]}',
    b'{"table":"trade","table":7,"action":"insert","data":[]}',
    b'{"table":"orderBookL2","action":"update","data":"x"}',
]


@pytest.mark.parametrize("frame", UNDECODABLE, ids=lambda f: repr(f)[2:40])
async def test_a_table_frame_the_decoder_refuses_resyncs_every_topic_with_its_error(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture, frame: bytes
) -> None:
    with pytest.raises(RemoteProtocolError) as refused:
        proto.decode_server_frame_lean(frame)
    with trio.fail_after(TIMEOUT):
        async with scripted() as (server, bws):
            async with (
                aclosing(bws.events("trade")) as trades,
                aclosing(bws.events("orderBookL2")) as book,
            ):
                await next_item(trades, Change, "partial")
                await next_item(book, Change, "partial")
                await server.connections[-1].send_message(frame)
                # Every listener hears of every resync.
                resyncs = {await next_item(trades, Resyncing) for _ in range(2)}
                assert resyncs == {
                    Resyncing(table, None, "undecodable frame")
                    for table in ("trade", "orderBookL2")
                }
                await next_item(trades, Change, "partial")
                await server.push(trade(7))
                change = await next_item(trades, Change, "insert")
                assert [row["size"] for row in change.rows] == [7]
            assert (bws.stats.protocol_errors, bws.stats.resyncs) == (1, 2)
    assert f"undecodable frame, resyncing every topic: {refused.value}" in warnings_of(caplog)


# Each is a well-formed envelope whose rows the store refuses.
REJECTED = [
    ("trade", {"table": "trade", "action": "insert", "data": [5, "x"]}),
    ("orderBookL2", {"table": "orderBookL2", "action": "update", "data": [{"id": 1}]}),
    ("orderBookL2", {"table": "orderBookL2", "action": "insert", "data": [{"side": "Buy"}]}),
]


@pytest.mark.parametrize(("table", "message"), REJECTED, ids=lambda v: str(v)[:40])
async def test_a_table_message_the_store_rejects_resyncs_its_table_only(
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
    table: str,
    message: dict[str, Any],
) -> None:
    with trio.fail_after(TIMEOUT):
        async with scripted() as (server, bws):
            async with (
                aclosing(bws.events("trade")) as trades,
                aclosing(bws.events("orderBookL2")) as book,
            ):
                await next_item(trades, Change, "partial")
                await next_item(book, Change, "partial")
                book_before = list(bws.storage.rows("orderBookL2", "XBTUSD"))
                await server.push(message)
                events = trades if table == "trade" else book
                assert await next_item(events, Resyncing) == Resyncing(table, None, "bad message")
                if table == "trade":
                    # The book was left alone: a later delta of it still applies.
                    assert list(bws.storage.rows("orderBookL2", "XBTUSD")) == book_before
                await next_item(events, Change, "partial")
                await server.push(trade(3))
                assert (await next_item(trades, Change, "insert")).rows[0]["size"] == 3
            assert (bws.stats.protocol_errors, bws.stats.resyncs) == (1, 1)
    assert any(w.startswith("rejected table message: ") for w in warnings_of(caplog))


async def test_an_error_reply_behind_a_repeated_table_key_is_a_reply(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # The last "table" wins: the general decoder reads this as an error reply, and so must the
    # reader, though the frame starts as table data does.
    frame = '{"table":"trade","table":null,"status":400,"error":"boom"}'
    assert isinstance(proto.decode_server_frame_lean(frame), proto.ErrorReply)
    with trio.fail_after(TIMEOUT):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade")) as trades:
                await next_item(trades, Change, "partial")
                await server.connections[-1].send_message(frame)
                await server.push(trade(4))
                item = await trades.__anext__()
                assert isinstance(item, Change)
                assert item.rows[0]["size"] == 4  # no Resyncing came first
            assert (bws.stats.protocol_errors, bws.stats.resyncs) == (0, 0)
    assert any("unattributed error reply: 400 boom" in w for w in warnings_of(caplog))


async def test_table_frames_are_counted_and_stored_once(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with scripted() as (server, bws):
            async with aclosing(bws.events("trade")) as trades:
                await next_item(trades, Change, "partial")
                messages, size = bws.stats.messages, bws.stats.bytes
                for size_ in (1, 2, 3):
                    await server.push(trade(size_))
                for size_ in (1, 2, 3):
                    assert (await next_item(trades, Change, "insert")).rows[0]["size"] == size_
            assert bws.stats.messages - messages == 3
            assert bws.stats.bytes - size == sum(len(orjson.dumps(trade(s))) for s in (1, 2, 3))
            assert [row["size"] for row in bws.storage.rows("trade", "XBTUSD")] == [1, 2, 3]
