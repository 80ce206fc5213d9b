"""Order-book tables of the sans-IO store: compact levels, price index, row views.

Theory of operation
-------------------
``orderBookL2`` and ``orderBookL2_25`` are most of what BitMEX streams and most of what a client
stores, so their levels are not kept as the row dicts BitMEX sends. Each side of a symbol's book
is a ``_Side`` holding:

* ``ids``: level id -> ``_Level``, a slotted record of the sort key, size, ``timestamp`` and
  ``transactTime`` (``_ABSENT`` when the row had none). Any other field a row carried goes to the
  ``extra`` dict of a ``_LevelX``, so nothing BitMEX sent is lost. Equal timestamps share one
  string, and a ``transactTime`` equal to the ``timestamp`` is stored once.
* ``prices``: the sort keys of all levels, ascending, one entry per level: the price as sent for
  asks, its negation for bids, so both sides read best first. A plain list while the side is
  small (inserting there is a C-level memmove), a ``SortedList`` once it has more than
  ``_SPLIT`` levels.
* ``at``: sort key -> level id, or a list of ids in ascending order when several levels share a
  price (ids never order anything else: since mid 2023 they say nothing about price).

Rows are built only when handed out: in a ``Change`` (a delete reports the stored level, an
update the level merged with the update), by ``Storage.rows()``, or by reading a ``_Side``, which
is the read-only ``Mapping`` at ``storage.data[table][symbol][side]``. Each is a new dict, so a
row handed out is a snapshot that later messages cannot alter. Rows of a partial or an insert
are handed out as BitMEX sent them (the store keeps none of them).

An update row carrying exactly the standard fields (``symbol id side size price timestamp
transactTime``) for a level without extras equals the merged row, so it is handed out as is and
applied to the level in place; anything else goes through a general merge.

Nothing here mutates before ``Storage`` has validated the whole message (``check_levels``).
"""

from __future__ import annotations

import reprlib
import sys
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, overload

from sortedcontainers import SortedList

from .._exceptions import RemoteProtocolError

__all__ = ["BOOK_TABLES", "ApplyResult", "BookSide", "Change", "Level", "Row", "Violation"]

BOOK_TABLES: Final = frozenset({"orderBookL2", "orderBookL2_25"})

Level = tuple[float, int]
Row = dict[str, Any]
# (kind, symbol, key, detail) of a Violation; Storage adds the table.
Problem = tuple[str, str | None, tuple[Any, ...] | None, str]


class _Absent:
    """The value of a field a row did not carry; copies and pickles as itself."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"

    def __reduce__(self) -> str:
        return "_ABSENT"


_ABSENT: Final[Any] = _Absent()
_UNSET: Final[Any] = object()
_SIDES: Final = ("Buy", "Sell")
_NUMBER: Final = (int, float)
# Prices become floats, so an integer beyond float range is as malformed as inf.
_FMAX: Final = sys.float_info.max
_NFMAX: Final = -_FMAX
_STANDARD: Final = frozenset({"symbol", "id", "side", "size", "price", "timestamp", "transactTime"})
_SPLIT: Final = 2048  # a side's price list becomes a SortedList beyond this many levels
_new: Final = object.__new__

# -- results: defined here, below Storage, because the order-book hot path builds them ------


@dataclass(frozen=True, slots=True)
class Change:
    """Rows of one symbol changed by one message (each dict is a snapshot)."""

    table: str
    action: str
    symbol: str | None
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class Violation:
    """A well-formed message that disagrees with what we hold."""

    kind: str  # "unknown_key" | "duplicate_insert" | "crossed_book"
    table: str
    symbol: str | None
    key: tuple[Any, ...] | None
    detail: str


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one ``Storage.apply`` call did."""

    table: str
    action: str
    changes: tuple[Change, ...]  # one per symbol touched, first-seen order
    dropped: int  # rows whose slice had no partial
    violations: tuple[Violation, ...]


# A frozen dataclass's __init__ sets each field through object.__setattr__, which costs more
# than the rest of a typical book delta. The hot path fills a plain twin with the very same
# slots instead and then makes it the frozen class (same layout, so __class__ may change).
class _ChangeTwin:
    __slots__ = Change.__slots__
    table: str
    action: str
    symbol: str | None
    rows: tuple[Row, ...]


class _ResultTwin:
    __slots__ = ApplyResult.__slots__
    table: str
    action: str
    changes: tuple[Change, ...]
    dropped: int
    violations: tuple[Violation, ...]


def _change(table: str, action: str, symbol: Any, rows: tuple[Row, ...]) -> Change:
    change = _new(_ChangeTwin)
    change.table = table
    change.action = action
    change.symbol = symbol
    change.rows = rows
    change.__class__ = Change  # type: ignore[assignment]
    return change  # type: ignore[return-value]


def _result(
    table: str,
    action: str,
    changes: tuple[Change, ...],
    dropped: int,
    violations: tuple[Violation, ...],
) -> ApplyResult:
    result = _new(_ResultTwin)
    result.table = table
    result.action = action
    result.changes = changes
    result.dropped = dropped
    result.violations = violations
    result.__class__ = ApplyResult  # type: ignore[assignment]
    return result  # type: ignore[return-value]


def _changes(table: str, action: str, groups: dict[Any, list[Row]]) -> tuple[Change, ...]:
    if len(groups) == 1:  # the usual case: BitMEX deltas concern one symbol
        for symbol, rows in groups.items():
            return (_change(table, action, symbol, tuple(rows)),)
    return tuple([_change(table, action, sym, tuple(rows)) for sym, rows in groups.items()])


def _violations(table: str, problems: list[Problem]) -> tuple[Violation, ...]:
    return tuple([Violation(kind, table, sym, key, detail) for kind, sym, key, detail in problems])


def _finish(
    table: str,
    action: str,
    groups: dict[Any, list[Row]],
    dropped: int,
    problems: list[Problem] | None,
) -> ApplyResult:
    """The ``ApplyResult`` of a book delta (``_change`` and ``_result`` inlined: hot path)."""
    if len(groups) == 1:
        ((symbol, rows),) = groups.items()
        change = _new(_ChangeTwin)
        change.table = table
        change.action = action
        change.symbol = symbol
        change.rows = tuple(rows)
        change.__class__ = Change  # type: ignore[assignment]
        changes: tuple[Any, ...] = (change,)
    else:
        changes = _changes(table, action, groups) if groups else ()
    result = _new(_ResultTwin)
    result.table = table
    result.action = action
    result.changes = changes
    result.dropped = dropped
    result.violations = _violations(table, problems) if problems else ()
    result.__class__ = ApplyResult  # type: ignore[assignment]
    return result  # type: ignore[return-value]


# Bounded repr for error text: decoded JSON may nest ~1000 deep, beyond what repr() survives.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring = 4, 12, 12, 80
_MAX_WHAT: Final = 300  # messages embed names the server chose (tables, keys, symbols): bound them


def _bad(what: str, thing: Any = _UNSET) -> RemoteProtocolError:
    if len(what) > _MAX_WHAT:
        what = what[: _MAX_WHAT - 3] + "..."
    return RemoteProtocolError(what, None if thing is _UNSET else _REPR.repr(thing))


def _finite(value: Any) -> bool:
    """A JSON number usable as a float price or size (not NaN, inf or beyond float range)."""
    return type(value) in _NUMBER and _NFMAX <= value <= _FMAX


def _check_level(row: Any, full: bool) -> None:
    """Validate an L2 row; ``full`` rows (partial, insert) must carry price and size."""
    if type(row) is not dict and not isinstance(row, dict):
        raise _bad("order book row is not an object", row)
    if type(row.get("symbol")) is not str or type(row.get("id")) is not int:
        raise _bad("order book row needs a string symbol and an integer id", row)
    if row.get("side") not in _SIDES:
        raise _bad("order book row side is not Buy/Sell", row)
    for field in ("price", "size"):
        value = row.get(field, _UNSET)
        if (full or value is not _UNSET) and not _finite(value):
            raise _bad(f"order book {field} is not a finite number", row)


def check_levels(data: list[Any], full: bool) -> None:
    """Validate the rows of an L2 message; the common well-formed row is checked inline."""
    for row in data:
        if type(row) is dict:
            try:
                if (
                    type(row["symbol"]) is str
                    and type(row["id"]) is int
                    and row["side"] in _SIDES
                    and (
                        type(p := row["price"]) in _NUMBER and _NFMAX <= p <= _FMAX
                        if "price" in row
                        else not full
                    )
                    and (
                        type(z := row["size"]) in _NUMBER and _NFMAX <= z <= _FMAX
                        if "size" in row
                        else not full
                    )
                ):
                    continue
            except (KeyError, TypeError):
                pass
        _check_level(row, full)  # raises, explaining what is wrong


class _Level:
    """One stored level (symbol, side and id are where it is stored)."""

    __slots__ = ("key", "size", "ts", "tt")

    key: Any  # the sort key: price as sent (asks) or its negation (bids)
    size: Any
    ts: Any  # timestamp, or _ABSENT
    tt: Any  # transactTime, or _ABSENT


class _LevelX(_Level):
    """A level whose rows carried fields beyond the standard ones."""

    __slots__ = ("extra",)

    extra: dict[str, Any]


def _level(key: Any, size: Any, ts: Any, tt: Any, extra: dict[str, Any] | None) -> _Level:
    level = _new(_LevelX if extra else _Level)
    level.key = key
    level.size = size
    level.ts = ts
    level.tt = tt
    if extra:
        level.extra = extra  # type: ignore[attr-defined]
    return level


class _Side(Mapping[int, Row]):
    """One side of one symbol's book; as a ``Mapping``, level id -> row (built on access)."""

    __slots__ = ("at", "buy", "ids", "prices", "side", "symbol")

    def __init__(self, symbol: str, side: str) -> None:
        self.symbol = symbol
        self.side = side
        self.buy = side == "Buy"
        self.ids: dict[int, _Level] = {}
        self.at: dict[Any, Any] = {}  # key -> id, or a list of ids sharing that key
        self.prices: Any = []  # list or SortedList of keys, one per level

    # -- the Mapping: rows as BitMEX would send them ---------------------------------------

    def __getitem__(self, level_id: int) -> Row:
        return self.row(level_id, self.ids[level_id])

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, level_id: object) -> bool:
        return level_id in self.ids

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def row(self, level_id: int, level: _Level) -> Row:
        key = level.key
        row = {
            "symbol": self.symbol,
            "id": level_id,
            "side": self.side,
            "size": level.size,
            "price": -key if self.buy else key,
        }
        if level.ts is not _ABSENT:
            row["timestamp"] = level.ts
        if level.tt is not _ABSENT:
            row["transactTime"] = level.tt
        if type(level) is _LevelX:
            row.update(level.extra)
        return row

    # -- the price index ---------------------------------------------------------------------

    def place(self, level_id: int, key: Any) -> None:
        held = self.at.get(key)
        if held is None:
            self.at[key] = level_id
        elif type(held) is int:
            self.at[key] = [held, level_id] if held < level_id else [level_id, held]
        else:
            insort(held, level_id)
        prices = self.prices
        if type(prices) is list:
            insort(prices, key)
            if len(prices) > _SPLIT:
                self.prices = SortedList(prices)
        else:
            prices.add(key)

    def unplace(self, level_id: int, key: Any) -> None:
        at = self.at
        held = at[key]
        if type(held) is int:
            del at[key]
        else:
            held.remove(level_id)
            if len(held) == 1:
                at[key] = held[0]
        prices = self.prices
        if type(prices) is list:
            del prices[bisect_left(prices, key)]
        else:
            prices.remove(key)

    def fill(self, levels: dict[int, _Level]) -> None:
        """Replace everything with ``levels`` (refilled in place: views stay live)."""
        self.ids = levels
        at = self.at
        at.clear()
        for level_id, level in levels.items():
            key = level.key
            held = at.get(key)
            if held is None:
                at[key] = level_id
            elif type(held) is int:
                at[key] = [held, level_id] if held < level_id else [level_id, held]
            else:
                insort(held, level_id)
        keys = sorted([level.key for level in levels.values()])
        self.prices = keys if len(keys) <= _SPLIT else SortedList(keys)

    def best(self) -> Any:
        """The best price, or ``None`` for an empty side."""
        prices = self.prices
        if not prices:
            return None
        return -prices[0] if self.buy else prices[0]

    def ordered(self, reverse: bool = False) -> Iterator[tuple[int, _Level]]:
        """``(id, level)`` best first (worst first if ``reverse``), equal prices by id."""
        ids, at = self.ids, self.at
        prev: Any = _UNSET
        n = 0
        for key in reversed(self.prices) if reverse else self.prices:
            held = at[key]
            if type(held) is int:
                yield held, ids[held]
                continue
            n = n + 1 if key == prev else 0
            prev = key
            level_id = held[-1 - n] if reverse else held[n]
            yield level_id, ids[level_id]

    def at_index(self, index: int) -> _Level:
        prices = self.prices
        key = prices[index]  # IndexError past either end
        held = self.at[key]
        if type(held) is int:
            return self.ids[held]
        if index < 0:
            index += len(prices)
        first = bisect_left(prices, key) if type(prices) is list else prices.bisect_left(key)
        return self.ids[held[index - first]]

    def price_level(self, level: _Level) -> Level:
        return (float(-level.key if self.buy else level.key), level.size)

    def crowded(self) -> bool:
        """Whether some price holds several levels."""
        return len(self.at) != len(self.prices)


def _new_sides(symbol: str) -> dict[str, _Side]:
    return {"Buy": _Side(symbol, "Buy"), "Sell": _Side(symbol, "Sell")}


class _PriceLevels(Sequence[Level]):
    """``(price, size)`` levels of a ``_Side``, best first, read live."""

    __slots__ = ("_side",)

    def __init__(self, side: _Side) -> None:
        self._side = side

    def __len__(self) -> int:
        return len(self._side.prices)

    @overload
    def __getitem__(self, index: int) -> Level: ...
    @overload
    def __getitem__(self, index: slice) -> list[Level]: ...
    def __getitem__(self, index: int | slice) -> Level | list[Level]:
        side = self._side
        if not isinstance(index, slice):
            return side.price_level(side.at_index(index))
        start, stop, step = index.indices(len(side.prices))
        if step != 1 or side.crowded():
            return [side.price_level(side.at_index(i)) for i in range(start, stop, step)]
        ids, at = side.ids, side.at
        if side.buy:
            return [(float(-key), ids[at[key]].size) for key in side.prices[start:stop]]
        return [(float(key), ids[at[key]].size) for key in side.prices[start:stop]]

    def __iter__(self) -> Iterator[Level]:
        side = self._side
        for _, level in side.ordered():
            yield side.price_level(level)

    def __reversed__(self) -> Iterator[Level]:
        side = self._side
        for _, level in side.ordered(reverse=True):
            yield side.price_level(level)


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


def _split_row(row: Mapping[str, Any]) -> tuple[Any, Any, dict[str, Any] | None]:
    """``(timestamp, transactTime, extras)`` of a row (``_ABSENT`` for a missing field)."""
    ts = row.get("timestamp", _ABSENT)
    tt = row.get("transactTime", _ABSENT)
    standard = 5 + (ts is not _ABSENT) + (tt is not _ABSENT)
    if len(row) == standard:
        return ts, tt, None
    return ts, tt, {k: v for k, v in row.items() if k not in _STANDARD}


class BookTable:
    """The L2 books of one table: ``books[symbol][side]`` is a ``_Side``.

    ``insert``/``update``/``delete`` validate the whole message first (``RemoteProtocolError``,
    nothing changed), then apply it and return its ``ApplyResult``.
    """

    __slots__ = ("books", "crossed", "stamp")

    def __init__(self) -> None:
        self.books: dict[str, dict[str, _Side]] = {}
        self.crossed: set[str] = set()  # symbols whose book was crossed when last checked
        self.stamp = ""  # the last timestamp stored: equal ones share this string

    def sides_of(self, symbol: str) -> dict[str, _Side]:
        """The two sides of ``symbol``'s book, created empty for a symbol not seen before (a new
        symbol inside a whole-table slice)."""
        sides = self.books.get(symbol)
        if sides is None:
            sides = self.books[symbol] = _new_sides(symbol)
        return sides

    def side(self, symbol: str, buy: bool) -> _Side | None:
        sides = self.books.get(symbol)
        return None if sides is None else sides["Buy" if buy else "Sell"]

    def check(self, symbol: str) -> Problem | None:
        """A problem if the book's best bid is at or above its best ask (state stays applied).

        Crossed books are remembered so later messages keep reporting until it uncrosses."""
        sides = self.books[symbol]
        bid, ask = sides["Buy"].best(), sides["Sell"].best()
        if bid is not None and ask is not None and bid >= ask:
            self.crossed.add(symbol)
            return ("crossed_book", symbol, None, f"best bid {float(bid)} >= best ask {float(ask)}")
        self.crossed.discard(symbol)
        return None

    def _checks(
        self, groups: dict[Any, list[Row]], moved: bool, problems: list[Problem] | None
    ) -> list[Problem] | None:
        crossed = self.crossed
        for symbol in groups:
            if moved or symbol in crossed:
                problem = self.check(symbol)
                if problem is not None:
                    if problems is None:
                        problems = []
                    problems.append(problem)
        return problems

    def partial(self, groups: dict[Any, list[Row]], problems: list[Problem]) -> None:
        """Replace the books of the symbols in ``groups`` (validated rows)."""
        stamp = self.stamp
        for symbol, rows in groups.items():
            if symbol is None:
                continue  # whole-table empty partial
            sides = self.sides_of(symbol)
            buys: dict[int, _Level] = {}
            sells: dict[int, _Level] = {}
            for row in rows:
                side = row["side"]
                levels = buys if side == "Buy" else sells
                level_id = row["id"]
                if level_id in levels:
                    key = (symbol, level_id, side)
                    problems.append(("duplicate_insert", symbol, key, "partial"))
                ts, tt, extra = _split_row(row)
                if ts == stamp:
                    ts = stamp
                elif type(ts) is str:
                    stamp = ts
                if type(ts) is str and tt == ts:
                    tt = ts
                price = row["price"]
                levels[level_id] = _level(
                    -price if side == "Buy" else price, row["size"], ts, tt, extra
                )
            sides["Buy"].fill(buys)
            sides["Sell"].fill(sells)
            problem = self.check(symbol)
            if problem is not None:
                problems.append(problem)
        self.stamp = stamp

    def insert(self, table: str, data: list[Any], accepts: Callable[[Any], bool]) -> ApplyResult:
        check_levels(data, True)
        groups: dict[Any, list[Row]] = {}
        problems: list[Problem] | None = None
        dropped = 0
        current: Any = _UNSET
        bids: Any = None
        asks: Any = None
        out: list[Row] = []
        stamp = self.stamp
        for row in data:
            symbol = row["symbol"]
            if symbol != current:
                current = symbol
                if accepts(symbol):
                    sides = self.sides_of(symbol)
                    bids = sides["Buy"]
                    asks = sides["Sell"]
                    out = groups.setdefault(symbol, [])  # every accepted row is applied
                else:
                    bids = None
            if bids is None:
                dropped += 1
                continue
            level_id = row["id"]
            price = row["price"]
            if row["side"] == "Buy":
                side = bids
                key = -price
            else:
                side = asks
                key = price
            ids = side.ids
            old = ids.get(level_id)
            if old is not None:
                side.unplace(level_id, old.key)
                if problems is None:
                    problems = []
                problems.append(
                    ("duplicate_insert", symbol, (symbol, level_id, side.side), "insert")
                )
            try:
                ts = row["timestamp"]
                tt = row["transactTime"]
                extra = None if len(row) == 7 else _split_row(row)[2]
            except KeyError:
                ts, tt, extra = _split_row(row)
            if ts == stamp:
                ts = stamp
                if tt == stamp:
                    tt = stamp
            elif type(ts) is str:
                stamp = ts
                if tt == ts:
                    tt = ts
            if extra is None:
                level = _new(_Level)
                level.key = key
                level.size = row["size"]
                level.ts = ts
                level.tt = tt
            else:
                level = _level(key, row["size"], ts, tt, extra)
            ids[level_id] = level
            at = side.at
            prices = side.prices
            if key not in at and type(prices) is list and len(prices) < _SPLIT:
                at[key] = level_id
                insort(prices, key)
            else:
                side.place(level_id, key)
            out.append(row)
        self.stamp = stamp
        if groups:  # a new level can cross a book
            problems = self._checks(groups, True, problems)
        return _finish(table, "insert", groups, dropped, problems)

    def update(self, table: str, data: list[Any], accepts: Callable[[Any], bool]) -> ApplyResult:
        for row in data:  # check_levels(data, False), inlined: the most common message
            if type(row) is dict:
                try:
                    if (
                        type(row["symbol"]) is str
                        and type(row["id"]) is int
                        and row["side"] in _SIDES
                        and (
                            "price" not in row
                            or (type(p := row["price"]) in _NUMBER and _NFMAX <= p <= _FMAX)
                        )
                        and (
                            "size" not in row
                            or (type(z := row["size"]) in _NUMBER and _NFMAX <= z <= _FMAX)
                        )
                    ):
                        continue
                except KeyError:
                    pass
            _check_level(row, False)  # raises, explaining what is wrong
        groups: dict[Any, list[Row]] = {}
        problems: list[Problem] | None = None
        dropped = 0
        moved = False  # only a moved level can cross a book
        current: Any = _UNSET
        bids: Any = None
        asks: Any = None
        bid_ids: Any = None
        ask_ids: Any = None
        out: list[Row] | None = None
        stamp = self.stamp
        for row in data:
            symbol = row["symbol"]
            if symbol != current:
                current = symbol
                if accepts(symbol):
                    sides = self.sides_of(symbol)
                    bids = sides["Buy"]
                    asks = sides["Sell"]
                    bid_ids = bids.ids
                    ask_ids = asks.ids
                    out = groups.get(symbol)  # created with its first row: order of changes
                else:
                    bids = None
            if bids is None:
                dropped += 1
                continue
            level_id = row["id"]
            if row["side"] == "Buy":
                side = bids
                level = bid_ids.get(level_id)
            else:
                side = asks
                level = ask_ids.get(level_id)
            if level is None:
                if problems is None:
                    problems = []
                problems.append(("unknown_key", symbol, (symbol, level_id, side.side), "update"))
                continue
            try:
                price = row["price"]
                size = row["size"]
                ts = row["timestamp"]
                tt = row["transactTime"]
            except KeyError:
                ts = _UNSET
            if ts is _UNSET or len(row) != 7 or type(level) is not _Level:
                row, shifted = _merge(side, level_id, level, row)
                moved = moved or shifted
            else:  # exactly the standard fields, over a level without extras: row is the merge
                key = -price if side is bids else price
                held = level.key
                if key != held or type(key) is not type(held):  # a price change moves the level
                    side.unplace(level_id, held)
                    level.key = key
                    side.place(level_id, key)
                    moved = True
                level.size = size
                if ts == stamp:
                    ts = stamp
                    if tt == stamp:
                        tt = stamp
                elif type(ts) is str:
                    stamp = ts
                    if tt == ts:
                        tt = ts
                level.ts = ts
                level.tt = tt
            if out is None:
                out = groups[symbol] = []
            out.append(row)
        self.stamp = stamp
        if moved or self.crossed:
            problems = self._checks(groups, moved, problems)
        return _finish(table, "update", groups, dropped, problems)

    def delete(self, table: str, data: list[Any], accepts: Callable[[Any], bool]) -> ApplyResult:
        check_levels(data, False)
        groups: dict[Any, list[Row]] = {}
        problems: list[Problem] | None = None
        dropped = 0
        current: Any = _UNSET
        bids: Any = None
        asks: Any = None
        out: list[Row] | None = None
        for row in data:
            symbol = row["symbol"]
            if symbol != current:
                current = symbol
                if accepts(symbol):
                    sides = self.sides_of(symbol)
                    bids = sides["Buy"]
                    asks = sides["Sell"]
                    out = groups.get(symbol)  # created with its first row: order of changes
                else:
                    bids = None
            if bids is None:
                dropped += 1
                continue
            level_id = row["id"]
            side = bids if row["side"] == "Buy" else asks
            level = side.ids.pop(level_id, None)
            if level is None:
                if problems is None:
                    problems = []
                problems.append(("unknown_key", symbol, (symbol, level_id, side.side), "delete"))
                continue
            if out is None:
                out = groups[symbol] = []
            out.append(side.row(level_id, level))  # the stored row knows the price that left
            key = level.key
            at = side.at
            prices = side.prices
            if type(at[key]) is int and type(prices) is list:
                del at[key]
                del prices[bisect_left(prices, key)]
            else:
                side.unplace(level_id, key)
        if self.crossed:  # a delete can uncross a book, never cross one
            problems = self._checks(groups, False, problems)
        return _finish(table, "delete", groups, dropped, problems)

    def rows(self, symbol: str | None) -> list[Row]:
        """Rows as BitMEX lays out partials: asks, then bids, each by descending price."""
        books = self.books
        result: list[Row] = []
        for sym in books if symbol is None else [symbol] if symbol in books else []:
            asks, bids = books[sym]["Sell"], books[sym]["Buy"]
            result.extend(asks.row(i, level) for i, level in asks.ordered(reverse=True))
            result.extend(bids.row(i, level) for i, level in bids.ordered())
        return result

    def reset(self, symbol: str) -> None:
        self.books.pop(symbol, None)
        self.crossed.discard(symbol)


def _merge(side: _Side, level_id: int, level: _Level, row: Row) -> tuple[Row, bool]:
    """Merge an update row into a level the general way; the merged row, and if it moved."""
    merged = side.row(level_id, level)
    merged.update(row)
    price = merged["price"]
    key = -price if side.buy else price
    held = level.key
    moved = key != held or type(key) is not type(held)
    if moved:
        side.unplace(level_id, held)
        side.place(level_id, key)
    ts, tt, extra = _split_row(merged)
    if extra and type(level) is not _LevelX:  # new fields: a record that can keep them
        side.ids[level_id] = _level(key, merged["size"], ts, tt, extra)
        return merged, moved
    level.key = key
    level.size = merged["size"]
    level.ts = ts
    level.tt = tt
    if extra:
        level.extra = extra  # type: ignore[attr-defined]
    return merged, moved
