"""The exchange's options and late contracts: ``add_contract``, ``queue_window``, ``through``.

Same hand-written book as ``test_orders`` (asks 95000.0 x 1000 ..., bids 94999.5 x 1000 ...).
"""

from __future__ import annotations

from random import Random
from typing import Any

import pytest

from bitmex_trio_websocket.emulator.exchange import Exchange, OrderRejected
from bitmex_trio_websocket.emulator.market import Contract, Delta, spec_for
from bitmex_trio_websocket.emulator.market._schemas import TimeFormatter

from .test_orders import ASKS, BIDS, T0, FakeBook, fills, make, place


def test_add_contract_makes_a_symbol_tradable_later() -> None:
    book = FakeBook(BIDS, ASKS)
    contracts = {"ETHUSD": Contract(spec_for("ETHUSD"))}
    exchange = Exchange(contracts, book, Random(1), TimeFormatter(), marks={"ETHUSD": 3300.0})
    exchange.add_account(7, {"XBt": 10**8}, T0)
    order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 95_000.0}
    with pytest.raises(OrderRejected, match="Invalid symbol"):
        exchange.place_order(7, order, T0)
    assert exchange.symbols == {"ETHUSD"}

    exchange.add_contract("XBTUSD", Contract(spec_for("XBTUSD")), 94_999.75)
    assert exchange.symbols == {"ETHUSD", "XBTUSD"}
    row, deltas = exchange.place_order(7, order, T0)
    assert row["ordStatus"] == "Filled" and fills(deltas) == [(95_000.0, 100, "RemovedLiquidity")]
    (position,) = exchange.positions(7)
    assert position["markPrice"] == 94_999.75 and position["currentQty"] == 100

    # a resting order there keeps its place when the contract is read again (same instrument)
    resting = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 94_999.5}
    row, _ = exchange.place_order(7, resting, T0)
    exchange.add_contract("XBTUSD", Contract(spec_for("XBTUSD")), 1.0)
    out: list[Delta] = []
    exchange.on_trade("XBTUSD", "Sell", 94_999.5, 1100, T0 + 1, out)  # 1000 ahead, then ours
    assert fills(out) == [(94_999.5, 100, "AddedLiquidity")]
    assert exchange.positions(7)[0]["markPrice"] == 94_999.75  # the mark is not reset


@pytest.mark.parametrize(("window", "early"), [(0.0, True), (0.005, False)])
def test_queue_window_reconciles_a_trade_and_its_decrease_3ms_apart(
    window: float, early: bool
) -> None:
    book = FakeBook(BIDS, ASKS)
    contracts = {"XBTUSD": Contract(spec_for("XBTUSD"))}
    exchange = Exchange(contracts, book, Random(1), TimeFormatter(),
                        marks={"XBTUSD": 94_999.75}, queue_window=window)  # fmt: skip
    exchange.add_account(7, {"XBt": 10**8}, T0)
    order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 94_999.5}
    exchange.place_order(7, order, T0)  # 1000 ahead
    out: list[Delta] = []
    exchange.on_trade("XBTUSD", "Sell", 94_999.5, 600, T0 + 1, out)  # 400 ahead
    exchange.on_level("XBTUSD", "Buy", 94_999.5, 400, T0 + 1.003, out)  # that trade's update
    exchange.on_trade("XBTUSD", "Sell", 94_999.5, 400, T0 + 2, out)
    assert bool(fills(out)) is early  # 600 off twice without the window
    exchange.on_trade("XBTUSD", "Sell", 94_999.5, 100, T0 + 3, out)
    assert sum(qty for _, qty, _ in fills(out)) == 100


def test_a_fill_the_queue_did_not_make_is_written_back_to_it() -> None:
    exchange, _ = make()
    row, _ = place(exchange, side="Buy", orderQty=200, price=94_999.0)  # 2000 ahead
    exchange.fill_order(7, row["orderID"], T0 + 1, qty=100)  # filled outside the queue
    out: list[Delta] = []
    exchange.on_trade("XBTUSD", "Sell", 94_999.0, 2200, T0 + 2, out)  # 200 past the front
    assert fills(out) == [(94_999.0, 100, "AddedLiquidity")]  # the 100 left, not 200
    (order,) = exchange.orders(7)
    assert (order["ordStatus"], order["leavesQty"], order["cumQty"]) == ("Filled", 0, 200)
    assert not exchange.active("XBTUSD")


def test_an_order_filled_by_the_hook_leaves_its_queue() -> None:
    exchange, _ = make()
    row, _ = place(exchange, side="Buy", orderQty=200, price=94_999.0)
    exchange.fill_order(7, row["orderID"], T0 + 1)
    assert not exchange.active("XBTUSD")  # on_level/on_trade return at once again


def test_a_reduce_only_fill_cut_to_the_position_leaves_nothing_in_the_queue() -> None:
    exchange, _ = make()
    place(exchange, side="Buy", orderQty=100, price=95_001.0)  # long 100
    place(exchange, side="Sell", orderQty=200, price=95_002.0, execInst="ReduceOnly")
    out: list[Delta] = []
    exchange.on_trade("XBTUSD", "Buy", 95_002.0, 150, T0 + 2, out)  # the queue reports 150
    assert fills(out) == [(95_002.0, 100, "AddedLiquidity")]  # cut to the position
    order = exchange.orders(7)[-1]
    assert (order["ordStatus"], order["cumQty"]) == ("Canceled", 100)
    assert not exchange.active("XBTUSD")
    out.clear()
    exchange.on_trade("XBTUSD", "Buy", 95_002.0, 500, T0 + 3, out)
    assert out == []


@pytest.mark.parametrize(("through", "filled"), [(None, 1), ("volume", 1), ("whole", 1000)])
def test_a_one_contract_print_through_a_1000_lot_bid(through: str | None, filled: int) -> None:
    # docs/fill-model.rst's example: "volume" (the default) fills what traded, "whole" it all
    book = FakeBook(BIDS, ASKS)
    contracts = {"XBTUSD": Contract(spec_for("XBTUSD"))}
    options: dict[str, Any] = {} if through is None else {"queue_through": through}
    exchange = Exchange(contracts, book, Random(1), TimeFormatter(),
                        marks={"XBTUSD": 94_999.75}, **options)  # fmt: skip
    exchange.add_account(7, {"XBt": 10**8}, T0)
    order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 1000, "price": 94_999.0}
    exchange.place_order(7, order, T0)  # 2000 ahead
    out: list[Delta] = []
    exchange.on_trade("XBTUSD", "Sell", 94_998.5, 1, T0 + 1, out)
    assert fills(out) == [(94_999.0, filled, "AddedLiquidity")]
