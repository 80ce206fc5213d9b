"""Order-book tables of the sans-IO store: compact levels, a price index, the hot paths.

Theory of operation
-------------------
``orderBookL2`` and ``orderBookL2_25`` are most of what BitMEX streams and most of what a client
stores, so their levels are not kept as the row dicts BitMEX sends. Each side of a symbol's book
is a ``_Side`` holding:

* ``ids``: level id -> ``_Level``, a slotted record of the sort key, an ``int`` size and the
  ``timestamp`` and ``transactTime`` as milliseconds since the epoch (-1 when the row had none).
  The compiled core keeps all three unboxed inside the record, so a level costs no size object
  and no 73-byte stamp string (``benchmarks.memory``: about 174 bytes a level compiled, with the
  ``ids`` entry, the id and the index). Only what converts back exactly is converted: an exact
  ``int`` size (not a bool or float) and canonical stamps (``_stamps``: BitMEX's own
  ``YYYY-MM-DDTHH:MM:SS.mmmZ``). Anything else (another size or stamp, or fields beyond the
  standard ones) makes the level a ``_LevelX``, which keeps those values as sent, so nothing
  BitMEX sent is lost or altered. ``_Stamps`` (one per table, shared by its sides) remembers the
  last stamps converted each way: consecutive rows mostly carry the same stamp, which is then
  neither parsed nor formatted again, and rows built from it share one string.
* ``keys`` and ``order``: the price index, two plain lists in step: every level's sort key
  ascending (the price as sent for bids, its negation for asks) and its id. The best price is
  *last* on both sides: most inserts and deletes happen near the best, where ``list.insert`` and
  ``del`` move few pointers, so one list serves books of any depth (a 20,000-level side moves
  a few entries per change near the top, and at worst 160 KB once for a level added at the far
  end) at 16 bytes per level, with no dict per price. Levels sharing a price (ids never order
  anything else: since mid 2023 they say nothing about price) sit together, ids descending, so
  they read best first by ascending id.

Rows are built only when handed out: in a ``Change`` (a delete reports the stored level, an
update the level merged with the update), by ``Storage.rows()``, or by reading the read-only
``Mapping`` at ``storage.data[table][symbol][side]`` (``_views.LevelRows`` over a ``_Side``).
Each is a new dict, so a row handed out is a snapshot that later messages cannot alter. Rows of
a partial or an insert are handed out as BitMEX sent them (the store keeps none of them).

An update row carrying exactly the standard fields (``symbol id side size price timestamp
transactTime``) for a level without extras equals the merged row, so it is handed out as is and
applied to the level in place; anything else goes through a general merge (``_merge``).

Crossed books: a book whose best bid is at or above its best ask after a message is reported as a
``crossed_book`` problem for every symbol the message changed (state stays applied). Only a moved
or new level can cross a book, so ``BookTable.crossed`` remembers which books were crossed when
last checked and the others are not checked after a size-only update or a delete.

Nothing here mutates before the whole message has been validated (``_validate.check_levels``).

Why over 600 lines: ``BookTable.insert``, ``update`` and ``delete`` are the hot path (most
messages BitMEX sends), each written out in full with the price-index bookkeeping of ``_Side``
inlined for the common case (a level alone at its price). The copies:
``_Side.place``/``unplace`` are inlined in ``insert`` and ``delete``; the stamp conversion of
``_level`` (through the ``_Stamps`` memo) is repeated in ``partial``, ``update`` and the one-row
``_insert_one``/``_update_one``; ``check_levels`` is inlined in ``update``; the one-row paths
(``_update_one``, ``_insert_one``, ``_delete_one``: about 80% of messages) repeat the general
paths for one row, with each field narrowed before it is compared; ``_bisect`` repeats
``bisect`` for the compiled core (unboxed compares). Splitting the file would make the private
level, side and memo classes a surface shared between modules. Each inlined copy saves a call
per row or per message on the path ``benchmarks.ceilings`` measures ("parse + Storage.apply").

Compiled: this module is also built with mypyc (``_core``, ``setup.py``), so its classes are
plain typed classes (constructors, no ``object.__new__`` or ``__class__`` tricks), a ``_Side``
is not itself a ``Mapping`` (mypyc classes cannot inherit from ABCs: ``BookTable.views`` holds
the ``LevelRows`` that ``storage.data`` shows), and annotations must hold at run time (a
compiled function checks them). The typed locals of the hot paths are what mypyc speeds up.
The result objects (``Change``, ``ApplyResult``: interpreted classes of ``_events``) are built
here by ``new_change``/``new_result``: in the compiled core by the C constructors of
``_compiled._slots`` (``_slots.c``), in pure Python with the twin trick of
``_events.fast_constructor`` written out. Stamps are converted likewise by the C functions of
``_compiled._slots`` in the compiled core and by ``_stamps`` in pure Python.
"""

from __future__ import annotations

import importlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from typing import Any, Final

from .._events import ApplyResult, Change, Row, Violation, twin_class
from .._storage._stamps import stamp_ms, stamp_text  # the compiled core uses C versions
from .._storage._views import Level, LevelRows  # shared by both cores (see _core)
from ._validate import check_levels
from ._validate import finite as _finite

__all__ = [
    "BOOK_TABLES",
    "BookTable",
    "Problem",
    "changes_of",
    "new_change",
    "new_result",
    "one_change",
    "violations_of",
]

BOOK_TABLES: Final = frozenset({"orderBookL2", "orderBookL2_25"})

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
# A level id (an int) as BitMEX sent it. Not annotated int: the compiled core would unbox such a
# value and box it again where it is stored, a second int object per level (32 bytes each).
LevelId = Any
_UNSET: Final[Any] = object()
_STANDARD: Final = frozenset({"symbol", "id", "side", "size", "price", "timestamp", "transactTime"})


# The two result objects of every message. The compiled core builds them with the C constructors
# of ``_compiled._slots`` (``_storage/_slots.c``: allocate, store the fields into the slots); pure
# Python builds them as ``_events.fast_constructor`` does (a plain twin with the same slots, then
# ``__class__`` switched), written out here. Both make what ``Change(...)`` would.
_CHANGE_TWIN: Final = twin_class(Change)
_RESULT_TWIN: Final = twin_class(ApplyResult)


def _slot_constructor(cls: type[Any]) -> Any:
    """The C constructor of ``cls`` when this module is the compiled core's copy, else ``None``."""
    if not __name__.startswith("bitmex_trio_websocket._compiled."):
        return None
    slots = importlib.import_module("bitmex_trio_websocket._compiled._slots")
    return slots.constructor(cls)


_MAKE_CHANGE: Final[Any] = _slot_constructor(Change)
_MAKE_RESULT: Final[Any] = _slot_constructor(ApplyResult)
_MAKE_ONE: Final[Any] = (
    None
    if _MAKE_CHANGE is None
    else importlib.import_module("bitmex_trio_websocket._compiled._slots").one_change(
        _MAKE_CHANGE, _MAKE_RESULT
    )
)


# The compiled core reads and checks a standard L2 row's seven fields in one pass (``_slots.c``,
# ``standard_fields``: None for a row with other fields, another order or odd types, which
# ``_standard_row`` then looks up and checks by name).
Fields = tuple[Any, Any, Any, Any, Any, Any, Any]
_STANDARD_FIELDS: Final[Any] = (
    None
    if _MAKE_CHANGE is None
    else importlib.import_module("bitmex_trio_websocket._compiled._slots").standard_fields
)


def _standard_row(row: Any) -> Fields | None:
    """The fields (symbol id side size price timestamp transactTime) of a one-row delta that a
    ``_Level`` can hold: a str symbol, an int id, side Buy or Sell, a finite price, an int size,
    str stamps. ``None`` for anything else, which the general path decides."""
    if _STANDARD_FIELDS is not None:
        checked = _STANDARD_FIELDS(row)  # the same checks, in C, for a row in BitMEX's order
        if checked is not None:
            return checked  # type: ignore[no-any-return]
    if type(row) is not dict or len(row) != 7:
        return None
    try:
        fields: Fields = (
            row["symbol"],
            row["id"],
            row["side"],
            row["size"],
            row["price"],
            row["timestamp"],
            row["transactTime"],
        )
    except KeyError:
        return None
    symbol, level_id, side_name, size, price, ts, tt = fields
    if not (
        type(symbol) is str
        and type(level_id) is int
        and type(side_name) is str
        and _finite(price)
        and _finite(size)
        and type(size) is int  # what a _Level stores (else the general path: _LevelX)
        and type(ts) is str
        and type(tt) is str
    ):
        return None
    name: str = side_name
    if not (name == "Buy" or name == "Sell"):
        return None
    return fields


def _checked_rows(data: list[Any], full: bool) -> list[Fields | None]:
    """``check_levels(data, full)``, keeping each standard row's fields (``_standard_row``) so a
    multi-row delta reads them once; ``None`` for a row to read by name."""
    standard: list[Fields | None] = []
    for item in data:
        fields = _standard_row(item)
        if fields is None:
            check_levels([item], full)  # raises, explaining what is wrong
        standard.append(fields)
    return standard


def one_change(table: str, action: str, symbol: str | None, row: Row) -> ApplyResult:
    """The result of a message that changed one row (most messages): one ``Change``, nothing
    dropped, no violation; in the compiled core, built by one C call."""
    if _MAKE_ONE is not None:
        built: ApplyResult = _MAKE_ONE(table, action, symbol, row)
        return built
    return new_result(table, action, (new_change(table, action, symbol, (row,)),), 0, ())


def new_change(table: str, action: str, symbol: str | None, rows: tuple[Row, ...]) -> Change:
    if _MAKE_CHANGE is not None:
        built: Change = _MAKE_CHANGE(table, action, symbol, rows)
        return built
    made: Any = _CHANGE_TWIN()
    made.table = table
    made.action = action
    made.symbol = symbol
    made.rows = rows
    made.__class__ = Change
    change: Change = made  # not cast(): a call in the pure core
    return change


def new_result(
    table: str,
    action: str,
    changes: tuple[Change, ...],
    dropped: int,
    violations: tuple[Violation, ...],
) -> ApplyResult:
    if _MAKE_RESULT is not None:
        built: ApplyResult = _MAKE_RESULT(table, action, changes, dropped, violations)
        return built
    made: Any = _RESULT_TWIN()
    made.table = table
    made.action = action
    made.changes = changes
    made.dropped = dropped
    made.violations = violations
    made.__class__ = ApplyResult
    result: ApplyResult = made
    return result


def changes_of(table: str, action: str, groups: dict[Any, list[Row]]) -> tuple[Change, ...]:
    """One ``Change`` per symbol of ``groups`` (symbol -> rows), in their order."""
    if len(groups) == 1:  # the usual case: BitMEX deltas concern one symbol
        for symbol, rows in groups.items():
            return (new_change(table, action, symbol, tuple(rows)),)
    return tuple([new_change(table, action, sym, tuple(rows)) for sym, rows in groups.items()])


def violations_of(table: str, problems: list[Problem]) -> tuple[Violation, ...]:
    return tuple([Violation(kind, table, sym, key, detail) for kind, sym, key, detail in problems])


def _finish(
    table: str,
    action: str,
    groups: dict[Any, list[Row]],
    dropped: int,
    problems: list[Problem] | None,
) -> ApplyResult:
    """The ``ApplyResult`` of a book delta (one symbol's ``Change`` built inline: hot path)."""
    if len(groups) == 1:
        ((symbol, rows),) = groups.items()
        changes: tuple[Change, ...] = (new_change(table, action, symbol, tuple(rows)),)
    else:
        changes = changes_of(table, action, groups) if groups else ()
    violations = violations_of(table, problems) if problems else ()
    return new_result(table, action, changes, dropped, violations)


# The compiled core searches the price index with its own loops below (unboxed float compares,
# no call through the interpreter); pure Python keeps ``bisect``'s C loops, faster there.
_COMPILED: Final = __name__.startswith("bitmex_trio_websocket._compiled.")


def _stamp_functions() -> tuple[Any, Any]:
    """``(stamp_ms, stamp_text)``: the C versions of ``_compiled._slots`` in the compiled core
    (no call through the interpreter), else those of ``_stamps``."""
    if not _COMPILED:
        return stamp_ms, stamp_text
    slots = importlib.import_module("bitmex_trio_websocket._compiled._slots")
    return slots.stamp_ms, slots.stamp_text


_STAMP_FUNCTIONS: Final = _stamp_functions()
_STAMP_MS: Final[Any] = _STAMP_FUNCTIONS[0]
_STAMP_TEXT: Final[Any] = _STAMP_FUNCTIONS[1]


def _bisect(keys: list[Any], key: Any, right: bool) -> int:
    """``bisect_right(keys, key)`` if ``right``, else ``bisect_left(keys, key)``."""
    if not _COMPILED or type(key) is not float:
        return bisect_right(keys, key) if right else bisect_left(keys, key)
    target: float = key
    lo = 0
    hi = len(keys)
    while lo < hi:
        mid = (lo + hi) >> 1
        probe = keys[mid]
        if type(probe) is float:  # past it: below the key (left), or not above it (right)
            value: float = probe
            past = value <= target if right else value < target
        else:
            past = bool(probe <= key) if right else bool(probe < key)
        if past:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _strictly_ascending(keys: list[Any]) -> bool:
    """Each key below the next (floats compared unboxed in the compiled core)."""
    if not keys:
        return True
    last = keys[0]
    for i in range(1, len(keys)):
        key = keys[i]
        if type(key) is float and type(last) is float:
            now: float = key
            before: float = last
            if not before < now:
                return False
        elif not bool(last < key):
            return False
        last = key
    return True


class _Gate:
    """Which slices of one table have had a partial, i.e. whose deltas we accept."""

    __slots__ = ("excluded", "seen", "symbols", "whole")

    def __init__(self) -> None:
        self.whole = False
        self.symbols: set[str] = set()
        self.excluded: set[str] = set()  # reset() out of a whole-table slice
        self.seen: str | None = None  # the last symbol admit() let through (forgotten on change)

    def __reduce__(self) -> tuple[Any, ...]:  # see _Level.__reduce__
        return (_Gate, (), (self.whole, self.symbols, self.excluded))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.whole, self.symbols, self.excluded = state
        self.seen = None

    def accepts(self, symbol: Any) -> bool:
        return symbol in self.symbols or (self.whole and symbol not in self.excluded)

    def admits(self, symbol: str) -> bool:
        """``accepts`` for the one-row paths: consecutive messages mostly name the same symbol,
        which a string comparison confirms without hashing the new string."""
        seen = self.seen
        if seen is not None and symbol == seen:
            return True
        if symbol in self.symbols or (self.whole and symbol not in self.excluded):
            self.seen = symbol
            return True
        return False

    def cover(self, symbol: str | None) -> None:
        self.seen = None
        if symbol is None:
            self.whole = True
            self.symbols.clear()
            self.excluded.clear()
        else:
            self.symbols.add(symbol)
            self.excluded.discard(symbol)

    def forget(self, symbol: str | None) -> None:
        self.seen = None
        if symbol is None:
            self.whole = False
            self.symbols.clear()
            self.excluded.clear()
        else:
            self.symbols.discard(symbol)
            if self.whole:
                self.excluded.add(symbol)


class _Level:
    """One standard stored level (symbol, side and id are where it is stored): an ``int`` size
    and canonical stamps as milliseconds (-1: the row had no such field), so the compiled core
    keeps all three unboxed inside the record. Anything else is a ``_LevelX``."""

    __slots__ = ("key", "size", "ts", "tt")

    def __init__(self, key: Any, size: int, ts: int, tt: int) -> None:
        self.key = key  # the sort key: price as sent (asks) or its negation (bids)
        self.size = size
        self.ts = ts  # timestamp in ms since the epoch, or -1
        self.tt = tt  # transactTime in ms since the epoch, or -1

    # Copying and pickling (a deep copy of storage.data) call the constructor: mypyc's classes
    # cannot be made without it.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_Level, (self.key, self.size, self.ts, self.tt))

    def amount(self) -> Any:
        """The size as sent."""
        return self.size


class _LevelX(_Level):
    """A level kept as sent: a size that is not an ``int``, a stamp that is not canonical text
    (``_stamps``), or fields beyond the standard ones (``extra``). The compact fields it
    inherits hold dummies; the hot paths hand any ``_LevelX`` to the general path."""

    __slots__ = ("extra", "sent_size", "sent_ts", "sent_tt")

    def __init__(self, key: Any, size: Any, ts: Any, tt: Any, extra: dict[str, Any] | None) -> None:
        super().__init__(key, 0, -1, -1)
        self.sent_size = size
        self.sent_ts = ts  # or _ABSENT
        self.sent_tt = tt  # or _ABSENT
        self.extra = extra

    def __reduce__(self) -> tuple[Any, ...]:
        return (_LevelX, (self.key, self.sent_size, self.sent_ts, self.sent_tt, self.extra))

    def amount(self) -> Any:
        return self.sent_size


class _Stamps:
    """One-entry memos of stamp conversions, shared by a ``BookTable`` and its sides.

    Consecutive rows mostly carry the same stamps, so the last text parsed and its milliseconds
    (for ``timestamp`` and for ``transactTime``), and the last milliseconds formatted and their
    text, are kept: an equal stamp is neither parsed nor formatted again, and rows built from it
    share one string. A memo holds only canonical stamps."""

    __slots__ = ("shown", "shown_ms", "shown_tt", "shown_tt_ms", "text", "text_ms", "tt", "tt_ms")

    def __init__(self) -> None:
        self.text = ""  # the last timestamp parsed, and its ms
        self.text_ms = -1
        self.tt = ""  # the last transactTime parsed (when it differed from its timestamp)
        self.tt_ms = -1
        self.shown_ms = -1  # the last timestamp formatted, and its text
        self.shown = ""
        self.shown_tt_ms = -1
        self.shown_tt = ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Stamps, ())  # a cache: a copy starts empty

    def ms(self, text: str) -> int:
        """``stamp_ms(text)`` of a ``timestamp``."""
        if text == self.text:
            return self.text_ms
        ms: int = _STAMP_MS(text)
        if ms >= 0:
            self.text = text
            self.text_ms = ms
        return ms

    def tt_ms_of(self, text: str) -> int:
        """``stamp_ms(text)`` of a ``transactTime`` (that differs from its timestamp)."""
        if text == self.tt:
            return self.tt_ms
        ms: int = _STAMP_MS(text)
        if ms >= 0:
            self.tt = text
            self.tt_ms = ms
        return ms

    def show(self, ms: int) -> str:
        """``stamp_text(ms)`` of a ``timestamp``."""
        if ms == self.shown_ms:
            return self.shown
        text: str = _STAMP_TEXT(ms)
        self.shown_ms = ms
        self.shown = text
        return text

    def show_tt(self, ms: int) -> str:
        """``stamp_text(ms)`` of a ``transactTime`` (that differs from its timestamp)."""
        if ms == self.shown_tt_ms:
            return self.shown_tt
        text: str = _STAMP_TEXT(ms)
        self.shown_tt_ms = ms
        self.shown_tt = text
        return text

    def field(self, value: Any, first: bool) -> int:
        """A stamp field as a ``_Level`` keeps it (``first``: a ``timestamp``): its ms, -1 when
        absent, -2 when it must be kept as sent."""
        if value is _ABSENT:
            return -1
        if type(value) is not str:
            return -2
        ms = self.ms(value) if first else self.tt_ms_of(value)
        return ms if ms >= 0 else -2


def _level(
    stamps: _Stamps, key: Any, size: Any, ts: Any, tt: Any, extra: dict[str, Any] | None
) -> _Level:
    """The record of a level with these fields as sent (``_ABSENT`` for a missing stamp)."""
    if not extra and type(size) is int:
        ts_ms = stamps.field(ts, True)
        if ts_ms >= -1:
            same = tt is ts or (ts_ms >= 0 and type(tt) is str and tt == ts)
            tt_ms = ts_ms if same else stamps.field(tt, False)
            if tt_ms >= -1:
                return _Level(key, size, ts_ms, tt_ms)
    return _LevelX(key, size, ts, tt, extra or None)


class _Side:
    """One side of one symbol's book (``LevelRows`` shows it as a ``Mapping`` id -> row)."""

    __slots__ = ("buy", "ids", "keys", "order", "side", "stamps", "symbol")

    def __init__(self, symbol: str, side: str, stamps: _Stamps | None = None) -> None:
        self.symbol: str = symbol
        self.side: str = side
        self.buy: bool = side == "Buy"
        self.stamps: _Stamps = _Stamps() if stamps is None else stamps  # its table's memos
        self.ids: dict[LevelId, _Level] = {}
        # The price index: every level's sort key ascending, the best LAST (where most inserts
        # and deletes happen, so a C memmove moves little), and its id in the same place.
        self.keys: list[Any] = []
        self.order: list[LevelId] = []

    def __len__(self) -> int:
        return len(self.ids)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Side, (self.symbol, self.side), (self.ids, self.keys, self.order))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.ids, self.keys, self.order = state

    def row(self, level_id: LevelId, level: _Level) -> Row:
        """The row BitMEX would send for a stored level (a new dict: a snapshot)."""
        key = level.key
        if type(level) is _Level:
            ts = level.ts
            tt = level.tt
            if ts >= 0 and tt >= 0:
                stamps = self.stamps
                text = stamps.shown if ts == stamps.shown_ms else stamps.show(ts)
                return {  # the usual row, built at its full size at once
                    "symbol": self.symbol,
                    "id": level_id,
                    "side": self.side,
                    "size": level.size,
                    "price": key if self.buy else -key,
                    "timestamp": text,
                    "transactTime": text if tt == ts else stamps.show_tt(tt),
                }
            row = {
                "symbol": self.symbol,
                "id": level_id,
                "side": self.side,
                "size": level.size,
                "price": key if self.buy else -key,
            }
            if ts >= 0:
                row["timestamp"] = self.stamps.show(ts)
            if tt >= 0:
                row["transactTime"] = self.stamps.show_tt(tt)
            return row
        sent: Any = level  # a _LevelX: its fields as sent
        row = {
            "symbol": self.symbol,
            "id": level_id,
            "side": self.side,
            "size": sent.sent_size,
            "price": key if self.buy else -key,
        }
        if sent.sent_ts is not _ABSENT:
            row["timestamp"] = sent.sent_ts
        if sent.sent_tt is not _ABSENT:
            row["transactTime"] = sent.sent_tt
        if sent.extra:
            row.update(sent.extra)
        return row

    # -- the price index ---------------------------------------------------------------------

    def place(self, level_id: LevelId, key: Any) -> None:
        keys = self.keys
        order = self.order
        at = _bisect(keys, key, True)
        if at and keys[at - 1] == key:  # equal prices: ids descending, so best-first ascending
            at = _bisect(keys, key, False)
            while at < len(keys) and keys[at] == key and order[at] > level_id:
                at += 1
        keys.insert(at, key)
        order.insert(at, level_id)

    def unplace(self, level_id: LevelId, key: Any) -> None:
        order = self.order
        at = _bisect(self.keys, key, False)
        while order[at] != level_id:  # equal prices: the level is further along their run
            at += 1
        del self.keys[at]
        del order[at]

    def fill(self, levels: dict[LevelId, _Level]) -> None:
        """Replace everything with ``levels`` (refilled in place: views stay live).

        BitMEX sends a partial's levels by price, best bid and best ask in the middle, so the
        keys arrive strictly monotonic on each side: then the index is the arrival order (or
        its reverse), with no sort. Anything else (equal prices among them) is sorted."""
        self.ids = levels
        keys = [level.key for level in levels.values()]
        if _strictly_ascending(keys):
            self.keys = keys
            self.order = list(levels)
            return
        keys.reverse()
        if _strictly_ascending(keys):
            order = list(levels)
            order.reverse()
            self.keys = keys
            self.order = order
            return
        ranked = sorted([(level.key, -level_id, level_id) for level_id, level in levels.items()])
        self.keys = [entry[0] for entry in ranked]
        self.order = [entry[2] for entry in ranked]

    def best(self) -> Any:
        """The best price, or ``None`` for an empty side."""
        keys = self.keys
        if not keys:
            return None
        return keys[-1] if self.buy else -keys[-1]

    def ordered(self, reverse: bool = False) -> Iterator[tuple[LevelId, _Level]]:
        """``(id, level)`` best first (worst first if ``reverse``), equal prices by id."""
        ids = self.ids
        for level_id in self.order if reverse else reversed(self.order):
            yield level_id, ids[level_id]

    def at_index(self, index: int) -> _Level:
        """The level ``index`` places from the best (negative: from the worst)."""
        order = self.order
        count = len(order)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError("price level index out of range")
        return self.ids[order[count - 1 - index]]

    def price_level(self, level: _Level) -> Level:
        return (float(level.key if self.buy else -level.key), level.amount())

    # -- what PriceLevels reads (_views.PriceIndex) ------------------------------------------

    def level_at(self, index: int) -> Level:
        return self.price_level(self.at_index(index))

    def level_slice(self, start: int, stop: int, step: int) -> list[Level]:
        """Levels ``start:stop:step`` best first (``slice.indices`` already applied)."""
        if step != 1:
            return [self.price_level(self.at_index(i)) for i in range(start, stop, step)]
        if stop <= start:
            return []
        count = len(self.order)
        ids = self.ids
        keys = self.keys[count - stop : count - start]
        order = self.order[count - stop : count - start]
        keys.reverse()
        order.reverse()
        if self.buy:
            return [(float(key), ids[i].amount()) for key, i in zip(keys, order, strict=True)]
        return [(float(-key), ids[i].amount()) for key, i in zip(keys, order, strict=True)]

    def walk(self, reverse: bool) -> Iterator[Level]:
        for _, level in self.ordered(reverse):
            yield self.price_level(level)


_NO_SIDE: Final = _Side("", "Sell")  # a typed placeholder, never stored into


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

    __slots__ = ("books", "crossed", "last_asks", "last_bids", "last_symbol", "stamps", "views")

    def __init__(self) -> None:
        self.books: dict[str, dict[str, _Side]] = {}
        self.views: dict[str, dict[str, LevelRows]] = {}  # storage.data[table]
        self.crossed: set[str] = set()  # symbols whose book was crossed when last checked
        self.stamps = _Stamps()  # stamp conversion memos, shared with the sides
        # The sides of the symbol the last one-row message touched (see _one_side).
        self.last_symbol: str | None = None
        self.last_bids = _NO_SIDE
        self.last_asks = _NO_SIDE

    def __reduce__(self) -> tuple[Any, ...]:
        return (BookTable, (), (self.books, self.crossed, self.views))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.books, self.crossed, self.views = state
        self.last_symbol = None

    def sides_of(self, symbol: str) -> dict[str, _Side]:
        """The two sides of ``symbol``'s book, created empty for a symbol not seen before (a new
        symbol inside a whole-table slice)."""
        sides = self.books.get(symbol)
        if sides is None:
            sides = self.books[symbol] = {
                "Buy": _Side(symbol, "Buy", self.stamps),
                "Sell": _Side(symbol, "Sell", self.stamps),
            }
            self.views[symbol] = {side: LevelRows(level) for side, level in sides.items()}
        return sides

    def side(self, symbol: Any, buy: bool) -> _Side | None:
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
        stamps = self.stamps
        for symbol, rows in groups.items():
            if symbol is None:
                continue  # whole-table empty partial
            sides = self.sides_of(symbol)
            buys: dict[LevelId, _Level] = {}
            sells: dict[LevelId, _Level] = {}
            for row in rows:
                side: str = row["side"]  # validated: compared unboxed from here on
                buy = side == "Buy"
                levels = buys if buy else sells
                level_id = row["id"]
                if level_id in levels:
                    where = (symbol, level_id, side)
                    problems.append(("duplicate_insert", symbol, where, "partial"))
                price = row["price"]
                key = price if buy else -price
                size = row["size"]
                if len(row) == 7:  # 7 = the five validated fields and the two stamps
                    try:
                        ts = row["timestamp"]
                        tt = row["transactTime"]
                    except KeyError:
                        ts = _UNSET
                    if type(ts) is str and type(tt) is str and type(size) is int:
                        text: str = ts
                        other: str = tt
                        ts_ms = stamps.text_ms if text == stamps.text else stamps.ms(text)
                        tt_ms = ts_ms if other == text else stamps.tt_ms_of(other)
                        if ts_ms >= 0 and tt_ms >= 0:
                            levels[level_id] = _Level(key, size, ts_ms, tt_ms)
                            continue
                ts, tt, extra = _split_row(row)
                levels[level_id] = _level(stamps, key, size, ts, tt, extra)
            sides["Buy"].fill(buys)
            sides["Sell"].fill(sells)
            problem = self.check(symbol)
            if problem is not None:
                problems.append(problem)

    def insert(self, table: str, data: list[Any], gate: _Gate) -> ApplyResult:
        if len(data) == 1:
            result = self._insert_one(table, data[0], gate)
            if result is not None:
                return result
        standard = _checked_rows(data, True)
        groups: dict[Any, list[Row]] = {}
        problems: list[Problem] | None = None
        dropped = 0
        current: str | None = None
        bids: _Side | None = None
        asks = _NO_SIDE
        row: Row
        out: list[Row] = []
        stamps = self.stamps
        for index in range(len(data)):
            row = data[index]
            fields = standard[index]
            if fields is not None:
                symbol_field, level_id, side_field, size, price, ts, tt = fields
                symbol: str = symbol_field  # validated above: compared unboxed from here on
                name: str = side_field
            else:
                symbol = row["symbol"]
                level_id = row["id"]
                name = row["side"]
                price = row["price"]
                size = row["size"]
            if current is None or symbol != current:
                current = symbol
                if gate.accepts(symbol):
                    sides = self.sides_of(symbol)
                    bids = sides["Buy"]
                    asks = sides["Sell"]
                    out = groups.setdefault(symbol, [])  # every accepted row is applied
                else:
                    bids = None
            if bids is None:
                dropped += 1
                continue
            if name == "Buy":
                side = bids
                key = price
            else:
                side = asks
                key = -price
            ids = side.ids
            old = ids.get(level_id)
            if old is not None:
                side.unplace(level_id, old.key)
                if problems is None:
                    problems = []
                problems.append(
                    ("duplicate_insert", symbol, (symbol, level_id, side.side), "insert")
                )
            if fields is not None:
                text: str = ts
                other: str = tt
                ts_ms = stamps.text_ms if text == stamps.text else stamps.ms(text)
                tt_ms = ts_ms if other == text else stamps.tt_ms_of(other)
                if ts_ms >= 0 and tt_ms >= 0:
                    ids[level_id] = _Level(key, size, ts_ms, tt_ms)
                else:
                    ids[level_id] = _level(stamps, key, size, ts, tt, None)
            else:
                ts, tt, extra = _split_row(row)
                ids[level_id] = _level(stamps, key, size, ts, tt, extra)
            keys = side.keys
            where = _bisect(keys, key, True)
            if where and keys[where - 1] == key:
                side.place(level_id, key)  # equal prices
            else:
                keys.insert(where, key)
                side.order.insert(where, level_id)
            out.append(row)
        if groups:  # a new level can cross a book
            problems = self._checks(groups, True, problems)
        return _finish(table, "insert", groups, dropped, problems)

    def update(self, table: str, data: list[Any], gate: _Gate) -> ApplyResult:
        if len(data) == 1:
            result = self._update_one(table, data[0], gate)
            if result is not None:
                return result
        standard = _checked_rows(data, False)
        groups: dict[Any, list[Row]] = {}
        problems: list[Problem] | None = None
        dropped = 0
        moved = False  # only a moved level can cross a book
        current: str | None = None
        bids: _Side | None = None
        asks = _NO_SIDE
        bid_ids: dict[LevelId, _Level] = {}
        ask_ids = bid_ids
        level: _Level | None
        row: Row
        out: list[Row] | None = None
        stamps = self.stamps
        for index in range(len(data)):
            row = data[index]
            fields = standard[index]
            if fields is not None:
                symbol_field, level_id, side_field, size, price, ts, tt = fields
                symbol: str = symbol_field  # validated above: compared unboxed from here on
                name: str = side_field
            else:
                symbol = row["symbol"]
                level_id = row["id"]
                name = row["side"]
            if current is None or symbol != current:
                current = symbol
                if gate.accepts(symbol):
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
            buy = name == "Buy"
            if buy:
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
            ts_ms = -2  # stays below 0 unless the row is standard (see _Level)
            tt_ms = -1
            if fields is not None and type(level) is _Level:
                text: str = ts
                other: str = tt
                ts_ms = stamps.text_ms if text == stamps.text else stamps.ms(text)
                tt_ms = ts_ms if other == text else stamps.tt_ms_of(other)
            if ts_ms < 0 or tt_ms < 0:
                row, shifted = _merge(side, level_id, level, row)
                moved = moved or shifted
            else:  # exactly the standard fields, over a level without extras: row is the merge
                held = level.key
                if type(price) is float and type(held) is float:
                    number: float = price
                    kept: float = held
                    shift = (number if buy else -number) != kept
                    if shift:
                        key: Any = price if buy else -number
                else:
                    key = price if buy else -price
                    shift = key != held or type(key) is not type(held)
                if shift:  # a price change moves the level
                    side.unplace(level_id, held)
                    level.key = key
                    side.place(level_id, key)
                    moved = True
                level.size = size
                level.ts = ts_ms
                level.tt = tt_ms
            if out is None:
                out = groups[symbol] = []
            out.append(row)
        if moved or self.crossed:
            problems = self._checks(groups, moved, problems)
        return _finish(table, "update", groups, dropped, problems)

    def delete(self, table: str, data: list[Any], gate: _Gate) -> ApplyResult:
        if len(data) == 1:
            result = self._delete_one(table, data[0], gate)
            if result is not None:
                return result
        check_levels(data, False)
        groups: dict[Any, list[Row]] = {}
        problems: list[Problem] | None = None
        dropped = 0
        current: Any = _UNSET
        bids: _Side | None = None
        asks = _NO_SIDE
        row: Row
        out: list[Row] | None = None
        for row in data:
            symbol = row["symbol"]
            if symbol != current:
                current = symbol
                if gate.accepts(symbol):
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
            keys = side.keys
            where = _bisect(keys, key, False)
            order = side.order
            if order[where] == level_id:
                del keys[where]
                del order[where]
            else:
                side.unplace(level_id, key)  # equal prices
        if self.crossed:  # a delete can uncross a book, never cross one
            problems = self._checks(groups, False, problems)
        return _finish(table, "delete", groups, dropped, problems)

    # -- one-row messages (most of what BitMEX sends): fields read once, no grouping ----------
    # Each returns None, having changed nothing, for anything but the plain case (a malformed
    # row, a duplicate insert, an unknown id, a level with extra fields); the general path then
    # validates, applies and reports it as before.

    def _one_side(self, symbol: str, buy: bool) -> _Side:
        """The side a one-row message touches (created empty for a new symbol of a whole-table
        slice). Consecutive messages mostly name the same symbol, which a string comparison
        confirms without hashing the new string; ``reset`` forgets it."""
        last = self.last_symbol
        if last is None or symbol != last:
            sides = self.sides_of(symbol)
            self.last_symbol = symbol
            self.last_bids = sides["Buy"]
            self.last_asks = sides["Sell"]
        return self.last_bids if buy else self.last_asks

    # The one-row paths: a message of one standard row (most of what BitMEX sends), checked and
    # applied without the general path's grouping. Each returns ``None`` for anything unusual
    # (extra or missing fields, a field of an odd type, an unknown level), which the general
    # path then handles, explaining what is wrong. Fields are narrowed to str, float or small
    # int before they are compared, so the compiled core compares them unboxed.

    def _update_one(self, table: str, row: Any, gate: _Gate) -> ApplyResult | None:
        fields = _standard_row(row)
        if fields is None:
            return None
        symbol, level_id, side_name, size, price, ts, tt = fields
        sym: str = symbol
        name: str = side_name
        buy = name == "Buy"
        if not gate.admits(sym):
            return new_result(table, "update", (), 1, ())
        side = self._one_side(sym, buy)
        level = side.ids.get(level_id)
        if level is None or type(level) is not _Level:
            return None
        text: str = ts
        other: str = tt
        stamps = self.stamps
        ts_ms = stamps.text_ms if text == stamps.text else stamps.ms(text)
        tt_ms = ts_ms if other == text else stamps.tt_ms_of(other)
        if ts_ms < 0 or tt_ms < 0:
            return None  # kept as sent: the general path makes it a _LevelX
        held = level.key
        if type(price) is float and type(held) is float:
            number: float = price
            kept: float = held
            moved = (number if buy else -number) != kept
            if moved:
                key: Any = price if buy else -number
        else:
            key = price if buy else -price
            moved = key != held or type(key) is not type(held)
        if moved:  # a price change moves the level
            side.unplace(level_id, held)
            level.key = key
            side.place(level_id, key)
        level.size = size
        level.ts = ts_ms
        level.tt = tt_ms
        if moved or (self.crossed and sym in self.crossed):
            return self._checked(table, "update", new_change(table, "update", sym, (row,)), sym)
        return one_change(table, "update", sym, row)

    def _insert_one(self, table: str, row: Any, gate: _Gate) -> ApplyResult | None:
        fields = _standard_row(row)
        if fields is None:
            return None
        symbol, level_id, side_name, size, price, ts, tt = fields
        sym: str = symbol
        name: str = side_name
        buy = name == "Buy"
        if not gate.admits(sym):
            return new_result(table, "insert", (), 1, ())
        side = self._one_side(sym, buy)
        ids = side.ids
        if level_id in ids:
            return None
        text: str = ts
        other: str = tt
        stamps = self.stamps
        ts_ms = stamps.text_ms if text == stamps.text else stamps.ms(text)
        tt_ms = ts_ms if other == text else stamps.tt_ms_of(other)
        if ts_ms < 0 or tt_ms < 0:
            return None  # kept as sent: the general path makes it a _LevelX
        key = price if buy else -price
        ids[level_id] = _Level(key, size, ts_ms, tt_ms)
        keys = side.keys
        where = _bisect(keys, key, True)
        if where and keys[where - 1] == key:
            side.place(level_id, key)  # equal prices
        else:
            keys.insert(where, key)
            side.order.insert(where, level_id)
        problem = self.check(sym)  # an insert may cross the book
        if problem is None:
            return one_change(table, "insert", sym, row)
        change = new_change(table, "insert", sym, (row,))
        return new_result(table, "insert", (change,), 0, violations_of(table, [problem]))

    def _delete_one(self, table: str, row: Any, gate: _Gate) -> ApplyResult | None:
        if type(row) is not dict:
            return None
        try:
            symbol = row["symbol"]
            level_id = row["id"]
            side_name = row["side"]
        except KeyError:
            return None
        price = row.get("price", 0)
        size = row.get("size", 0)
        if not (
            type(symbol) is str
            and type(level_id) is int
            and type(side_name) is str
            and _finite(price)
            and _finite(size)
        ):
            return None
        name: str = side_name
        buy = name == "Buy"
        if not (buy or name == "Sell"):
            return None
        sym: str = symbol
        if not gate.admits(sym):
            return new_result(table, "delete", (), 1, ())
        side = self._one_side(sym, buy)
        level = side.ids.pop(level_id, None)
        if level is None:
            return None
        gone = side.row(level_id, level)
        key = level.key
        keys = side.keys
        where = _bisect(keys, key, False)
        order = side.order
        if order[where] == level_id:
            del keys[where]
            del order[where]
        else:
            side.unplace(level_id, key)  # equal prices
        if self.crossed and sym in self.crossed:  # a delete can uncross a book, never cross one
            return self._checked(table, "delete", new_change(table, "delete", sym, (gone,)), sym)
        return one_change(table, "delete", sym, gone)

    def _checked(self, table: str, action: str, change: Change, symbol: str) -> ApplyResult:
        """The result of a one-row message whose book may be crossed now."""
        problem = self.check(symbol)
        violations = () if problem is None else violations_of(table, [problem])
        return new_result(table, action, (change,), 0, violations)

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
        self.last_symbol = None
        self.books.pop(symbol, None)
        self.views.pop(symbol, None)
        self.crossed.discard(symbol)


def _merge(side: _Side, level_id: LevelId, level: _Level, row: Row) -> tuple[Row, bool]:
    """Merge an update row into a level the general way; the merged row, and if it moved."""
    merged = side.row(level_id, level)
    merged.update(row)
    price = merged["price"]
    key = price if side.buy else -price
    held = level.key
    moved = key != held or type(key) is not type(held)
    if moved:
        side.unplace(level_id, held)
        side.place(level_id, key)
    ts, tt, extra = _split_row(merged)
    # A new record: the merged fields may need the other kind (a float size, extra fields...).
    side.ids[level_id] = _level(side.stamps, key, merged["size"], ts, tt, extra)
    return merged, moved
