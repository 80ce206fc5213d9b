"""The paper exchange: BitMEX's trading engine for emulated accounts, sans-IO.

Theory of operation: ``Exchange`` takes orders as BitMEX's REST API did (``place_order``,
``amend_order``, ``cancel_orders``, ``cancel_all``, ``set_leverage``), matches them against a
venue's visible book through the ``Liquidity`` protocol (``market/_venue.py``), and keeps each
account's private tables (order, execution, position, margin, wallet), returning every change
as ``Delta`` messages in the order BitMEX sent them. The venue reports its market's moves
(``on_level``, ``on_trade``, ``on_prices``), which fill resting orders and trigger stops. How
resting orders fill is written out in docs/fill-model.rst; order types, instructions, statuses
and texts in docs/paper-trading.rst; the contract maths in docs/contract-maths.rst.

Modules: ``_errors`` (refusals), ``_orders`` (validation and order rows), ``_accounts`` (account
state and private-table deltas), ``_exchange`` (the facade), ``_queue``/``_triggers`` (the fill
model) and ``_positions`` (contract maths). Nothing here imports trio or reads a clock.
"""

from ..market._venue import Liquidity
from ._errors import (
    AccountExists,
    DuplicateClOrdID,
    ExchangeError,
    InsufficientBalance,
    InvalidOrdStatus,
    NotFound,
    OrderRejected,
    UnknownAccount,
)
from ._exchange import Exchange

__all__ = [
    "AccountExists",
    "DuplicateClOrdID",
    "Exchange",
    "ExchangeError",
    "InsufficientBalance",
    "InvalidOrdStatus",
    "Liquidity",
    "NotFound",
    "OrderRejected",
    "UnknownAccount",
]
