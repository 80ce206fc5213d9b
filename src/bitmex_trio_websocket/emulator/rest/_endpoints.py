"""The routes of the REST API: what each takes (a ``Spec``) and what it answers, sans-IO.

Theory of operation: ``ROUTES`` maps ``(verb, path under /api/v1)`` to a ``Route``: the handler,
the parameter ``Spec`` (BitMEX's swagger names and types), whether it needs an account
(``private``) and whether it is an order route under the 10-a-second limit (``orders``, the
routes BitMEX's "Second Layer Rate Limits" notice lists). A handler gets a ``Call`` (the venue,
the account, the typed parameters, ``now``) and returns a ``Reply`` (the JSON-ready body, the
deltas to publish, and for ``cancelAllAfter`` the dead man's switch to arm).

Commands go to ``venue.exchange`` with BitMEX's own parameter names and return its rows
unchanged; its refusals (``ExchangeError``) pass through to ``RestApp``, which writes them.
Private reads come from the exchange per account (so one account never sees another's rows),
public reads from ``venue.public_rows``; lists are cut by ``_query.Query``. Where BitMEX
answered one object (``GET /user/wallet``, ``/user/margin`` for one currency), so does this;
``currency=all`` gives the list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .._texts import INVALID_TIMEOUT, iso_timestamp, switch_too_long
from ._errors import VALIDATION_ERROR, RestError
from ._params import Spec
from ._query import QUERY_KINDS, Query

if TYPE_CHECKING:
    from ..market._schemas import Delta
    from ..market._venue import Venue

__all__ = ["BALANCE_EXEC_TYPES", "ROUTES", "Call", "Reply", "Route"]

# GET /execution/tradeHistory: "all balance-affecting executions" (trades, funding, settlement).
BALANCE_EXEC_TYPES: Final = frozenset({"Trade", "Funding", "Settlement"})
DEFAULT_CURRENCY: Final = "XBt"  # BitMEX's default for /user/wallet and /user/margin
DEFAULT_DEPTH: Final = 25  # GET /orderBook/L2: levels per side; 0 is the full book


@dataclass(frozen=True, slots=True)
class Call:
    """One request as a handler sees it (``account`` is set on private routes)."""

    venue: Venue
    account: int | None
    params: dict[str, Any]
    now: float

    @property
    def owner(self) -> int:
        assert self.account is not None  # RestApp refuses private routes without one
        return self.account


@dataclass(frozen=True, slots=True)
class Reply:
    body: Any
    deltas: list[Delta] = field(default_factory=list)
    switch: tuple[int, int] | None = None  # (account, timeout_ms)


@dataclass(frozen=True, slots=True)
class Route:
    handler: Callable[[Call], Reply]
    spec: Spec
    private: bool
    orders: bool = False


def _spec(kinds: Mapping[str, str], *required: str) -> Spec:
    return Spec(dict(kinds), frozenset(required))


# --------------------------------------------------------------------------- orders

_NEW_ORDER: Final = {
    "symbol": "str", "side": "str", "orderQty": "int", "price": "float", "displayQty": "int",
    "stopPx": "float", "clOrdID": "str", "clOrdLinkID": "str", "pegOffsetValue": "float",
    "pegPriceType": "str", "ordType": "str", "timeInForce": "str", "execInst": "str",
    "contingencyType": "str", "text": "str",
}  # fmt: skip
_AMEND: Final = {
    "orderID": "str", "origClOrdID": "str", "clOrdID": "str", "orderQty": "int",
    "leavesQty": "int", "price": "float", "stopPx": "float", "pegOffsetValue": "float",
    "text": "str",
}  # fmt: skip


def _new_order(call: Call) -> Reply:
    row, deltas = call.venue.exchange.place_order(call.owner, call.params, call.now)
    return Reply(row, deltas)


def _amend_order(call: Call) -> Reply:
    if "orderID" not in call.params and "origClOrdID" not in call.params:
        raise RestError(400, "Must specify orderID or origClOrdID", name=VALIDATION_ERROR)
    row, deltas = call.venue.exchange.amend_order(call.owner, call.params, call.now)
    return Reply(row, deltas)


def _cancel_orders(call: Call) -> Reply:
    order_ids = call.params.get("orderID", [])
    cl_ord_ids = call.params.get("clOrdID", [])
    if not order_ids and not cl_ord_ids:
        raise RestError(400, "Must specify orderID or clOrdID", name=VALIDATION_ERROR)
    rows, deltas = call.venue.exchange.cancel_orders(
        call.owner, order_ids, cl_ord_ids, call.now, text=call.params.get("text")
    )
    return Reply(rows, deltas)


def _cancel_all(call: Call) -> Reply:
    filter_ = call.params.get("filter")
    if filter_ is not None and not isinstance(filter_, dict):
        raise RestError(400, "Invalid filter", name=VALIDATION_ERROR)
    rows, deltas = call.venue.exchange.cancel_all(
        call.owner,
        call.now,
        symbol=call.params.get("symbol"),
        filter=filter_,
        text=call.params.get("text"),
    )
    return Reply(rows, deltas)


def _cancel_all_after(call: Call) -> Reply:
    timeout = call.params["timeout"]
    if not 0 <= timeout < math.inf or switch_too_long(call.now, timeout):
        raise RestError(400, INVALID_TIMEOUT, name=VALIDATION_ERROR)
    ms = int(timeout)
    # As the websocket's reply: cancelTime 0 when the switch is disarmed.
    cancel_time: str | int = 0 if ms == 0 else iso_timestamp(call.now + ms / 1000)
    body = {"now": iso_timestamp(call.now), "cancelTime": cancel_time}
    return Reply(body, switch=(call.owner, ms))


def _get_orders(call: Call) -> Reply:
    query = Query.from_params(call.params)
    return Reply(query.apply(call.venue.exchange.orders(call.owner), ("orderID",)))


# ------------------------------------------------------------------ positions, executions

_POSITION_KEYS: Final = ("account", "symbol", "currency")


def _get_positions(call: Call) -> Reply:
    query = Query.from_params(call.params, default_count=None)
    return Reply(query.apply(call.venue.exchange.positions(call.owner), _POSITION_KEYS))


def _set_leverage(call: Call) -> Reply:
    row, deltas = call.venue.exchange.set_leverage(
        call.owner, call.params["symbol"], call.params["leverage"], call.now
    )
    return Reply(row, deltas)


def _trade_history(call: Call) -> Reply:
    query = Query.from_params(call.params)
    rows = [
        row
        for row in call.venue.exchange.executions(call.owner)
        if row.get("execType") in BALANCE_EXEC_TYPES
    ]
    return Reply(query.apply(rows, ("execID",)))


def _executions(call: Call) -> Reply:
    query = Query.from_params(call.params)
    return Reply(query.apply(call.venue.exchange.executions(call.owner), ("execID",)))


# ----------------------------------------------------------------------------- money


def _by_currency(rows: list[dict[str, Any]], currency: str) -> Any:
    if currency.lower() == "all":
        return rows
    for row in rows:
        if row.get("currency") == currency:
            return row
    raise RestError(400, "Invalid currency", name=VALIDATION_ERROR)


def _wallet(call: Call) -> Reply:
    currency = call.params.get("currency", DEFAULT_CURRENCY)
    return Reply(_by_currency(call.venue.exchange.wallets(call.owner), currency))


def _margin(call: Call) -> Reply:
    currency = call.params.get("currency", DEFAULT_CURRENCY)
    return Reply(_by_currency(call.venue.exchange.margins(call.owner), currency))


# ---------------------------------------------------------------------------- public


def _instruments(call: Call) -> Reply:
    query = Query.from_params(call.params)
    rows = call.venue.public_rows("instrument", call.params.get("symbol"))
    return Reply(query.apply(rows, ("symbol",)))


def _active(call: Call) -> list[dict[str, Any]]:
    indices = set(call.venue.indices)
    return [
        row
        for row in call.venue.public_rows("instrument")
        if row.get("state") == "Open" and row.get("symbol") not in indices
    ]


def _instruments_active(call: Call) -> Reply:
    return Reply(_active(call))


def _instruments_active_and_indices(call: Call) -> Reply:
    indices = set(call.venue.indices)
    index_rows = [r for r in call.venue.public_rows("instrument") if r.get("symbol") in indices]
    return Reply(_active(call) + index_rows)


def _order_book(call: Call) -> Reply:
    depth = call.params.get("depth", DEFAULT_DEPTH)
    if depth < 0:
        raise RestError(400, "Invalid depth", name=VALIDATION_ERROR)
    symbol = call.params["symbol"]
    rows = [r for r in call.venue.public_rows("orderBookL2", symbol) if r.get("symbol") == symbol]
    # BitMEX's order: asks from the highest price down, then bids from the highest down.
    asks = sorted((r for r in rows if r.get("side") == "Sell"), key=lambda r: -r["price"])
    bids = sorted((r for r in rows if r.get("side") == "Buy"), key=lambda r: -r["price"])
    if depth:
        asks, bids = asks[max(0, len(asks) - depth) :], bids[:depth]
    return Reply([dict(r) for r in asks + bids])


def _public_list(table: str, keys: tuple[str, ...]) -> Callable[[Call], Reply]:
    def handler(call: Call) -> Reply:
        query = Query.from_params(call.params)
        return Reply(query.apply(call.venue.public_rows(table, call.params.get("symbol")), keys))

    return handler


_CURRENCY: Final = {"currency": "str"}
_POSITION_QUERY: Final = {"filter": "json", "columns": "json", "count": "int"}

ROUTES: Final[dict[tuple[str, str], Route]] = {
    ("POST", "/order"): Route(_new_order, _spec(_NEW_ORDER, "symbol"), True, True),
    ("PUT", "/order"): Route(_amend_order, _spec(_AMEND), True, True),
    ("DELETE", "/order"): Route(
        _cancel_orders, _spec({"orderID": "ids", "clOrdID": "ids", "text": "str"}), True, True
    ),
    ("DELETE", "/order/all"): Route(
        _cancel_all, _spec({"symbol": "str", "filter": "json", "text": "str"}), True, True
    ),
    ("POST", "/order/cancelAllAfter"): Route(
        _cancel_all_after, _spec({"timeout": "float"}, "timeout"), True
    ),
    ("GET", "/order"): Route(_get_orders, _spec(QUERY_KINDS), True),
    ("GET", "/position"): Route(_get_positions, _spec(_POSITION_QUERY), True),
    ("POST", "/position/leverage"): Route(
        _set_leverage,
        _spec({"symbol": "str", "leverage": "float"}, "symbol", "leverage"),
        True,
        True,
    ),
    ("GET", "/execution"): Route(_executions, _spec(QUERY_KINDS), True),
    ("GET", "/execution/tradeHistory"): Route(_trade_history, _spec(QUERY_KINDS), True),
    ("GET", "/user/wallet"): Route(_wallet, _spec(_CURRENCY), True),
    ("GET", "/user/margin"): Route(_margin, _spec(_CURRENCY), True),
    ("GET", "/instrument"): Route(_instruments, _spec(QUERY_KINDS), False),
    ("GET", "/instrument/active"): Route(_instruments_active, _spec({}), False),
    ("GET", "/instrument/activeAndIndices"): Route(
        _instruments_active_and_indices, _spec({}), False
    ),
    ("GET", "/orderBook/L2"): Route(
        _order_book, _spec({"symbol": "str", "depth": "int"}, "symbol"), False
    ),
    ("GET", "/trade"): Route(
        _public_list("trade", ("timestamp", "symbol")), _spec(QUERY_KINDS), False
    ),
    ("GET", "/funding"): Route(
        _public_list("funding", ("timestamp", "symbol")), _spec(QUERY_KINDS), False
    ),
}
