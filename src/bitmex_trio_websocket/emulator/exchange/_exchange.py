"""The paper exchange's facade: accounts, orders, fills and private tables, sans-IO.

Theory of operation: ``Exchange`` is BitMEX's trading engine for paper accounts. Commands come
in with BitMEX's field names (``place_order`` takes ``POST /order``'s parameters, ``amend_order``
``PUT /order``'s, ``cancel_orders`` ``DELETE /order``'s...) and return the rows BitMEX answered
plus every ``Delta`` they caused, public ones (from taking liquidity) first, then the private
ones in BitMEX's order: ``order``, ``execution``, ``position``, ``margin``, ``wallet``. Refusals
raise ``ExchangeError`` subclasses carrying BitMEX's status, name and text (``_errors``).

An order's life (``_orders`` validates it, ``_accounts.Ledger`` writes its rows):

* an active order (Limit, Market, or a stop once triggered) first takes the venue's visible book
  through ``Liquidity.take`` as far as its limit (Market: a price band, ``MARKET_BAND``), each
  level at its own price, as taker. Post-only (``ParticipateDoNotInitiate``) orders that would
  take are inserted as Canceled instead; FillOrKill orders that the visible book cannot fill at
  once are canceled whole; ImmediateOrCancel and market remainders are canceled; a
  GoodTillCancel remainder rests in the symbol's ``QueueBook`` (``_queue``) behind the visible
  size at its price;
* a stop waits in the symbol's ``Triggers`` (``_triggers``) until its trigger price (mark, last
  or index per ``execInst``) reaches ``stopPx``, then is "StopOrderTriggered" and arrives as a
  Market (Stop, MarketIfTouched) or Limit (StopLimit, LimitIfTouched) order;
* ``ReduceOnly``/``Close`` orders never increase a position: they are refused when they would,
  fill at most what closes it, and their remainder is canceled once the position is closed.

The venue reports its market (``on_level``, ``on_trade``, ``on_prices``); resting orders fill as
makers by the fill model (docs/fill-model.rst), stops trigger, positions are revalued. These
calls return at once when nothing of any account is open in the symbol, so a venue may call them
on every book change. After an account's order takes liquidity the exchange reports the new size
of every level taken to its own queues (other accounts' orders resting there lose the size that
was ahead of them). Account orders never trade with each other and are never in the public book.

Length: this module is over 600 lines because the commands and the market events share one
order life cycle (arrive, take, rest, trigger, cancel); validation, rows and maths live in
``_orders``, ``_accounts`` and ``_positions``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from random import Random
from typing import Any, Final, Literal

from ..market._instruments import Contract
from ..market._schemas import Delta, random_guid
from ..market._venue import Liquidity
from ._accounts import Account, Ledger
from ._errors import (
    DuplicateClOrdID,
    InsufficientBalance,
    InvalidOrdStatus,
    NotFound,
    OrderRejected,
)
from ._orders import (
    AMEND_TEXT,
    BAND_TEXT,
    CANCEL_TEXT,
    FOK_TEXT,
    IOC_TEXT,
    POST_ONLY_TEXT,
    TRIGGER_TEXT,
    Order,
    parse_amend,
    parse_new,
    reduce_text,
)
from ._positions import (
    apply_funding,
    funding_execution,
    is_liquidated,
    liquidate,
    liquidation_execution,
    opening_qty,
    order_cost,
    valid_leverage,
)
from ._queue import QueueBook
from ._triggers import Triggers

__all__ = ["MARKET_BAND", "Exchange"]

LIQUIDATION_CANCEL_TEXT: Final = "Canceled: Position liquidated"  # the emulator's wording
MARKET_BAND: Final = 0.05  # a market order takes no further than 5% from the touch
_FOK_WALK: Final = 200_000  # ticks a FillOrKill check may walk (a wide band on a fine tick)


class Exchange:
    """BitMEX's trading engine for paper accounts; see the module docstring.

    ``queue_window`` (seconds) is handed to every symbol's ``QueueBook``: market events at a
    level within that time of each other count as one timestamp when trades and book decreases
    are reconciled. 0 (exact timestamps) suits a venue that reports a trade and the book change
    it caused at the same ``now`` (the synthetic market); a venue whose times are receive times,
    where the two arrive in separate frames, needs a window (``ReplayedMarket`` uses
    ``REPLAY_QUEUE_WINDOW``). ``queue_through`` is what a trade printing through a resting
    order's price fills: ``"volume"`` (default, conservative) up to the trade's volume,
    ``"whole"`` every order it passes in full (docs/fill-model.rst)."""

    def __init__(
        self,
        contracts: Mapping[str, Contract],
        liquidity: Liquidity,
        rng: Random,
        fmt: Callable[[float], str],
        *,
        marks: Mapping[str, float],
        queue_window: float = 0.0,
        queue_through: Literal["volume", "whole"] = "volume",
    ) -> None:
        self._queue_window = queue_window
        self._queue_through: Literal["volume", "whole"] = queue_through
        self._contracts = dict(contracts)
        self._liquidity = liquidity
        self._rng = rng
        self._fmt = fmt
        self._marks: dict[str, float] = dict(marks)
        self._prices: dict[tuple[str, str], float] = {}  # (symbol, trigger kind) -> price
        for symbol, mark in self._marks.items():
            self._prices[symbol, "MarkPrice"] = mark
        self._ledger = Ledger(self._contracts, self._marks, rng)  # shares both dicts
        self._queues: dict[str, QueueBook] = {}
        self._triggers: dict[str, Triggers] = {}
        self._live: dict[str, Order] = {}  # every open order of every account, by orderID
        # orderIDs in each symbol's queue, and of its untriggered stops
        self._resting: dict[str, set[str]] = {}
        self._waiting: dict[str, set[str]] = {}
        for symbol in self._contracts:
            self._add_symbol(symbol)

    def _add_symbol(self, symbol: str) -> None:
        self._queues[symbol] = QueueBook(through=self._queue_through, window=self._queue_window)
        self._triggers[symbol] = Triggers()
        self._resting[symbol] = set()
        self._waiting[symbol] = set()

    # ------------------------------------------------------------------ contracts

    @property
    def symbols(self) -> frozenset[str]:
        """The symbols this exchange trades (orders in any other: "Invalid symbol")."""
        return frozenset(self._contracts)

    def add_contract(self, symbol: str, contract: Contract, mark: float) -> None:
        """Make ``symbol`` tradable with ``contract``, marked at ``mark`` until the venue reports
        a mark (``on_prices``). A venue that learns its contracts from its data (history) calls
        this as each one appears. For a symbol already traded only the contract is replaced
        (a better reading of the same instrument: orders, positions and the mark stay)."""
        self._contracts[symbol] = contract
        if symbol in self._queues:
            return
        self._marks[symbol] = mark
        self._prices[symbol, "MarkPrice"] = mark
        self._add_symbol(symbol)

    # ------------------------------------------------------------------ accounts

    @property
    def accounts(self) -> frozenset[int]:
        return frozenset(self._ledger.accounts)

    def add_account(self, account: int, deposits: Mapping[str, int], now: float) -> None:
        """A new account with ``deposits`` (currency -> settlement units: ``XBt``, ``USDt``)."""
        self._ledger.add(account, deposits, self._fmt(now))

    def seed_position(self, account: int, symbol: str, qty: int, price: float) -> None:
        """Give ``account`` an open position without sending anything (initial state)."""
        self._ledger.seed_position(self._ledger.get(account), symbol, qty, price)

    def active(self, symbol: str) -> bool:
        """Whether any account has an open order in ``symbol`` (resting or waiting)."""
        return bool(self._resting.get(symbol) or self._waiting.get(symbol))

    # ------------------------------------------------------------------ commands

    def place_order(
        self, account: int, params: Mapping[str, Any], now: float
    ) -> tuple[dict[str, Any], list[Delta]]:
        """``POST /order``: the order row as BitMEX answered (after any immediate fills) and
        every delta caused. Raises ``OrderRejected`` (and subclasses) with BitMEX's text."""
        acct = self._ledger.get(account)
        held = {symbol: pos.qty for symbol, pos in acct.positions.items()}
        order = parse_new(params, self._contracts, held)
        if order.cl_ord_id and order.cl_ord_id in acct.cl_ord_ids:
            raise DuplicateClOrdID()
        if order.reduce_only:
            position = held.get(order.symbol, 0)
            if not self._reducible(order, position):
                raise OrderRejected(reduce_text(order.inst_name, order.side, position))
        ts = self._fmt(now)
        if not order.is_stop:
            self._check_margin(acct, order, ts)
        order.order_id = random_guid(self._rng)
        order.account = account
        if order.cl_ord_id:
            acct.cl_ord_ids[order.cl_ord_id] = order.order_id
        out: list[Delta] = []
        symbol = order.symbol
        if order.post_only and self._would_take(order):
            order.text = f"{POST_ONLY_TEXT}\n{order.text}"
            self._ledger.insert(acct, order, "Canceled", ts, out)
        else:
            self._ledger.insert(acct, order, "New", ts, out)
            self._live[order.order_id] = order
            if order.is_stop:
                self._waiting[symbol].add(order.order_id)
                assert order.stop_px is not None
                triggers = self._triggers[symbol]
                stop_px, trigger = order.stop_px, order.trigger
                triggers.add(order.order_id, order.buy, order.ord_type, stop_px, trigger)
                price = self._prices.get((symbol, order.trigger))
                if price is not None:  # already through its stopPx: triggers at once
                    for order_id in triggers.on_price(order.trigger, price):
                        self._trigger(self._live[order_id], now, ts, out)
            else:
                self._arrive(acct, order, now, ts, out)
        self._ledger.refresh(acct, symbol, ts, out)
        return dict(order.row), out

    def amend_order(
        self, account: int, params: Mapping[str, Any], now: float
    ) -> tuple[dict[str, Any], list[Delta]]:
        """``PUT /order``: ``orderID`` or ``origClOrdID`` (and optionally a new ``clOrdID``),
        with new ``orderQty``/``leavesQty``, ``price``, ``stopPx``, ``text``. Quantity down keeps
        the order's place in its queue; a new price or more quantity sends it to the back; a
        price that now crosses the book takes liquidity at once."""
        acct = self._ledger.get(account)
        order = self._find(acct, params.get("orderID"), params.get("origClOrdID"))
        if order.order_id not in acct.open:
            raise InvalidOrdStatus(order.status)
        contract = self._contracts[order.symbol]
        qty, price, stop_px = parse_amend(order, params, contract)
        new_cl = params.get("clOrdID")
        if new_cl is not None and new_cl != order.cl_ord_id:
            if not isinstance(new_cl, str) or len(new_cl) > 36:
                raise OrderRejected("Invalid clOrdID")
            if new_cl in acct.cl_ord_ids:
                raise DuplicateClOrdID()
        ts = self._fmt(now)
        out: list[Delta] = []
        changes: dict[str, Any] = {}
        amended: list[str] = []
        if new_cl is not None and new_cl != order.cl_ord_id:
            order.cl_ord_id = new_cl
            acct.cl_ord_ids[new_cl] = order.order_id
        if qty is not None and qty != order.qty:
            amended.append("orderQty")
            grew = qty > order.qty
            order.qty = qty
            order.leaves = qty - order.cum
            changes.update(orderQty=qty, leavesQty=order.leaves)
        else:
            grew = False
        if price is not None and price != order.price:
            amended.append("price")
            order.price = price
            changes["price"] = price
        if stop_px is not None and stop_px != order.stop_px:
            amended.append("stopPx")
            order.stop_px = stop_px
            changes["stopPx"] = stop_px
        user_text = params.get("text")
        if amended or user_text:
            # BitMEX named what changed: "Amended price orderQty: Amended via API.\n<text>"
            note = user_text if isinstance(user_text, str) and user_text else AMEND_TEXT
            head = " ".join(["Amended", *amended])
            order.text = f"{head}: {note}\n{order.text}"
            changes["text"] = order.text
        if not changes:
            return dict(order.row), out
        self._ledger.update(acct, order, changes, "Replaced", ts, out)
        symbol = order.symbol
        if order.is_stop and not order.triggered:
            if stop_px is not None:
                triggers = self._triggers[symbol]
                triggers.amend(order.order_id, stop_px)
                current = self._prices.get((symbol, order.trigger))
                if current is not None:
                    for order_id in triggers.on_price(order.trigger, current):
                        self._trigger(self._live[order_id], now, ts, out)
        elif "price" in changes and self._crosses(order):
            self._unrest(order)
            self._arrive(acct, order, now, ts, out)
        elif changes.keys() & {"price", "orderQty"}:
            queue = self._queues[symbol]
            if "price" in changes or grew:  # to the back of the (new) level's queue
                ahead = self._liquidity.level_size(symbol, order.side, order.price or 0.0)
                queue.amend(order.order_id, qty=order.leaves, price=order.price, ahead=ahead)
            else:
                queue.amend(order.order_id, qty=order.leaves)
        self._ledger.refresh(acct, symbol, ts, out)
        return dict(order.row), out

    def cancel_orders(
        self,
        account: int,
        order_ids: Sequence[str],
        cl_ord_ids: Sequence[str],
        now: float,
        *,
        text: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[Delta]]:
        """``DELETE /order``: one row per id given (orderIDs first, then clOrdIDs); a closed
        order's row carries BitMEX's ``error`` text. ``NotFound`` if any id is unknown."""
        acct = self._ledger.get(account)
        found = [self._find(acct, order_id, None) for order_id in order_ids]
        found += [self._find(acct, None, cl) for cl in cl_ord_ids]
        ts = self._fmt(now)
        out: list[Delta] = []
        live = [order for order in found if order.order_id in acct.open]
        closed_before = {order.order_id: order.status for order in found if order not in live}
        self._cancel(acct, live, _reason(text, CANCEL_TEXT), ts, out)
        rows: list[dict[str, Any]] = []
        for order in found:
            row = dict(order.row)
            if order.order_id in closed_before:
                state = closed_before[order.order_id]
                row["error"] = f"Unable to cancel order due to existing state: {state}"
            rows.append(row)
        return rows, out

    def cancel_all(
        self,
        account: int,
        now: float,
        *,
        symbol: str | None = None,
        filter: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[Delta]]:
        """``DELETE /order/all`` (and the dead man's switch, ``text`` = ``DMS_TEXT``): cancel
        every open order of ``account`` (of ``symbol``; whose row matches ``filter``). Returns
        the canceled rows."""
        acct = self._ledger.get(account)
        chosen = [
            order
            for order in acct.open.values()
            if symbol in (None, order.symbol)
            and all(order.row.get(name) == value for name, value in (filter or {}).items())
        ]
        out: list[Delta] = []
        if chosen:
            self._cancel(acct, chosen, _reason(text, CANCEL_TEXT), self._fmt(now), out)
        return [dict(order.row) for order in chosen], out

    def set_leverage(
        self, account: int, symbol: str, leverage: float, now: float
    ) -> tuple[dict[str, Any], list[Delta]]:
        """``POST /position/leverage`` (0 = cross margin): the position row after it."""
        acct = self._ledger.get(account)
        if symbol not in self._contracts:
            raise OrderRejected("Invalid symbol")
        if isinstance(leverage, bool) or not valid_leverage(leverage):
            raise OrderRejected("Invalid leverage")
        acct.leverage[symbol] = float(leverage)
        self._ledger.position(acct, symbol).leverage = float(leverage)
        ts = self._fmt(now)
        out: list[Delta] = []
        self._ledger.refresh(acct, symbol, ts, out)
        row = acct.positions[symbol].row
        assert row is not None
        return dict(row), out

    def fill_order(
        self, account: int, order_id: str, now: float, *, qty: int | None = None
    ) -> list[Delta]:
        """Test hook: fill ``qty`` (default: all that is left) of an open order at its own
        price as a maker; private deltas only. ``[]`` if the order is closed."""
        acct = self._ledger.get(account)
        order = self._find(acct, order_id, None)
        if order.order_id not in acct.open:
            return []
        take = order.leaves if qty is None else qty
        lot = self._contracts[order.symbol].spec.lot_size
        if take <= 0 or take > order.leaves or take % lot or order.price is None:
            raise OrderRejected(f"cannot fill {take} of an order with {order.leaves} left")
        ts = self._fmt(now)
        out: list[Delta] = []
        self._fill(acct, order, take, order.price, True, random_guid(self._rng), ts, out)
        self._ledger.refresh(acct, order.symbol, ts, out)
        return out

    # ------------------------------------------------------------------ reads

    def orders(self, account: int) -> list[dict[str, Any]]:
        """Kept orders (open and the latest closed), in placement order."""
        return [dict(order.row) for order in self._ledger.get(account).orders.values()]

    def open_orders(self, account: int) -> list[dict[str, Any]]:
        return [dict(order.row) for order in self._ledger.get(account).open.values()]

    def executions(self, account: int) -> list[dict[str, Any]]:
        """Kept executions of every type (bounded), oldest first."""
        return [dict(row) for row in self._ledger.get(account).executions]

    def positions(self, account: int) -> list[dict[str, Any]]:
        return self._ledger.rows("position", account, None)

    def margins(self, account: int) -> list[dict[str, Any]]:
        return self._ledger.rows("margin", account, None)

    def wallets(self, account: int) -> list[dict[str, Any]]:
        return self._ledger.rows("wallet", account, None)

    def rows(self, table: str, account: int, symbol: str | None) -> list[dict[str, Any]]:
        """A private table's partial rows for ``account`` (order/execution/position: of
        ``symbol`` when given)."""
        return self._ledger.rows(table, account, symbol)

    # ------------------------------------------------------------------ market events

    def on_level(
        self, symbol: str, side: str, price: float, size: int, now: float, out: list[Delta]
    ) -> None:
        """The visible size at (``side``, ``price``) is now ``size`` (0: the level is gone)."""
        if not self._resting.get(symbol):
            return
        fills = self._queues[symbol].on_level(side, price, size, now)
        if fills:
            self._maker_fills(symbol, fills, now, out)

    def on_trade(
        self, symbol: str, side: str, price: float, qty: int, now: float, out: list[Delta]
    ) -> None:
        """A public trade of ``qty`` at ``price``; ``side`` is the aggressor's."""
        if not self._resting.get(symbol):
            return
        fills = self._queues[symbol].on_trade(side, price, qty, now)
        if fills:
            self._maker_fills(symbol, fills, now, out)

    def on_prices(
        self,
        symbol: str,
        now: float,
        out: list[Delta],
        *,
        last: float | None = None,
        mark: float | None = None,
        index: float | None = None,
    ) -> None:
        """New reference prices of ``symbol``: stops trigger, positions are revalued."""
        if symbol not in self._contracts:
            return
        ts = ""
        for kind, price in (("LastPrice", last), ("MarkPrice", mark), ("IndexPrice", index)):
            if price is None:
                continue
            self._prices[symbol, kind] = price
            if self._waiting[symbol]:
                for order_id in self._triggers[symbol].on_price(kind, price):
                    ts = ts or self._fmt(now)
                    self._trigger(self._live[order_id], now, ts, out)
        if mark is not None and self._marks[symbol] != mark:
            self._marks[symbol] = mark
            for acct in self._ledger.accounts.values():
                pos = acct.positions.get(symbol)
                if pos is not None and pos.qty:
                    ts = ts or self._fmt(now)
                    self._ledger.refresh(acct, symbol, ts, out)
                    if is_liquidated(pos, mark):
                        self._liquidate(acct, symbol, mark, ts, out)

    def on_funding(self, symbol: str, rate: float, now: float, out: list[Delta]) -> None:
        """Funding is paid at ``rate`` on every open position in ``symbol`` (at the mark):
        an ``execution`` insert (execType Funding), then position, margin and wallet."""
        contract = self._contracts.get(symbol)
        if contract is None:
            return
        mark = self._marks[symbol]
        ts = ""
        for acct in self._ledger.accounts.values():
            pos = acct.positions.get(symbol)
            if pos is None or not pos.qty:
                continue
            ts = ts or self._fmt(now)
            qty = pos.qty
            exec_cost, exec_comm = apply_funding(contract, pos, mark, rate)
            row = funding_execution(acct.id, symbol, contract, qty, mark, rate, exec_cost,
                                    exec_comm, random_guid(self._rng), ts)  # fmt: skip
            self._ledger.record(acct, row, symbol, out)
            self._ledger.refresh(acct, symbol, ts, out)

    def _liquidate(self, acct: Account, symbol: str, mark: float, ts: str, out: list[Delta]
                   ) -> None:  # fmt: skip
        """The mark reached the liquidation price: the position's open orders are canceled and
        the position is closed at its bankruptcy price, losing its margin (``_positions``)."""
        open_here = [order for order in acct.open.values() if order.symbol == symbol]
        if open_here:
            self._cancel(acct, open_here, LIQUIDATION_CANCEL_TEXT, ts, out)
        contract = self._contracts[symbol]
        pos = acct.positions[symbol]
        signed, price, exec_cost, exec_comm, realised = liquidate(contract, pos, mark)
        row = liquidation_execution(
            acct.id, symbol, contract, signed, price, exec_cost, exec_comm, realised,
            random_guid(self._rng), random_guid(self._rng), ts,
        )  # fmt: skip
        self._ledger.record(acct, row, symbol, out)
        self._ledger.refresh(acct, symbol, ts, out)

    # ------------------------------------------------------------------ internals

    def _find(self, acct: Account, order_id: Any, cl_ord_id: Any) -> Order:
        if order_id is None and cl_ord_id is None:
            raise OrderRejected("orderID or origClOrdID must be sent.")
        if order_id is None:
            order_id = acct.cl_ord_ids.get(cl_ord_id) if isinstance(cl_ord_id, str) else None
        order = acct.orders.get(order_id) if isinstance(order_id, str) else None
        if order is None:
            raise NotFound()
        return order

    @staticmethod
    def _reducible(order: Order, position: int) -> int:
        """How much of ``order`` would reduce ``position`` (0: it would only increase it)."""
        if position == 0 or (position > 0) == order.buy:
            return 0
        return abs(position)

    def _opposite_best(self, order: Order) -> float | None:
        return self._liquidity.best(order.symbol, "Sell" if order.buy else "Buy")

    def _would_take(self, order: Order) -> bool:
        best = self._opposite_best(order)
        if best is None or order.price is None:
            return False
        return best <= order.price if order.buy else best >= order.price

    def _crosses(self, order: Order) -> bool:
        return order.price is not None and self._would_take(order)

    def _band(self, order: Order) -> float | None:
        """A market order's limit: ``MARKET_BAND`` beyond the opposite touch, on the tick."""
        best = self._opposite_best(order)
        if best is None:
            return None
        contract = self._contracts[order.symbol]
        if order.buy:
            return contract.price(math.floor(best * (1 + MARKET_BAND) / contract.tick_size))
        return contract.price(math.ceil(best * (1 - MARKET_BAND) / contract.tick_size))

    def _check_margin(self, acct: Account, order: Order, ts: str) -> None:
        """BitMEX's pre-trade check: the part of the order that would open or add to a position
        needs initial margin plus the taker fee from the available balance."""
        contract = self._contracts[order.symbol]
        symbol = order.symbol
        same_side = sum(
            other.leaves
            for other in acct.open.values()
            if other.symbol == symbol and other.buy == order.buy and other is not order
        )
        signed = order.leaves if order.buy else -order.leaves
        opening = opening_qty(acct.held(symbol), signed, same_side)
        if opening <= 0:
            return
        price = order.price
        if price is None:
            price = self._opposite_best(order) or self._marks[symbol]
        leverage = self._ledger.leverage(acct, symbol)
        required = order_cost(contract, opening, price, leverage=leverage)
        currency = contract.spec.settl_currency
        if required > self._ledger.available(acct, currency, ts):
            raise InsufficientBalance(required, currency)

    def _fillable(self, order: Order, limit: float, want: int) -> int:
        """Visible size from the opposite touch up to ``limit``, counted up to ``want``."""
        best = self._opposite_best(order)
        if best is None:
            return 0
        contract = self._contracts[order.symbol]
        side = "Sell" if order.buy else "Buy"
        tick, last = contract.tick_of(best), contract.tick_of(limit)
        step = 1 if order.buy else -1
        total = 0
        for _ in range(_FOK_WALK):
            if (tick > last) if order.buy else (tick < last):
                break
            total += self._liquidity.level_size(order.symbol, side, contract.price(tick))
            if total >= want:
                break
            tick += step
        return total

    def _arrive(self, acct: Account, order: Order, now: float, ts: str, out: list[Delta]) -> None:
        """An active order arrives: it takes what it may, then rests or is canceled."""
        symbol = order.symbol
        want = order.leaves
        if order.reduce_only:
            want = min(want, self._reducible(order, acct.held(symbol)))
            if not want:
                self._cancel_one(acct, order, self._reduce_reason(acct, order), ts, out)
                return
        limit = self._band(order) if order.takes_any_price else order.price
        if order.tif == "FillOrKill" and (
            limit is None or want < order.leaves or self._fillable(order, limit, want) < want
        ):
            self._cancel_one(acct, order, FOK_TEXT, ts, out)
            return
        taken: list[tuple[float, int, str]] = []
        if limit is not None and want:
            taken = self._liquidity.take(symbol, order.buy, limit, want, now, out)
            for price, qty, match_id in taken:
                self._fill(acct, order, qty, price, False, match_id, ts, out)
        if order.leaves:
            if order.takes_any_price:
                self._cancel_one(acct, order, BAND_TEXT, ts, out)
            elif order.tif == "ImmediateOrCancel":
                self._cancel_one(acct, order, IOC_TEXT, ts, out)
            elif order.tif == "FillOrKill":
                self._cancel_one(acct, order, FOK_TEXT, ts, out)
            elif order.reduce_only and not self._reducible(order, acct.held(symbol)):
                self._cancel_one(acct, order, self._reduce_reason(acct, order), ts, out)
            else:
                assert order.price is not None
                ahead = self._liquidity.level_size(symbol, order.side, order.price)
                self._queues[symbol].add(order.order_id, order.buy, order.price, order.leaves,
                                         ahead)  # fmt: skip
                self._resting[symbol].add(order.order_id)
        if taken:  # other accounts' orders resting at the levels taken lost their size ahead
            side = "Sell" if order.buy else "Buy"
            for price, _, _ in taken:
                size = self._liquidity.level_size(symbol, side, price)
                self.on_level(symbol, side, price, size, now, out)

    def _reduce_reason(self, acct: Account, order: Order) -> str:
        text = reduce_text(order.inst_name, order.side, acct.held(order.symbol))
        return f"Canceled: {text}"

    def _fill(
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
        self._ledger.fill(acct, order, qty, price, maker, match_id, ts, out)
        if not order.leaves:
            self._live.pop(order.order_id, None)
            self._unrest(order)
            return
        # The queue holds at most the order's leaves: a fill it did not make itself (a
        # ReduceOnly fill cut below what it reported, the fill_order hook) is written back, or a
        # later trade would fill more than is left. Less quantity keeps the order's place.
        queue = self._queues[order.symbol]
        if order.order_id in queue and queue.qty(order.order_id) > order.leaves:
            queue.amend(order.order_id, qty=order.leaves)

    def _maker_fills(
        self, symbol: str, fills: list[tuple[str, int, float]], now: float, out: list[Delta]
    ) -> None:
        """Resting orders filled by the market: fills, then each account's refresh."""
        ts = self._fmt(now)
        touched: dict[int, Account] = {}
        for order_id, qty, price in fills:
            order = self._live.get(order_id)
            if order is None:
                continue
            acct = self._ledger.get(order.account)
            touched[acct.id] = acct
            if order.reduce_only:
                qty = min(qty, self._reducible(order, acct.held(symbol)))
            if qty:
                self._fill(acct, order, qty, price, True, random_guid(self._rng), ts, out)
            if not order.leaves:
                self._unrest(order)
            elif order.reduce_only and not self._reducible(order, acct.held(symbol)):
                self._cancel_one(acct, order, self._reduce_reason(acct, order), ts, out)
        for acct in touched.values():
            self._ledger.refresh(acct, symbol, ts, out)

    def _trigger(self, order: Order, now: float, ts: str, out: list[Delta]) -> None:
        """A stop's trigger price reached its stopPx: "StopOrderTriggered", then it arrives as
        a Market (Stop, MarketIfTouched) or Limit (StopLimit, LimitIfTouched) order."""
        acct = self._ledger.get(order.account)
        self._waiting[order.symbol].discard(order.order_id)
        order.triggered = True
        order.text = f"{TRIGGER_TEXT}\n{order.text}"
        changes = {"triggered": "StopOrderTriggered", "workingIndicator": True,
                   "text": order.text}  # fmt: skip
        self._ledger.update(acct, order, changes, "TriggeredOrActivatedBySystem", ts, out)
        try:
            self._check_margin(acct, order, ts)
        except InsufficientBalance as error:
            self._cancel_one(acct, order, f"Canceled: {error.message}", ts, out)
            return
        self._arrive(acct, order, now, ts, out)
        self._ledger.refresh(acct, order.symbol, ts, out)

    def _unrest(self, order: Order) -> None:
        """Take ``order`` out of its queue or trigger list, if it is in one."""
        symbol = order.symbol
        waiting, resting = self._waiting[symbol], self._resting[symbol]
        if order.order_id in waiting:
            waiting.discard(order.order_id)
            self._triggers[symbol].remove(order.order_id)
        elif order.order_id in resting:
            resting.discard(order.order_id)
            self._queues[symbol].remove(order.order_id)

    def _cancel_one(
        self, acct: Account, order: Order, reason: str, ts: str, out: list[Delta]
    ) -> None:
        self._unrest(order)
        self._live.pop(order.order_id, None)
        self._ledger.cancel(acct, [order], reason, ts, out)

    def _cancel(
        self, acct: Account, orders: Sequence[Order], reason: str, ts: str, out: list[Delta]
    ) -> None:
        for order in orders:
            self._unrest(order)
            self._live.pop(order.order_id, None)
        for symbol in self._ledger.cancel(acct, orders, reason, ts, out):
            self._ledger.refresh(acct, symbol, ts, out)


def _reason(text: str | None, default: str) -> str:
    """A cancel's reason as the order row shows it: ``Canceled: <text>``."""
    if not text:
        return default
    return text if text.startswith("Canceled:") else f"Canceled: {text}"
