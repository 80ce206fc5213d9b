"""Sans-IO table store for BitMEX realtime table messages.

Theory of operation
-------------------
BitMEX streams each subscribed table as a ``partial`` (full image of a slice: one symbol, or the
whole table) followed by ``insert``/``update``/``delete`` deltas. ``Storage.apply`` takes one
decoded message, changes the stored image and returns an ``ApplyResult`` saying what changed, so
the caller can route rows to listeners without looking at the store again. No I/O, no clock.

A message is validated completely (``_validate``) before anything is mutated: one that raises
``RemoteProtocolError`` leaves the store exactly as it was, and nothing after validation can
fail (the closed-order eviction, ``_orders``, which runs last, included). Well-formed surprises
(an update for a key we do not hold, a duplicate insert, a crossed book) are applied as well as
possible and reported as ``Violation``s; whether to resync is the caller's decision.

Gating: deltas for a slice that has had no partial are dropped (BitMEX may send them before the
partial) and counted in ``ApplyResult.dropped``. A partial whose filter names a symbol covers that
symbol; any other partial covers the whole table. A delta row is gated and grouped by its
``symbol``; an update or delete row without one (an ``order`` row keyed by ``orderID``) takes the
symbol of the stored row it names. A delta row of a keyed table whose ``symbol`` is null is
refused: merged, it would move the stored row to symbol ``None`` while its change is reported
under the old one, and BitMEX never sends one (rows of symbol-scoped tables always name theirs,
and since 2023 it sends no nulls at all). Absent stays fine; keyless rows and partials are stored
as sent, so a null symbol there is gated like an absent one.

Storage shapes, chosen by table name and the partial's ``keys``:

* order books (``BOOK_TABLES``, see ``_book``): levels are compact records, not row dicts, with a
  price index per side so bids read high-to-low and asks low-to-high (ids never order anything:
  since mid 2023 they say nothing about price). ``data[table][symbol][side]`` is a read-only
  ``Mapping`` id -> row that builds each row when read. Pre-2023 update/delete rows carry no
  ``price``; the level keeps the price it was inserted with.
* keyed tables: ``SortedDict`` keyed by the partial's key columns, holding the rows themselves.
  ``orderBook10`` is one, but its updates replace the whole row instead of merging.
* keyless tables (``keys == []``: trade, quote, bins): ``SortedDict`` keyed ``(n,)`` by an arrival
  counter, so rows never collide; bounded, oldest dropped first, the bound holding after every
  message. A new key sorts after every held one, so ``_push`` appends it to the end of the
  ``SortedList`` inside the ``SortedDict`` and drops the oldest from its front itself, keeping
  that list's invariants (``SortedDict``'s own ``__setitem__``/``popitem`` are interpreted
  code, about half of what such a message cost); the table stays a genuine ``SortedDict`` for
  every method a user may call. sortedcontainers is pinned below 2.5 for this.
* the ``order`` table is keyed, and closed orders leave it ``closed_order_ttl`` seconds of server
  time after they closed (``_orders``).

One-row hot paths: most ``trade`` inserts and ``instrument``/``order`` updates carry one row. A
one-row keyless insert skips the grouping; a one-row update of a table keyed by one column
(``_update_one``) reads each field once, merges once and builds its one ``Change`` directly,
handing anything unusual (malformed, unknown key, a key kind not yet fixed) to the general path
having changed nothing. ``tests/storage/test_keyed_one_row.py`` and ``test_keyless_fast.py``
hold both paths to the same results on both cores.

Views (``OrderBook``, ``BookSide``) are in ``_views``; they read the store through ``_book_side``.

Every row handed out (in a ``Change``, by ``rows()`` or from ``data``) is a snapshot that later
messages cannot alter: stored rows of keyed tables are never mutated (an update stores a merged
copy), and book rows are built afresh from the level records each time they are handed out.

Just over 600 lines: ``apply``'s dispatch memo (the last L2 table, its books and gate) and the
keyless fast path (``_push``) live beside the ``Storage`` attributes they read; moving them out
would only add a call per message.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

from mypy_extensions import mypyc_attr
from sortedcontainers import SortedDict

from .._events import ApplyResult, Row, Violation
from .._storage._orders import CLOSED_ORDER_STATUSES, ClosedOrders, parse_timestamp
from .._storage._views import EMPTY_SIDE, BookSide, OrderBook, PriceLevels, book10_side
from ._book import (
    BOOK_TABLES,
    BookTable,
    Problem,
    _Gate,
    changes_of,
    new_result,
    one_change,
    violations_of,
)
from ._validate import bad, check_book10, check_levels, check_row, row_key

__all__ = ["BOOK_TABLES", "CLOSED_ORDER_STATUSES", "Storage"]

_BOOK10: Final = "orderBook10"
_ACTIONS: Final = ("partial", "insert", "update", "delete")
_ORDER: Final = "order"
_UNSET: Final[Any] = object()
_INF: Final = float("inf")
_NINF: Final = -_INF
_dict_set = dict.__setitem__


def _group(rows: list[Row]) -> dict[Any, list[Row]]:
    groups: dict[Any, list[Row]] = {}
    for row in rows:
        symbol = row.get("symbol")
        group = groups.get(symbol)
        if group is None:
            groups[symbol] = [row]
        else:
            group.append(row)
    return groups


# Keyless tables: arrivals and evictions straight on the SortedDict's SortedList (see the module
# docstring). sortedcontainers 2.4 keeps its keys in ``_lists`` (sorted sublists, each at most
# ``2 * _load`` long and, but for the last, at least ``_load // 2``), ``_maxes`` (each sublist's
# last key), ``_len``, and ``_index`` (a positional tree built on demand; emptied when stale).
# The rows go in through dict's own methods (SortedDict overrides the item methods to keep its
# list in step, which is done here): pop and setdefault, as they take the fast call protocol.
_KEYLESS_LOAD: Final = 64  # SortedList's load factor for keyless tables (its default: 1000)
_dict_add: Final = dict.setdefault
_dict_pop: Final = dict.pop


def _push(store: Any, rows: list[Row], n: int, limit: int) -> int:
    """Store ``rows`` under the keys ``(n + 1,)``, ``(n + 2,)``... then drop the oldest rows
    until at most ``limit`` are left; return the last ``n``. Every new key sorts after every
    held one, so it goes at the end of the last sublist, and the oldest are at the front."""
    keys = store._list
    lists: list[list[Any]] = keys._lists
    maxes: list[Any] = keys._maxes
    if maxes and not maxes[-1] < (n + 1,):  # a key we did not make: SortedDict's own way
        for row in rows:
            n += 1
            store[(n,)] = row
        while len(store) > limit:
            store.popitem(0)
        return n
    load: int = keys._load
    for row in rows:
        n += 1
        key = (n,)
        _dict_add(store, key, row)
        if lists:
            last = lists[-1]
            last.append(key)
            if len(last) > 2 * load:  # split as SortedList._expand does
                lists.append(last[load:])
                del last[load:]
                maxes[-1] = last[-1]
                maxes.append(key)
            else:
                maxes[-1] = key
        else:
            lists.append([key])
            maxes.append(key)
    size: int = keys._len + len(rows)
    count = size - limit
    if count > 0:
        size = limit
    while count > 0 and lists:
        first = lists[0]
        length = len(first)
        if length <= count:  # the whole sublist goes
            for key in first:
                _dict_pop(store, key)
            del lists[0]
            del maxes[0]
            count -= length
            continue
        if count == 1:  # the usual case: one arrival, one eviction
            _dict_pop(store, first.pop(0))
        else:
            for i in range(count):
                _dict_pop(store, first[i])
            del first[:count]
        count = 0
        if len(first) < load // 2 and len(lists) > 1:  # too short but not last: join the next
            first.extend(lists[1])
            del lists[1]
            del maxes[0]
            if len(first) > 2 * load:
                lists.insert(1, first[load:])
                del first[load:]
                maxes.insert(0, first[-1])
    keys._len = size
    index: list[int] = keys._index
    if index:
        index.clear()
    return n


# Compiled (see _core), it may still be subclassed in Python.
@mypyc_attr(allow_interpreted_subclasses=True)
class Storage:
    """The current image of every subscribed table, kept up to date by ``apply``.

    Keyless tables (trade, quote, ...) keep at most ``max_table_len`` rows each (default 1000;
    per-table overrides in ``table_limits``), dropping the oldest first. Orders that reached a
    final ``ordStatus`` (Filled, Canceled, Rejected) leave the ``order`` table once an order row
    ``closed_order_ttl`` seconds newer than their closing (by the rows' own ``timestamp``, server
    time) has been applied; ``None`` keeps them (BitMEX never deletes them, so a long-running
    bot's table would grow without end). Such evictions are not reported as changes (the exact
    rule is in ``_orders``). Other keyed tables and the order books are not trimmed: BitMEX
    deletes their rows itself.
    """

    def __init__(
        self,
        *,
        max_table_len: int = 1000,
        table_limits: Mapping[str, int] | None = None,
        closed_order_ttl: float | None = 60.0,
    ) -> None:
        limits = dict(table_limits or {})
        if max_table_len < 1 or any(limit < 1 for limit in limits.values()):
            raise ValueError("table limits must be at least 1")
        if closed_order_ttl is not None and not closed_order_ttl >= 0:
            raise ValueError("closed_order_ttl must be a number of seconds >= 0, or None")
        self.max_table_len = max_table_len
        self.table_limits = limits
        self.closed_order_ttl = closed_order_ttl
        self._closed = None if closed_order_ttl is None else ClosedOrders(closed_order_ttl)
        self.data: dict[str, Any] = {}
        self.keys: dict[str, list[str]] = {}
        self._gates: dict[str, _Gate] = {}
        self._kinds: dict[str, list[int | None]] = {}
        self._books: dict[str, BookTable] = {}  # L2 tables; data[table] is their .books
        self._arrivals = 0
        # The L2 table of the last delta, its books and gate: most messages name the same table,
        # which a string comparison confirms without hashing the new string. Forgotten by every
        # partial and reset (the only places _books and _gates change).
        self._last_table: str | None = None
        self._last_books = BookTable()
        self._last_gate = _Gate()

    def apply(self, message: Mapping[str, Any]) -> ApplyResult:
        """Apply one decoded table message; ``RemoteProtocolError`` if it is malformed."""
        if type(message) is dict:  # typed as such, the compiled core reads it without a call
            plain: dict[str, Any] = message
            table = plain.get("table")
            action = plain.get("action")
            data = plain.get("data")
        elif isinstance(message, Mapping):
            table = message.get("table")
            action = message.get("action")
            data = message.get("data")
        else:
            raise bad("table message is not an object", message)
        if type(table) is not str:
            raise bad("table message has no table name", table)
        if type(data) is list and type(action) is str:
            name: str = table  # an L2 delta (most messages): no more checks; compared unboxed
            verb: str = action
            last = self._last_table
            if last is not None and name == last:
                if verb == "update":
                    return self._last_books.update(name, data, self._last_gate)
                if verb == "insert":
                    return self._last_books.insert(name, data, self._last_gate)
                if verb == "delete":
                    return self._last_books.delete(name, data, self._last_gate)
            else:
                books = self._books.get(name)
                if books is not None and (verb == "update" or verb == "insert" or verb == "delete"):
                    gate = self._gates[name]
                    if verb == "update":
                        result = books.update(name, data, gate)
                    elif verb == "insert":
                        result = books.insert(name, data, gate)
                    else:
                        result = books.delete(name, data, gate)
                    # Remembered once applied: a refused message changes nothing at all.
                    self._last_table = name
                    self._last_books = books
                    self._last_gate = gate
                    return result
        if action not in _ACTIONS:
            raise bad("unknown table action", action)
        if type(data) is not list:
            raise bad("table message data is not a list", data)
        if action == "partial":
            result = self._partial(table, message, data)
            if table == _ORDER and self._closed is not None:
                self._expire_closed_orders(result)
            return result
        if table in BOOK_TABLES:
            books = self._books.get(table)
            if books is None:  # never had a partial, or reset: validated, then dropped
                check_levels(data, action == "insert")
                return new_result(table, action, (), len(data), ())
            if action == "update":
                return books.update(table, data, self._gates[table])
            if action == "insert":
                return books.insert(table, data, self._gates[table])
            return books.delete(table, data, self._gates[table])
        keys = self.keys.get(table)
        if keys is None:  # never had a partial: only the envelope can be checked
            for row in data:
                check_row(row)
            return new_result(table, action, (), len(data), ())
        if keys:
            result = self._keyed_delta(table, action, data, keys)
            if table == _ORDER and self._closed is not None:
                self._expire_closed_orders(result)
            return result
        if action != "insert":
            raise bad(f"{action} on keyless table {table}")
        if len(data) == 1:  # one trade, quote...: no grouping, one Change
            row = data[0]
            if type(row) is dict:
                symbol = row.get("symbol")
                if symbol is None or type(symbol) is str:
                    store = self.data.get(table)
                    if store is None or not self._gates[table].accepts(symbol):
                        return new_result(table, action, (), 1, ())
                    self._append(table, store, data)
                    return one_change(table, action, symbol, row)
        for row in data:
            check_row(row)
        store = self.data.get(table)
        gate = self._gates[table]
        rows = [row for row in data if gate.accepts(row.get("symbol"))] if store is not None else []
        if rows:
            self._append(table, store, rows)
        return new_result(
            table, action, changes_of(table, action, _group(rows)), len(data) - len(rows), ()
        )

    def _partial(self, table: str, message: Mapping[str, Any], data: list[Any]) -> ApplyResult:
        keys = message.get("keys")
        if type(keys) is not list or any(type(k) is not str for k in keys):
            raise bad("partial keys is not a list of strings", keys)
        filt = message.get("filter")
        if filt is None:
            filt = {}
        elif not isinstance(filt, Mapping):
            raise bad("partial filter is not an object", filt)
        slice_symbol = filt.get("symbol")
        if slice_symbol is not None and type(slice_symbol) is not str:
            raise bad("partial filter symbol is not a string", filt)
        is_book = table in BOOK_TABLES
        if is_book:
            check_levels(data, True)
        for row in data:
            if check_row(row) != slice_symbol and slice_symbol is not None:
                raise bad(f"row outside the partial's slice {slice_symbol!r}", row)
        # New keys mean the stored rows are keyed differently: start the table afresh.
        rekeyed = not is_book and self.keys.get(table, keys) != keys
        whole = slice_symbol is None or rekeyed
        store = None if whole else self.data.get(table)
        doomed: list[Any] = []
        kinds: list[int | None] = [None] * len(keys)
        if store and not is_book:
            doomed = [k for k, row in store.items() if row.get("symbol") == slice_symbol]
            if len(doomed) < len(store) and table in self._kinds:
                kinds = list(self._kinds[table])  # rows of other symbols stay and bind key kinds
        row_keys = []
        if keys and not is_book:
            if table == _BOOK10:
                for row in data:
                    check_book10(row)
            row_keys = [row_key(row, keys, kinds) for row in data]

        # Validated: mutate from here on.
        self._last_table = None  # the table's books may be replaced (see __init__)
        if rekeyed:
            self.reset(table)
        self._gates.setdefault(table, _Gate()).cover(slice_symbol)
        self.keys[table] = list(keys)
        groups = _group(data) if data else {slice_symbol: []}
        violations: list[Violation] = []
        if is_book:
            books = None if whole else self._books.get(table)
            if books is None:
                books = self._books[table] = BookTable()
                self.data[table] = books.views
            problems: list[Problem] = []
            books.partial(groups, problems)
            violations.extend(violations_of(table, problems))
        else:
            if table == _ORDER and self._closed is not None:
                if store is None:
                    self._closed.clear()
                else:
                    self._closed.forget(doomed)
            if store is None:
                store = self.data[table] = SortedDict()
                if not keys:  # evicted from the front: short sublists, short memmoves
                    store._list._reset(_KEYLESS_LOAD)
            for k in doomed:
                del store[k]
            if not keys:
                self._append(table, store, data)
            self._kinds[table] = kinds
            for row, key in zip(data, row_keys, strict=False):
                if key in store:
                    symbol = row.get("symbol")
                    violations.append(Violation("duplicate_insert", table, symbol, key, "partial"))
                store[key] = row
            if table == _BOOK10:
                for symbol in groups:
                    self._check_book10(symbol, violations)
        return new_result(
            table, "partial", changes_of(table, "partial", groups), 0, tuple(violations)
        )

    def _keyed_delta(
        self, table: str, action: str, data: list[Any], keys: list[str]
    ) -> ApplyResult:
        book10 = table == _BOOK10
        if len(data) == 1 and action == "update" and len(keys) == 1 and not book10:
            result = self._update_one(table, data[0], keys[0])
            if result is not None:
                return result
        kinds = self._kinds.get(table) or [None] * len(keys)
        if None in kinds:
            kinds = list(kinds)  # may be filled in by this message
        row_keys = []
        for row in data:
            if check_row(row) is None and "symbol" in row:
                raise bad(f"{table} {action} row has a null symbol", row)
            if book10 and action != "delete":
                check_book10(row)
            row_keys.append(row_key(row, keys, kinds))

        gate = self._gates[table]
        store: Any = self.data.get(table)
        groups: dict[Any, list[Row]] = {}
        violations: list[Violation] = []
        dropped = 0
        current: Any = _UNSET
        accepted = False
        out: list[Row] | None = None
        op = _ACTIONS.index(action)
        # An update or delete row without a symbol (tables keyed by something else, e.g. order
        # by orderID) belongs to the symbol of the row it names.
        lookup = op != 1 and store is not None
        for row, key in zip(data, row_keys, strict=True):
            symbol = row.get("symbol")
            if symbol is None and lookup:
                held = store.get(key)
                if held is not None:
                    symbol = held.get("symbol")
            if symbol != current:
                current = symbol
                accepted = store is not None and gate.accepts(symbol)
                out = groups.get(symbol)
            if not accepted:
                dropped += 1
                continue
            if op == 2 and not book10:  # update: store a merged copy, never touch the old dict
                old = store.get(key)
                if old is None:
                    violations.append(Violation("unknown_key", table, symbol, key, "update"))
                    continue
                row = {**old, **row}
                _dict_set(store, key, row)  # key already indexed: skip SortedDict's own check
            elif op == 3:
                row = store.pop(key, None)
                if row is None:
                    violations.append(Violation("unknown_key", table, symbol, key, "delete"))
                    continue
            else:
                if not book10 and key in store:  # orderBook10 rows always replace the whole row
                    violations.append(Violation("duplicate_insert", table, symbol, key, "insert"))
                store[key] = row
            if out is None:
                out = groups[symbol] = []
            out.append(row)
        if dropped < len(data):  # rows we dropped must not fix the key kinds
            self._kinds[table] = kinds
        if book10:
            for symbol in groups:
                self._check_book10(symbol, violations)
        return new_result(
            table, action, changes_of(table, action, groups), dropped, tuple(violations)
        )

    def _update_one(self, table: str, row: Any, field: str) -> ApplyResult | None:
        """A one-row update of a table keyed by one column (instrument, order...): each field
        read once, the merged copy made once, one ``Change``; ``None``, having changed nothing,
        for anything the general path must decide (malformed, unknown key, first key kind)."""
        if type(row) is not dict:
            return None
        plain: dict[str, Any] = row
        symbol = plain.get("symbol", _UNSET)
        if type(symbol) is not str:
            if symbol is not _UNSET:
                return None
            symbol = None
        value = plain.get(field, _UNSET)
        kind = 0
        if type(value) is not str:
            if (type(value) is not int and type(value) is not float) or not _NINF < value < _INF:
                return None
            kind = 1
        kinds = self._kinds.get(table)
        if kinds is None or kinds[0] != kind:
            return None
        store: dict[Any, Any] | None = self.data.get(table)  # a SortedDict: its get is dict's
        if store is None:
            return None
        key = (value,)
        old: dict[str, Any] | None = store.get(key)
        if old is None:
            return None
        if symbol is None:  # e.g. an order row keyed by orderID: the stored row's symbol
            symbol = old.get("symbol")
        if not self._gates[table].accepts(symbol):
            return new_result(table, "update", (), 1, ())
        merged = {**old, **plain}  # stored rows are never mutated: they were handed out
        _dict_set(store, key, merged)  # key already indexed: skip SortedDict's own check
        return one_change(table, "update", symbol, merged)

    def _append(self, table: str, store: Any, rows: list[Row]) -> None:
        """Store rows of a keyless table under new arrival keys; drop the oldest past the bound."""
        limit = self.table_limits.get(table, self.max_table_len)
        if type(store) is SortedDict:
            self._arrivals = _push(store, rows, self._arrivals, limit)
            return
        n = self._arrivals  # a mapping we did not make (set by hand): its own methods
        for row in rows:
            n += 1
            store[(n,)] = row
        self._arrivals = n
        excess = len(store) - limit
        if excess > 0:
            pop = store.popitem
            for _ in range(excess):
                pop(0)

    def _check_book10(self, symbol: Any, violations: list[Violation]) -> None:
        """Report an orderBook10 whose best bid is at or above its best ask (state applied)."""
        bids = self._book_side(_BOOK10, symbol, True)
        asks = self._book_side(_BOOK10, symbol, False)
        if bids and asks and bids[0][0] >= asks[0][0]:
            detail = f"best bid {bids[0][0]} >= best ask {asks[0][0]}"
            violations.append(Violation("crossed_book", _BOOK10, symbol, None, detail))

    def _book_side(self, table: str, symbol: Any, buy: bool) -> BookSide:
        """A side of a book as it stands (what ``OrderBook`` reads)."""
        if table == _BOOK10:
            store: Any = self.data.get(_BOOK10)
            by_symbol = store and self.keys[_BOOK10] == ["symbol"]
            return book10_side(store.get((symbol,)) if by_symbol else None, buy)
        books = self._books.get(table)
        side = None if books is None else books.side(symbol, buy)
        return EMPTY_SIDE if side is None else BookSide(PriceLevels(side))

    def make_key(self, table: str, match_data: Mapping[str, Any]) -> tuple[Any, ...]:
        """Key tuple of ``match_data`` in ``data[table]`` (the partial's key columns, in order)."""
        if table in BOOK_TABLES:
            raise ValueError(f"{table} is indexed by symbol/side/id, not by key tuples")
        keys = self.keys.get(table)
        if not keys:
            raise ValueError(f"no keys known for table {table!r}")
        return tuple([match_data[k] for k in keys])

    def _expire_closed_orders(self, result: ApplyResult) -> None:
        """Track the order rows just applied and evict what closed long enough ago (``_orders``;
        cannot fail, so it may run after the message has been applied)."""
        keys = self.keys.get(_ORDER)
        store = self.data.get(_ORDER)
        if self._closed is None or not keys or store is None:
            return
        self._closed.note(result.changes, keys)
        self._closed.expire(store)

    @staticmethod
    def parse_timestamp(text: Any) -> datetime.datetime:  # Any: a non-string is a ValueError
        """Parse a BitMEX timestamp (``2020-10-12T16:46:20.255Z``) into an aware UTC datetime."""
        return parse_timestamp(text)

    def book(self, symbol: str, table: str = "orderBookL2") -> OrderBook:
        """Order book view of ``symbol``; an unknown symbol gives an empty book."""
        if table not in BOOK_TABLES and table != _BOOK10:
            raise ValueError(f"{table!r} is not an order book table")
        return OrderBook(self, symbol, table)

    def has_partial(self, table: str, symbol: str | None = None) -> bool:
        """Whether deltas for this slice (the whole table if ``symbol`` is None) are accepted."""
        gate = self._gates.get(table)
        if gate is None:
            return False
        if symbol is None:
            return gate.whole and not gate.excluded
        return gate.accepts(symbol)

    def rows(self, table: str, symbol: str | None = None) -> list[Row]:
        """Current rows of a topic; books as BitMEX lays out partials (asks, then bids,
        each by descending price), other tables in storage order."""
        books = self._books.get(table)
        if books is not None:
            return books.rows(symbol)
        store = self.data.get(table)
        if not store or table in BOOK_TABLES:
            return []
        if symbol is None:
            return list(store.values())
        return [row for row in store.values() if row.get("symbol") == symbol]

    def reset(self, table: str, symbol: str | None = None) -> None:
        """Forget a slice: drop its rows; its deltas are dropped again until a new partial."""
        self._last_table = None
        if table in self._gates:
            self._gates[table].forget(symbol)
        closed = self._closed if table == _ORDER else None
        if symbol is None:
            self.data.pop(table, None)
            self._books.pop(table, None)
            self._kinds.pop(table, None)
            if closed is not None:
                closed.clear()
        elif table in BOOK_TABLES:
            books = self._books.get(table)
            if books is not None:
                books.reset(symbol)
        elif table in self.data:
            store = self.data[table]
            doomed = [k for k, row in store.items() if row.get("symbol") == symbol]
            for key in doomed:
                del store[key]
            if closed is not None:
                closed.forget(doomed)
