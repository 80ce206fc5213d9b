"""``open_orders`` past one page, and requests that time out, against a scripted server.

The scripted ``GET /order`` below is BitMEX's as documented: the open orders oldest first,
``start`` rows skipped, then at most ``count`` (refused above 1000); new orders are appended
(they are the newest), and an order that closes leaves the list, moving every later one up.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from bitmex_trio_websocket import (
    BitMEXRest,
    ConnectionTimeout,
    RemoteProtocolError,
    open_bitmex_rest,
)

from ..support.scripted_http import SILENT, Answer, ScriptedHttpServer, Seen, error

TIMEOUT = 60
PAGE = 500  # the most the client asks for a page


def order(n: int) -> dict[str, Any]:
    return {"orderID": f"o-{n:05d}", "clOrdID": f"c-{n}", "symbol": "XBTUSD", "ordStatus": "New"}


def query(seen: Seen) -> dict[str, Any]:
    fields = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(seen.target).query))
    return {
        "filter": orjson.loads(fields.get("filter", "{}")),
        "start": int(fields.get("start", 0)),
        "count": int(fields.get("count", 100)),
    }


class OrderBookServer:
    """The account's open orders, oldest first, served as BitMEX's ``GET /order`` serves them;
    ``after_page`` runs after each page is answered (the account changing between pages)."""

    def __init__(self, count: int) -> None:
        self.open = [order(n) for n in range(count)]
        self.next = count
        self.pages: list[dict[str, Any]] = []
        self.after_page: Callable[[int], None] = lambda page: None

    def script(self, seen: Seen) -> Answer | str:
        assert (seen.method, seen.target.split("?")[0]) == ("GET", "/api/v1/order")
        asked = query(seen)
        if not 1 <= asked["count"] <= 1000:
            return error(400, "count must be between 1 and 1000", "ValidationError")
        assert asked["filter"] == {"open": True}
        rows = self.open[asked["start"] : asked["start"] + asked["count"]]
        self.pages.append(asked)
        self.after_page(len(self.pages))
        return Answer(body=rows)

    def close(self, *indexes: int) -> None:
        for index in sorted(indexes, reverse=True):
            del self.open[index]

    def add(self) -> dict[str, Any]:
        row = order(self.next)
        self.next += 1
        self.open.append(row)
        return row


@asynccontextmanager
async def scripted(
    script: Callable[[Seen], Answer | str], **options: Any
) -> AsyncIterator[tuple[BitMEXRest, ScriptedHttpServer]]:
    async with trio.open_nursery() as nursery:
        server = ScriptedHttpServer(nursery, script)
        async with open_bitmex_rest(
            "https://www.bitmex.com/api/v1", "key", "secret", connect=server.connect, **options
        ) as rest:
            yield rest, server
        nursery.cancel_scope.cancel()


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["orderID"] for row in rows]


# ------------------------------------------------------------------ open_orders past 500


async def test_1234_open_orders_come_back_all_once_oldest_first_over_three_pages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    account = OrderBookServer(1234)
    expected = ids(account.open)
    with trio.fail_after(TIMEOUT):
        async with scripted(account.script) as (rest, server):
            rows = await rest.open_orders()
    assert ids(rows) == expected
    assert len(server.seen) == 3
    assert all(page["count"] <= PAGE for page in account.pages)
    assert account.pages[0]["start"] == 0


async def test_exactly_one_page_of_orders_is_all_of_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    account = OrderBookServer(PAGE)
    expected = ids(account.open)
    with trio.fail_after(TIMEOUT):
        async with scripted(account.script) as (rest, _):
            assert ids(await rest.open_orders()) == expected


@pytest.mark.parametrize("closing", [1, 120, 700])
async def test_orders_closing_between_pages_neither_hide_others_nor_come_twice(
    autojump_clock: trio.testing.MockClock, closing: int
) -> None:
    # After the first page, ``closing`` orders from its 11th on close (700: past the page's
    # end too): every later order moves up, so a client asking for start=500 next would skip
    # as many unseen ones. An order opened then is the newest: listed last.
    account = OrderBookServer(1234)
    expected: list[str] = []

    def after_page(page: int) -> None:
        if page == 1:
            first_page = ids(account.open[:PAGE])
            account.close(*range(10, 10 + closing))
            account.add()
            expected.extend(first_page + [i for i in ids(account.open) if i not in first_page])

    account.after_page = after_page
    with trio.fail_after(TIMEOUT):
        async with scripted(account.script) as (rest, _):
            rows = await rest.open_orders()
    # The closed orders the first page listed stay listed (the docstring says so: the list is
    # as of the last page); no open order is missing, none comes twice.
    assert ids(rows) == expected
    assert len(expected) == 1234 + 1 - max(0, closing - (PAGE - 10))


async def test_orders_closing_before_every_page_still_lose_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    account = OrderBookServer(3000)
    expected = ids(account.open)
    account.after_page = lambda page: account.close(*range(0, 60)) if page < 6 else None
    with trio.fail_after(TIMEOUT):
        async with scripted(account.script) as (rest, _):
            rows = await rest.open_orders()
    assert ids(rows) == expected


async def test_each_page_goes_through_the_retries(autojump_clock: trio.testing.MockClock) -> None:
    account = OrderBookServer(1234)
    expected = ids(account.open)
    answered = 0

    def script(seen: Seen) -> Answer | str:
        nonlocal answered
        answered += 1
        if answered == 2:  # the second page is shed once
            return error(503, "The system is currently overloaded. Please try again later.")
        return account.script(seen)

    with trio.fail_after(TIMEOUT):
        async with scripted(script) as (rest, server):
            assert ids(await rest.open_orders()) == expected
    assert len(server.seen) == 4


async def test_a_server_ignoring_start_is_an_error_not_an_endless_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rows = [order(n) for n in range(PAGE)]
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: Answer(body=rows)) as (rest, server):
            with pytest.raises(RemoteProtocolError) as caught:
                await rest.open_orders()
    assert "start" in str(caught.value)
    assert len(server.seen) == 2


# ------------------------------------------------------------------ timeouts


async def test_a_get_that_times_out_once_is_sent_again_and_answered(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bitmex_trio_websocket.rest")

    def script(seen: Seen) -> Answer | str:
        return SILENT if len(box[0].seen) == 1 else Answer(body=[{"symbol": "XBTUSD"}])

    box: list[ScriptedHttpServer] = []
    with trio.fail_after(TIMEOUT):
        async with scripted(script, timeout=3.0) as (rest, server):
            box.append(server)
            assert await rest.instruments() == [{"symbol": "XBTUSD"}]
    first, second = server.seen
    assert second.at - first.at == pytest.approx(3.0)  # the per-attempt timeout, then again
    assert [first.connection, second.connection] == [0, 1]  # never the timed-out connection
    assert any("GET /instrument/active" in r.getMessage() for r in caplog.records)


async def test_timeouts_past_the_retries_are_connection_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: SILENT, timeout=2.0, retries=2) as (rest, server):
            start = trio.current_time()
            with pytest.raises(ConnectionTimeout) as caught:
                await rest.positions()
            assert trio.current_time() - start == pytest.approx(6.0)
    assert len(server.seen) == 3
    assert "/position" in str(caught.value)


async def test_an_order_that_timed_out_but_was_executed_is_found_by_its_clordid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # BitMEX executed the first POST but its answer never came; sent again with the same
    # clOrdID it is refused as a duplicate, so the client looks the order up: one order.
    placed: list[dict[str, Any]] = []

    def script(seen: Seen) -> Answer | str:
        if seen.method == "POST":
            body = seen.json()
            if any(row["clOrdID"] == body["clOrdID"] for row in placed):
                return error(400, "Duplicate clOrdID", "ValidationError")
            placed.append({"orderID": "o-1", "ordStatus": "New", **body})
            return SILENT
        wanted = query(seen)["filter"]["clOrdID"]
        return Answer(body=[row for row in placed if row["clOrdID"] == wanted])

    with trio.fail_after(TIMEOUT):
        async with scripted(script, timeout=3.0, cl_ord_id_prefix="t") as (rest, server):
            row = await rest.place_order(symbol="XBTUSD", side="Buy", orderQty=1, price=1.0)
    assert len(placed) == 1
    assert (row["orderID"], row["clOrdID"]) == ("o-1", "t-1")
    assert [s.method for s in server.seen] == ["POST", "POST", "GET"]
    assert server.seen[0].body == server.seen[1].body


@pytest.mark.parametrize(
    "call",
    [
        lambda rest: rest.request("POST", "/order", symbol="XBTUSD", orderQty=1, price=1.0),
        lambda rest: rest.amend_order(orderID="o-1", price=2.0),
        lambda rest: rest.cancel_order(orderID="o-1"),
    ],
    ids=["post-without-clordid", "amend", "cancel"],
)
async def test_a_request_unsafe_to_repeat_that_timed_out_is_raised_not_repeated(
    autojump_clock: trio.testing.MockClock, call: Callable[[BitMEXRest], Any]
) -> None:
    with trio.fail_after(TIMEOUT):
        async with scripted(lambda seen: SILENT, timeout=3.0) as (rest, server):
            with pytest.raises(ConnectionTimeout) as caught:
                await call(rest)
    assert len(server.seen) == 1
    assert "may have been executed" in str(caught.value)


async def test_a_connect_that_times_out_is_retried_even_for_an_amend(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Nothing was sent when connecting timed out, so even an amend is safe to try again.
    close = [("Connection", "close")]
    connects = 0

    async with trio.open_nursery() as nursery:
        server = ScriptedHttpServer(nursery, lambda seen: Answer(body={}, headers=close))

        async def connect() -> trio.abc.Stream:
            nonlocal connects
            connects += 1
            if connects == 2:  # the connection after the server closed the first one
                await trio.sleep_forever()
            return await server.connect()

        with trio.fail_after(TIMEOUT):
            async with open_bitmex_rest(
                "https://www.bitmex.com/api/v1", "key", "secret", connect=connect, timeout=3.0
            ) as rest:
                await rest.wallet()
                assert await rest.amend_order(orderID="o-1", price=2.0) == {}
        nursery.cancel_scope.cancel()
    assert [s.method for s in server.seen] == ["GET", "PUT"]
    assert connects == 3
