"""Book tables a replayed market derives: ``orderBookL2_25`` and ``orderBook10`` from its book.

Theory of operation
-------------------
BitMEX published three views of one book: ``orderBookL2`` (every level), ``orderBookL2_25``
(the best 25 levels a side: a level is inserted when it enters them, deleted when it leaves,
updated while inside) and ``orderBook10`` (one row a symbol with the best 10 bids and asks as
``[price, size]`` pairs, sent whole whenever they change). A recording usually holds one of
them; ``DerivedBooks`` makes the shallower ones from the recorded book, so a client can
subscribe any of the three:

* ``orderBookL2_25`` is derived from a recorded ``orderBookL2``; ``orderBook10`` from a
  recorded ``orderBookL2``, else ``orderBookL2_25`` (the symbol's book table, see
  ``_replayed_book``);
* a table is derived for a symbol only while the recording has no partial of that table for it:
  a recorded table is served as recorded. If its first partial comes after derivation began,
  ``take_over`` hands the venue the image subscribers hold, the venue sends the recorded partial
  as the deltas from that image (``_replayed_images.diff_rows``), and derivation stops there;
* nothing is derived until a client subscribes (``enable``): then each symbol's image is taken
  as it stands (what the subscriber's partial shows), and each later change of the source book is
  turned into the deltas from the image last sent to the new one (``diff_rows``). A symbol whose
  book starts later starts from an empty image: its first delta inserts it;
* ``orderBookL2_25`` rows are the source's (ids, prices, sizes, timestamps as recorded); an
  update carries the keys, the fields that changed and the price, a delete the keys and the
  price, except for a pre-2023 recording (no price on either, as BitMEX sent them). A change
  deeper than the 25th level of its side is skipped without a look at the book. The store's
  book view gives prices and sizes, not ids, so an index ``id -> price`` and ``price -> ids``
  per symbol and side is kept, moved by every change of the source (built when derivation
  starts and at each partial of the source);
* ``orderBook10`` rows are ``symbol``, ``bids``, ``asks`` (best first) and ``timestamp`` (the
  data time of the change); the first row of a symbol is an ``insert``, later ones ``update``
  (the whole row, as BitMEX sent it), made only when the top 10 differ from the last one sent.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from ..._storage import Storage
from ._replayed_images import diff_rows
from ._schemas import Delta

__all__ = ["DERIVABLE", "DerivedBooks"]

L2: Final = "orderBookL2"
L2_25: Final = "orderBookL2_25"
BOOK10: Final = "orderBook10"
DERIVABLE: Final = (L2_25, BOOK10)
_KEYS: Final = ["symbol", "id", "side"]
_DEPTH25: Final = 25
_DEPTH10: Final = 10


class _Index:
    """One side's level ids by price (``ids_at`` sorted), and each id's price."""

    __slots__ = ("ids_at", "price_of")

    def __init__(self) -> None:
        self.price_of: dict[Any, float] = {}
        self.ids_at: dict[float, list[Any]] = {}

    def add(self, level_id: Any, price: float) -> None:
        self.price_of[level_id] = price
        held = self.ids_at.get(price)
        if held is None:
            self.ids_at[price] = [level_id]
        else:
            insort(held, level_id)

    def remove(self, level_id: Any) -> float | None:
        price = self.price_of.pop(level_id, None)
        if price is not None:
            held = self.ids_at[price]
            held.remove(level_id)
            if not held:
                del self.ids_at[price]
        return price


class _L2State:
    """A symbol's ``orderBookL2_25``: its index and the image last sent (per side, best first)."""

    __slots__ = ("index", "shown")

    def __init__(self) -> None:
        self.index = {"Buy": _Index(), "Sell": _Index()}
        self.shown: dict[str, list[dict[str, Any]]] = {"Buy": [], "Sell": []}

    def rows(self) -> list[dict[str, Any]]:
        """The image in a partial's order: asks, then bids, each by descending price."""
        return [*reversed(self.shown["Sell"]), *self.shown["Buy"]]


class DerivedBooks:
    """The derived book tables of a replayed market (see the module docstring).

    ``fmt`` formats a data time; ``legacy()`` says whether the recorded ``orderBookL2`` is of
    the pre-2023 form."""

    def __init__(
        self, storage: Storage, fmt: Callable[[float], str], legacy: Callable[[], bool]
    ) -> None:
        self._storage = storage
        self._fmt = fmt
        self._legacy = legacy
        self.enabled: set[str] = set()
        self._l2: dict[str, _L2State] = {}  # symbols whose orderBookL2_25 is derived
        self._ten: dict[str, dict[str, Any] | None] = {}  # orderBook10 derived: last row sent

    # ------------------------------------------------------------------ which, when

    def source(self, table: str, symbol: str) -> str | None:
        """The recorded table ``table`` is derived from for ``symbol`` (``None``: it is not:
        recorded itself, or no book to derive it from)."""
        has_partial = self._storage.has_partial
        if has_partial(table, symbol):
            return None
        if has_partial(L2, symbol):
            return L2
        if table == BOOK10 and has_partial(L2_25, symbol):
            return L2_25
        return None

    def enable(self, table: str, now: float) -> None:
        """A client subscribed ``table``: derive it from now on, every symbol's image as it
        stands being what subscribers hold."""
        if table not in DERIVABLE or table in self.enabled:
            return
        self.enabled.add(table)
        for symbol in self._book_symbols():
            self._start(table, symbol, now)

    def disable(self, table: str) -> None:
        """Nobody subscribes ``table`` any more: stop deriving it."""
        self.enabled.discard(table)
        if table == L2_25:
            self._l2.clear()
        elif table == BOOK10:
            self._ten.clear()

    def take_over(self, table: str, scope: str | None) -> list[dict[str, Any]]:
        """A recorded partial of ``table`` for ``scope`` (``None``: every symbol) is about to be
        applied: the derived rows subscribers hold there; derivation of them stops."""
        held: dict[str, Any] = self._l2 if table == L2_25 else self._ten
        if table not in DERIVABLE or not held:
            return []
        symbols = list(held) if scope is None else [scope] if scope in held else []
        rows: list[dict[str, Any]] = []
        for symbol in symbols:
            state = held.pop(symbol)
            if isinstance(state, _L2State):
                rows.extend(state.rows())
            elif state is not None:
                rows.append(state)
        return rows

    # ------------------------------------------------------------------ reads

    def rows(self, table: str, symbol: str | None, now: float) -> list[dict[str, Any]]:
        """Derived rows of ``table`` (every derived symbol for ``None``), as subscribers hold
        them; the book as it stands at ``now`` when ``table`` is not enabled."""
        symbols = self._book_symbols() if symbol is None else [symbol]
        out: list[dict[str, Any]] = []
        for name in symbols:
            source = self.source(table, name)
            if source is None:
                continue
            if table == L2_25:
                state = self._l2.get(name)
                if state is None:
                    state = self._fresh_l2(name)
                out.extend(state.rows())
            elif table == BOOK10:
                row = self._ten[name] if name in self._ten else self._ten_row(name, source, now)
                if row is not None:
                    out.append(row)
        return out

    # ------------------------------------------------------------------ changes of the source

    def book_reset(self, symbol: str, now: float, out: list[Delta]) -> None:
        """A partial of the symbol's book table was applied: re-index, send what changed."""
        for table in DERIVABLE:
            if table not in self.enabled or self.source(table, symbol) is None:
                continue
            if table == L2_25:
                state = self._l2.get(symbol)
                if state is None:
                    state = self._l2[symbol] = _L2State()
                self._index(symbol, state)
                self._send_l2(symbol, state, out)
            else:
                self._ten.setdefault(symbol, None)
                self._send_ten(symbol, now, out)

    def book_delta(
        self, symbol: str, action: str, rows: Iterable[dict[str, Any]], now: float,
        out: list[Delta],
    ) -> None:  # fmt: skip
        """A delta of the symbol's book table was applied (``rows``: the changed levels as
        stored, a delete's as they were): send the derived deltas it causes."""
        state = self._l2.get(symbol)
        if state is not None:
            reached = False
            for row in rows:
                side = row["side"]
                index = state.index[side]
                level_id = row["id"]
                price = float(row["price"])
                old = index.remove(level_id)
                if action != "delete":
                    index.add(level_id, price)
                if not reached:
                    reached = _within(state.shown[side], side, price) or (
                        old is not None and old != price and _within(state.shown[side], side, old)
                    )
            if reached:
                self._send_l2(symbol, state, out)
        if symbol in self._ten:
            self._send_ten(symbol, now, out)

    # ------------------------------------------------------------------ internals

    def _book_symbols(self) -> Iterator[str]:
        seen: set[str] = set()
        for table in (L2, L2_25):
            for symbol in self._storage.data.get(table) or ():
                if isinstance(symbol, str) and symbol not in seen:
                    seen.add(symbol)
                    yield symbol

    def _start(self, table: str, symbol: str, now: float) -> None:
        source = self.source(table, symbol)
        if source is None:
            return
        if table == L2_25:
            self._l2[symbol] = self._fresh_l2(symbol)
        else:
            self._ten[symbol] = self._ten_row(symbol, source, now)

    def _fresh_l2(self, symbol: str) -> _L2State:
        state = _L2State()
        self._index(symbol, state)
        for side in ("Buy", "Sell"):
            state.shown[side] = self._top25(symbol, side, state)
        return state

    def _index(self, symbol: str, state: _L2State) -> None:
        sides = (self._storage.data.get(L2) or {}).get(symbol) or {}
        for side in ("Buy", "Sell"):
            index = state.index[side] = _Index()
            for level_id, row in (sides.get(side) or {}).items():
                index.add(level_id, float(row["price"]))

    def _top25(self, symbol: str, side: str, state: _L2State) -> list[dict[str, Any]]:
        """The best 25 levels of a side as rows, best first."""
        book = self._storage.book(symbol, L2)
        prices = (book.bids if side == "Buy" else book.asks)[:_DEPTH25]
        levels = ((self._storage.data.get(L2) or {}).get(symbol) or {}).get(side) or {}
        ids_at = state.index[side].ids_at
        rows: list[dict[str, Any]] = []
        last: float | None = None
        for price, _ in prices:
            if price == last:
                continue  # the ids at a price are all taken at its first level
            last = price
            for level_id in ids_at.get(float(price), ()):
                row = levels.get(level_id)
                if row is not None and len(rows) < _DEPTH25:
                    rows.append(row)
        return rows

    def _send_l2(self, symbol: str, state: _L2State, out: list[Delta]) -> None:
        before = state.rows()
        for side in ("Buy", "Sell"):
            state.shown[side] = self._top25(symbol, side, state)
        deltas, _ = diff_rows(L2_25, _KEYS, before, state.rows(), self._legacy())
        out.extend(deltas)

    def _ten_row(self, symbol: str, source: str, now: float) -> dict[str, Any] | None:
        book = self._storage.book(symbol, source)
        bids, asks = book.bids[:_DEPTH10], book.asks[:_DEPTH10]
        if not bids and not asks:
            return None
        return {
            "symbol": symbol,
            "bids": [[price, size] for price, size in bids],
            "asks": [[price, size] for price, size in asks],
            "timestamp": self._fmt(now),
        }

    def _send_ten(self, symbol: str, now: float, out: list[Delta]) -> None:
        source = self.source(BOOK10, symbol)
        if source is None:
            return
        shown = self._ten[symbol]
        row = self._ten_row(symbol, source, now)
        if row is None:
            return  # an emptied book: BitMEX kept the last row (a symbol never leaves it)
        if shown is not None and shown["bids"] == row["bids"] and shown["asks"] == row["asks"]:
            return
        self._ten[symbol] = row
        out.append(Delta(BOOK10, "insert" if shown is None else "update", symbol, [row]))


def _within(shown: list[dict[str, Any]], side: str, price: float) -> bool:
    """Whether a change at ``price`` can reach the side's top 25 as last sent."""
    if len(shown) < _DEPTH25:
        return True
    worst = float(shown[-1]["price"])
    return price >= worst if side == "Buy" else price <= worst
