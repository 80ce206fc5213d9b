"""The fuzzers' oracle: ``RefModel``, an independent model of ``Storage``, and ``canon``.

Theory of operation: ``RefModel`` keeps what ``Storage`` promises in plain dicts and lists, written
from the documented rules and sharing no code with the store: gating is decided by scanning a log
of partials and resets, books are sorted from scratch, close times are a dict scanned whole. It is
fed only messages the store accepted; a message it cannot apply is malformed (``ModelError``), so
the store should have refused it. For each message it predicts the whole ``ApplyResult``
(``Expected``: rows dropped, the rows of every ``Change`` per symbol, every ``Violation``), and
``differences`` compares every readable part of the store with it afterwards.

The rules it models (every rule ``Storage`` has):

* envelope and row validation; order-book rows (string symbol, integer id, Buy/Sell, finite price
  and size, required in partials and inserts); ``orderBook10`` levels; keys of strings or finite
  numbers, one kind per key position among the stored rows and the message;
* gating: deltas of a slice without a partial are dropped; a symbol-less update or delete takes
  the symbol of the stored row it names; a reset carves a symbol out of a whole-table slice;
* partials replace exactly their slice (a whole-table one, or new keys, the whole table);
* keyed deltas: insert (a duplicate is reported, then replaces), update merges the fields sent
  (``orderBook10`` replaces the row), delete; an unknown key is reported and changes nothing;
* keyless tables are ring buffers of ``max_table_len`` (or ``table_limits``) rows;
* a book whose best bid is at or above its best ask after a message is reported for every symbol
  the message changed (state applied);
* closed orders leave the ``order`` table ``closed_order_ttl`` seconds of server time after they
  closed, as ``_storage._orders`` documents, without a ``Change``;
* ``rows()`` order: books as asks then bids, each by descending price; other tables in key order.

``canon`` takes a deep, order-preserving image of any object, private state included, to prove
that a refused message changed nothing at all.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bitmex_trio_websocket import Storage
from bitmex_trio_websocket._protocol import ACTIONS
from bitmex_trio_websocket._storage import BOOK_TABLES

from .fuzz_findings import short
from .fuzz_messages import BOOK10, NEW_SYMBOL, SYMBOLS, Row

__all__ = ["Expected", "Ident", "ModelError", "RefModel", "canon"]


# --------------------------------------------------------------------------- state snapshots


class Ident:
    """Compares by identity: for values below the depth a snapshot expands."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ident) and other.obj is self.obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __repr__(self) -> str:
        return f"Ident({short(self.obj)})"


_SCALARS: Final = (int, str, bool, type(None), bytes)
_FLAT: Final = frozenset({int, str, bool, type(None), bytes, float})


def canon(obj: Any, depth: int = 0) -> Any:
    """A hashable, order-preserving deep image of ``obj`` (identity beyond depth 9).

    Used to prove that a rejected message changed nothing at all, private state included."""
    if depth > 9:
        return Ident(obj)
    t = type(obj)
    if t in _SCALARS:
        return obj
    if t is float:
        return ("nan",) if obj != obj else ("float", obj, math.copysign(1.0, obj))
    if isinstance(obj, dict):
        # The common case, a row of scalars, in C: tuples compare their items by identity
        # first, so even a NaN that stayed the same object compares equal.
        if set(map(type, obj.values())) <= _FLAT and set(map(type, obj)) <= _FLAT:
            return ("dict", t.__name__, tuple(obj.items()))
        return (
            "dict",
            t.__name__,
            tuple((canon(k, depth + 1), canon(v, depth + 1)) for k, v in obj.items()),
        )
    if isinstance(obj, list | tuple):
        if set(map(type, obj)) <= _FLAT:
            return (t.__name__, tuple(obj))
        return (t.__name__, tuple(canon(v, depth + 1) for v in obj))
    if isinstance(obj, set | frozenset):
        return ("set", frozenset(canon(v, depth + 1) for v in obj))
    # A class of the compiled store core (mypyc) lists its attributes in __mypyc_attrs__.
    slots = getattr(t, "__slots__", None) or getattr(t, "__mypyc_attrs__", None)
    if slots is not None and not hasattr(obj, "__dict__"):
        names = (slots,) if isinstance(slots, str) else slots
        return ("obj", t.__name__, tuple(canon(getattr(obj, n, None), depth + 1) for n in names))
    if hasattr(obj, "__dict__"):
        return ("obj", t.__name__, canon(vars(obj), depth + 1))
    return Ident(obj)


def state_of(obj: Any) -> dict[str, Any]:
    """Every attribute of ``obj`` (a ``Storage``), private ones included, whichever core built
    it (a compiled class has no ``__dict__``: it lists its attributes in ``__mypyc_attrs__``)."""
    names = getattr(type(obj), "__mypyc_attrs__", None)
    if names is None:
        return dict(vars(obj))
    return {name: getattr(obj, name) for name in names if hasattr(obj, name)}


# --------------------------------------------------------------------------- reference model

ORDER: Final = "order"
CLOSED: Final = frozenset({"Filled", "Canceled", "Rejected"})
NEVER: Final = -math.inf
Key = tuple[Any, ...]


class ModelError(Exception):
    """The model cannot apply a message the store accepted (it is malformed)."""


def _finite_number(value: Any) -> bool:
    return type(value) in (int, float) and -sys.float_info.max <= value <= sys.float_info.max


def _key_value_ok(value: Any) -> bool:
    # Any integer is a fine key (Python compares them exactly); floats must be finite.
    return type(value) in (str, int) or (type(value) is float and math.isfinite(value))


def _server_time(stamp: Any) -> float | None:
    """Epoch seconds of a row's timestamp (the documented parser), ``None`` if unusable."""
    try:
        return Storage.parse_timestamp(stamp).timestamp()
    except ValueError:
        return None


@dataclass
class Expected:
    """What the model says one accepted message did (an ``ApplyResult`` in plain data)."""

    dropped: int = 0
    changes: dict[Any, list[Row]] = field(default_factory=dict)  # symbol -> rows, in order
    violations: list[tuple[str, Any, Any, str]] = field(default_factory=list)

    def change(self, symbol: Any, row: Row) -> None:
        self.changes.setdefault(symbol, []).append(row)

    def violation(self, kind: str, symbol: Any, key: Any, detail: str) -> None:
        self.violations.append((kind, symbol, key, detail))


class RefModel:
    """An independent model of ``Storage``'s documented semantics, in plain dicts and lists.

    Gating is decided by scanning the log of partials and resets; books are sorted from scratch.
    """

    def __init__(
        self,
        max_table_len: int,
        table_limits: Mapping[str, int],
        closed_order_ttl: float | None = 60.0,
    ) -> None:
        self.max_table_len = max_table_len
        self.table_limits = dict(table_limits)
        self.closed_order_ttl = closed_order_ttl
        self.keys: dict[str, list[str]] = {}
        self.log: defaultdict[str, list[tuple[str, str | None]]] = defaultdict(list)
        self.keyed: defaultdict[str, dict[Key, Row]] = defaultdict(dict)
        self.keyless: defaultdict[str, list[Row]] = defaultdict(list)
        self.order_time = NEVER  # the newest order row timestamp applied
        self.closed_at: dict[Key, float | None] = {}  # closed order -> close time (None: undated)

    # gating ------------------------------------------------------------------

    def accepts(self, table: str, symbol: Any) -> bool:
        for kind, covered in reversed(self.log[table]):
            if covered is None or covered == symbol:
                return kind == "partial"
        return False

    def whole(self, table: str) -> bool:
        """``has_partial(table)``: the whole table is accepted, nothing carved out."""
        events = self.log[table]
        last = max((i for i, (_, c) in enumerate(events) if c is None), default=None)
        if last is None or events[last][0] != "partial":
            return False
        excluded: set[str | None] = set()
        for kind, covered in events[last + 1 :]:
            if kind == "reset":
                excluded.add(covered)
            else:
                excluded.discard(covered)
        return not excluded

    # structure ---------------------------------------------------------------

    def _forget(self, table: str, symbol: str | None) -> None:
        def keep(row: Row) -> bool:
            return symbol is not None and row.get("symbol") != symbol

        self.keyed[table] = {k: r for k, r in self.keyed[table].items() if keep(r)}
        self.keyless[table] = [r for r in self.keyless[table] if keep(r)]
        if table == ORDER:  # a close time belongs to a row in the table
            orders = self.keyed[ORDER]
            self.closed_at = {k: at for k, at in self.closed_at.items() if k in orders}

    def reset(self, table: str, symbol: str | None) -> None:
        self.log[table].append(("reset", symbol))
        self._forget(table, symbol)

    def _append(self, table: str, rows: list[Row]) -> None:
        log = self.keyless[table]
        log.extend(rows)
        cap = self.table_limits.get(table, self.max_table_len)
        del log[: max(0, len(log) - cap)]

    @staticmethod
    def _row(row: Any) -> Row:
        if type(row) is not dict:
            raise ModelError("row is not an object")
        symbol = row.get("symbol")
        if symbol is not None and type(symbol) is not str:
            raise ModelError("row symbol is not a string")
        return row

    @staticmethod
    def _level(row: Row, full: bool) -> tuple[str, str, int]:
        symbol, side, level_id = row.get("symbol"), row.get("side"), row.get("id")
        if type(symbol) is not str or type(level_id) is not int or side not in ("Buy", "Sell"):
            raise ModelError("bad order book row key")
        for name in ("price", "size"):
            if (full or name in row) and not _finite_number(row.get(name)):
                raise ModelError(f"bad order book {name}")
        return (symbol, side, level_id)

    @staticmethod
    def _book10(row: Row) -> None:
        for side in ("bids", "asks"):
            levels = row.get(side, [])
            if type(levels) is not list:
                raise ModelError("orderBook10 levels")
            for level in levels:
                if type(level) is not list or len(level) != 2:
                    raise ModelError("orderBook10 level")
                if not (_finite_number(level[0]) and _finite_number(level[1])):
                    raise ModelError("orderBook10 level numbers")

    @staticmethod
    def _key(row: Row, keys: list[str]) -> Key:
        if any(k not in row for k in keys):
            raise ModelError("row lacks a key field")
        key = tuple(row[k] for k in keys)
        if not all(_key_value_ok(v) for v in key):
            raise ModelError("key field is not a string or finite number")
        return key

    @staticmethod
    def _one_kind_per_position(keys: list[str], rows: Iterable[Row]) -> None:
        """Stored keys must stay comparable: a key position is all strings or all numbers."""
        kinds: list[set[bool]] = [set() for _ in keys]
        for row in rows:
            for i, name in enumerate(keys):
                kinds[i].add(type(row[name]) is str)
        if any(len(kind) > 1 for kind in kinds):
            raise ModelError("key field mixes strings and numbers")

    # messages ----------------------------------------------------------------

    def apply(self, message: Mapping[str, Any]) -> Expected:
        """Apply an accepted message; what its ``ApplyResult`` should say."""
        table, action, data = message["table"], message["action"], message["data"]
        if (
            type(table) is not str
            or not isinstance(action, str)
            or action not in ACTIONS
            or type(data) is not list
        ):
            raise ModelError("bad envelope")
        rows = [self._row(row) for row in data]
        if action == "partial":
            out = self._partial(table, message, rows)
        else:
            out = self._delta(table, action, rows)
        keys = self.keys.get(table)
        if table == ORDER and keys and self.closed_order_ttl is not None:
            self._closed_orders(action, keys, out, self.closed_order_ttl)
        return out

    def _delta(self, table: str, action: str, rows: list[Row]) -> Expected:
        out = Expected()
        book = table in BOOK_TABLES
        keys = self.keys.get(table)
        if not book and keys is None:
            out.dropped = len(rows)
            return out
        if not book and keys == [] and action != "insert":
            raise ModelError(f"{action} on a keyless table")
        for row in rows:  # the whole message is validated, gated or not
            if book:
                self._level(row, action == "insert")
            elif keys:
                if "symbol" in row and row["symbol"] is None:
                    raise ModelError("null symbol in a keyed table's delta row")
                self._key(row, keys)
                if table == BOOK10 and action != "delete":
                    self._book10(row)
        if keys and not book:
            self._one_kind_per_position(keys, [*self.keyed[table].values(), *rows])
        for row in rows:
            symbol = row.get("symbol")
            if symbol is None and keys and action != "insert" and not book:
                # A symbol-less update/delete belongs to the stored row it names.
                held = self.keyed[table].get(self._key(row, keys))
                if held is not None:
                    symbol = held.get("symbol")
            if not self.accepts(table, symbol):
                out.dropped += 1
            elif book:
                self._book_delta(table, action, row, out)
            elif keys == []:
                self._append(table, [row])
                out.change(symbol, row)
            else:
                assert keys is not None
                self._keyed_delta(table, action, row, keys, symbol, out)
        if book or table == BOOK10:
            for symbol in out.changes:
                self._crossed(table, symbol, out)
        return out

    def _partial(self, table: str, message: Mapping[str, Any], rows: list[Row]) -> Expected:
        keys = message.get("keys")
        if type(keys) is not list or any(type(k) is not str for k in keys):
            raise ModelError("partial keys")
        filt = message.get("filter") or {}
        if not isinstance(filt, Mapping):
            raise ModelError("partial filter")
        symbol = filt.get("symbol")
        if symbol is not None and type(symbol) is not str:
            raise ModelError("partial filter symbol")
        if symbol is not None and any(row.get("symbol") != symbol for row in rows):
            raise ModelError("row outside the partial's slice")
        book = table in BOOK_TABLES
        for row in rows:
            if book:
                self._level(row, True)
            elif keys:
                self._key(row, keys)
                if table == BOOK10:
                    self._book10(row)
        rekeyed = not book and table in self.keys and self.keys[table] != keys
        if keys and not book:
            staying = [] if symbol is None or rekeyed else self.keyed[table].values()
            kept = [r for r in staying if r.get("symbol") != symbol]
            self._one_kind_per_position(keys, [*kept, *rows])
        if rekeyed:
            self.reset(table, None)  # re-keyed: the table starts afresh
        self.keys[table] = list(keys)
        self.log[table].append(("partial", symbol))
        self._forget(table, symbol)
        out = Expected()
        for row in rows:
            out.change(row.get("symbol"), row)
        if not rows:
            out.changes[symbol] = []
        store = self.keyed[table]
        if book:
            for sym, group in out.changes.items():  # one symbol at a time, as the books are
                for row in group:
                    key = self._level(row, True)
                    if key in store:
                        out.violation("duplicate_insert", sym, (sym, key[2], key[1]), "partial")
                    store[key] = row
                if sym is not None:
                    self._crossed(table, sym, out)
        elif keys:
            for row in rows:
                key = self._key(row, keys)
                if key in store:
                    out.violation("duplicate_insert", row.get("symbol"), key, "partial")
                store[key] = row
            if table == BOOK10:
                for sym in out.changes:
                    self._crossed(table, sym, out)
        else:
            self._append(table, rows)
        return out

    def _book_delta(self, table: str, action: str, row: Row, out: Expected) -> None:
        key = self._level(row, action == "insert")
        symbol, side, level_id = key
        named = (symbol, level_id, side)
        store = self.keyed[table]
        old = store.get(key)
        if action == "insert":
            if old is not None:
                out.violation("duplicate_insert", symbol, named, "insert")
            store[key] = row
            out.change(symbol, row)
        elif old is None:
            out.violation("unknown_key", symbol, named, action)
        elif action == "update":
            merged = {**old, **row}
            store[key] = merged
            out.change(symbol, merged)
        else:
            del store[key]
            out.change(symbol, old)  # the stored row: it knows the price that left

    def _keyed_delta(
        self, table: str, action: str, row: Row, keys: list[str], symbol: Any, out: Expected
    ) -> None:
        key = self._key(row, keys)
        book10 = table == BOOK10
        store = self.keyed[table]
        if action == "insert" or (action == "update" and book10):
            if action == "insert" and not book10 and key in store:
                out.violation("duplicate_insert", symbol, key, "insert")
            store[key] = row  # orderBook10 rows always replace the whole row
            out.change(symbol, row)
        elif action == "update":
            if key not in store:
                out.violation("unknown_key", symbol, key, "update")
                return
            merged = {**store[key], **row}
            store[key] = merged
            out.change(symbol, merged)
        else:
            old = store.pop(key, None)
            if old is None:
                out.violation("unknown_key", symbol, key, "delete")
                return
            out.change(symbol, old)

    def _crossed(self, table: str, symbol: Any, out: Expected) -> None:
        bids, asks = self.levels(table, symbol, "Buy"), self.levels(table, symbol, "Sell")
        if bids and asks and bids[0][0] >= asks[0][0]:
            detail = f"best bid {bids[0][0]} >= best ask {asks[0][0]}"
            out.violation("crossed_book", symbol, None, detail)

    def _closed_orders(self, action: str, keys: list[str], out: Expected, ttl: float) -> None:
        """The closed-order eviction, as documented in ``_storage._orders``."""
        now = self.order_time
        closed_at = self.closed_at
        for rows in out.changes.values():
            for row in rows:
                key = tuple(row.get(k) for k in keys)
                if action == "delete":
                    closed_at.pop(key, None)
                    continue
                at = _server_time(row.get("timestamp"))
                if at is not None:
                    now = max(now, at)
                status = row.get("ordStatus")
                if type(status) is str and status in CLOSED:
                    closed_at.setdefault(key, at)  # the first close time stands
                else:
                    closed_at.pop(key, None)
        self.order_time = now
        if now == NEVER:
            return
        for key, at in list(closed_at.items()):
            if at is None:  # closed without a usable timestamp: as of now
                closed_at[key] = at = now
            if at <= now - ttl:
                del closed_at[key]
                del self.keyed[ORDER][key]

    # comparison --------------------------------------------------------------

    def levels(self, table: str, symbol: str, side: str) -> list[tuple[float, Any]]:
        if table == BOOK10:
            row = self.keyed[table].get((symbol,)) if self.keys.get(table) == ["symbol"] else None
            if not row:
                return []
            levels = [(float(p), s) for p, s in row.get("bids" if side == "Buy" else "asks", [])]
            levels.sort(key=lambda lv: -lv[0] if side == "Buy" else lv[0])
            return levels
        rows = [r for (s, sd, _), r in self.keyed[table].items() if s == symbol and sd == side]
        rows.sort(key=lambda r: ((-r["price"] if side == "Buy" else r["price"]), r["id"]))
        return [(float(r["price"]), r["size"]) for r in rows]

    def rows(self, table: str, symbol: str) -> list[Row]:
        """``Storage.rows(table, symbol)``: books as asks then bids, each by descending price
        (equal prices: asks by descending id, bids by ascending id); others in key order."""
        if table in BOOK_TABLES:
            levels = [(sd, r) for (s, sd, _), r in self.keyed[table].items() if s == symbol]
            asks = sorted(
                (r for sd, r in levels if sd == "Sell"), key=lambda r: (r["price"], r["id"])
            )
            bids = sorted(
                (r for sd, r in levels if sd == "Buy"), key=lambda r: (-r["price"], r["id"])
            )
            return [*reversed(asks), *bids]
        if self.keys.get(table) == [] or table not in self.keys:
            return [r for r in self.keyless[table] if r.get("symbol") == symbol]
        ordered = sorted(self.keyed[table].items(), key=lambda kv: kv[0])
        return [r for _, r in ordered if r.get("symbol") == symbol]

    def differences(self, storage: Storage) -> list[str]:
        """How ``storage`` differs from the model (empty when they agree)."""
        problems: list[str] = []
        tables = set(self.log) | set(storage.data) | set(self.keys)
        for table in sorted(tables, key=repr):
            if storage.keys.get(table) != self.keys.get(table):
                problems.append(f"{table}: keys {storage.keys.get(table)!r}")
            for symbol in (*SYMBOLS, NEW_SYMBOL):
                if storage.has_partial(table, symbol) != self.accepts(table, symbol):
                    problems.append(f"{table}: has_partial({symbol})")
            if storage.has_partial(table) != self.whole(table):
                problems.append(f"{table}: has_partial(whole)")
            store = storage.data.get(table) or {}
            if table in BOOK_TABLES:
                flat = {
                    (symbol, side, level_id): row
                    for symbol, sides in store.items()
                    for side, levels in sides.items()
                    for level_id, row in levels.items()
                }
                if flat != self.keyed[table]:
                    problems.append(
                        f"{table}: rows differ ({len(flat)} vs {len(self.keyed[table])})"
                    )
                symbols = {s for s, _, _ in self.keyed[table]} | set(store)
            elif self.keys.get(table) == [] or (table not in self.keys and not store):
                if list(store.values()) != self.keyless[table]:
                    problems.append(f"{table}: keyless rows differ")
                symbols = {r.get("symbol") for r in self.keyless[table]}
            else:
                try:
                    expected = sorted(self.keyed[table].items(), key=lambda kv: kv[0])
                except TypeError:
                    problems.append(f"{table}: mixed key kinds accepted")
                    continue
                if list(store.items()) != expected:
                    problems.append(f"{table}: keyed rows differ")
                symbols = {r.get("symbol") for r in self.keyed[table].values()}
            for symbol in sorted(s for s in symbols if isinstance(s, str)):
                if storage.rows(table, symbol) != self.rows(table, symbol):
                    problems.append(f"{table}:{symbol} rows() differ")
                if table in BOOK_TABLES or table == BOOK10:
                    book = storage.book(symbol, table)
                    if list(book.bids) != self.levels(table, symbol, "Buy"):
                        problems.append(f"{table}:{symbol} bids differ")
                    if list(book.asks) != self.levels(table, symbol, "Sell"):
                        problems.append(f"{table}:{symbol} asks differ")
        return problems
