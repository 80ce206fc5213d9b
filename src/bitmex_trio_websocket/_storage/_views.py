"""Read-only views of stored order books: what ``storage.book()`` and ``storage.data`` hand out.

Theory of operation
-------------------
Nothing here stores anything; every view reads the store's current state when used.

* ``OrderBook`` (``storage.book(symbol, table)``) holds only the store, the symbol and the table,
  and asks the store for a side each time ``bids``, ``asks``, ``best_bid`` or ``best_ask`` is
  read, so one ``OrderBook`` stays valid across partials and resets.
* ``BookSide`` is one side as a ``Sequence`` of ``(price, size)`` levels, best first. For
  ``orderBookL2``/``orderBookL2_25`` it wraps ``PriceLevels``, which reads a stored side's price
  index live (``PriceIndex``: indexing O(log n), a slice O(log n + k)); for ``orderBook10`` it
  wraps the row's own levels, sorted (``book10_side``).
* ``LevelRows`` is the read-only ``Mapping`` level id -> row found at
  ``storage.data[table][symbol][side]``: it wraps the stored side (``_book._Side``, a
  ``RowSource``: ``ids`` and ``row()``). Each row is built when read, so it is a snapshot.

Both store cores (``_core``) use these very classes, so views are the same types either way.

This module imports nothing from the rest of the store: ``_book`` and ``_store`` build on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, TypeAlias, overload

from .._events import Row

__all__ = [
    "EMPTY_SIDE",
    "BookSide",
    "BookSource",
    "Level",
    "LevelRows",
    "OrderBook",
    "PriceIndex",
    "PriceLevels",
    "book10_side",
]

# (price, size): sizes are integers on BitMEX, but a size as sent is kept, float or not.
Level: TypeAlias = tuple[float, int | float]


class RowSource(Protocol):
    """A stored side of an L2 book (``_book._Side``): its level records and their rows."""

    ids: dict[int, Any]  # level id -> stored level record

    def row(self, level_id: int, level: Any, /) -> Row: ...


class LevelRows(Mapping[int, Row]):
    """One side of a stored L2 book as a read-only mapping, level id -> row (built on access)."""

    __slots__ = ("_side",)

    def __init__(self, side: RowSource) -> None:
        self._side = side

    def __getitem__(self, level_id: int) -> Row:
        side = self._side
        return side.row(level_id, side.ids[level_id])

    def __iter__(self) -> Iterator[int]:
        return iter(self._side.ids)

    def __len__(self) -> int:
        return len(self._side.ids)

    def __contains__(self, level_id: object) -> bool:
        return level_id in self._side.ids

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class PriceIndex(Protocol):
    """What ``PriceLevels`` reads from a stored side: its levels, best first."""

    def __len__(self) -> int: ...
    def level_at(self, index: int) -> Level: ...
    def level_slice(self, start: int, stop: int, step: int) -> list[Level]: ...
    def walk(self, reverse: bool) -> Iterator[Level]: ...


class PriceLevels(Sequence[Level]):
    """``(price, size)`` levels of a stored side, best first, read live."""

    __slots__ = ("_side",)

    def __init__(self, side: PriceIndex) -> None:
        self._side = side

    def __len__(self) -> int:
        return len(self._side)

    @overload
    def __getitem__(self, index: int) -> Level: ...
    @overload
    def __getitem__(self, index: slice) -> list[Level]: ...
    def __getitem__(self, index: int | slice) -> Level | list[Level]:
        if isinstance(index, slice):
            return self._side.level_slice(*index.indices(len(self._side)))
        return self._side.level_at(index)

    def __iter__(self) -> Iterator[Level]:
        return self._side.walk(False)

    def __reversed__(self) -> Iterator[Level]:
        return self._side.walk(True)


class BookSide(Sequence[Level]):
    """One side of a book as ``(price, size)`` levels, best first.

    Indexing is O(log n); a slice (``side[:10]``) is a list built in O(log n + k). For L2 books it
    reads the live index; keep the ``OrderBook`` rather than a ``BookSide`` across partials.
    """

    __slots__ = ("_levels",)

    def __init__(self, levels: Sequence[Level]) -> None:
        self._levels = levels

    def __len__(self) -> int:
        return len(self._levels)

    @overload
    def __getitem__(self, index: int) -> Level: ...
    @overload
    def __getitem__(self, index: slice) -> list[Level]: ...
    def __getitem__(self, index: int | slice) -> Level | list[Level]:
        if isinstance(index, slice):
            return list(self._levels[index])
        return self._levels[index]

    def __iter__(self) -> Iterator[Level]:
        return iter(self._levels)

    def __reversed__(self) -> Iterator[Level]:
        return reversed(self._levels)

    def __repr__(self) -> str:
        return f"BookSide({self[:5]!r}{', ...' if len(self) > 5 else ''})"


EMPTY_SIDE: Final = BookSide(())


def book10_side(row: Mapping[str, Any] | None, buy: bool) -> BookSide:
    """A side of an ``orderBook10`` row (validated levels), best first."""
    if not row:
        return EMPTY_SIDE
    levels = [(float(p), s) for p, s in row.get("bids" if buy else "asks", ())]
    levels.sort(key=lambda level: -level[0] if buy else level[0])
    return BookSide(levels)


class BookSource(Protocol):
    """What an ``OrderBook`` reads: the store's current side of a book (``Storage``)."""

    def _book_side(self, table: str, symbol: str, buy: bool) -> BookSide: ...


class OrderBook:
    """Order book view of one symbol; every attribute reads the store's current state."""

    __slots__ = ("_storage", "symbol", "table")

    def __init__(self, storage: BookSource, symbol: str, table: str) -> None:
        self._storage = storage
        self.symbol = symbol
        self.table = table

    @property
    def bids(self) -> BookSide:
        """Bid levels, highest price first."""
        return self._storage._book_side(self.table, self.symbol, True)

    @property
    def asks(self) -> BookSide:
        """Ask levels, lowest price first."""
        return self._storage._book_side(self.table, self.symbol, False)

    @property
    def best_bid(self) -> Level | None:
        side = self.bids
        return side[0] if side else None

    @property
    def best_ask(self) -> Level | None:
        side = self.asks
        return side[0] if side else None

    def __repr__(self) -> str:
        return f"<OrderBook {self.table}:{self.symbol} bid={self.best_bid} ask={self.best_ask}>"
