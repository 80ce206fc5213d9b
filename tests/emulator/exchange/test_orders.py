"""The paper exchange's orders: types, defaults, instructions, refusals, amends and cancels.

The venue is a hand-written visible book (``FakeBook``) so every fill below is computed by hand:
XBTUSD (inverse, lot 100, tick 0.5 here by the book's prices) with asks 95000.0 x 1000,
95000.5 x 2000, 95001.0 x 5000 and bids 94999.5 x 1000, 94999.0 x 2000, 94998.5 x 5000.
"""

from __future__ import annotations

from random import Random
from typing import Any

import pytest

from bitmex_trio_websocket._exceptions import BitMEXError
from bitmex_trio_websocket.emulator.exchange import (
    DuplicateClOrdID,
    Exchange,
    ExchangeError,
    InsufficientBalance,
    InvalidOrdStatus,
    NotFound,
    OrderRejected,
    UnknownAccount,
)
from bitmex_trio_websocket.emulator.market import Contract, Delta, spec_for
from bitmex_trio_websocket.emulator.market._schemas import TimeFormatter

T0 = 1_735_689_600.0
SYMBOLS = ("XBTUSD", "ETHUSD", "XBTUSDT")
ASKS = {95_000.0: 1000, 95_000.5: 2000, 95_001.0: 5000}
BIDS = {94_999.5: 1000, 94_999.0: 2000, 94_998.5: 5000}


class FakeBook:
    """A visible book (one for every symbol): taking consumes levels best first."""

    def __init__(self, bids: dict[float, int], asks: dict[float, int]) -> None:
        self.sides = {"Buy": dict(bids), "Sell": dict(asks)}
        self.matches = 0

    def best(self, symbol: str, side: str) -> float | None:
        levels = self.sides[side]
        if not levels:
            return None
        return max(levels) if side == "Buy" else min(levels)

    def level_size(self, symbol: str, side: str, price: float) -> int:
        return self.sides[side].get(price, 0)

    def take(
        self, symbol: str, buy: bool, limit: float | None, qty: int, now: float, out: list[Delta]
    ) -> list[tuple[float, int, str]]:
        side = self.sides["Sell" if buy else "Buy"]
        taken: list[tuple[float, int, str]] = []
        for price in sorted(side, reverse=not buy):
            if not qty or (limit is not None and (price > limit if buy else price < limit)):
                break
            size = min(side[price], qty)
            side[price] -= size
            qty -= size
            if not side[price]:
                del side[price]
            self.matches += 1
            taken.append((price, size, f"match-{self.matches}"))
            out.append(Delta("trade", "insert", symbol, [{"price": price, "size": size}]))
        return taken


def make(deposit: int = 10**8, **book: dict[float, int]) -> tuple[Exchange, FakeBook]:
    fake = FakeBook(book.get("bids", BIDS), book.get("asks", ASKS))
    contracts = {symbol: Contract(spec_for(symbol)) for symbol in SYMBOLS}
    marks = {"XBTUSD": 94_999.75, "ETHUSD": 3_300.0, "XBTUSDT": 95_000.0}
    exchange = Exchange(contracts, fake, Random(1), TimeFormatter(), marks=marks)
    exchange.add_account(7, {"XBt": deposit, "USDt": 10**10}, T0)
    return exchange, fake


def place(exchange: Exchange, **params: Any) -> tuple[dict[str, Any], list[Delta]]:
    params.setdefault("symbol", "XBTUSD")
    return exchange.place_order(7, params, T0 + 1)


def fills(deltas: list[Delta]) -> list[tuple[float, int, str]]:
    return [
        (row["lastPx"], row["lastQty"], row["lastLiquidityInd"])
        for delta in deltas
        if delta.table == "execution"
        for row in delta.rows
        if row["execType"] == "Trade"
    ]


def private(deltas: list[Delta]) -> list[tuple[str, str]]:
    return [(d.table, d.action) for d in deltas if d.account is not None]


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize(
    ("params", "ord_type", "tif", "side"),
    [
        ({"orderQty": 100, "price": 90_000.0}, "Limit", "GoodTillCancel", "Buy"),
        ({"orderQty": -100, "price": 99_000.0}, "Limit", "GoodTillCancel", "Sell"),
        ({"orderQty": -100, "stopPx": 90_000.0}, "Stop", "ImmediateOrCancel", "Sell"),
        ({"orderQty": 100, "stopPx": 99_000.0, "price": 99_100.0}, "StopLimit", "GoodTillCancel",
         "Buy"),
        ({"orderQty": 100, "stopPx": 90_000.0, "ordType": "MarketIfTouched"},
         "MarketIfTouched", "ImmediateOrCancel", "Buy"),
        ({"orderQty": 100, "stopPx": 90_000.0, "price": 89_000.0, "ordType": "LimitIfTouched"},
         "LimitIfTouched", "GoodTillCancel", "Buy"),
        ({"side": "Sell", "orderQty": 100, "price": 99_000.0, "timeInForce": "GoodTillCancel"},
         "Limit", "GoodTillCancel", "Sell"),
    ],
)  # fmt: skip
def test_ord_type_time_in_force_and_side_default_as_bitmex(
    params: dict[str, Any], ord_type: str, tif: str, side: str
) -> None:
    exchange, _ = make()
    row, _ = place(exchange, **params)
    assert (row["ordType"], row["timeInForce"], row["side"]) == (ord_type, tif, side)
    assert row["orderQty"] == 100 and row["ordStatus"] == "New"
    # a stop is not working until triggered (2020 testnet Stop row: workingIndicator false)
    assert row["workingIndicator"] is (ord_type == "Limit")
    assert ("stopPx" in row) is ("stopPx" in params) and ("price" in row) is ("price" in params)


def test_market_order_without_price_takes_and_shows_its_first_fill_price() -> None:
    exchange, book = make()
    row, deltas = place(exchange, orderQty=1500)
    # 1000 at 95000.0 then 500 at 95000.5, each at its own level's price, as taker
    assert fills(deltas) == [(95_000.0, 1000, "RemovedLiquidity"),
                             (95_000.5, 500, "RemovedLiquidity")]  # fmt: skip
    assert (row["ordType"], row["timeInForce"], row["ordStatus"]) == (
        "Market", "ImmediateOrCancel", "Filled")  # fmt: skip
    assert row["price"] == 95_000.0  # the first fill's price, as a 2020 market fill row showed
    assert row["avgPx"] == 95_000.17  # (1000 * 95000 + 500 * 95000.5) / 1500 = 95000.1667
    assert book.sides["Sell"] == {95_000.5: 1500, 95_001.0: 5000}


def test_market_order_stops_at_the_price_band_and_cancels_the_rest() -> None:
    """The band is 5% beyond the touch: 95000 * 1.05 = 99750; a level at 100000 is not taken."""
    exchange, _ = make(asks={95_000.0: 100, 100_000.0: 10_000})
    row, deltas = place(exchange, orderQty=300)
    assert fills(deltas) == [(95_000.0, 100, "RemovedLiquidity")]
    assert (row["ordStatus"], row["cumQty"], row["leavesQty"]) == ("Canceled", 100, 0)
    assert row["text"] == (
        "Canceled: Market order reached the price band with quantity remaining\nSubmitted via API."
    )


def test_limit_takes_what_crosses_and_rests_the_rest_behind_the_visible_size() -> None:
    exchange, _ = make()
    row, deltas = place(exchange, orderQty=1500, price=95_000.0, clOrdID="a")
    assert fills(deltas) == [(95_000.0, 1000, "RemovedLiquidity")]
    assert (row["ordStatus"], row["leavesQty"], row["cumQty"]) == ("PartiallyFilled", 500, 1000)
    assert row["workingIndicator"] is True
    assert [o["orderID"] for o in exchange.open_orders(7)] == [row["orderID"]]
    # the rest now rests at 95000.0; a sell trade there fills it as maker
    out: list[Delta] = []
    exchange.on_trade("XBTUSD", "Sell", 95_000.0, 500, T0 + 2, out)
    assert fills(out) == [(95_000.0, 500, "AddedLiquidity")]
    assert exchange.open_orders(7) == []


def test_immediate_or_cancel_and_fill_or_kill() -> None:
    exchange, book = make()
    row, deltas = place(exchange, orderQty=1500, price=95_000.0, timeInForce="ImmediateOrCancel")
    assert fills(deltas) == [(95_000.0, 1000, "RemovedLiquidity")]
    assert (row["ordStatus"], row["leavesQty"], row["cumQty"]) == ("Canceled", 0, 1000)
    assert row["text"] == (
        "Canceled: Order had timeInForce of ImmediateOrCancel\nSubmitted via API."
    )
    # FillOrKill: 2000 visible at or below 95000.5 is not 2500: nothing trades
    row, deltas = place(exchange, orderQty=2500, price=95_000.5, timeInForce="FillOrKill")
    assert fills(deltas) == [] and (row["ordStatus"], row["cumQty"]) == ("Canceled", 0)
    assert row["text"].startswith("Canceled: Order had timeInForce of FillOrKill\n")
    assert book.sides["Sell"][95_000.5] == 2000
    row, deltas = place(exchange, orderQty=2000, price=95_000.5, timeInForce="FillOrKill")
    assert fills(deltas) == [(95_000.5, 2000, "RemovedLiquidity")]
    assert row["ordStatus"] == "Filled"


def test_post_only_that_would_take_is_inserted_canceled_in_one_message() -> None:
    exchange, book = make()
    row, deltas = place(exchange, orderQty=100, price=95_000.0,
                        execInst="ParticipateDoNotInitiate")  # fmt: skip
    # since December 2019 one order insert, already Canceled (moonbot capture line 10)
    assert private(deltas)[:2] == [("order", "insert"), ("execution", "insert")]
    assert deltas[0].rows[0]["ordStatus"] == "Canceled" and fills(deltas) == []
    assert row["text"] == (
        "Canceled: Order had execInst of ParticipateDoNotInitiate\nSubmitted via API."
    )
    assert book.sides["Sell"][95_000.0] == 1000
    row, _ = place(exchange, orderQty=100, price=94_999.5, execInst="ParticipateDoNotInitiate")
    assert (row["ordStatus"], row["execInst"]) == ("New", "ParticipateDoNotInitiate")


def test_reduce_only_and_close_never_increase_a_position() -> None:
    exchange, _ = make()
    exchange.seed_position(7, "XBTUSD", 300, 95_000.0)
    with pytest.raises(OrderRejected) as info:
        place(exchange, orderQty=100, price=94_000.0, execInst="ReduceOnly")
    assert info.value.message == (
        "Order had execInst of ReduceOnly and side of Buy but current position is 300"
    )
    # a reduce-only sell of 500 against a long of 300 fills 300 and cancels the rest
    row, deltas = place(exchange, orderQty=-500, price=94_998.5, execInst="ReduceOnly")
    assert fills(deltas) == [(94_999.5, 300, "RemovedLiquidity")]
    assert (row["ordStatus"], row["cumQty"]) == ("Canceled", 300)
    assert row["text"].startswith(
        "Canceled: Order had execInst of ReduceOnly and side of Sell but current position is 0"
    )
    assert exchange.positions(7)[0]["currentQty"] == 0
    # Close without a quantity closes the whole position, on the side that reduces it
    exchange.seed_position(7, "XBTUSD", -200, 95_000.0)
    row, deltas = place(exchange, execInst="Close", ordType="Market")
    assert (row["side"], row["orderQty"], row["ordStatus"]) == ("Buy", 200, "Filled")
    assert exchange.positions(7)[0]["currentQty"] == 0
    with pytest.raises(OrderRejected, match="execInst of Close and side of Buy but current"):
        place(exchange, execInst="Close", ordType="Market")


# --------------------------------------------------------------------------- refusals

REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"symbol": "NOPE", "orderQty": 100, "price": 1.0}, "Invalid symbol"),
    ({"side": "buy", "orderQty": 100, "price": 90_000.0}, "Invalid side"),
    ({"price": 90_000.0}, "Invalid orderQty"),
    ({"orderQty": 0, "price": 90_000.0}, "Invalid orderQty"),
    ({"side": "Buy", "orderQty": -100, "price": 90_000.0}, "Invalid orderQty"),
    ({"orderQty": 150, "price": 90_000.0}, "Order quantity must be a multiple of lot size: 100"),
    ({"orderQty": 100, "price": 90_000.05}, "Invalid price tickSize"),
    ({"orderQty": 100, "price": -1.0}, "Invalid price"),
    ({"orderQty": 100, "ordType": "Limit"}, "Invalid price"),
    ({"orderQty": 100, "ordType": "Market", "price": 90_000.0}, "Invalid price"),
    ({"orderQty": 100, "price": 90_000.0, "stopPx": 1.0, "ordType": "Limit"},
     "Invalid stopPx for ordType"),
    ({"orderQty": 100, "ordType": "Stop"}, "Invalid stopPx for ordType"),
    ({"orderQty": 100, "stopPx": 90_000.01}, "Invalid stopPx tickSize"),
    ({"orderQty": 100, "ordType": "Pegged"}, "Unsupported ordType"),
    ({"orderQty": 100, "price": 90_000.0, "timeInForce": "Day"}, "Unsupported timeInForce"),
    ({"orderQty": 100, "price": 90_000.0, "execInst": "AllOrNone"}, "Unsupported execInst"),
    ({"orderQty": 100, "stopPx": 90_000.0, "execInst": "MarkPrice,LastPrice"},
     "Invalid execInst"),
    ({"orderQty": 100, "price": 90_000.0, "execInst": "ParticipateDoNotInitiate",
      "timeInForce": "ImmediateOrCancel"}, "Invalid ordType or timeInForce for execInst"),
    ({"orderQty": 100, "execInst": "ParticipateDoNotInitiate"},
     "Invalid ordType or timeInForce for execInst"),
    ({"orderQty": 100, "price": 90_000.0, "execInst": "LastPrice"},
     "Invalid ordType for execInst"),
    ({"orderQty": 100, "price": 90_000.0, "displayQty": 0}, "Invalid displayQty"),
    ({"orderQty": 100, "price": 90_000.0, "pegPriceType": "PrimaryPeg"},
     "Unsupported pegPriceType"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "message"), REFUSALS)
def test_refusals_carry_bitmex_texts(params: dict[str, Any], message: str) -> None:
    exchange, _ = make()
    with pytest.raises(OrderRejected) as info:
        place(exchange, **params)
    error = info.value
    assert (error.status, error.name, error.message, str(error)) == (
        400, "HTTPError", message, message)  # fmt: skip
    assert error.to_json() == {"error": {"message": message, "name": "HTTPError"}}
    assert isinstance(error, BitMEXError) and isinstance(error, ValueError)
    assert exchange.orders(7) == []  # a refused order leaves no trace


def test_duplicate_clordid_is_refused_even_after_the_first_closed() -> None:
    exchange, _ = make()
    row, _ = place(exchange, orderQty=100, price=90_000.0, clOrdID="x-1")
    exchange.cancel_orders(7, [row["orderID"]], [], T0 + 2)
    with pytest.raises(DuplicateClOrdID) as info:
        place(exchange, orderQty=100, price=90_000.0, clOrdID="x-1")
    assert (info.value.status, info.value.message) == (400, "Duplicate clOrdID")


def test_insufficient_available_balance() -> None:
    """1000 XBTUSD at 94000: per lot round(1e8 * 100 / 94000) = 106383, so 1063830 XBt; times
    (1/10 initial margin + 0.075% taker fee) = 107180.9 -> 107181 XBt required."""
    exchange, _ = make(deposit=100_000)
    with pytest.raises(InsufficientBalance) as info:
        place(exchange, orderQty=1000, price=94_000.0)
    error = info.value
    assert (error.status, error.name, error.message) == (
        400, "ValidationError",
        "Account has insufficient Available Balance, 107181 XBt required",
    )  # fmt: skip
    place(exchange, orderQty=900, price=94_000.0)  # 96463 fits in 100000


def test_unknown_account_and_existing_account() -> None:
    exchange, _ = make()
    with pytest.raises(UnknownAccount) as info:
        exchange.place_order(99, {"symbol": "XBTUSD", "orderQty": 100}, T0)
    assert isinstance(info.value, KeyError) and info.value.status == 401
    with pytest.raises(ValueError, match="already exists"):
        exchange.add_account(7, {}, T0)


# --------------------------------------------------------------------------- stops


def test_stop_triggers_on_the_mark_and_arrives_as_a_market_order() -> None:
    exchange, _ = make()
    row, deltas = place(exchange, orderQty=-200, stopPx=94_000.0)  # sell stop, MarkPrice
    assert fills(deltas) == [] and row["workingIndicator"] is False
    out: list[Delta] = []
    exchange.on_prices("XBTUSD", T0 + 2, out, last=93_000.0)  # the last price does not count
    assert out == []
    exchange.on_prices("XBTUSD", T0 + 3, out, mark=94_000.0)
    orders = [r for d in out if d.table == "order" for r in d.rows]
    assert orders[0]["triggered"] == "StopOrderTriggered"
    assert orders[0]["text"] == "Triggered: Order stop price reached\nSubmitted via API."
    executions = [r["execType"] for d in out if d.table == "execution" for r in d.rows]
    assert executions == ["TriggeredOrActivatedBySystem", "Trade"]
    assert fills(out) == [(94_999.5, 200, "RemovedLiquidity")]
    assert exchange.orders(7)[0]["ordStatus"] == "Filled"


@pytest.mark.parametrize(
    ("ord_type", "side", "stop_px", "kind", "moves", "fires_at"),
    [
        ("StopLimit", "Buy", 96_000.0, "LastPrice", [95_500.0, 96_000.0], 96_000.0),
        ("MarketIfTouched", "Buy", 94_000.0, "IndexPrice", [94_500.0, 93_999.5], 93_999.5),
        ("LimitIfTouched", "Sell", 96_000.0, "MarkPrice", [95_999.5, 96_500.0], 96_500.0),
        ("Stop", "Buy", 96_000.0, "MarkPrice", [95_999.5, 96_000.0], 96_000.0),
    ],
)
def test_trigger_directions_and_sources(
    ord_type: str, side: str, stop_px: float, kind: str, moves: list[float], fires_at: float
) -> None:
    """Stops trigger buying at or above stopPx and selling at or below; if-touched orders the
    other way round; on the price execInst names (MarkPrice by default)."""
    exchange, _ = make()
    params: dict[str, Any] = {"side": side, "orderQty": 100, "stopPx": stop_px,
                              "ordType": ord_type}  # fmt: skip
    if ord_type.endswith("Limit") or ord_type == "LimitIfTouched":
        params["price"] = 95_000.0 if side == "Buy" else 94_999.5
    if kind != "MarkPrice":
        params["execInst"] = kind
    place(exchange, **params)
    arg = {"LastPrice": "last", "MarkPrice": "mark", "IndexPrice": "index"}[kind]
    fired_at = None
    for index, price in enumerate(moves):
        out: list[Delta] = []
        exchange.on_prices("XBTUSD", T0 + 2 + index, out, **{arg: price})
        if any(r.get("triggered") for d in out if d.table == "order" for r in d.rows):
            fired_at = price
            break
    assert fired_at == fires_at
    assert fills(out) and exchange.orders(7)[0]["ordStatus"] == "Filled"


def test_a_stop_already_through_its_price_triggers_at_once() -> None:
    exchange, _ = make()
    exchange.on_prices("XBTUSD", T0, [], last=95_000.0)
    row, deltas = place(exchange, orderQty=100, stopPx=94_000.0, execInst="LastPrice")
    assert row["triggered"] == "StopOrderTriggered" and row["ordStatus"] == "Filled"
    assert fills(deltas) == [(95_000.0, 100, "RemovedLiquidity")]


# --------------------------------------------------------------------------- amend


def test_amend_quantity_price_leaves_and_stop() -> None:
    exchange, _ = make()
    row, _ = place(exchange, orderQty=500, price=94_000.0, clOrdID="a")
    row, deltas = exchange.amend_order(7, {"origClOrdID": "a", "orderQty": 300}, T0 + 2)
    assert private(deltas)[:2] == [("order", "update"), ("execution", "insert")]
    assert deltas[1].rows[0]["execType"] == "Replaced"
    assert (row["orderQty"], row["leavesQty"]) == (300, 300)
    assert row["text"] == "Amended orderQty: Amended via API.\nSubmitted via API."
    row, _ = exchange.amend_order(
        7, {"orderID": row["orderID"], "leavesQty": 200, "price": 94_500.0, "clOrdID": "b"},
        T0 + 3,
    )  # fmt: skip
    assert (row["orderQty"], row["leavesQty"], row["price"], row["clOrdID"]) == (
        200, 200, 94_500.0, "b")  # fmt: skip
    # a price that now crosses takes liquidity at once
    row, deltas = exchange.amend_order(7, {"origClOrdID": "b", "price": 95_000.0}, T0 + 4)
    assert fills(deltas) == [(95_000.0, 200, "RemovedLiquidity")] and row["ordStatus"] == "Filled"
    with pytest.raises(InvalidOrdStatus) as info:
        exchange.amend_order(7, {"origClOrdID": "b", "orderQty": 100}, T0 + 5)
    assert info.value.message == "Invalid ordStatus: Filled"
    stop, _ = place(exchange, orderQty=-100, stopPx=90_000.0)
    stop, _ = exchange.amend_order(7, {"orderID": stop["orderID"], "stopPx": 91_000.0}, T0 + 6)
    assert stop["stopPx"] == 91_000.0
    out: list[Delta] = []
    exchange.on_prices("XBTUSD", T0 + 7, out, mark=91_000.0)
    assert any(r.get("triggered") for d in out if d.table == "order" for r in d.rows)


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({}, OrderRejected, "orderID or origClOrdID must be sent."),
        ({"orderID": "nope", "orderQty": 100}, NotFound, "Not Found"),
        ({"origClOrdID": "a", "orderQty": 150}, OrderRejected,
         "Order quantity must be a multiple of lot size: 100"),
        ({"origClOrdID": "a", "leavesQty": 50}, OrderRejected, "Invalid leavesQty for lotSize"),
        ({"origClOrdID": "a", "price": 94_000.01}, OrderRejected, "Invalid price tickSize"),
        ({"origClOrdID": "a", "stopPx": 94_000.0}, OrderRejected, "Invalid stopPx for ordType"),
        ({"origClOrdID": "a", "clOrdID": "z"}, DuplicateClOrdID, "Duplicate clOrdID"),
    ],
)  # fmt: skip
def test_amend_refusals(params: dict[str, Any], error: type[ExchangeError], message: str) -> None:
    exchange, _ = make()
    place(exchange, orderQty=500, price=94_000.0, clOrdID="a")
    place(exchange, orderQty=500, price=94_000.0, clOrdID="z")
    with pytest.raises(error) as info:
        exchange.amend_order(7, params, T0 + 2)
    assert info.value.message == message


# --------------------------------------------------------------------------- cancels


def test_cancels_by_id_and_clordid_and_closed_orders_say_why_not() -> None:
    exchange, _ = make()
    first, _ = place(exchange, orderQty=100, price=94_000.0, clOrdID="one")
    second, _ = place(exchange, orderQty=100, price=94_000.0)
    filled, _ = place(exchange, orderQty=100, price=95_000.0)
    rows, deltas = exchange.cancel_orders(7, [second["orderID"], filled["orderID"]], ["one"],
                                          T0 + 2, text="Spread Exceeded")  # fmt: skip
    assert [r["orderID"] for r in rows] == [second["orderID"], filled["orderID"],
                                            first["orderID"]]  # fmt: skip
    assert rows[0]["text"] == "Canceled: Spread Exceeded\nSubmitted via API."
    assert rows[1]["error"] == "Unable to cancel order due to existing state: Filled"
    assert "error" not in rows[0] and rows[2]["ordStatus"] == "Canceled"
    # one order update message and one execution insert message for the two canceled
    assert private(deltas)[:2] == [("order", "update"), ("execution", "insert")]
    assert len(deltas[0].rows) == 2
    with pytest.raises(NotFound) as info:
        exchange.cancel_orders(7, ["no-such-order"], [], T0 + 3)
    assert (info.value.status, info.value.message) == (404, "Not Found")
    assert isinstance(info.value, KeyError)


def test_cancel_all_by_symbol_and_filter_and_the_dead_mans_switch() -> None:
    exchange, _ = make()
    place(exchange, orderQty=100, price=94_000.0)
    place(exchange, orderQty=-100, price=96_000.0)
    place(exchange, symbol="ETHUSD", orderQty=10, price=3_000.0)
    rows, _ = exchange.cancel_all(7, T0 + 2, symbol="XBTUSD", filter={"side": "Sell"})
    assert [(r["symbol"], r["side"]) for r in rows] == [("XBTUSD", "Sell")]
    rows, deltas = exchange.cancel_all(7, T0 + 3, text="Canceled: Cancel from cancelAllAfter")
    assert sorted(r["symbol"] for r in rows) == ["ETHUSD", "XBTUSD"]
    assert {r["text"] for r in rows} == {"Canceled: Cancel from cancelAllAfter\nSubmitted via API."}
    # per symbol: order update, execution insert; then position/margin changes
    assert [d.symbol for d in deltas if d.table == "order"] == ["XBTUSD", "ETHUSD"]
    assert exchange.open_orders(7) == [] and exchange.cancel_all(7, T0 + 4) == ([], [])


def test_leverage_changes_the_position_and_margin() -> None:
    exchange, _ = make()
    place(exchange, orderQty=1000, price=95_000.0)
    row, deltas = exchange.set_leverage(7, "XBTUSD", 5, T0 + 2)
    assert row["leverage"] == 5.0 and row["currentQty"] == 1000
    assert ("position", "update") in private(deltas)
    with pytest.raises(OrderRejected, match="Invalid leverage"):
        exchange.set_leverage(7, "XBTUSD", 1000, T0 + 3)
