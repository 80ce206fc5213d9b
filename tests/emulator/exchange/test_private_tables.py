"""The paper exchange's private tables: what BitMEX sent, in its order, and convergence.

Sequences are asserted in order against hand-written expectations (a placement, a fill across
two levels, a cancel); then a property: any mix of commands and market events, applied as
deltas to the first partials, gives exactly the partials at the end (every row BitMEX would
have kept in a client's table), and every execution agrees with its order.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitmex_trio_websocket.emulator.exchange import Exchange, ExchangeError
from bitmex_trio_websocket.emulator.market import Delta

from .test_orders import T0, make, place

KEYS = {
    "order": ("orderID",),
    "position": ("account", "symbol", "strategy"),
    "margin": ("account", "currency"),
    "wallet": ("account", "currency"),
}
TS1 = "2025-01-01T00:00:01.000Z"


def shape(deltas: list[Delta]) -> list[tuple[str, str]]:
    return [(d.table, d.action) for d in deltas]


def test_placement_sends_order_then_execution_then_position_then_margin() -> None:
    exchange, _ = make()
    row, deltas = place(exchange, orderQty=1000, price=94_000.0, clOrdID="c")
    assert shape(deltas) == [
        ("order", "insert"), ("execution", "insert"), ("position", "insert"), ("margin", "update"),
    ]  # fmt: skip
    assert all(d.account == 7 for d in deltas)
    expected = {
        "orderID": row["orderID"], "clOrdID": "c", "account": 7, "symbol": "XBTUSD",
        "strategy": "OneWay", "side": "Buy", "orderQty": 1000, "price": 94_000.0,
        "currency": "USD", "settlCurrency": "XBt", "ordType": "Limit",
        "timeInForce": "GoodTillCancel", "ordStatus": "New", "workingIndicator": True,
        "leavesQty": 1000, "cumQty": 0, "text": "Submitted via API.", "transactTime": TS1,
        "timestamp": TS1,
    }  # fmt: skip
    (inserted,) = deltas[0].rows
    assert list(inserted.items()) == list(expected.items())  # BitMEX's columns, in its order
    (execution,) = deltas[1].rows
    assert (execution["execType"], execution["ordStatus"], execution["orderID"]) == (
        "New", "New", row["orderID"])  # fmt: skip
    assert {"lastQty", "trdMatchID", "stopPx", "execInst"}.isdisjoint(execution)
    (position,) = deltas[2].rows
    assert (position["openOrderBuyQty"], position["currentQty"]) == (1000, 0)
    (margin,) = deltas[3].rows
    # the order holds 1063830 XBt * (1/10 + 0.075%) = 107181 XBt of initial margin
    assert (margin["initMargin"], margin["availableMargin"]) == (107_181, 10**8 - 107_181)
    assert set(margin) >= {"account", "currency", "timestamp"}


def test_a_fill_across_two_levels_in_bitmex_order() -> None:
    """Buy 1500 at 95000.5: 1000 at 95000.0 (10 lots of round(1e10 / 95000) = 105263 XBt:
    execCost -1052630, fee 0.075% = 789.47 -> 789) and 500 at 95000.5 (5 lots of
    round(1e10 / 95000.5) = 105263: -526315, fee 394.74 -> 395)."""
    exchange, _ = make()
    _, deltas = place(exchange, orderQty=1500, price=95_000.5)
    assert shape(deltas) == [
        ("order", "insert"), ("execution", "insert"),
        ("trade", "insert"), ("trade", "insert"),  # the venue's public deltas come first
        ("order", "update"), ("execution", "insert"), ("order", "update"), ("execution", "insert"),
        ("position", "insert"), ("margin", "update"), ("wallet", "update"),
    ]  # fmt: skip
    first, second = deltas[4].rows[0], deltas[6].rows[0]
    assert {k: first[k] for k in ("ordStatus", "leavesQty", "cumQty", "avgPx")} == {
        "ordStatus": "PartiallyFilled",
        "leavesQty": 500,
        "cumQty": 1000,
        "avgPx": 95_000.0,
    }
    assert {k: second[k] for k in ("ordStatus", "leavesQty", "cumQty", "avgPx")} == {
        "ordStatus": "Filled",
        "leavesQty": 0,
        "cumQty": 1500,
        "avgPx": 95_000.17,
    }
    assert second["workingIndicator"] is False
    assert {"clOrdID", "account", "symbol"} & set(first) == {"account", "symbol"}  # no clOrdID
    trades = [deltas[5].rows[0], deltas[7].rows[0]]
    assert [(t["lastQty"], t["lastPx"], t["execCost"], t["execComm"]) for t in trades] == [
        (1000, 95_000.0, -1_052_630, 789), (500, 95_000.5, -526_315, 395)]  # fmt: skip
    assert [t["trdMatchID"] for t in trades] == ["match-1", "match-2"]
    assert [t["realisedPnl"] for t in trades] == [-789, -395]  # opening: only the fee
    assert trades[0]["foreignNotional"] == -1000.0 and trades[0]["homeNotional"] == 0.0105263
    (position,) = deltas[8].rows
    assert (position["currentQty"], position["currentCost"]) == (1500, -1_578_945)
    (wallet,) = deltas[10].rows
    assert wallet["amount"] == 10**8 - 789 - 395
    assert exchange.executions(7)[-1]["execType"] == "Trade"


def test_cancel_sends_order_update_execution_then_position_and_margin() -> None:
    exchange, _ = make()
    row, _ = place(exchange, orderQty=1000, price=94_000.0, clOrdID="c")
    _, deltas = exchange.cancel_orders(7, [], ["c"], T0 + 2)
    assert shape(deltas) == [
        ("order", "update"), ("execution", "insert"), ("position", "update"), ("margin", "update"),
    ]  # fmt: skip
    assert deltas[0].rows == [{
        "orderID": row["orderID"], "ordStatus": "Canceled", "workingIndicator": False,
        "leavesQty": 0, "text": "Canceled: Canceled via API.\nSubmitted via API.",
        "transactTime": "2025-01-01T00:00:02.000Z", "timestamp": "2025-01-01T00:00:02.000Z",
        "clOrdID": "c", "account": 7, "symbol": "XBTUSD",
    }]  # fmt: skip
    assert deltas[1].rows[0]["execType"] == "Canceled"
    assert deltas[2].rows[0]["openOrderBuyQty"] == 0
    assert deltas[3].rows[0]["initMargin"] == 0


def test_the_execution_partial_is_empty_and_accounts_are_separate() -> None:
    exchange, _ = make()
    exchange.add_account(8, {"XBt": 10**8}, T0)
    place(exchange, orderQty=100, price=95_000.0)
    assert exchange.rows("execution", 7, None) == []
    assert exchange.rows("order", 8, None) == [] and exchange.positions(8) == []
    assert len(exchange.executions(7)) == 2 and exchange.executions(8) == []


# --------------------------------------------------------------------------- convergence


class Model:
    """A client's tables: first partials, then every delta applied by key."""

    def __init__(self, exchange: Exchange) -> None:
        self.tables = {
            table: {self.key(table, row): dict(row) for row in exchange.rows(table, 7, None)}
            for table in KEYS
        }
        self.executions: list[dict[str, Any]] = []

    @staticmethod
    def key(table: str, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[name] for name in KEYS[table])

    def apply(self, delta: Delta) -> None:
        if delta.account is None:
            return
        assert delta.account == 7
        if delta.table == "execution":
            assert delta.action == "insert"
            self.executions.extend(delta.rows)
            return
        rows = self.tables[delta.table]
        for row in delta.rows:
            key = self.key(delta.table, row)
            if delta.action == "insert":
                assert key not in rows
                rows[key] = dict(row)
            else:
                assert delta.action == "update" and key in rows
                rows[key].update(row)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("limit"), st.sampled_from([1, -1]), st.integers(-6, 6),
                  st.integers(1, 30), st.sampled_from(["GoodTillCancel", "ImmediateOrCancel",
                                                       "FillOrKill", "PostOnly", "ReduceOnly"])),
        st.tuples(st.just("market"), st.sampled_from([1, -1]), st.integers(1, 30)),
        st.tuples(st.just("stop"), st.sampled_from([1, -1]), st.integers(-6, 6),
                  st.integers(1, 10)),
        st.tuples(st.just("amend"), st.integers(0, 20), st.integers(-6, 6), st.integers(1, 30)),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("cancel_all")),
        st.tuples(st.just("trade"), st.sampled_from(["Buy", "Sell"]), st.integers(-6, 6),
                  st.integers(1, 40)),
        st.tuples(st.just("level"), st.sampled_from(["Buy", "Sell"]), st.integers(-6, 6),
                  st.integers(0, 40)),
        st.tuples(st.just("mark"), st.integers(-20, 20)),
    ),
    max_size=30,
)  # fmt: skip


def tick(offset: int) -> float:
    return 95_000.0 + 0.5 * offset


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_any_activity_converges(script: list[tuple[Any, ...]]) -> None:
    exchange, _ = make()
    exchange.seed_position(7, "XBTUSD", 500, 95_000.0)
    model = Model(exchange)
    ids: list[str] = []
    now = T0
    for op in script:
        now += 0.25
        out: list[Delta] = []
        try:
            if op[0] == "limit":
                _, sign, offset, lots, kind = op
                params: dict[str, Any] = {"symbol": "XBTUSD", "orderQty": sign * 100 * lots,
                                          "price": tick(offset)}  # fmt: skip
                if kind == "PostOnly":
                    params["execInst"] = "ParticipateDoNotInitiate"
                elif kind == "ReduceOnly":
                    params["execInst"] = "ReduceOnly"
                else:
                    params["timeInForce"] = kind
                row, out = exchange.place_order(7, params, now)
                ids.append(row["orderID"])
            elif op[0] == "market":
                params = {"symbol": "XBTUSD", "orderQty": op[1] * 100 * op[2]}
                row, out = exchange.place_order(7, params, now)
            elif op[0] == "stop":
                params = {"symbol": "XBTUSD", "orderQty": op[1] * 100 * op[3],
                          "stopPx": tick(op[2] + 8 * op[1])}  # fmt: skip
                row, out = exchange.place_order(7, params, now)
                ids.append(row["orderID"])
            elif op[0] == "amend" and ids:
                params = {"orderID": ids[op[1] % len(ids)], "price": tick(op[2]),
                          "orderQty": 100 * op[3]}  # fmt: skip
                _, out = exchange.amend_order(7, params, now)
            elif op[0] == "cancel" and ids:
                _, out = exchange.cancel_orders(7, [ids[op[1] % len(ids)]], [], now)
            elif op[0] == "cancel_all":
                _, out = exchange.cancel_all(7, now)
            elif op[0] == "trade":
                exchange.on_trade("XBTUSD", op[1], tick(op[2]), 100 * op[3], now, out)
            elif op[0] == "level":
                exchange.on_level("XBTUSD", op[1], tick(op[2]), 100 * op[3], now, out)
            elif op[0] == "mark":
                exchange.on_prices("XBTUSD", now, out, mark=tick(op[1]), last=tick(op[1]))
        except ExchangeError:
            assert out == []  # a refused command changes nothing
        for delta in out:
            model.apply(delta)
    for table in KEYS:
        expected = {Model.key(table, row): row for row in exchange.rows(table, 7, None)}
        assert model.tables[table] == expected, table
    # every order's cumQty is the sum of its Trade executions, which never exceed orderQty
    traded: dict[str, int] = {}
    for execution in model.executions:
        if execution["execType"] == "Trade" and execution.get("text") != "Liquidation":
            traded[execution["orderID"]] = (
                traded.get(execution["orderID"], 0) + execution["lastQty"]
            )
    for (order_id,), row in model.tables["order"].items():
        assert row["cumQty"] == traded.get(order_id, 0) <= row["orderQty"]
        assert row["leavesQty"] >= 0
        if row["ordStatus"] in ("Filled", "Canceled"):
            assert row["leavesQty"] == 0 and row["workingIndicator"] is False


def test_same_calls_same_rows() -> None:
    """Ids come from the exchange's seeded Random: two exchanges given the same calls agree."""

    def run() -> list[Any]:
        exchange, _ = make()
        out: list[Any] = []
        for price in (94_000.0, 95_000.0, 94_500.0):
            row, deltas = place(exchange, orderQty=300, price=price)
            out.append([row, [(d.table, d.rows) for d in deltas]])
        out.append(exchange.cancel_all(7, T0 + 5))
        return out

    assert run() == run()


@pytest.mark.parametrize("symbol", ["ETHUSD", "XBTUSDT"])
def test_quanto_and_linear_fills_move_their_own_currency(symbol: str) -> None:
    exchange, _ = make()
    lot = 1 if symbol == "ETHUSD" else 1000
    _, deltas = place(exchange, symbol=symbol, orderQty=10 * lot, price=95_000.0)
    money = [d for d in deltas if d.table in ("margin", "wallet")]
    currency = "XBt" if symbol == "ETHUSD" else "USDt"
    assert money and {row["currency"] for d in money for row in d.rows} == {currency}
