"""Every endpoint over a fake venue: what reaches the exchange, what comes back, every refusal."""

from __future__ import annotations

import pytest

from bitmex_trio_websocket.emulator.rest import ROUTES, RestApp

from .fakes import ACCOUNT_A, ACCOUNT_B, KEY_A, KEY_B, call, fake, header, make_app

ORDER = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 94000.0, "clOrdID": "c1"}


def place(app: RestApp, key: str = KEY_A, **extra: object) -> dict[str, object]:
    result = call(app, "POST", "/api/v1/order", {**ORDER, **extra}, key=key)
    assert result.status == 200, result.body
    row: dict[str, object] = result.json()
    return row


def test_post_order_returns_the_row_and_the_deltas_to_publish() -> None:
    app = make_app()
    result = call(app, "POST", "/api/v1/order", ORDER)
    assert result.status == 200
    assert header(result, "content-type") == "application/json; charset=utf-8"
    row = result.json()
    assert (row["account"], row["symbol"], row["ordStatus"], row["clOrdID"]) == (
        ACCOUNT_A, "XBTUSD", "New", "c1",
    )  # fmt: skip
    assert [(d.table, d.action, d.account) for d in result.deltas] == [
        ("order", "insert", ACCOUNT_A),
        ("execution", "insert", ACCOUNT_A),
    ]
    assert fake(app).calls == [("place_order", ACCOUNT_A, ORDER)]


def test_post_order_without_symbol_is_required_arg() -> None:
    result = call(make_app(), "POST", "/api/v1/order", {"orderQty": 1})
    assert result.status == 400
    assert result.json() == {
        "error": {"message": "'symbol' is a required arg.", "name": "HTTPError"}
    }


def test_exchange_refusals_pass_through_with_status_and_name() -> None:
    app = make_app()
    result = call(app, "POST", "/api/v1/order", {**ORDER, "side": "Up"})
    assert result.status == 400
    assert result.json() == {"error": {"message": "Invalid side", "name": "ValidationError"}}
    assert header(result, "x-ratelimit-remaining") == "119"  # limits still reported
    assert result.deltas == []


def test_put_order_amends_by_order_id_or_orig_cl_ord_id() -> None:
    app = make_app()
    order_id = place(app)["orderID"]
    result = call(app, "PUT", "/api/v1/order", {"orderID": order_id, "price": 93999.5})
    assert result.status == 200
    assert result.json()["price"] == 93999.5
    result = call(app, "PUT", "/api/v1/order", {"origClOrdID": "c1", "orderQty": "50"})
    assert result.json()["orderQty"] == 50
    assert fake(app).calls[-1] == ("amend_order", ACCOUNT_A, {"origClOrdID": "c1", "orderQty": 50})
    assert [d.table for d in result.deltas] == ["order"]


def test_put_order_needs_an_id() -> None:
    result = call(make_app(), "PUT", "/api/v1/order", {"price": 1.0})
    assert result.status == 400
    assert result.json()["error"] == {
        "message": "Must specify orderID or origClOrdID",
        "name": "ValidationError",
    }


def test_delete_order_by_ids_and_cl_ord_ids() -> None:
    app = make_app()
    first = place(app)["orderID"]
    place(app, clOrdID="c2")
    result = call(app, "DELETE", f'/api/v1/order?orderID=["{first}"]&clOrdID=c2&text=bye')
    assert result.status == 200
    assert [row["ordStatus"] for row in result.json()] == ["Canceled", "Canceled"]
    assert fake(app).calls[-1] == ("cancel_orders", ACCOUNT_A, ([first], ["c2"], "bye"))


def test_delete_order_needs_an_id_and_unknown_ids_are_404() -> None:
    app = make_app()
    assert call(app, "DELETE", "/api/v1/order").status == 400
    missing = call(app, "DELETE", "/api/v1/order", {"orderID": "nope"})
    assert missing.status == 404
    assert missing.json() == {"error": {"message": "Not Found", "name": "HTTPError"}}


def test_delete_order_all_with_symbol_filter_and_text() -> None:
    app = make_app()
    place(app)
    place(app, symbol="ETHUSD", clOrdID="c2")
    target = '/api/v1/order/all?symbol=XBTUSD&filter={"side":"Buy"}&text=flat'
    result = call(app, "DELETE", target)
    assert result.status == 200
    assert [row["symbol"] for row in result.json()] == ["XBTUSD"]
    assert fake(app).calls[-1] == ("cancel_all", ACCOUNT_A, ("XBTUSD", {"side": "Buy"}, "flat"))
    assert call(app, "DELETE", "/api/v1/order/all?filter=[1]").status == 400


def test_cancel_all_after_arms_and_disarms_the_switch() -> None:
    app = make_app()
    armed = call(app, "POST", "/api/v1/order/cancelAllAfter", {"timeout": 60000})
    assert armed.status == 200
    assert armed.json() == {
        "now": "2025-01-01T00:00:00.000Z",
        "cancelTime": "2025-01-01T00:01:00.000Z",
    }
    assert armed.switch == (ACCOUNT_A, 60000)
    disarmed = call(app, "POST", "/api/v1/order/cancelAllAfter", {"timeout": 0}, key=KEY_B)
    assert disarmed.json() == {"now": "2025-01-01T00:00:00.000Z", "cancelTime": 0}
    assert disarmed.switch == (ACCOUNT_B, 0)
    assert call(app, "POST", "/api/v1/order/cancelAllAfter", {"timeout": -1}).status == 400
    # Past year 9999 no cancelTime can say it (1e308 used to crash the app: the REST fuzzer).
    too_long = call(app, "POST", "/api/v1/order/cancelAllAfter", {"timeout": 1e308})
    assert (too_long.status, too_long.json()["error"]["message"]) == (400, "Invalid timeout")
    assert call(app, "POST", "/api/v1/order/cancelAllAfter", {"timeout": 1e15}).status == 400
    for endless in ("inf", "nan"):
        assert call(app, "POST", "/api/v1/order/cancelAllAfter", {"timeout": endless}).status == 400
    assert call(app, "POST", "/api/v1/order/cancelAllAfter").status == 400
    assert call(app, "POST", "/api/v1/order/cancelAllAfter", {"timeout": 1}, key=None).status == 401


def test_get_order_lists_the_account_orders_with_query_parameters() -> None:
    app = make_app()
    for i in range(3):
        place(app, clOrdID=f"c{i}", price=94000.0 + i)
    result = call(app, "GET", '/api/v1/order?reverse=true&count=2&columns=["price"]')
    assert result.status == 200
    assert [sorted(row) for row in result.json()] == [["orderID", "price"]] * 2
    assert [row["price"] for row in result.json()] == [94002.0, 94001.0]
    open_only = call(app, "GET", '/api/v1/order?filter={"open":true}&symbol=XBTUSD')
    assert len(open_only.json()) == 3


def test_accounts_never_see_or_touch_each_others_orders() -> None:
    app = make_app()
    mine = place(app)["orderID"]
    assert call(app, "GET", "/api/v1/order", key=KEY_B).json() == []
    assert call(app, "DELETE", "/api/v1/order", {"orderID": mine}, key=KEY_B).status == 404
    assert (
        call(app, "PUT", "/api/v1/order", {"orderID": mine, "price": 1.0}, key=KEY_B).status == 404
    )
    assert call(app, "DELETE", "/api/v1/order/all", key=KEY_B).json() == []
    assert [row["ordStatus"] for row in call(app, "GET", "/api/v1/order").json()] == ["New"]
    placed_b = call(app, "POST", "/api/v1/order", ORDER, key=KEY_B)
    assert {d.account for d in placed_b.deltas} == {ACCOUNT_B}


def test_get_position_and_leverage() -> None:
    app = make_app()
    positions = call(app, "GET", '/api/v1/position?columns=["leverage"]')
    assert positions.json() == [
        {"account": ACCOUNT_A, "symbol": "XBTUSD", "currency": "XBt", "leverage": 10.0}
    ]
    result = call(app, "POST", "/api/v1/position/leverage", {"symbol": "XBTUSD", "leverage": "0"})
    assert result.status == 200
    assert result.json()["crossMargin"] is True
    assert fake(app).calls[-1] == ("set_leverage", ACCOUNT_A, ("XBTUSD", 0.0))
    assert [d.table for d in result.deltas] == ["position"]
    missing = call(app, "POST", "/api/v1/position/leverage", {"symbol": "XBTUSD"})
    assert missing.json()["error"]["message"] == "'leverage' is a required arg."


def test_trade_history_is_balance_affecting_executions_only() -> None:
    app = make_app()
    place(app)
    fills = [
        ("f1", "Trade", "2025-01-01T00:00:01.000Z"),
        ("f2", "Funding", "2025-01-01T04:00:00.000Z"),
        ("f3", "Canceled", "2025-01-01T05:00:00.000Z"),
    ]
    for exec_id, exec_type, stamp in fills:
        row = {"execID": exec_id, "execType": exec_type, "symbol": "XBTUSD", "timestamp": stamp}
        fake(app).add_execution(ACCOUNT_A, row)
    history = call(app, "GET", "/api/v1/execution/tradeHistory")
    assert [row["execID"] for row in history.json()] == ["f1", "f2"]
    newest = call(app, "GET", "/api/v1/execution/tradeHistory?reverse=true&count=1")
    assert [row["execID"] for row in newest.json()] == ["f2"]
    everything = call(app, "GET", "/api/v1/execution")
    assert [row["execType"] for row in everything.json()] == ["New", "Trade", "Funding", "Canceled"]
    assert call(app, "GET", "/api/v1/execution/tradeHistory", key=KEY_B).json() == []


@pytest.mark.parametrize("path", ["/api/v1/user/wallet", "/api/v1/user/margin"])
def test_wallet_and_margin_one_currency_or_all(path: str) -> None:
    app = make_app()
    default = call(app, "GET", path)
    assert default.status == 200
    assert isinstance(default.json(), dict)
    assert default.json()["currency"] == "XBt"  # BitMEX's default
    assert call(app, "GET", path + "?currency=USDt").json()["currency"] == "USDt"
    every = call(app, "GET", path + "?currency=all").json()
    assert [row["currency"] for row in every] == ["XBt", "USDt"]
    unknown = call(app, "GET", path + "?currency=DOGE")
    assert unknown.status == 400
    assert unknown.json()["error"] == {"message": "Invalid currency", "name": "ValidationError"}


def test_instrument_routes() -> None:
    app = make_app()
    every = call(app, "GET", "/api/v1/instrument", key=None).json()
    assert [row["symbol"] for row in every] == ["XBTUSD", "ETHUSD", "XBTZ24", ".BXBT"]
    one = call(app, "GET", "/api/v1/instrument?symbol=ETHUSD", key=None).json()
    assert [row["symbol"] for row in one] == ["ETHUSD"]
    active = call(app, "GET", "/api/v1/instrument/active", key=None).json()
    assert [row["symbol"] for row in active] == ["XBTUSD", "ETHUSD"]
    both = call(app, "GET", "/api/v1/instrument/activeAndIndices", key=None).json()
    assert [row["symbol"] for row in both] == ["XBTUSD", "ETHUSD", ".BXBT"]


def test_order_book_depth_per_side_in_bitmex_order() -> None:
    app = make_app()
    full = call(app, "GET", "/api/v1/orderBook/L2?symbol=XBTUSD&depth=0", key=None).json()
    assert [(r["side"], r["price"]) for r in full] == [
        ("Sell", 94003.0), ("Sell", 94002.0), ("Sell", 94001.0),
        ("Buy", 94000.0), ("Buy", 93999.0), ("Buy", 93998.0),
    ]  # fmt: skip
    top = call(app, "GET", "/api/v1/orderBook/L2?symbol=XBTUSD&depth=1", key=None).json()
    assert [(r["side"], r["price"]) for r in top] == [("Sell", 94001.0), ("Buy", 94000.0)]
    default = call(app, "GET", "/api/v1/orderBook/L2?symbol=XBTUSD", key=None).json()
    assert len(default) == 6  # 25 a side by default: all of this small book
    assert call(app, "GET", "/api/v1/orderBook/L2?symbol=ETHUSD", key=None).json() == []
    missing = call(app, "GET", "/api/v1/orderBook/L2", key=None)
    assert missing.status == 400
    assert missing.json() == {
        "error": {"message": "'symbol' is a required arg.", "name": "HTTPError"}
    }
    negative = call(app, "GET", "/api/v1/orderBook/L2?symbol=XBTUSD&depth=-1", key=None)
    assert negative.status == 400


def test_trade_and_funding_lists() -> None:
    app = make_app()
    trades = call(app, "GET", "/api/v1/trade?symbol=XBTUSD", key=None).json()
    assert len(trades) == 25 and {t["symbol"] for t in trades} == {"XBTUSD"}
    assert len(call(app, "GET", "/api/v1/trade", key=None).json()) == 50
    funding = call(app, "GET", "/api/v1/funding?symbol=XBTUSD", key=None)
    # BitMEX's (Java's) float spelling
    assert b'"fundingRate":1.0E-4' in funding.body
    assert b'"fundingRateDaily":3.0E-4' in funding.body


@pytest.mark.parametrize(
    ("verb", "target"),
    [
        ("GET", "/api/v1/nothing"),
        ("PATCH", "/api/v1/order"),
        ("GET", "/api/v1/order/cancelAllAfter"),
        ("GET", "/api/v2/order"),
        ("GET", "/order"),
        ("GET", "/api/v1"),
    ],
)
def test_unknown_routes_are_404_not_found(verb: str, target: str) -> None:
    result = call(make_app(), verb, target)
    assert result.status == 404
    assert result.json() == {"error": {"message": "Not Found", "name": "HTTPError"}}


def test_a_trailing_slash_and_lower_case_verb_route_the_same() -> None:
    assert call(make_app(), "get", "/api/v1/instrument/", key=None).status == 200


def test_every_route_is_exercised_here() -> None:
    """A new route in ROUTES without a test here fails this list."""
    assert sorted(f"{verb} {path}" for verb, path in ROUTES) == sorted([
        "POST /order", "PUT /order", "DELETE /order", "DELETE /order/all",
        "POST /order/cancelAllAfter", "GET /order", "GET /position", "POST /position/leverage",
        "GET /execution", "GET /execution/tradeHistory", "GET /user/wallet", "GET /user/margin",
        "GET /instrument", "GET /instrument/active", "GET /instrument/activeAndIndices",
        "GET /orderBook/L2", "GET /trade", "GET /funding",
    ])  # fmt: skip


def test_private_routes_need_an_account() -> None:
    app = make_app()
    for (verb, path), route in ROUTES.items():
        result = call(app, verb, "/api/v1" + path, key=None)
        if route.private:
            assert result.status == 401, path
        else:
            assert result.status in (200, 400), path  # 400: orderBook/L2 without symbol
    assert app.requests == len(ROUTES)
