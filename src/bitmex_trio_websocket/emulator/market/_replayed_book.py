"""The replayed market's visible book: ``Liquidity`` over a ``Storage``, without market impact.

Theory of operation: the replayed books live in the client's ``Storage`` (the same store a
client keeps, so the emulator's book is by construction the book a client replaying the same
frames holds). ``RecordedBooks`` reads them for the paper exchange:

* the **book table** of a symbol is the deepest order-book table recorded for it that has had a
  partial: ``orderBookL2``, else ``orderBookL2_25``, else ``orderBook10``. Only that table's
  changes are reported to the engine, and only it is taken from;
* ``best`` / ``level_size`` read a side as ``(price, size)`` levels, best first. The visible
  size at a price is kept per ``(symbol, side)`` in a dict (``sizes``: several levels at one
  price, possible since ids stopped encoding prices, are summed), rebuilt at each partial of
  the book table and moved by each of its deltas (``level_added``/``level_removed``), so the
  engine's ``level_size`` and the venue's level reports cost O(1) per level, not a search of
  the store's index;
* ``take`` walks the visible opposite levels best first, each at its own price. History cannot
  react to our orders (no market impact): nothing recorded changes, and no public delta is
  made. So that two orders cannot take the same recorded size, what our orders took is
  remembered per ``(symbol, side, price)`` and subtracted from what ``best``, ``level_size`` and
  ``take`` see, until the recording next changes that level (``forget``): from then on the
  record is the truth again. A level entirely taken is skipped by ``best``.
* each fill gets a synthetic ``trdMatchID``: a GUID hashed from the source's key and a counter,
  so two runs over the same source give the same ids.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ..._storage import Storage

if TYPE_CHECKING:
    from ._schemas import Delta

__all__ = ["BOOK_TABLE_ORDER", "RecordedBooks"]

# The tables a book can be read from, deepest first.
BOOK_TABLE_ORDER: Final = ("orderBookL2", "orderBookL2_25", "orderBook10")

Levels = Sequence[tuple[float, int | float]]


def _find(levels: Levels, price: float, bids: bool) -> int:
    """The index of the first level at or beyond ``price`` (best first; bids descending)."""
    lo, hi = 0, len(levels)
    while lo < hi:
        mid = (lo + hi) // 2
        p = levels[mid][0]
        if (p > price) if bids else (p < price):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _size_at(levels: Levels, index: int, price: float) -> int:
    total = 0
    n = len(levels)
    while index < n:
        p, size = levels[index]
        if p != price:
            break
        total += int(size)
        index += 1
    return total


class RecordedBooks:
    """The ``Liquidity`` of a replayed market (see the module docstring)."""

    def __init__(self, storage: Storage, match_key: str) -> None:
        self.storage = storage
        self._match_key = match_key
        self.matches = 0  # trdMatchIDs handed out
        # (symbol, side, price) -> contracts our orders took there since its last recorded change
        self.taken: dict[tuple[str, str, float], int] = {}
        # (symbol, side) -> price -> recorded visible size, for L2 book tables
        self.sizes: dict[tuple[str, str], dict[float, int]] = {}

    # ------------------------------------------------------------------ tables

    def book_table(self, symbol: str) -> str | None:
        """The table this symbol's book is read from (``None``: no book yet)."""
        has_partial = self.storage.has_partial
        for table in BOOK_TABLE_ORDER:
            if has_partial(table, symbol):
                return table
        return None

    def levels(self, symbol: str, side: str) -> Levels:
        """One side's recorded levels, best first (empty without a book)."""
        table = self.book_table(symbol)
        if table is None:
            return ()
        book = self.storage.book(symbol, table)
        return book.bids if side == "Buy" else book.asks

    def recorded_size(self, symbol: str, side: str, price: float) -> int:
        """The recorded visible size at ``price`` (what our orders took not subtracted)."""
        sizes = self.sizes.get((symbol, side))
        if sizes is not None:
            return sizes.get(price, 0)
        levels = self.levels(symbol, side)  # orderBook10: ten levels
        return _size_at(levels, _find(levels, price, side == "Buy"), price)

    def rebuild(self, symbol: str, table: str) -> None:
        """Index the sizes of the symbol's book afresh (a partial of its L2 book table)."""
        book = self.storage.book(symbol, table)
        for side, levels in (("Buy", book.bids), ("Sell", book.asks)):
            sizes: dict[float, int] = {}
            for price, size in levels:
                sizes[price] = sizes.get(price, 0) + int(size)
            self.sizes[(symbol, side)] = sizes

    def level_added(self, symbol: str, side: str, price: float, size: int) -> None:
        sizes = self.sizes.get((symbol, side))
        if sizes is not None:
            sizes[price] = sizes.get(price, 0) + size

    def level_removed(self, symbol: str, side: str, price: float, size: int) -> None:
        sizes = self.sizes.get((symbol, side))
        if sizes is not None:
            left = sizes.get(price, 0) - size
            if left > 0:
                sizes[price] = left
            else:
                sizes.pop(price, None)

    def forget(self, symbol: str, side: str, price: float) -> None:
        """The recording changed this level: it is the truth again."""
        if self.taken:
            self.taken.pop((symbol, side, price), None)

    def forget_symbol(self, symbol: str) -> None:
        """A new partial of the symbol's book: everything recorded is the truth again."""
        for key in [key for key in self.taken if key[0] == symbol]:
            del self.taken[key]

    # ------------------------------------------------------------------ Liquidity

    def best(self, symbol: str, side: str) -> float | None:
        levels = self.levels(symbol, side)
        if not self.taken:
            return float(levels[0][0]) if levels else None
        taken = self.taken
        index, n = 0, len(levels)
        while index < n:
            price = levels[index][0]
            size = _size_at(levels, index, price)
            if size > taken.get((symbol, side, price), 0):
                return float(price)
            while index < n and levels[index][0] == price:
                index += 1
        return None

    def level_size(self, symbol: str, side: str, price: float) -> int:
        size = self.recorded_size(symbol, side, price)
        if self.taken:
            size -= self.taken.get((symbol, side, price), 0)
        return max(0, size)

    def take(
        self, symbol: str, buy: bool, limit: float | None, qty: int, now: float, out: list[Delta]
    ) -> list[tuple[float, int, str]]:
        side = "Sell" if buy else "Buy"  # an aggressor takes the opposite side
        levels = self.levels(symbol, side)
        taken = self.taken
        fills: list[tuple[float, int, str]] = []
        index, n = 0, len(levels)
        while qty > 0 and index < n:
            price = levels[index][0]
            if limit is not None and ((price > limit) if buy else (price < limit)):
                break
            key = (symbol, side, price)
            before = taken.get(key, 0)
            size = _size_at(levels, index, price) - before
            if size > 0:
                got = min(size, qty)
                taken[key] = before + got
                qty -= got
                fills.append((float(price), got, self.match_id()))
            while index < n and levels[index][0] == price:
                index += 1
        return fills

    def match_id(self) -> str:
        """The next synthetic ``trdMatchID`` (deterministic: see the module docstring)."""
        self.matches += 1
        digest = hashlib.sha256(f"{self._match_key}/{self.matches}".encode()).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))
