"""Contract maths of the paper exchange: positions, PnL, fees, margin, liquidation, money rows.

Theory of operation: pure functions over a ``Position`` (signed quantity and the entry value of
the open contracts) and a ``Contract`` (market/_instruments.py: BitMEX's inverse, quanto and
linear value formulas). Nothing here keeps an account, reads a clock or sends a message: the
exchange's account state calls these and diffs the rows they build against what it last sent.
Money is int in settlement units (XBt satoshis, USDt millionths); prices are floats on the tick.

The formulas are written out with their units and simplifications in docs/contract-maths.rst.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from ..market._instruments import MAKER_FEE, TAKER_FEE, Contract

__all__ = [
    "INIT_MARGIN_REQ",
    "LEVERAGE",
    "MAINT_MARGIN_REQ",
    "STRATEGY",
    "Position",
    "apply_fill",
    "fill_costs",
    "liquidation_prices",
    "margin_row",
    "open_order_costs",
    "position_row",
    "wallet_row",
]

STRATEGY: Final = "OneWay"
LEVERAGE: Final = 10.0
INIT_MARGIN_REQ: Final = 1 / LEVERAGE
MAINT_MARGIN_REQ: Final = 0.005


class Position:
    """One account's position in one symbol (was market/_accounts.py's ``_Position``)."""

    __slots__ = ("comm", "cost", "qty", "realised_cost", "realised_pnl", "row")

    def __init__(self) -> None:
        self.qty = 0  # signed contracts
        self.cost = 0  # value of the open contracts at their entry prices (Contract.value)
        self.realised_cost = 0
        self.realised_pnl = 0  # closed-trade PnL minus commissions, settlement units
        self.comm = 0
        self.row: dict[str, Any] | None = None  # None until the row was first sent


def fill_costs(
    contract: Contract, signed: int, price: float, maker: bool
) -> tuple[int, int, float]:
    """``(execCost, execComm, commission)`` of a fill of ``signed`` contracts at ``price``."""
    exec_cost = contract.value(signed, price)
    fee = MAKER_FEE if maker else TAKER_FEE
    return exec_cost, round(abs(exec_cost) * fee), fee


def apply_fill(
    contract: Contract, pos: Position, signed: int, price: float, exec_cost: int, exec_comm: int
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


def liquidation_prices(contract: Contract, qty: int, entry: float) -> tuple[float, float]:
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


def position_row(
    account: int,
    symbol: str,
    contract: Contract,
    pos: Position,
    mark: float,
    open_costs: tuple[int, int, int, int],
    ts: str,
) -> dict[str, Any]:
    """The full ``position`` row; ``open_costs`` from ``open_order_costs``."""
    spec = contract.spec
    qty = pos.qty
    buy_qty, buy_cost, sell_qty, sell_cost = open_costs
    mark_value = contract.value(qty, mark) if qty else 0
    unrealised = mark_value - pos.cost if qty else 0
    abs_cost = abs(pos.cost)
    pos_init = round(abs_cost * INIT_MARGIN_REQ)
    pos_comm = round(abs_cost * TAKER_FEE)
    entry = contract.entry_price(qty, pos.cost)
    liquidation, bankrupt = liquidation_prices(contract, qty, entry)
    _, home, foreign = contract.notionals(abs(qty), mark) if qty else (0, 0.0, 0.0)
    if qty < 0:
        home, foreign = -home, -foreign
    pnl_pcnt = round(unrealised / abs_cost, 4) if abs_cost else 0.0
    return {
        "account": account, "symbol": symbol, "strategy": STRATEGY,
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


def margin_row(
    account: int,
    currency: str,
    deposit: int,
    positions: Iterable[tuple[Contract, Position, float]],
    open_cost: int,
    ts: str,
) -> dict[str, Any]:
    """The full ``margin`` row of one currency. ``positions``: ``(contract, position, mark)`` of
    every position settled in ``currency``; ``open_cost``: the summed absolute value of the
    open orders settled in it (``abs(contract.value(leaves, price))`` each)."""
    realised = comm = unrealised = exec_cost = mark_value = 0
    for contract, pos, mark in positions:
        realised += pos.realised_pnl
        comm += pos.comm
        if pos.qty:
            value = contract.value(pos.qty, mark)
            unrealised += value - pos.cost
            mark_value += abs(value)
            exec_cost += abs(pos.cost)
    order_margin = round(open_cost * (INIT_MARGIN_REQ + TAKER_FEE))
    maint = round(exec_cost * (INIT_MARGIN_REQ + TAKER_FEE))
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
    positions settled in it."""
    return {
        "account": account, "currency": currency, "deposited": deposit, "withdrawn": 0,
        "transferIn": 0, "transferOut": 0, "amount": deposit + realised,
        "pendingCredit": 0, "pendingDebit": 0, "confirmedDebit": 0, "timestamp": ts,
        "withdrawalLock": [],
    }  # fmt: skip
