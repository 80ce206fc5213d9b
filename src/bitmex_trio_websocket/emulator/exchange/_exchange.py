"""The paper exchange's facade: accounts, orders, fills and private tables, sans-IO.

Theory of operation: filled in by the next commits (skeleton so other modules can import it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from random import Random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..market._instruments import Contract
    from ..market._schemas import Delta
    from ..market._venue import Liquidity

__all__ = ["Exchange"]


class Exchange:
    """BitMEX's trading engine for paper accounts."""

    def __init__(
        self,
        contracts: Mapping[str, Contract],
        liquidity: Liquidity,
        rng: Random,
        fmt: Callable[[float], str],
        *,
        marks: Mapping[str, float],
    ) -> None:
        self._contracts = contracts
        self._liquidity = liquidity
        self._rng = rng
        self._fmt = fmt
        self._marks = marks

    @property
    def accounts(self) -> frozenset[int]:
        raise NotImplementedError

    def add_account(self, account: int, deposits: Mapping[str, int], now: float) -> None:
        raise NotImplementedError

    def place_order(
        self, account: int, params: Mapping[str, Any], now: float
    ) -> tuple[dict[str, Any], list[Delta]]:
        raise NotImplementedError

    def amend_order(
        self, account: int, params: Mapping[str, Any], now: float
    ) -> tuple[dict[str, Any], list[Delta]]:
        raise NotImplementedError

    def cancel_orders(
        self,
        account: int,
        order_ids: Sequence[str],
        cl_ord_ids: Sequence[str],
        now: float,
        *,
        text: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[Delta]]:
        raise NotImplementedError

    def cancel_all(
        self,
        account: int,
        now: float,
        *,
        symbol: str | None = None,
        filter: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[Delta]]:
        raise NotImplementedError

    def set_leverage(
        self, account: int, symbol: str, leverage: float, now: float
    ) -> tuple[dict[str, Any], list[Delta]]:
        raise NotImplementedError

    def orders(self, account: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def executions(self, account: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def positions(self, account: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def margins(self, account: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def wallets(self, account: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def rows(self, table: str, account: int, symbol: str | None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def on_level(
        self, symbol: str, side: str, price: float, size: int, now: float, out: list[Delta]
    ) -> None:
        raise NotImplementedError

    def on_trade(
        self, symbol: str, side: str, price: float, qty: int, now: float, out: list[Delta]
    ) -> None:
        raise NotImplementedError

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
        raise NotImplementedError
