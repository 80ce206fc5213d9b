"""What the emulator's server needs of a market: the ``Venue`` and ``Liquidity`` protocols, sans-IO.

Theory of operation: the emulator serves one market at a time, either the seeded synthetic
``Market`` or a ``ReplayedMarket`` whose market is BitMEX's history. Both are venues: the server
pumps ``step(now)`` and fans the returned deltas out, takes partials from ``snapshot``, answers
the REST API's public reads from ``public_rows``, and hands orders to ``exchange``, the paper
trading engine (``emulator.exchange``), which is the same for both.

The engine sees the market only through ``Liquidity``: the visible book it takes from when an
order is marketable and whose levels give a resting order its place in the queue. The synthetic
market consumes its own book when taken from (market impact); history cannot change, so a
replayed venue only remembers what was taken from a level until that level's next recorded
update. The venue in turn reports what its market does to the engine (``Exchange.on_level``,
``on_trade``, ``on_prices``), which is how resting orders fill and stops trigger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..exchange import Exchange
    from ._schemas import Delta, Snapshot

__all__ = ["Liquidity", "Venue"]


class Liquidity(Protocol):
    """The visible book an order takes from; ``side`` is ``"Buy"`` (bids) or ``"Sell"`` (asks)."""

    def best(self, symbol: str, side: str) -> float | None:
        """The best visible price on ``side``, ``None`` when that side is empty."""
        ...

    def level_size(self, symbol: str, side: str, price: float) -> int:
        """The visible size at ``price`` on ``side`` (0 when there is no such level)."""
        ...

    def take(
        self, symbol: str, buy: bool, limit: float | None, qty: int, now: float, out: list[Delta]
    ) -> list[tuple[float, int, str]]:
        """Take up to ``qty`` from the side opposite an aggressor (``buy``: the asks), best level
        first, each at its own price, not past ``limit`` (``None``: any price). Returns
        ``(price, qty, trdMatchID)`` per level taken; public deltas this causes go to ``out``."""
        ...


class Venue(Protocol):
    """A market the emulator serves and trades against."""

    symbols: tuple[str, ...]  # tradable contracts, in the market's order
    indices: tuple[str, ...]  # index instruments (``.BXBT``...): rows, no book

    @property
    def exchange(self) -> Exchange:
        """The paper-trading engine: accounts, orders, fills, private tables."""
        ...

    def step(self, now: float) -> list[Delta]:
        """Advance the market to ``now``; the deltas it caused, in sending order."""
        ...

    def snapshot(
        self, table: str, symbol: str | None = None, account: int | None = None
    ) -> Snapshot:
        """The partial image of ``table`` now (private tables need ``account``)."""
        ...

    def enable_table(self, table: str) -> None: ...

    def disable_table(self, table: str) -> None: ...

    def public_rows(self, table: str, symbol: str | None = None) -> list[dict[str, Any]]:
        """Rows for the REST API's public reads: ``instrument`` (indices too), ``orderBookL2``
        (full depth, in a partial's order), ``trade`` (recent, oldest first) and ``funding``."""
        ...

    def add_account(
        self, account: int, *, balance_xbt_sats: int = 10**8, balance_usdt: int = 0
    ) -> None: ...
