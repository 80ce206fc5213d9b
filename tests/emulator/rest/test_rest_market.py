"""The REST API over the real synthetic ``Market`` and its paper ``Exchange``: a bot's session.

What a user checks: public reads agree with the market's book and instruments, orders placed
over REST appear in GET /order and in the deltas for the websocket, fills show up in trade
history, positions and wallet, the exchange's refusals arrive in BitMEX's shape, and a second
account sees none of it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bitmex_trio_websocket._auth import rest_signature
from bitmex_trio_websocket.emulator._handshake import Authenticator
from bitmex_trio_websocket.emulator.market import Market
from bitmex_trio_websocket.emulator.rest import RestApp, RestResult

NOW = 1_735_689_600.0
TRADER, OTHER = 2001, 2002
KEYS = {"trader": ("trader-secret", TRADER), "other": ("other-secret", OTHER)}


class Bot:
    """Signs requests like BitMEX's connectors (JSON bodies, api-expires now + 10 s)."""

    def __init__(self, app: RestApp, key: str) -> None:
        self.app, self.key = app, key
        self.now = NOW

    def __call__(self, verb: str, path: str, params: dict[str, Any] | None = None) -> RestResult:
        target = "/api/v1" + path
        body = orjson.dumps(params) if params else b""
        expires = int(self.now) + 10
        secret = KEYS[self.key][0] if self.key in KEYS else "x"
        headers = [
            (b"api-expires", str(expires).encode()),
            (b"api-key", self.key.encode()),
            (b"api-signature", rest_signature(secret, verb, target, expires, body).encode()),
            (b"content-type", b"application/json"),
        ]
        return self.app.handle(verb, target, headers, body, self.now)


@pytest.fixture
def market() -> Market:
    market = Market(seed=7, start_time=NOW)
    market.add_account(TRADER, balance_xbt_sats=10**8, balance_usdt=10**10)
    market.add_account(OTHER)
    market.step(NOW + 1)
    return market


@pytest.fixture
def app(market: Market) -> RestApp:
    return RestApp(market, Authenticator(KEYS, lambda: NOW, lambda: None))


def test_public_reads_match_the_market(market: Market, app: RestApp) -> None:
    anonymous = app.handle("GET", "/api/v1/instrument/activeAndIndices", [], b"", NOW + 1)
    symbols = [row["symbol"] for row in anonymous.json()]
    assert set(market.symbols) <= set(symbols)
    assert set(market.indices) <= set(symbols)
    active = app.handle("GET", "/api/v1/instrument/active", [], b"", NOW + 1).json()
    assert {row["symbol"] for row in active} == set(market.symbols)
    book = app.handle("GET", "/api/v1/orderBook/L2?symbol=XBTUSD&depth=1", [], b"", NOW + 1)
    (ask, bid) = book.json()
    assert (ask["side"], bid["side"]) == ("Sell", "Buy")
    assert ask["price"] == market.best("XBTUSD", "Sell")
    assert bid["price"] == market.best("XBTUSD", "Buy")
    assert ask["size"] == market.level_size("XBTUSD", "Sell", ask["price"])
    trades = app.handle("GET", "/api/v1/trade?symbol=XBTUSD&reverse=true&count=1", [], b"", NOW)
    assert trades.status == 200
    assert [row["symbol"] for row in trades.json()] == ["XBTUSD"]
    assert app.handle("GET", "/api/v1/funding", [], b"", NOW).status == 200


def test_resting_order_round_trip(market: Market, app: RestApp) -> None:
    bot = Bot(app, "trader")
    bid = market.best("XBTUSD", "Buy")
    assert bid is not None
    price = bid - 500.0  # far below the market: rests
    placed = bot("POST", "/order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                    "price": price, "clOrdID": "rest-1"})  # fmt: skip
    assert placed.status == 200, placed.body
    row = placed.json()
    assert (row["ordStatus"], row["account"], row["clOrdID"], row["price"]) == (
        "New", TRADER, "rest-1", price,
    )  # fmt: skip
    assert [(d.table, d.action) for d in placed.deltas if d.account == TRADER][:2] == [
        ("order", "insert"),
        ("execution", "insert"),
    ]
    listed = bot("GET", '/order?filter={"open":true}').json()
    assert [o["orderID"] for o in listed] == [row["orderID"]]
    amended = bot("PUT", "/order", {"origClOrdID": "rest-1", "price": price - 1.0})
    assert amended.status == 200, amended.body
    assert amended.json()["price"] == price - 1.0
    canceled = bot("DELETE", "/order", {"orderID": row["orderID"]})
    assert canceled.status == 200
    assert [o["ordStatus"] for o in canceled.json()] == ["Canceled"]
    assert bot("GET", '/order?filter={"open":true}').json() == []


def test_a_market_order_fills_and_shows_everywhere(market: Market, app: RestApp) -> None:
    bot = Bot(app, "trader")
    filled = bot("POST", "/order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                    "ordType": "Market"})  # fmt: skip
    assert filled.status == 200, filled.body
    assert filled.json()["ordStatus"] == "Filled"
    tables = [d.table for d in filled.deltas if d.account == TRADER]
    assert "execution" in tables and "position" in tables
    history = bot("GET", "/execution/tradeHistory?symbol=XBTUSD").json()
    assert sum(e["lastQty"] for e in history if e["execType"] == "Trade") == 100
    positions = bot("GET", "/position").json()
    assert [(p["symbol"], p["currentQty"]) for p in positions if p["currentQty"]] == [
        ("XBTUSD", 100)
    ]
    wallet = bot("GET", "/user/wallet")
    assert wallet.status == 200 and wallet.json()["currency"] == "XBt"
    margins = bot("GET", "/user/margin?currency=all").json()
    assert {m["currency"] for m in margins} >= {"XBt"}
    leverage = bot("POST", "/position/leverage", {"symbol": "XBTUSD", "leverage": 5})
    assert leverage.status == 200, leverage.body
    assert leverage.json()["leverage"] == 5


def test_exchange_refusals_in_bitmex_shape(app: RestApp) -> None:
    bot = Bot(app, "trader")
    order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 1000.0, "clOrdID": "d"}
    assert bot("POST", "/order", order).status == 200
    duplicate = bot("POST", "/order", order)
    assert duplicate.status == 400
    assert duplicate.json() == {"error": {"message": "Duplicate clOrdID", "name": "HTTPError"}}
    unknown = bot("DELETE", "/order", {"orderID": "00000000-0000-0000-0000-000000000000"})
    assert unknown.status == 404
    assert unknown.json()["error"]["name"] == "HTTPError"
    bad = bot("POST", "/order", {**order, "clOrdID": "e", "ordType": "Sometimes"})
    assert bad.status == 400
    assert set(bad.json()) == {"error"} and set(bad.json()["error"]) == {"message", "name"}


def test_accounts_are_invisible_to_each_other(app: RestApp) -> None:
    trader, other = Bot(app, "trader"), Bot(app, "other")
    placed = trader("POST", "/order", {"symbol": "XBTUSD", "side": "Sell", "orderQty": 100,
                                       "price": 10**6 * 1.0})  # fmt: skip
    assert placed.status == 200, placed.body
    order_id = placed.json()["orderID"]
    assert other("GET", "/order").json() == []
    assert other("DELETE", "/order", {"orderID": order_id}).status == 404
    assert other("DELETE", "/order/all").json() == []
    assert [o["ordStatus"] for o in trader("GET", "/order").json()] == ["New"]
    assert all(d.account in (None, TRADER) for d in placed.deltas)


def test_cancel_all_after_returns_the_switch(app: RestApp) -> None:
    armed = Bot(app, "trader")("POST", "/order/cancelAllAfter", {"timeout": 15000})
    assert armed.json() == {
        "now": "2025-01-01T00:00:00.000Z",
        "cancelTime": "2025-01-01T00:00:15.000Z",
    }
    assert armed.switch == (TRADER, 15000)
