"""A small venue and exchange written from I17.md's Exchange contract, for the REST layer's tests.

The fake keeps each account's rows apart (as the real exchange does), records every call it
got (so a test can check what the REST layer handed over, typed) and raises an error carrying
``status``/``name``/``message`` as the real ``ExchangeError`` does. Signing helpers build
requests the way BitMEX's clients did.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from bitmex_trio_websocket._auth import rest_signature
from bitmex_trio_websocket._exceptions import BitMEXError
from bitmex_trio_websocket.emulator._handshake import Authenticator
from bitmex_trio_websocket.emulator._texts import iso_timestamp
from bitmex_trio_websocket.emulator.market._schemas import Delta
from bitmex_trio_websocket.emulator.rest import RestApp, RestLimits, RestResult

NOW = 1_735_689_600.0  # 2025-01-01T00:00:00Z
KEY_A, SECRET_A, ACCOUNT_A = "key-a", "secret-a", 1001
KEY_B, SECRET_B, ACCOUNT_B = "key-b", "secret-b", 1002
KEYS = {KEY_A: (SECRET_A, ACCOUNT_A), KEY_B: (SECRET_B, ACCOUNT_B)}
SECRETS = {KEY_A: SECRET_A, KEY_B: SECRET_B}


class FakeError(BitMEXError):
    """What the real ``ExchangeError`` carries."""

    def __init__(self, message: str, status: int = 400, name: str = "HTTPError") -> None:
        super().__init__(message)
        self.message, self.status, self.name = message, status, name


class FakeExchange:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, Any]] = []
        self._orders: dict[int, dict[str, dict[str, Any]]] = {ACCOUNT_A: {}, ACCOUNT_B: {}}
        self._executions: dict[int, list[dict[str, Any]]] = {ACCOUNT_A: [], ACCOUNT_B: []}
        self._ids = itertools.count(1)

    def _account(self, account: int) -> dict[str, dict[str, Any]]:
        if account not in self._orders:
            raise FakeError(f"Account does not exist: {account}", 401)
        return self._orders[account]

    def place_order(
        self, account: int, params: Mapping[str, Any], now: float
    ) -> tuple[dict[str, Any], list[Delta]]:
        self.calls.append(("place_order", account, dict(params)))
        orders = self._account(account)
        if params.get("side") not in (None, "Buy", "Sell"):
            raise FakeError("Invalid side", 400, "ValidationError")
        order_id = f"{next(self._ids):08d}-0000-0000-0000-000000000000"
        row = {
            "orderID": order_id, "account": account, "symbol": params["symbol"],
            "side": params.get("side", "Buy"), "orderQty": params.get("orderQty"),
            "price": params.get("price"), "ordType": params.get("ordType", "Limit"),
            "ordStatus": "New", "leavesQty": params.get("orderQty"), "cumQty": 0,
            "timestamp": iso_timestamp(now), "transactTime": iso_timestamp(now),
        }  # fmt: skip
        if "clOrdID" in params:
            row["clOrdID"] = params["clOrdID"]
        orders[order_id] = row
        execution = {
            "execID": f"e{order_id}", "orderID": order_id, "account": account,
            "symbol": row["symbol"], "execType": "New", "timestamp": row["timestamp"],
        }  # fmt: skip
        self._executions[account].append(execution)
        deltas = [
            Delta("order", "insert", row["symbol"], [dict(row)], account),
            Delta("execution", "insert", row["symbol"], [dict(execution)], account),
        ]
        return dict(row), deltas

    def _find(self, account: int, order_id: str | None, cl_ord_id: str | None) -> dict[str, Any]:
        for row in self._account(account).values():
            if row["orderID"] == order_id or (cl_ord_id and row.get("clOrdID") == cl_ord_id):
                return row
        raise FakeError("Not Found", 404)

    def amend_order(
        self, account: int, params: Mapping[str, Any], now: float
    ) -> tuple[dict[str, Any], list[Delta]]:
        self.calls.append(("amend_order", account, dict(params)))
        row = self._find(account, params.get("orderID"), params.get("origClOrdID"))
        for name in ("orderQty", "price", "leavesQty", "stopPx", "text"):
            if name in params:
                row[name] = params[name]
        return dict(row), [Delta("order", "update", row["symbol"], [dict(row)], account)]

    def cancel_orders(
        self,
        account: int,
        order_ids: Sequence[str],
        cl_ord_ids: Sequence[str],
        now: float,
        *,
        text: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[Delta]]:
        self.calls.append(("cancel_orders", account, (list(order_ids), list(cl_ord_ids), text)))
        rows = [self._find(account, i, None) for i in order_ids]
        rows += [self._find(account, None, c) for c in cl_ord_ids]
        for row in rows:
            row["ordStatus"] = "Canceled"
        return [dict(r) for r in rows], [Delta("order", "update", None, [dict(r) for r in rows],
                                               account)]  # fmt: skip

    def cancel_all(
        self,
        account: int,
        now: float,
        *,
        symbol: str | None = None,
        filter: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[Delta]]:
        self.calls.append(("cancel_all", account, (symbol, filter, text)))
        rows = [
            r
            for r in self._account(account).values()
            if r["ordStatus"] == "New" and symbol in (None, r["symbol"])
        ]
        for row in rows:
            row["ordStatus"] = "Canceled"
        return [dict(r) for r in rows], []

    def set_leverage(
        self, account: int, symbol: str, leverage: float, now: float
    ) -> tuple[dict[str, Any], list[Delta]]:
        self.calls.append(("set_leverage", account, (symbol, leverage)))
        row = {"account": account, "symbol": symbol, "currency": "XBt", "leverage": leverage,
               "crossMargin": leverage == 0}  # fmt: skip
        return row, [Delta("position", "update", symbol, [dict(row)], account)]

    def orders(self, account: int) -> list[dict[str, Any]]:
        return [dict(r) for r in self._account(account).values()]

    def executions(self, account: int) -> list[dict[str, Any]]:
        self._account(account)
        return [dict(r) for r in self._executions[account]]

    def add_execution(self, account: int, row: dict[str, Any]) -> None:
        self._executions[account].append(row)

    def positions(self, account: int) -> list[dict[str, Any]]:
        return [{"account": account, "symbol": "XBTUSD", "currency": "XBt", "currentQty": 0,
                 "leverage": 10.0}]  # fmt: skip

    def margins(self, account: int) -> list[dict[str, Any]]:
        return [
            {"account": account, "currency": "XBt", "walletBalance": 100_000_000},
            {"account": account, "currency": "USDt", "walletBalance": 0},
        ]

    def wallets(self, account: int) -> list[dict[str, Any]]:
        return [
            {"account": account, "currency": "XBt", "amount": 100_000_000},
            {"account": account, "currency": "USDt", "amount": 0},
        ]


def _book() -> list[dict[str, Any]]:
    asks = [(94003.0, 30), (94002.0, 20), (94001.0, 10)]
    bids = [(94000.0, 15), (93999.0, 25), (93998.0, 35)]
    rows = [{"symbol": "XBTUSD", "id": int(p * 10), "side": "Sell", "size": s, "price": p}
            for p, s in asks]  # fmt: skip
    rows += [{"symbol": "XBTUSD", "id": int(p * 10), "side": "Buy", "size": s, "price": p}
             for p, s in bids]  # fmt: skip
    return rows


class FakeVenue:
    symbols = ("XBTUSD", "ETHUSD")
    indices = (".BXBT",)

    def __init__(self) -> None:
        self.exchange = FakeExchange()
        self.trades = [
            {"timestamp": iso_timestamp(NOW - 60 + i), "symbol": "XBTUSD" if i % 2 else "ETHUSD",
             "side": "Buy", "size": 100 + i, "price": 94000.0 + i, "trdMatchID": f"t{i:03d}"}
            for i in range(50)
        ]  # fmt: skip
        self.funding = [
            {"timestamp": "2025-01-01T04:00:00.000Z", "symbol": "XBTUSD", "fundingRate": 0.0001,
             "fundingRateDaily": 0.0003}
        ]  # fmt: skip
        self.instruments = [
            {"symbol": "XBTUSD", "state": "Open", "typ": "FFWCSX", "lastPrice": 94000.0},
            {"symbol": "ETHUSD", "state": "Open", "typ": "FFWCSX", "lastPrice": 3300.0},
            {"symbol": "XBTZ24", "state": "Settled", "typ": "FFCCSX", "lastPrice": 93000.0},
            {"symbol": ".BXBT", "state": "Unlisted", "typ": "MRCXXX", "lastPrice": 94001.0},
        ]

    def public_rows(self, table: str, symbol: str | None = None) -> list[dict[str, Any]]:
        tables: dict[str, list[dict[str, Any]]] = {
            "instrument": self.instruments, "trade": self.trades, "funding": self.funding,
            "orderBookL2": _book(),
        }  # fmt: skip
        rows = tables[table]
        return [dict(r) for r in rows if symbol in (None, r["symbol"])]


def make_app(*, limits: RestLimits | None = None, accept_nonce: bool = True) -> RestApp:
    authenticator = Authenticator(KEYS, lambda: NOW, lambda: None)
    kwargs: dict[str, Any] = {"accept_nonce": accept_nonce}
    if limits is not None:
        kwargs["limits"] = limits
    return RestApp(FakeVenue(), authenticator, **kwargs)  # type: ignore[arg-type]


def fake(app: RestApp) -> FakeExchange:
    """The fake exchange behind an app from ``make_app``."""
    venue = app.venue
    assert isinstance(venue, FakeVenue)
    return venue.exchange


def signed(
    verb: str,
    target: str,
    body: bytes = b"",
    *,
    key: str = KEY_A,
    expires: int | str = int(NOW) + 10,
    content_type: str | None = "application/json",
) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    """``(verb, target, headers, body)`` signed as BitMEX's connectors did."""
    signature = rest_signature(SECRETS[key], verb, target, expires, body)
    headers = [
        (b"api-expires", str(expires).encode()),
        (b"api-key", key.encode()),
        (b"api-signature", signature.encode()),
    ]
    if content_type is not None and body:
        headers.append((b"content-type", content_type.encode()))
    return verb, target, headers, body


def call(
    app: RestApp,
    verb: str,
    target: str,
    params: Mapping[str, Any] | None = None,
    *,
    key: str | None = KEY_A,
    now: float = NOW,
    client: str = "local",
) -> RestResult:
    """A signed request with ``params`` as a JSON body (or an unsigned one, ``key=None``)."""
    body = orjson.dumps(dict(params)) if params else b""
    if key is None:
        headers = [(b"content-type", b"application/json")] if body else []
        return app.handle(verb, target, headers, body, now, client=client)
    request = signed(verb, target, body, key=key, expires=int(now) + 10)
    return app.handle(*request, now, client=client)


def header(result: RestResult, name: str) -> str | None:
    values = [v for n, v in result.headers if n == name]
    assert len(values) <= 1, values
    return values[0] if values else None
