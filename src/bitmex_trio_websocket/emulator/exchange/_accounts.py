"""Paper accounts and their private tables: order, execution, position, margin and wallet.

Theory of operation: ``Ledger`` owns every account's state and turns each change into the
``Delta`` messages BitMEX sent to that account (``Delta.account`` is set, so the server routes
them to that account's subscribers only). The exchange decides what happens to an order; the
ledger writes it down: ``insert`` (a new order: ``order`` insert and ``execution`` insert),
``update`` (any change of an order: ``order`` update with the changed columns plus the ones BitMEX
repeated, and an ``execution`` insert of the given ``execType``), ``fill`` (one fill: the order
update and a Trade execution, the position changed by ``_positions``' maths), ``cancel`` (per
symbol one ``order`` update and one ``execution`` insert message) and ``refresh`` (position, margin
and wallet rows recomputed and diffed against what was last sent).

Every update is applied to the stored row with ``dict.update`` at the moment it is emitted, so a
partial taken at any time equals the first partial with every later delta applied (the
convergence property the server relies on). The execution partial is empty, as BitMEX's was in
2024+ (roq-bitmex execution partial, ../shared/captures/roq-bitmex_tests.jsonl line 6); the
executions are kept (bounded) for the REST API's ``GET /execution/tradeHistory``.

Ids come from the ``Random`` the exchange hands in, never from a global source, so the same calls
in the same order always give the same rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from random import Random
from typing import Any, Final

from ..market._instruments import Contract
from ..market._schemas import Delta, random_guid
from ._errors import AccountExists, UnknownAccount
from ._orders import Order
from ._positions import (
    LEVERAGE,
    Position,
    apply_fill,
    fill_costs,
    margin_row,
    open_order_costs,
    order_cost,
    position_row,
    wallet_row,
)

__all__ = ["CURRENCIES", "Account", "Ledger"]

CURRENCIES: Final = ("XBt", "USDt")
CLOSED_ORDERS_KEPT: Final = 200  # closed orders stay in the order table (and its partials)
EXECUTIONS_KEPT: Final = 1000  # per account, for GET /execution/tradeHistory

_POSITION_IDS: Final = ("account", "symbol", "strategy", "currency")
_MONEY_IDS: Final = ("account", "currency")
# Columns an execution row copies from its order's row, in BitMEX's column order.
_EXEC_FROM_ORDER: Final = (
    "orderID", "clOrdID", "account", "symbol", "strategy", "side", "orderQty", "price", "stopPx",
    "currency", "settlCurrency",
)  # fmt: skip
_EXEC_STATE: Final = (
    "ordType", "timeInForce", "execInst", "ordStatus", "triggered", "workingIndicator",
    "leavesQty", "cumQty", "avgPx", "text",
)  # fmt: skip


class Account:
    """One account's orders, positions and money rows."""

    __slots__ = ("cl_ord_ids", "closed", "deposits", "executions", "id", "leverage", "margins",
                 "open", "orders", "positions", "wallets")  # fmt: skip

    def __init__(self, account: int, deposits: Mapping[str, int]) -> None:
        self.id = account
        self.deposits = {currency: int(deposits.get(currency, 0)) for currency in CURRENCIES}
        self.orders: dict[str, Order] = {}  # open and recently closed, in placement order
        self.open: dict[str, Order] = {}
        self.closed: deque[str] = deque()
        self.cl_ord_ids: dict[str, str] = {}  # every clOrdID the account used -> orderID
        self.positions: dict[str, Position] = {}
        self.leverage: dict[str, float] = {}  # symbol -> leverage set (0: cross)
        self.margins: dict[str, dict[str, Any]] = {}
        self.wallets: dict[str, dict[str, Any]] = {}
        self.executions: deque[dict[str, Any]] = deque(maxlen=EXECUTIONS_KEPT)

    def held(self, symbol: str) -> int:
        """The signed position in ``symbol``."""
        pos = self.positions.get(symbol)
        return 0 if pos is None else pos.qty


def copy_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy that shares no mutable value with ``row`` (wallet rows hold a list)."""
    copy = dict(row)
    for name, value in copy.items():
        if isinstance(value, list):
            copy[name] = list(value)
    return copy


class Ledger:
    """Every account's private state; see the module docstring."""

    def __init__(
        self, contracts: Mapping[str, Contract], marks: Mapping[str, float], rng: Random
    ) -> None:
        self._contracts = contracts
        self._marks = marks  # symbol -> current mark price, kept up to date by the exchange
        self._rng = rng
        self.accounts: dict[int, Account] = {}

    # ------------------------------------------------------------------ accounts

    def get(self, account: int) -> Account:
        try:
            return self.accounts[account]
        except KeyError:
            raise UnknownAccount(account) from None

    def add(self, account: int, deposits: Mapping[str, int], ts: str) -> Account:
        if account in self.accounts:
            raise AccountExists(account)
        acct = self.accounts[account] = Account(account, deposits)
        for currency in CURRENCIES:
            acct.margins[currency] = self._margin_row(acct, currency, ts)
            acct.wallets[currency] = self._wallet_row(acct, currency, ts)
        return acct

    def rows(self, table: str, account: int, symbol: str | None) -> list[dict[str, Any]]:
        """Partial rows of a private table for one account (optionally one symbol)."""
        acct = self.get(account)
        if table == "order":
            return [dict(o.row) for o in acct.orders.values() if symbol in (None, o.symbol)]
        if table == "execution":
            return []  # BitMEX's 2024+ execution partial was empty: past fills are not replayed
        if table == "position":
            return [
                dict(pos.row)
                for sym, pos in acct.positions.items()
                if pos.row is not None and symbol in (None, sym)
            ]
        if table == "margin":
            return [dict(row) for row in acct.margins.values()]
        if table == "wallet":
            return [copy_row(row) for row in acct.wallets.values()]
        raise ValueError(f"not a private table: {table!r}")

    def available(self, acct: Account, currency: str, ts: str) -> int:
        """The account's ``availableMargin`` in ``currency`` now."""
        return int(self._margin_row(acct, currency, ts)["availableMargin"])

    # ------------------------------------------------------------------ order events

    def insert(self, acct: Account, order: Order, status: str, ts: str, out: list[Delta]) -> None:
        """A new order row (``New``, or ``Canceled`` for a post-only order that would have
        taken): ``order`` insert and ``execution`` insert."""
        acct.orders[order.order_id] = order
        row = order.new_row(acct.id, self._contracts[order.symbol], ts, status)
        if status == "New":
            acct.open[order.order_id] = order
        else:
            order.leaves = 0
            self._closed(acct, order)
        out.append(Delta("order", "insert", order.symbol, [dict(row)], acct.id))
        execution = self._execution(acct, order, "New" if status == "New" else status, ts)
        out.append(Delta("execution", "insert", order.symbol, [execution], acct.id))

    def update(
        self,
        acct: Account,
        order: Order,
        changes: dict[str, Any],
        exec_type: str,
        ts: str,
        out: list[Delta],
    ) -> None:
        """Apply ``changes`` to the order's row and send them (``order`` update, then an
        ``execution`` insert of ``exec_type``)."""
        update = {"orderID": order.order_id, **changes}
        update.update(transactTime=ts, timestamp=ts, **order.identity())
        order.row.update(update)
        if order.row.get("ordStatus") in ("Filled", "Canceled", "Rejected"):
            self._closed(acct, order)
        out.append(Delta("order", "update", order.symbol, [update], acct.id))
        execution = self._execution(acct, order, exec_type, ts)
        out.append(Delta("execution", "insert", order.symbol, [execution], acct.id))

    def cancel(self, acct: Account, orders: Iterable[Order], reason: str, ts: str,
               out: list[Delta]) -> list[str]:  # fmt: skip
        """Cancel open ``orders`` with ``reason`` (``Canceled: ...``): per symbol one ``order``
        update and one ``execution`` insert message. Returns the symbols touched (the caller
        refreshes their positions)."""
        by_symbol: dict[str, list[Order]] = {}
        for order in orders:
            if order.order_id in acct.open:
                by_symbol.setdefault(order.symbol, []).append(order)
        for symbol, group in by_symbol.items():
            updates: list[dict[str, Any]] = []
            executions: list[dict[str, Any]] = []
            for order in group:
                update = {
                    "orderID": order.order_id, "ordStatus": "Canceled",
                    "workingIndicator": False, "leavesQty": 0,
                    "text": f"{reason}\n{order.text}", "transactTime": ts, "timestamp": ts,
                    **order.identity(),
                }  # fmt: skip
                order.row.update(update)
                order.leaves = 0
                self._closed(acct, order)
                updates.append(update)
                executions.append(self._execution(acct, order, "Canceled", ts))
            out.append(Delta("order", "update", symbol, updates, acct.id))
            out.append(Delta("execution", "insert", symbol, executions, acct.id))
        return list(by_symbol)

    def fill(
        self,
        acct: Account,
        order: Order,
        qty: int,
        price: float,
        maker: bool,
        match_id: str,
        ts: str,
        out: list[Delta],
    ) -> None:
        """Fill ``qty`` of ``order`` at ``price``: ``order`` update and ``execution`` insert
        (execType Trade). Call ``refresh`` afterwards for position/margin/wallet."""
        contract = self._contracts[order.symbol]
        signed = qty if order.buy else -qty
        exec_cost, exec_comm, fee = fill_costs(contract, signed, price, maker)
        pos = self.position(acct, order.symbol)
        pnl = apply_fill(contract, pos, signed, price, exec_cost, exec_comm)
        order.leaves -= qty
        order.cum += qty
        order.notional += qty * price
        filled = order.leaves == 0
        update: dict[str, Any] = {"orderID": order.order_id}
        if order.price is None:  # a market order's row shows its first fill's price
            order.price = price
            update["price"] = price
        update.update(
            ordStatus="Filled" if filled else "PartiallyFilled", leavesQty=order.leaves,
            cumQty=order.cum, avgPx=contract.round_price(order.notional / order.cum, 1),
        )  # fmt: skip
        if filled:
            update["workingIndicator"] = False
        update.update(transactTime=ts, timestamp=ts, **order.identity())
        order.row.update(update)
        if filled:
            self._closed(acct, order)
        _, home, foreign = contract.notionals(qty, price)
        trade = {
            "lastQty": qty, "lastPx": price,
            "lastLiquidityInd": "AddedLiquidity" if maker else "RemovedLiquidity",
            "commission": fee, "tradePublishIndicator": "PublishTrade", "trdMatchID": match_id,
            "execCost": exec_cost, "execComm": exec_comm,
            "homeNotional": home if order.buy else -home,
            "foreignNotional": -foreign if order.buy else foreign,
            "realisedPnl": pnl, "trdType": "Regular",
        }  # fmt: skip
        out.append(Delta("order", "update", order.symbol, [update], acct.id))
        execution = self._execution(acct, order, "Trade", ts, trade)
        out.append(Delta("execution", "insert", order.symbol, [execution], acct.id))

    def refresh(self, acct: Account, symbol: str, ts: str, out: list[Delta]) -> None:
        """Send what changed in the account's position in ``symbol``, margin and wallet."""
        self._refresh_position(acct, symbol, ts, out)
        self._refresh_money(acct, self._contracts[symbol].spec.settl_currency, ts, out)

    def record(self, acct: Account, execution: dict[str, Any], symbol: str, out: list[Delta]
               ) -> None:  # fmt: skip
        """An execution the engine made itself (liquidation, funding): kept and sent."""
        acct.executions.append(execution)
        out.append(Delta("execution", "insert", symbol, [dict(execution)], acct.id))

    def seed_position(self, acct: Account, symbol: str, qty: int, price: float) -> None:
        """An open position without sending anything (an account's initial state)."""
        pos = self.position(acct, symbol)
        pos.qty = qty
        pos.cost = self._contracts[symbol].value(qty, price)

    # ------------------------------------------------------------------ internals

    def _closed(self, acct: Account, order: Order) -> None:
        if acct.open.pop(order.order_id, None) is None:
            return
        acct.closed.append(order.order_id)
        if len(acct.closed) > CLOSED_ORDERS_KEPT:
            del acct.orders[acct.closed.popleft()]

    def _execution(
        self,
        acct: Account,
        order: Order,
        exec_type: str,
        ts: str,
        trade: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        row = order.row
        execution: dict[str, Any] = {"execID": random_guid(self._rng)}
        for name in _EXEC_FROM_ORDER:
            if name in row:
                execution[name] = row[name]
        execution["execType"] = exec_type
        for name in _EXEC_STATE:
            if name in row:
                execution[name] = row[name]
        if trade is not None:
            execution.update(trade)
        execution.update(transactTime=ts, timestamp=ts)
        acct.executions.append(execution)
        return dict(execution)

    @staticmethod
    def holds_margin(order: Order) -> bool:
        """Priced open orders hold margin; untriggered stops do not (BitMEX's stops took no
        margin until triggered)."""
        return order.price is not None and (order.ord_type == "Limit" or order.triggered)

    def _open_orders(self, acct: Account, symbol: str) -> list[tuple[bool, int, float]]:
        return [
            (order.buy, order.leaves, order.price)
            for order in acct.open.values()
            if order.symbol == symbol and order.price is not None and self.holds_margin(order)
        ]

    def open_costs(self, acct: Account, currency: str) -> tuple[int, int]:
        """``(open cost, order margin)`` of the open orders settled in ``currency``: their
        summed absolute value, and the margin each needs at its position's leverage."""
        total = margin = 0
        for order in acct.open.values():
            contract = self._contracts[order.symbol]
            if contract.spec.settl_currency != currency or not self.holds_margin(order):
                continue
            assert order.price is not None
            total += abs(contract.value(order.leaves, order.price))
            margin += order_cost(contract, order.leaves, order.price,
                                 leverage=self.leverage(acct, order.symbol))  # fmt: skip
        return total, margin

    @staticmethod
    def leverage(acct: Account, symbol: str) -> float:
        pos = acct.positions.get(symbol)
        return acct.leverage.get(symbol, LEVERAGE) if pos is None else pos.leverage

    def position(self, acct: Account, symbol: str) -> Position:
        pos = acct.positions.get(symbol)
        if pos is None:
            pos = acct.positions[symbol] = Position(acct.leverage.get(symbol, LEVERAGE))
        return pos

    def _position_row(self, acct: Account, symbol: str, pos: Position, ts: str) -> dict[str, Any]:
        contract = self._contracts[symbol]
        costs = open_order_costs(contract, self._open_orders(acct, symbol))
        available = 0
        if pos.cross:  # a cross position may lose the currency's available margin too
            available = self.available(acct, contract.spec.settl_currency, ts)
        return position_row(acct.id, symbol, contract, pos, self._marks[symbol], costs, ts,
                            available=available)  # fmt: skip

    def _margin_row(self, acct: Account, currency: str, ts: str) -> dict[str, Any]:
        positions = [
            (self._contracts[symbol], pos, self._marks[symbol])
            for symbol, pos in acct.positions.items()
            if self._contracts[symbol].spec.settl_currency == currency
        ]
        open_cost, order_margin = self.open_costs(acct, currency)
        return margin_row(acct.id, currency, acct.deposits[currency], positions, open_cost, ts,
                          order_margin=order_margin)  # fmt: skip

    def _wallet_row(self, acct: Account, currency: str, ts: str) -> dict[str, Any]:
        realised = sum(
            pos.realised_pnl
            for symbol, pos in acct.positions.items()
            if self._contracts[symbol].spec.settl_currency == currency
        )
        return wallet_row(acct.id, currency, acct.deposits[currency], realised, ts)

    def _refresh_position(self, acct: Account, symbol: str, ts: str, out: list[Delta]) -> None:
        pos = self.position(acct, symbol)
        row = self._position_row(acct, symbol, pos, ts)
        pos.row = send_changes("position", _POSITION_IDS, pos.row, row, symbol, acct.id, out)

    def _refresh_money(self, acct: Account, currency: str, ts: str, out: list[Delta]) -> None:
        margin = self._margin_row(acct, currency, ts)
        send_changes("margin", _MONEY_IDS, acct.margins[currency], margin, None, acct.id, out)
        wallet = self._wallet_row(acct, currency, ts)
        send_changes("wallet", _MONEY_IDS, acct.wallets[currency], wallet, None, acct.id, out)


def send_changes(
    table: str,
    ids: tuple[str, ...],
    stored: dict[str, Any] | None,
    new: dict[str, Any],
    symbol: str | None,
    account: int,
    out: list[Delta],
) -> dict[str, Any]:
    """Emit ``new`` as an insert (nothing stored yet) or an update of the changed columns
    (plus ``ids`` and ``timestamp``), apply it to the stored row and return that row."""
    if stored is None:
        out.append(Delta(table, "insert", symbol, [copy_row(new)], account))
        return new
    update = {name: new[name] for name in ids}
    changed = False
    for name, value in new.items():
        if name != "timestamp" and stored.get(name) != value:
            update[name] = value
            changed = True
    if changed:
        update["timestamp"] = new["timestamp"]
        stored.update(update)
        out.append(Delta(table, "update", symbol, [update], account))
    return stored
