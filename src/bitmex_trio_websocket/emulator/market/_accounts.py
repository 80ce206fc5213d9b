"""The emulator's private tables: accounts with orders, executions, positions, margin and wallet.

Theory of operation: ``Accounts`` owns every account's state and turns each change into the
``Delta`` messages BitMEX would send to that account (``Delta.account`` is set, so the server
routes them to that account's subscribers only). It is driven by ``Market``, which owns the
public book and the clock: ``place``/``cancel``/``fill`` change orders, ``on_trade`` lets a
synthetic trade fill resting orders it prints through, ``on_mark`` revalues open positions.

Rows are kept full-width internally. An ``update`` carries the key (and the identifying fields
BitMEX repeats) plus only the columns that changed, and is applied to the stored row with
``dict.update`` at the moment it is emitted, so a snapshot taken at any time equals the first
snapshot with every later delta applied (the convergence property the server relies on).
Position, margin and wallet rows are recomputed from the account's state and diffed against
what was last sent. Account orders never enter the public order book (they are invisible to
other participants); position arithmetic follows BitMEX's contract-value formulas in
``Contract`` and is simplified (fixed 10x isolated leverage, no funding payments).

Ids come from the ``Random`` the market hands in, never from a global source, so the same calls
in the same order always give the same rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from random import Random
from typing import Any, Final

from ._instruments import MAKER_FEE, TAKER_FEE, Contract
from ._schemas import Delta, random_guid

__all__ = ["CURRENCIES", "DEFAULT_ACCOUNT", "Accounts", "Order"]

DEFAULT_ACCOUNT: Final = 100001  # the account the default API key logs in to

STRATEGY: Final = "OneWay"
CURRENCIES: Final = ("XBt", "USDt")
CLOSED_ORDERS_KEPT: Final = 200  # closed orders stay in the order table (and its partials)
LEVERAGE: Final = 10.0
INIT_MARGIN_REQ: Final = 1 / LEVERAGE
MAINT_MARGIN_REQ: Final = 0.005
SUBMIT_TEXT: Final = "Submitted via API."

_POSITION_IDS: Final = ("account", "symbol", "strategy", "currency")
_MONEY_IDS: Final = ("account", "currency")


class Order:
    """A resting or closed limit order; ``row`` is its full row as last sent."""

    __slots__ = (
        "account", "buy", "cl_ord_id", "cum", "leaves", "notional", "order_id", "price",
        "qty", "row", "seq", "side", "symbol", "tick",
    )  # fmt: skip

    def __init__(
        self,
        order_id: str,
        account: int,
        symbol: str,
        side: str,
        qty: int,
        tick: int,
        price: float,
        cl_ord_id: str,
        seq: int,
        row: dict[str, Any],
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.symbol = symbol
        self.side = side
        self.buy = side == "Buy"
        self.qty = qty
        self.leaves = qty
        self.cum = 0
        self.notional = 0.0
        self.tick = tick
        self.price = price
        self.cl_ord_id = cl_ord_id
        self.seq = seq
        self.row = row


class _Position:
    __slots__ = ("comm", "cost", "qty", "realised_cost", "realised_pnl", "row")

    def __init__(self) -> None:
        self.qty = 0  # signed contracts
        self.cost = 0  # value of the open contracts at their entry prices (Contract.value)
        self.realised_cost = 0
        self.realised_pnl = 0  # closed-trade PnL minus commissions, settlement units
        self.comm = 0
        self.row: dict[str, Any] | None = None  # None until the row was first sent


class _Account:
    __slots__ = ("closed", "deposits", "id", "margins", "open", "orders", "positions",
                 "wallets")  # fmt: skip

    def __init__(self, account: int, deposits: Mapping[str, int]) -> None:
        self.id = account
        self.deposits = {currency: int(deposits.get(currency, 0)) for currency in CURRENCIES}
        self.orders: dict[str, Order] = {}  # open and recently closed, in placement order
        self.open: dict[str, Order] = {}
        self.closed: deque[str] = deque()
        self.positions: dict[str, _Position] = {}
        self.margins: dict[str, dict[str, Any]] = {}
        self.wallets: dict[str, dict[str, Any]] = {}


def _copy(row: dict[str, Any]) -> dict[str, Any]:
    """A copy that shares no mutable value with ``row`` (wallet rows hold a list)."""
    copy = dict(row)
    for name, value in copy.items():
        if isinstance(value, list):
            copy[name] = list(value)
    return copy


class Accounts:
    """Every account's private state; see the module docstring."""

    def __init__(
        self, contracts: Mapping[str, Contract], marks: Mapping[str, float], rng: Random
    ) -> None:
        self._contracts = contracts
        self._marks = marks  # symbol -> current mark price, kept up to date by the market
        self._rng = rng
        self._accounts: dict[int, _Account] = {}
        self._seq = 0
        self._open_count = dict.fromkeys(contracts, 0)

    # ------------------------------------------------------------------ accounts

    @property
    def ids(self) -> frozenset[int]:
        return frozenset(self._accounts)

    def get(self, account: int) -> _Account:
        try:
            return self._accounts[account]
        except KeyError:
            raise KeyError(f"unknown account {account}") from None

    def add(self, account: int, deposits: Mapping[str, int], ts: str) -> None:
        if account in self._accounts:
            raise ValueError(f"account {account} already exists")
        acct = self._accounts[account] = _Account(account, deposits)
        for currency in CURRENCIES:
            acct.margins[currency] = self._margin_row(acct, currency, ts)
            acct.wallets[currency] = self._wallet_row(acct, currency, ts)

    def seed_position(self, account: int, symbol: str, qty: int, price: float) -> None:
        """Give ``account`` an open position without sending anything (initial state)."""
        pos = self.get(account).positions.setdefault(symbol, _Position())
        pos.qty = qty
        pos.cost = self._contracts[symbol].value(qty, price)

    def open_orders(self, account: int) -> list[dict[str, Any]]:
        return [dict(order.row) for order in self.get(account).open.values()]

    def rows(self, table: str, account: int, symbol: str | None) -> list[dict[str, Any]]:
        """Partial rows of a private table for one account (optionally one symbol)."""
        acct = self.get(account)
        if table == "order":
            return [dict(o.row) for o in acct.orders.values() if symbol in (None, o.symbol)]
        if table == "execution":
            # BitMEX's execution partial was empty in 2024+ (roq-bitmex execution partial,
            # ../shared/captures/roq-bitmex_tests.jsonl line 6): past fills are not replayed.
            return []
        if table == "position":
            return [
                dict(pos.row)
                for sym, pos in acct.positions.items()
                if pos.row is not None and symbol in (None, sym)
            ]
        if table == "margin":
            return [dict(row) for row in acct.margins.values()]
        if table == "wallet":
            return [_copy(row) for row in acct.wallets.values()]
        raise ValueError(f"not a private table: {table!r}")

    # ------------------------------------------------------------------ orders

    def place(
        self,
        account: int,
        symbol: str,
        side: str,
        qty: int,
        tick: int,
        ts: str,
        cl_ord_id: str,
        out: list[Delta],
    ) -> Order:
        """A new resting limit order: ``order`` insert (New) and ``execution`` insert (New)."""
        acct = self.get(account)
        contract = self._contracts[symbol]
        spec = contract.spec
        price = contract.price(tick)
        order_id = random_guid(self._rng)
        row: dict[str, Any] = {
            "orderID": order_id, "clOrdID": cl_ord_id, "account": account, "symbol": symbol,
            "strategy": STRATEGY, "side": side, "orderQty": qty, "price": price,
            "currency": spec.quote_currency, "settlCurrency": spec.settl_currency,
            "ordType": "Limit", "timeInForce": "GoodTillCancel", "ordStatus": "New",
            "workingIndicator": True, "leavesQty": qty, "cumQty": 0, "text": SUBMIT_TEXT,
            "transactTime": ts, "timestamp": ts,
        }  # fmt: skip
        if not cl_ord_id:  # an empty clOrdID is omitted like any null-equivalent since 2023
            del row["clOrdID"]
        self._seq += 1
        order = Order(order_id, account, symbol, side, qty, tick, price, cl_ord_id, self._seq, row)
        acct.orders[order_id] = order
        acct.open[order_id] = order
        self._open_count[symbol] += 1
        out.append(Delta("order", "insert", symbol, [dict(row)], account))
        out.append(Delta("execution", "insert", symbol, [self._execution(acct, order, "New", ts)],
                         account))  # fmt: skip
        return order

    def cancel(
        self, account: int, orders: list[Order], ts: str, text: str, out: list[Delta]
    ) -> None:
        """Cancel open ``orders``: per symbol one ``order`` update and one ``execution`` insert
        message, then the position/margin/wallet changes."""
        acct = self.get(account)
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
                    "workingIndicator": False, "leavesQty": 0, "text": text,
                    "transactTime": ts, "timestamp": ts, "clOrdID": order.cl_ord_id,
                    "account": account, "symbol": symbol,
                }  # fmt: skip
                if not order.cl_ord_id:
                    del update["clOrdID"]
                order.row.update(update)
                order.leaves = 0
                self._close(acct, order)
                updates.append(update)
                executions.append(self._execution(acct, order, "Canceled", ts))
            out.append(Delta("order", "update", symbol, updates, account))
            out.append(Delta("execution", "insert", symbol, executions, account))
        for symbol in by_symbol:
            self._refresh_position(acct, symbol, ts, out)
        for currency in dict.fromkeys(self._contracts[s].spec.settl_currency for s in by_symbol):
            self._refresh_money(acct, currency, ts, out)

    def fill(
        self,
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
        acct = self.get(order.account)
        contract = self._contracts[order.symbol]
        signed = qty if order.buy else -qty
        exec_cost = contract.value(signed, price)
        fee = MAKER_FEE if maker else TAKER_FEE
        exec_comm = round(abs(exec_cost) * fee)
        pos = acct.positions.setdefault(order.symbol, _Position())
        pnl = self._apply_fill(contract, pos, signed, price, exec_cost, exec_comm)
        order.leaves -= qty
        order.cum += qty
        order.notional += qty * price
        filled = order.leaves == 0
        update: dict[str, Any] = {
            "orderID": order.order_id, "ordStatus": "Filled" if filled else "PartiallyFilled",
            "leavesQty": order.leaves, "cumQty": order.cum,
            "avgPx": contract.round_price(order.notional / order.cum, 1),
        }  # fmt: skip
        if filled:
            update["workingIndicator"] = False
        update.update(transactTime=ts, timestamp=ts, clOrdID=order.cl_ord_id,
                      account=order.account, symbol=order.symbol)  # fmt: skip
        if not order.cl_ord_id:
            del update["clOrdID"]
        order.row.update(update)
        if filled:
            self._close(acct, order)
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
        out.append(Delta("order", "update", order.symbol, [update], order.account))
        execution = self._execution(acct, order, "Trade", ts, trade)
        out.append(Delta("execution", "insert", order.symbol, [execution], order.account))

    def refresh(self, account: int, symbol: str, ts: str, out: list[Delta]) -> None:
        """Send what changed in ``account``'s position in ``symbol``, margin and wallet."""
        acct = self.get(account)
        self._refresh_position(acct, symbol, ts, out)
        self._refresh_money(acct, self._contracts[symbol].spec.settl_currency, ts, out)

    # ------------------------------------------------------------------ market hooks

    def on_trade(
        self,
        symbol: str,
        aggressor_buy: bool,
        worst_tick: int,
        qty: int,
        ts: str,
        new_match_id: Callable[[], str],
        out: list[Delta],
    ) -> None:
        """A public trade of ``qty`` printed down (sell) or up (buy) to ``worst_tick``: resting
        orders on the other side at that price or better fill as makers, best price first,
        then oldest first, up to ``qty`` in total, at their own limit price."""
        if not self._open_count[symbol]:
            return
        candidates = [
            order
            for acct in self._accounts.values()
            for order in acct.open.values()
            if order.symbol == symbol
            and order.buy != aggressor_buy
            and (order.tick >= worst_tick if order.buy else order.tick <= worst_tick)
        ]
        if not candidates:
            return
        candidates.sort(key=lambda o: (-o.tick if o.buy else o.tick, o.seq))
        touched: dict[int, None] = {}
        for order in candidates:
            take = min(order.leaves, qty)
            self.fill(order, take, order.price, True, new_match_id(), ts, out)
            touched[order.account] = None
            qty -= take
            if qty == 0:
                break
        for account in touched:
            self.refresh(account, symbol, ts, out)

    def on_mark(self, symbol: str, ts: str, out: list[Delta]) -> None:
        """The mark price of ``symbol`` moved: revalue every open position in it."""
        for acct in self._accounts.values():
            pos = acct.positions.get(symbol)
            if pos is not None and pos.qty:
                self.refresh(acct.id, symbol, ts, out)

    # ------------------------------------------------------------------ internals

    def _close(self, acct: _Account, order: Order) -> None:
        del acct.open[order.order_id]
        self._open_count[order.symbol] -= 1
        acct.closed.append(order.order_id)
        if len(acct.closed) > CLOSED_ORDERS_KEPT:
            del acct.orders[acct.closed.popleft()]

    def _execution(
        self,
        acct: _Account,
        order: Order,
        exec_type: str,
        ts: str,
        trade: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        row = order.row
        execution: dict[str, Any] = {
            "execID": random_guid(self._rng), "orderID": order.order_id,
            "clOrdID": order.cl_ord_id, "account": acct.id, "symbol": order.symbol,
            "strategy": STRATEGY, "side": order.side, "orderQty": order.qty,
            "price": order.price, "currency": row["currency"],
            "settlCurrency": row["settlCurrency"], "execType": exec_type, "ordType": "Limit",
            "timeInForce": "GoodTillCancel", "ordStatus": row["ordStatus"],
            "workingIndicator": row["workingIndicator"], "leavesQty": order.leaves,
            "cumQty": order.cum,
        }  # fmt: skip
        if not order.cl_ord_id:
            del execution["clOrdID"]
        if order.cum:
            execution["avgPx"] = row["avgPx"]
        execution["text"] = row["text"]
        if trade is not None:
            execution.update(trade)
        execution.update(transactTime=ts, timestamp=ts)
        return execution

    @staticmethod
    def _apply_fill(
        contract: Contract,
        pos: _Position,
        signed: int,
        price: float,
        exec_cost: int,
        exec_comm: int,
    ) -> int:
        """Update ``pos`` with a fill of ``signed`` contracts; returns its realised PnL."""
        pnl = 0
        if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
            pos.cost += exec_cost
            pos.qty += signed
        else:
            closing = min(abs(signed), abs(pos.qty))
            closed = closing if pos.qty > 0 else -closing
            entry = round(pos.cost * closed / pos.qty)
            pnl = contract.value(closed, price) - entry
            pos.cost -= entry
            pos.qty -= closed
            pos.realised_cost += entry
            rest = signed + closed
            if rest:
                pos.qty = rest
                pos.cost = contract.value(rest, price)
        pos.comm += exec_comm
        pos.realised_pnl += pnl - exec_comm
        return pnl - exec_comm

    def _open_costs(self, acct: _Account, symbol: str) -> tuple[int, int, int, int]:
        """``(buyQty, buyCost, sellQty, sellCost)`` of the open orders in ``symbol``."""
        contract = self._contracts[symbol]
        buy_qty = buy_cost = sell_qty = sell_cost = 0
        for order in acct.open.values():
            if order.symbol == symbol:
                cost = abs(contract.value(order.leaves, order.price))
                if order.buy:
                    buy_qty += order.leaves
                    buy_cost += cost
                else:
                    sell_qty += order.leaves
                    sell_cost += cost
        return buy_qty, buy_cost, sell_qty, sell_cost

    def _position_row(self, acct: _Account, symbol: str, pos: _Position, ts: str) -> dict[str, Any]:
        contract = self._contracts[symbol]
        spec = contract.spec
        mark = self._marks[symbol]
        qty = pos.qty
        buy_qty, buy_cost, sell_qty, sell_cost = self._open_costs(acct, symbol)
        mark_value = contract.value(qty, mark) if qty else 0
        unrealised = mark_value - pos.cost if qty else 0
        abs_cost = abs(pos.cost)
        pos_init = round(abs_cost * INIT_MARGIN_REQ)
        pos_comm = round(abs_cost * TAKER_FEE)
        entry = contract.entry_price(qty, pos.cost)
        liquidation, bankrupt = self._liquidation_prices(contract, qty, entry)
        _, home, foreign = contract.notionals(abs(qty), mark) if qty else (0, 0.0, 0.0)
        if qty < 0:
            home, foreign = -home, -foreign
        pnl_pcnt = round(unrealised / abs_cost, 4) if abs_cost else 0.0
        return {
            "account": acct.id, "symbol": symbol, "strategy": STRATEGY,
            "currency": spec.settl_currency, "underlying": spec.underlying,
            "quoteCurrency": spec.quote_currency, "commission": TAKER_FEE,
            "initMarginReq": INIT_MARGIN_REQ, "maintMarginReq": MAINT_MARGIN_REQ,
            "riskLimit": 20_000_000_000, "leverage": LEVERAGE, "crossMargin": False,
            "deleveragePercentile": 1.0 if qty else 0.0, "rebalancedPnl": 0,
            "prevRealisedPnl": 0, "openingQty": 0, "openOrderBuyQty": buy_qty,
            "openOrderBuyCost": -buy_cost, "openOrderBuyPremium": 0,
            "openOrderSellQty": sell_qty, "openOrderSellCost": -sell_cost,
            "openOrderSellPremium": 0, "currentQty": qty,
            "currentCost": pos.cost + pos.realised_cost, "currentComm": pos.comm,
            "realisedCost": pos.realised_cost, "unrealisedCost": pos.cost,
            "grossOpenPremium": 0, "isOpen": bool(qty or buy_qty or sell_qty),
            "markPrice": mark, "markValue": mark_value,
            "riskValue": abs(mark_value) + buy_cost + sell_cost, "homeNotional": home,
            "foreignNotional": foreign, "posCost": pos.cost, "posCross": 0,
            "posComm": pos_comm, "posLoss": 0, "posMargin": pos_init + pos_comm,
            "posMaint": round(abs_cost * MAINT_MARGIN_REQ) + pos_comm,
            "initMargin": round((buy_cost + sell_cost) * (INIT_MARGIN_REQ + TAKER_FEE)),
            "maintMargin": pos_init + pos_comm, "realisedPnl": pos.realised_pnl,
            "unrealisedPnl": unrealised, "unrealisedPnlPcnt": pnl_pcnt,
            "unrealisedRoePcnt": round(pnl_pcnt * LEVERAGE, 4), "avgCostPrice": entry,
            "avgEntryPrice": entry, "breakEvenPrice": entry, "marginCallPrice": liquidation,
            "liquidationPrice": liquidation, "bankruptPrice": bankrupt, "timestamp": ts,
        }  # fmt: skip

    @staticmethod
    def _liquidation_prices(contract: Contract, qty: int, entry: float) -> tuple[float, float]:
        """``(liquidationPrice, bankruptPrice)`` at fixed isolated leverage; 0 when flat."""
        if not qty:
            return 0.0, 0.0
        im, mm = INIT_MARGIN_REQ, MAINT_MARGIN_REQ
        if contract.inverse:
            if qty > 0:
                liquidation, bankrupt = entry / (1 + im - mm), entry / (1 + im)
            else:
                liquidation, bankrupt = entry / (1 - im + mm), entry / (1 - im)
        elif qty > 0:
            liquidation, bankrupt = entry * (1 - im + mm), entry * (1 - im)
        else:
            liquidation, bankrupt = entry * (1 + im - mm), entry * (1 + im)
        return contract.round_price(liquidation), contract.round_price(bankrupt)

    def _margin_row(self, acct: _Account, currency: str, ts: str) -> dict[str, Any]:
        deposit = acct.deposits[currency]
        realised = comm = unrealised = exec_cost = mark_value = open_cost = 0
        for symbol, pos in acct.positions.items():
            contract = self._contracts[symbol]
            if contract.spec.settl_currency != currency:
                continue
            realised += pos.realised_pnl
            comm += pos.comm
            if pos.qty:
                value = contract.value(pos.qty, self._marks[symbol])
                unrealised += value - pos.cost
                mark_value += abs(value)
                exec_cost += abs(pos.cost)
        for order in acct.open.values():
            contract = self._contracts[order.symbol]
            if contract.spec.settl_currency == currency:
                open_cost += abs(contract.value(order.leaves, order.price))
        order_margin = round(open_cost * (INIT_MARGIN_REQ + TAKER_FEE))
        maint = round(exec_cost * (INIT_MARGIN_REQ + TAKER_FEE))
        wallet = deposit + realised
        balance = wallet + unrealised
        excess = balance - maint - order_margin
        available = max(0, excess)
        row: dict[str, Any] = {
            "account": acct.id, "currency": currency, "riskLimit": 1_000_000_000_000,
            "amount": deposit, "grossComm": comm, "grossOpenCost": open_cost,
            "grossOpenPremium": 0,
            "grossMarkValue": mark_value, "riskValue": mark_value + open_cost,
            "initMargin": order_margin, "maintMargin": maint, "targetExcessMargin": 0,
            "realisedPnl": realised, "unrealisedPnl": unrealised, "walletBalance": wallet,
            "marginBalance": balance,
            "marginLeverage": round(mark_value / balance, 4) if balance > 0 else 0.0,
            "marginUsedPcnt": round((maint + order_margin) / balance, 4) if balance > 0 else 0.0,
            "excessMargin": excess, "availableMargin": available,
            "withdrawableMargin": min(available, max(0, wallet)), "timestamp": ts,
            "foreignMarginBalance": 0, "foreignRequirement": 0,
        }  # fmt: skip
        # the 2024-09 margin partial (roq-bitmex line 10) omits prevRealisedPnl, grossExecCost
        # and the fee discounts (null); grossExecCost is sent once a position is open
        if exec_cost:
            row["grossExecCost"] = exec_cost
        return row

    def _wallet_row(self, acct: _Account, currency: str, ts: str) -> dict[str, Any]:
        deposit = acct.deposits[currency]
        realised = sum(
            pos.realised_pnl
            for symbol, pos in acct.positions.items()
            if self._contracts[symbol].spec.settl_currency == currency
        )
        return {
            "account": acct.id, "currency": currency, "deposited": deposit, "withdrawn": 0,
            "transferIn": 0, "transferOut": 0, "amount": deposit + realised,
            "pendingCredit": 0, "pendingDebit": 0, "confirmedDebit": 0, "timestamp": ts,
            "withdrawalLock": [],
        }  # fmt: skip

    def _refresh_position(self, acct: _Account, symbol: str, ts: str, out: list[Delta]) -> None:
        pos = acct.positions.setdefault(symbol, _Position())
        row = self._position_row(acct, symbol, pos, ts)
        pos.row = _send_changes("position", _POSITION_IDS, pos.row, row, symbol, acct.id, out)

    def _refresh_money(self, acct: _Account, currency: str, ts: str, out: list[Delta]) -> None:
        margin = self._margin_row(acct, currency, ts)
        _send_changes("margin", _MONEY_IDS, acct.margins[currency], margin, None, acct.id, out)
        wallet = self._wallet_row(acct, currency, ts)
        _send_changes("wallet", _MONEY_IDS, acct.wallets[currency], wallet, None, acct.id, out)


def _send_changes(
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
        out.append(Delta(table, "insert", symbol, [_copy(new)], account))
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
