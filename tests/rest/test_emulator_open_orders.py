"""``open_orders`` past one page against the emulator's paper exchange (its ``GET /order``
takes ``start`` and ``count`` as BitMEX's did), with orders canceled between pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from bitmex_trio_websocket import BitMEXRest, open_bitmex_rest
from bitmex_trio_websocket.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET, open_emulator
from bitmex_trio_websocket.emulator.rest import RestLimits

TIMEOUT = 60
BASE = "http://emulator/api/v1"
EPOCH = 1_767_225_600.0  # 2026-01-01
ORDERS = 1234
# Placing 1,234 orders at BitMEX's 120 a minute is ten virtual minutes of waiting in tiny steps:
# the limits are not what this checks.
UNLIMITED = RestLimits(per_minute=100_000, orders_per_second=100_000)


def wall() -> float:
    return EPOCH + trio.current_time()


@asynccontextmanager
async def account_with_orders() -> AsyncIterator[tuple[BitMEXRest, list[str], list[str]]]:
    """The client, the account's open orders before, then the ``ORDERS`` it placed."""
    async with open_emulator(
        listen=False, max_events=0, seed=7, rest_limits=UNLIMITED, clock=wall
    ) as emulator:
        async with open_bitmex_rest(
            BASE, DEFAULT_API_KEY, DEFAULT_API_SECRET,
            connect=emulator.connect_rest_in_memory, clock=wall, cl_ord_id_prefix="p",
        ) as rest:  # fmt: skip
            [best_bid] = [
                row["price"]
                for row in await rest.order_book("XBTUSD", depth=1)
                if row["side"] == "Buy"
            ]
            before = [row["orderID"] for row in await rest.open_orders()]
            placed = []
            for n in range(ORDERS):  # resting bids far below the book, at 20 prices
                row = await rest.place_order(
                    symbol="XBTUSD", side="Buy", orderQty=100, price=best_bid - 1000 - n % 20
                )
                assert row["ordStatus"] == "New"
                placed.append(row["orderID"])
            yield rest, before, placed


async def test_all_open_orders_once_oldest_first_even_with_cancels_between_pages(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One test, since placing the orders is most of its time.
    with trio.fail_after(TIMEOUT):
        async with account_with_orders() as (rest, before, placed):
            rows = await rest.open_orders()
            assert [row["orderID"] for row in rows] == before + placed
            assert all(row["ordStatus"] == "New" for row in rows)

            call = rest._call
            pages = 0

            async def between_pages(method: str, path: str, params: Mapping[str, Any]) -> Any:
                nonlocal pages
                result = await call(method, path, params)
                if (method, path) == ("GET", "/order"):
                    pages += 1
                    if pages == 1:  # 100 of the first page's orders are canceled now
                        await call("DELETE", "/order", {"orderID": placed[100:200]})
                return result

            monkeypatch.setattr(rest, "_call", between_pages)
            rows = await rest.open_orders()
            # Listed by the first page, the canceled ones stay (the list is as of the last
            # page); a client paging at start=500 would have missed 100 orders after them.
            assert [row["orderID"] for row in rows] == before + placed
            assert pages >= 3
            monkeypatch.undo()
            still_open = [row["orderID"] for row in await rest.open_orders()]
            assert still_open == before + placed[:100] + placed[200:]
