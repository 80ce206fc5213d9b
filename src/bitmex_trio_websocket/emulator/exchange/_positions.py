"""Contract maths of the paper exchange: positions, PnL, fees, margin, liquidation, funding, rows.

Theory of operation: pure functions over a ``Position`` (signed quantity, the entry value of the
open contracts, leverage) and a ``Contract`` (market/_instruments.py: BitMEX's inverse, quanto
and linear value formulas). Nothing here keeps an account, reads a clock, draws an id or sends a
message: the exchange's account state calls these with what they need (mark price, available
margin, ids, the timestamp text) and diffs the rows they build against what it last sent.

Units: money is int in settlement units (XBt satoshis, USDt millionths); prices are floats on
the tick; quantities are signed ints in contracts (long positive). Values follow BitMEX's sign
convention (``Contract.value``): an XBTUSD long's cost is negative, an ETHUSD or XBTUSDT long's
positive; PnL is always ``value at the exit/mark price - value at entry``.

Every formula is one function with its hand-computed test (tests/emulator/exchange/
test_positions.py) and is written out, with its simplifications (no risk limits, no
auto-deleveraging, no insurance fund, no partial liquidation), in docs/contract-maths.rst.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from ..market._instruments import MAKER_FEE, TAKER_FEE, Contract

__all__ = [
    "CROSS",
    "DEFAULT_TERMS",
    "INIT_MARGIN_REQ",
    "LEVERAGE",
    "LIQUIDATION_TEXT",
    "MAINT_MARGIN_REQ",
    "MAX_LEVERAGE",
    "Margins",
    "NO_ID",
    "STRATEGY",
    "Position",
    "Terms",
    "apply_fill",
    "apply_funding",
    "fill_costs",
    "funding_execution",
    "funding_payment",
    "is_liquidated",
    "liquidate",
    "liquidation_execution",
    "liquidation_prices",
    "margin_row",
    "open_order_costs",
    "opening_qty",
    "order_cost",
    "position_margins",
    "position_row",
    "valid_leverage",
    "wallet_row",
]

STRATEGY: Final = "OneWay"
LEVERAGE: Final = 10.0  # a new position's isolated leverage (BitMEX's was the user's last choice)
CROSS: Final = 0.0  # POST /position/leverage with leverage 0 selects cross margin
MAX_LEVERAGE: Final = 100.0
INIT_MARGIN_REQ: Final = 1 / LEVERAGE
MAINT_MARGIN_REQ: Final = 0.005  # the instrument row's maintMargin
NO_ID: Final = "00000000-0000-0000-0000-000000000000"  # BitMEX's orderID of engine executions
LIQUIDATION_TEXT: Final = "Liquidation"


@dataclass(frozen=True, slots=True)
class Terms:
    """One instrument's fee and margin terms (its ``instrument`` row: ``makerFee``,
    ``takerFee``, ``initMargin``, ``maintMargin``). Negative ``maker_fee`` is a rebate."""

    maker_fee: float = MAKER_FEE
    taker_fee: float = TAKER_FEE
    init_margin: float = 1 / MAX_LEVERAGE  # cross margin's initMarginReq
    maint_margin: float = MAINT_MARGIN_REQ

    @property
    def max_leverage(self) -> float:
        return 1 / self.init_margin


DEFAULT_TERMS: Final = Terms()


class Position:
    """One account's position in one symbol (was market/_accounts.py's ``_Position``).

    ``leverage`` is the isolated leverage, or ``CROSS`` (0). ``liquidation``/``bankrupt`` are
    the prices of the last ``position_row`` built (what ``is_liquidated`` compares the mark
    with, as BitMEX compared the mark price with the liquidationPrice it showed).
    """

    __slots__ = ("bankrupt", "comm", "cost", "leverage", "liquidation", "qty", "realised_cost",
                 "realised_pnl", "row")  # fmt: skip

    def __init__(self, leverage: float = LEVERAGE) -> None:
        self.qty = 0  # signed contracts
        self.cost = 0  # value of the open contracts at their entry prices (Contract.value)
        self.realised_cost = 0
        self.realised_pnl = 0  # closed-trade PnL minus commissions and funding, settl. units
        self.comm = 0  # commissions and funding paid (negative: rebates received)
        self.leverage = leverage
        self.liquidation = 0.0
        self.bankrupt = 0.0
        self.row: dict[str, Any] | None = None  # None until the row was first sent

    @property
    def cross(self) -> bool:
        return self.leverage == CROSS


def valid_leverage(leverage: float, terms: Terms = DEFAULT_TERMS) -> bool:
    """BitMEX took 0 (cross) or an isolated leverage from 0.01 up to the instrument's maximum."""
    return leverage == CROSS or 0.01 <= leverage <= terms.max_leverage


def _init_req(pos: Position, terms: Terms) -> float:
    """``initMarginReq``: 1 / leverage isolated, the instrument's initMargin cross."""
    return terms.init_margin if pos.cross else 1 / pos.leverage


# ---------------------------------------------------------------------------- fills


def fill_costs(
    contract: Contract, signed: int, price: float, maker: bool, terms: Terms = DEFAULT_TERMS
) -> tuple[int, int, float]:
    """``(execCost, execComm, commission)`` of a fill of ``signed`` contracts at ``price``:
    ``execComm = round(|execCost| * fee)``, negative for a maker rebate."""
    exec_cost = contract.value(signed, price)
    fee = terms.maker_fee if maker else terms.taker_fee
    return exec_cost, round(abs(exec_cost) * fee), fee


def apply_fill(
    contract: Contract, pos: Position, signed: int, price: float, exec_cost: int, exec_comm: int
) -> int:
    """Update ``pos`` with a fill of ``signed`` contracts; returns its realised PnL (net of
    ``exec_comm``). Adding keeps the cost (so the entry is the value-weighted average: the
    harmonic mean of prices for inverse contracts); reducing realises the closed part's share
    of the cost against its value at ``price``; a flip opens the rest at ``price``."""
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


# ---------------------------------------------------------------------------- orders


def open_order_costs(
    contract: Contract, orders: Iterable[tuple[bool, int, float]]
) -> tuple[int, int, int, int]:
    """``(buyQty, buyCost, sellQty, sellCost)`` of open orders given as ``(buy, leaves, price)``."""
    buy_qty = buy_cost = sell_qty = sell_cost = 0
    for buy, leaves, price in orders:
        cost = abs(contract.value(leaves, price))
        if buy:
            buy_qty += leaves
            buy_cost += cost
        else:
            sell_qty += leaves
            sell_cost += cost
    return buy_qty, buy_cost, sell_qty, sell_cost


def opening_qty(position_qty: int, signed: int, resting_same_side: int = 0) -> int:
    """How many of an order's ``signed`` contracts would open or increase the position (the
    rest closes it). ``resting_same_side``: contracts of the account's open orders on the
    same side, which close the position first."""
    if position_qty == 0 or (position_qty > 0) == (signed > 0):
        return abs(signed)
    closable = max(0, abs(position_qty) - resting_same_side)
    return max(0, abs(signed) - closable)


def order_cost(
    contract: Contract,
    qty: int,
    price: float,
    *,
    leverage: float = LEVERAGE,
    terms: Terms = DEFAULT_TERMS,
) -> int:
    """Margin an order of ``qty`` opening contracts at ``price`` needs (``opening_qty``):
    ``|value| * (initMarginReq + takerFee)``. The exchange refuses the order with
    "Account has insufficient Available Balance, N XBt required" when this exceeds the
    currency's availableMargin."""
    imr = terms.init_margin if leverage == CROSS else 1 / leverage
    return round(abs(contract.value(qty, price)) * (imr + terms.taker_fee))


# ---------------------------------------------------------------------------- margin


def _loss_price(contract: Contract, qty: int, abs_cost: int, budget: float) -> float:
    """The price at which the position has lost ``budget`` settlement units since its entry.

    Inverse long: ``|value(P)| = |cost| + budget`` (a long XBTUSD gains XBT as 1/P falls);
    inverse short: ``|value(P)| = |cost| - budget``; quanto and linear long:
    ``|value(P)| = |cost| - budget``, short ``|cost| + budget``. No such price: 0 for a long,
    BitMEX's 100000000 (maxPrice of the liquidation column) for a short.
    """
    q = abs(qty)
    long = qty > 0
    if contract.inverse:
        target = abs_cost + budget if long else abs_cost - budget
        if target <= 0:
            return 100_000_000.0
        return abs(contract.mult) * q / target
    target = abs_cost - budget if long else abs_cost + budget
    if target <= 0:
        return 0.0
    return target / (q * abs(contract.mult))


def liquidation_prices(
    contract: Contract,
    qty: int,
    entry: float,
    *,
    init_req: float = INIT_MARGIN_REQ,
    maint_req: float = MAINT_MARGIN_REQ,
    extra: float = 0.0,
) -> tuple[float, float]:
    """``(liquidationPrice, bankruptPrice)``; ``(0.0, 0.0)`` when flat.

    Bankrupt: the position has lost its initial margin (``init_req * |cost|``; the posComm
    kept in posMargin pays the closing fee). Liquidation: it has lost ``(init_req - maint_req)
    * |cost|``, leaving the maintenance margin. ``extra``: more loss the position may take
    (cross margin: the account's available margin, see ``position_margins``). Rounded to the
    tick. ``entry`` is the average entry price (the cost is taken at it, as BitMEX did).
    """
    if not qty:
        return 0.0, 0.0
    abs_cost = abs(contract.value(qty, entry))
    liquidation = _loss_price(contract, qty, abs_cost, (init_req - maint_req) * abs_cost + extra)
    bankrupt = _loss_price(contract, qty, abs_cost, init_req * abs_cost + extra)
    return contract.round_price(liquidation), contract.round_price(bankrupt)


@dataclass(frozen=True, slots=True)
class Margins:
    """A position's margin columns (``position_margins``), settlement units."""

    init_req: float
    pos_init: int
    pos_comm: int
    pos_cross: int
    pos_margin: int
    pos_maint: int
    maint_margin: int


def position_margins(
    contract: Contract, pos: Position, unrealised: int, terms: Terms = DEFAULT_TERMS
) -> Margins:
    """The position's margin columns.

    ``posInit = |cost| * initMarginReq``; ``posComm`` = the taker fee of closing at the
    bankruptcy value (``(|cost| +- (posInit + posCross)) * takerFee`` rounded up, + for
    inverse longs and linear/quanto shorts); ``posMaint = |cost| * maintMarginReq +
    posComm``; cross margin also holds the unrealised loss (``posCross``) from the account;
    ``posMargin = posInit + posComm + posCross``; the position's ``maintMargin`` =
    ``posMargin - posCross``.
    """
    abs_cost = abs(pos.cost)
    imr = _init_req(pos, terms)
    pos_init = round(abs_cost * imr)
    pos_cross = max(0, -unrealised) if pos.cross and pos.qty else 0
    # the value at bankruptcy: the cost moved by the margin the position may lose
    moved = abs_cost * imr + pos_cross
    widen = (pos.qty > 0) == contract.inverse  # the bankruptcy value is above the cost
    # rounded up, as the 2023-12 cross position row has it (posComm 693 = 0.075% of
    # 912,269 + 9,123 + 1,543 rounded up, ccxt_pro_bitmex_comment_examples.jsonl seq 13);
    # round() first drops float noise
    fee = (abs_cost + moved if widen else abs_cost - moved) * terms.taker_fee
    pos_comm = math.ceil(round(fee, 6))
    pos_maint = round(abs_cost * terms.maint_margin) + pos_comm
    pos_margin = pos_init + pos_comm + pos_cross
    return Margins(imr, pos_init, pos_comm, pos_cross, pos_margin, pos_maint,
                    pos_init + pos_comm)  # fmt: skip


def is_liquidated(position: Position, mark: float) -> bool:
    """The mark price reached the liquidation price of the position's last row: a long at or
    below it, a short at or above it."""
    if not position.qty or not position.liquidation:
        return False
    if position.qty > 0:
        return mark <= position.liquidation
    return mark >= position.liquidation


# ---------------------------------------------------------------------------- rows


def position_row(
    account: int,
    symbol: str,
    contract: Contract,
    pos: Position,
    mark: float,
    open_costs: tuple[int, int, int, int],
    ts: str,
    *,
    terms: Terms = DEFAULT_TERMS,
    available: int = 0,
) -> dict[str, Any]:
    """The full ``position`` row; ``open_costs`` from ``open_order_costs``; ``available``: the
    settlement currency's availableMargin (cross margin lets the position lose it too).
    Stores the liquidation and bankruptcy prices on ``pos`` for ``is_liquidated``."""
    spec = contract.spec
    qty = pos.qty
    buy_qty, buy_cost, sell_qty, sell_cost = open_costs
    mark_value = contract.value(qty, mark) if qty else 0
    unrealised = mark_value - pos.cost if qty else 0
    abs_cost = abs(pos.cost)
    m = position_margins(contract, pos, unrealised, terms)
    leverage = terms.max_leverage if pos.cross else pos.leverage
    entry = contract.entry_price(qty, pos.cost)
    # cross: the loss may also use the available margin, which already counts this
    # position's unrealised PnL: measured from the entry the room is available - unrealised
    extra = max(0, available - unrealised) if pos.cross else 0
    liquidation, bankrupt = liquidation_prices(
        contract, qty, entry, init_req=m.init_req, maint_req=terms.maint_margin, extra=extra
    )
    pos.liquidation, pos.bankrupt = liquidation, bankrupt
    _, home, foreign = contract.notionals(abs(qty), mark) if qty else (0, 0.0, 0.0)
    if qty < 0:
        home, foreign = -home, -foreign
    # both from the unrounded ratio: the 2023-12 row's -1543 on 912,269 at 100x is
    # unrealisedRoePcnt -0.1691 (ccxt_pro_bitmex_comment_examples.jsonl seq 13)
    ratio = unrealised / abs_cost if abs_cost else 0.0
    order_req = m.init_req + terms.taker_fee
    return {
        "account": account, "symbol": symbol, "strategy": STRATEGY,
        "currency": spec.settl_currency, "underlying": spec.underlying,
        "quoteCurrency": spec.quote_currency, "commission": terms.taker_fee,
        "initMarginReq": m.init_req, "maintMarginReq": terms.maint_margin,
        "riskLimit": 20_000_000_000, "leverage": leverage, "crossMargin": pos.cross,
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
        "foreignNotional": foreign, "posCost": pos.cost, "posCross": m.pos_cross,
        "posComm": m.pos_comm, "posLoss": 0, "posMargin": m.pos_margin,
        "posMaint": m.pos_maint, "initMargin": round((buy_cost + sell_cost) * order_req),
        "maintMargin": m.maint_margin, "realisedPnl": pos.realised_pnl,
        "unrealisedPnl": unrealised, "unrealisedPnlPcnt": round(ratio, 4),
        "unrealisedRoePcnt": round(ratio * leverage, 4), "avgCostPrice": entry,
        "avgEntryPrice": entry, "breakEvenPrice": entry, "marginCallPrice": liquidation,
        "liquidationPrice": liquidation, "bankruptPrice": bankrupt, "timestamp": ts,
    }  # fmt: skip


def margin_row(
    account: int,
    currency: str,
    deposit: int,
    positions: Iterable[tuple[Contract, Position, float]],
    open_cost: int,
    ts: str,
    *,
    order_margin: int | None = None,
    terms: Terms = DEFAULT_TERMS,
) -> dict[str, Any]:
    """The full ``margin`` row of one currency. ``positions``: ``(contract, position, mark)`` of
    every position settled in ``currency``; ``open_cost``: the summed absolute value of the
    open orders settled in it; ``order_margin``: their margin (``order_cost`` of each; default
    ``open_cost * (1/LEVERAGE + takerFee)``).

    walletBalance = deposits + realised PnL; marginBalance = walletBalance + unrealised PnL;
    maintMargin = the positions' margins (posInit + posComm); initMargin = the orders' margin;
    excessMargin = marginBalance - maintMargin - initMargin; availableMargin = max(0, that);
    withdrawableMargin = min(availableMargin, walletBalance).
    """
    realised = comm = unrealised = exec_cost = mark_value = maint = 0
    for contract, pos, mark in positions:
        realised += pos.realised_pnl
        comm += pos.comm
        if pos.qty:
            value = contract.value(pos.qty, mark)
            unrealised += value - pos.cost
            mark_value += abs(value)
            exec_cost += abs(pos.cost)
            maint += position_margins(contract, pos, value - pos.cost, terms).maint_margin
    if order_margin is None:
        order_margin = round(open_cost * (INIT_MARGIN_REQ + terms.taker_fee))
    wallet = deposit + realised
    balance = wallet + unrealised
    excess = balance - maint - order_margin
    available = max(0, excess)
    row: dict[str, Any] = {
        "account": account, "currency": currency, "riskLimit": 1_000_000_000_000,
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


def wallet_row(account: int, currency: str, deposit: int, realised: int, ts: str) -> dict[str, Any]:
    """The full ``wallet`` row of one currency; ``realised``: the summed ``realised_pnl`` of the
    positions settled in it (amount = deposits + realised PnL, the margin row's walletBalance)."""
    return {
        "account": account, "currency": currency, "deposited": deposit, "withdrawn": 0,
        "transferIn": 0, "transferOut": 0, "amount": deposit + realised,
        "pendingCredit": 0, "pendingDebit": 0, "confirmedDebit": 0, "timestamp": ts,
        "withdrawalLock": [],
    }  # fmt: skip


# ---------------------------------------------------------------------------- liquidation


def liquidate(
    contract: Contract, pos: Position, mark: float, terms: Terms = DEFAULT_TERMS
) -> tuple[int, float, int, int, int]:
    """Close ``pos`` at its bankruptcy price as BitMEX's liquidation engine took it over.

    The account loses exactly the position's margin (posMargin: posInit + posComm + posCross),
    as BitMEX said "your maintenance margin will be lost": the trade's PnL is ``-(posMargin -
    posComm)`` and its commission ``posComm`` (the fee at the bankruptcy price). What the
    engine makes or loses beyond that (insurance fund) is not the account's. Returns
    ``(signed qty traded, price, execCost, execComm, realised)``; ``pos`` is flat afterwards.
    Call after ``position_row`` (which set ``pos.bankrupt``) and ``is_liquidated``.
    """
    qty = pos.qty
    unrealised = contract.value(qty, mark) - pos.cost
    m = position_margins(contract, pos, unrealised, terms)
    price = pos.bankrupt or contract.entry_price(qty, pos.cost)
    signed = -qty
    exec_cost = contract.value(signed, price)
    realised = -m.pos_margin
    pos.realised_cost += pos.cost
    pos.cost = 0
    pos.qty = 0
    pos.comm += m.pos_comm
    pos.realised_pnl += realised
    pos.liquidation = pos.bankrupt = 0.0
    return signed, price, exec_cost, m.pos_comm, realised


def liquidation_execution(
    account: int,
    symbol: str,
    contract: Contract,
    signed: int,
    price: float,
    exec_cost: int,
    exec_comm: int,
    realised: int,
    exec_id: str,
    match_id: str,
    ts: str,
    *,
    terms: Terms = DEFAULT_TERMS,
) -> dict[str, Any]:
    """The ``execution`` row of a liquidation, in the shape of BitMEX's (the 2017 liquidation
    fill quoted by ccxt, ../shared/captures/ccxt_pro_bitmex_comment_examples.jsonl seq 14:
    orderID all zeros, ordType Limit, timeInForce ImmediateOrCancel, RemovedLiquidity,
    DoNotPublishTrade, text "Liquidation"; nulls and empty strings omitted as since 2023)."""
    spec = contract.spec
    qty = abs(signed)
    buy = signed > 0
    _, home, foreign = contract.notionals(qty, price)
    return {
        "execID": exec_id, "orderID": NO_ID, "account": account, "symbol": symbol,
        "strategy": STRATEGY, "side": "Buy" if buy else "Sell", "lastQty": qty,
        "lastPx": price, "lastLiquidityInd": "RemovedLiquidity", "orderQty": qty,
        "price": price, "currency": spec.quote_currency, "settlCurrency": spec.settl_currency,
        "execType": "Trade", "ordType": "Limit", "timeInForce": "ImmediateOrCancel",
        "ordStatus": "Filled", "workingIndicator": False, "leavesQty": 0, "cumQty": qty,
        "avgPx": price, "commission": terms.taker_fee,
        "tradePublishIndicator": "DoNotPublishTrade", "text": LIQUIDATION_TEXT,
        "trdMatchID": match_id, "execCost": exec_cost, "execComm": exec_comm,
        "homeNotional": home if buy else -home, "foreignNotional": -foreign if buy else foreign,
        "realisedPnl": realised, "transactTime": ts, "timestamp": ts,
    }  # fmt: skip


# ---------------------------------------------------------------------------- funding


def funding_payment(contract: Contract, qty: int, mark: float, rate: float) -> tuple[int, int]:
    """``(execCost, execComm)`` of a funding payment on ``qty`` contracts at ``mark``.

    BitMEX: Funding = position value at the mark price * funding rate; a positive rate makes
    longs pay shorts. ``execComm`` is what the account pays (negative: receives):
    ``round(|value| * rate)`` for a long, its negative for a short. ``execCost`` is the
    position's value at the mark (BitMEX's sign convention)."""
    value = contract.value(qty, mark)
    paid = round(abs(value) * rate)
    return value, paid if qty > 0 else -paid


def apply_funding(contract: Contract, pos: Position, mark: float, rate: float) -> tuple[int, int]:
    """Charge ``pos`` a funding payment: ``(execCost, execComm)``, the commission added to the
    position's commissions and taken from its realised PnL (the wallet). Nothing when flat."""
    if not pos.qty:
        return 0, 0
    exec_cost, exec_comm = funding_payment(contract, pos.qty, mark, rate)
    pos.comm += exec_comm
    pos.realised_pnl -= exec_comm
    return exec_cost, exec_comm


def funding_execution(
    account: int,
    symbol: str,
    contract: Contract,
    qty: int,
    mark: float,
    rate: float,
    exec_cost: int,
    exec_comm: int,
    exec_id: str,
    ts: str,
) -> dict[str, Any]:
    """The ``execution`` row of a funding payment: execType "Funding", lastQty the position,
    lastPx and price the mark, commission the funding rate, execComm what was paid, text
    "Funding", orderID and trdMatchID all zeros, no side/ordType/ordStatus (empty since 2023:
    omitted)."""
    spec = contract.spec
    _, home, foreign = contract.notionals(abs(qty), mark)
    return {
        "execID": exec_id, "orderID": NO_ID, "account": account, "symbol": symbol,
        "strategy": STRATEGY, "lastQty": qty, "lastPx": mark, "price": mark,
        "currency": spec.quote_currency, "settlCurrency": spec.settl_currency,
        "execType": "Funding", "workingIndicator": False, "commission": rate,
        "text": "Funding", "trdMatchID": NO_ID, "execCost": exec_cost, "execComm": exec_comm,
        "homeNotional": home if qty > 0 else -home,
        "foreignNotional": -foreign if qty > 0 else foreign,
        "realisedPnl": -exec_comm, "transactTime": ts, "timestamp": ts,
    }  # fmt: skip
