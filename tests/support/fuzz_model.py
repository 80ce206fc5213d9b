"""The fuzzers' oracle: ``RefModel``, an independent model of ``Storage``, and ``canon``.

Theory of operation: ``RefModel`` keeps what ``Storage`` promises in plain dicts and lists
(gating decided by scanning a log of partials and resets, books sorted from scratch), and is fed
only messages the store accepted: a message it cannot apply is malformed (``ModelError``), so the
store should have refused it. ``differences`` compares the two. ``canon`` takes a deep,
order-preserving image of any object, private state included, to prove that a refused message
changed nothing at all.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Final

from bitmex_trio_websocket import Storage
from bitmex_trio_websocket._protocol import ACTIONS
from bitmex_trio_websocket._storage import BOOK_TABLES

from .fuzz_findings import short
from .fuzz_messages import BOOK10, NEW_SYMBOL, SYMBOLS, Row

__all__ = ["Ident", "ModelError", "RefModel", "canon"]


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
    slots = getattr(t, "__slots__", None)
    if slots is not None and not hasattr(obj, "__dict__"):
        names = (slots,) if isinstance(slots, str) else slots
        return ("obj", t.__name__, tuple(canon(getattr(obj, n, None), depth + 1) for n in names))
    if hasattr(obj, "__dict__"):
        return ("obj", t.__name__, canon(vars(obj), depth + 1))
    return Ident(obj)


# --------------------------------------------------------------------------- reference model


class ModelError(Exception):
    """The model cannot apply a message the store accepted (it is malformed)."""


def _finite_number(value: Any) -> bool:
    return type(value) in (int, float) and -sys.float_info.max <= value <= sys.float_info.max


def _key_value_ok(value: Any) -> bool:
    # Any integer is a fine key (Python compares them exactly); floats must be finite.
    return type(value) in (str, int) or (type(value) is float and math.isfinite(value))


class RefModel:
    """An independent model of ``Storage``'s documented semantics, in plain dicts and lists.

    Gating is decided by scanning the log of partials and resets; books are sorted from scratch.
    """

    def __init__(self, max_table_len: int, table_limits: Mapping[str, int]) -> None:
        self.max_table_len = max_table_len
        self.table_limits = dict(table_limits)
        self.keys: dict[str, list[str]] = {}
        self.log: defaultdict[str, list[tuple[str, str | None]]] = defaultdict(list)
        self.keyed: defaultdict[str, dict[tuple[Any, ...], Row]] = defaultdict(dict)
        self.keyless: defaultdict[str, list[Row]] = defaultdict(list)

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
    def _key(row: Row, keys: list[str]) -> tuple[Any, ...]:
        if any(k not in row for k in keys):
            raise ModelError("row lacks a key field")
        key = tuple(row[k] for k in keys)
        if not all(_key_value_ok(v) for v in key):
            raise ModelError("key field is not a string or finite number")
        return key

    # messages ----------------------------------------------------------------

    def apply(self, message: Mapping[str, Any]) -> int:
        """Apply an accepted message; the number of rows dropped (no partial for them)."""
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
            self._partial(table, message, rows)
            return 0
        book = table in BOOK_TABLES
        keys = self.keys.get(table)
        if not book and keys is None:
            return len(rows)
        if not book and keys == [] and action != "insert":
            raise ModelError(f"{action} on a keyless table")
        for row in rows:  # the whole message is validated, gated or not
            if book:
                self._level(row, action == "insert")
            elif keys:
                self._key(row, keys)
                if table == BOOK10 and action != "delete":
                    self._book10(row)
        dropped = 0
        for row in rows:
            symbol = row.get("symbol")
            if symbol is None and keys and action != "insert" and not book:
                # Storage files a symbol-less update/delete under the row it names.
                held = self.keyed[table].get(self._key(row, keys))
                if held is not None:
                    symbol = held.get("symbol")
            if not self.accepts(table, symbol):
                dropped += 1
                continue
            if book:
                self._book_delta(table, action, row)
            elif keys == []:
                self._append(table, [row])
            else:
                assert keys is not None
                self._keyed_delta(table, action, row, keys)
        return dropped

    def _partial(self, table: str, message: Mapping[str, Any], rows: list[Row]) -> None:
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
        if not book and table in self.keys and self.keys[table] != keys:
            self.reset(table, None)  # re-keyed: the table starts afresh
        self.keys[table] = list(keys)
        self.log[table].append(("partial", symbol))
        self._forget(table, symbol)
        if book:
            for row in rows:
                self.keyed[table][self._level(row, True)] = row
        elif keys:
            for row in rows:
                self.keyed[table][self._key(row, keys)] = row
        else:
            self._append(table, rows)

    def _book_delta(self, table: str, action: str, row: Row) -> None:
        key = self._level(row, action == "insert")
        store = self.keyed[table]
        old = store.get(key)
        if action == "insert":
            store[key] = row
        elif old is None:
            pass  # reported as a violation, nothing to apply
        elif action == "update":
            merged = dict(old)
            merged.update(row)
            store[key] = merged
        else:
            del store[key]

    def _keyed_delta(self, table: str, action: str, row: Row, keys: list[str]) -> None:
        key = self._key(row, keys)
        book10 = table == BOOK10
        if book10 and action != "delete":
            self._book10(row)
        store = self.keyed[table]
        if action == "insert" or (action == "update" and book10):
            store[key] = row
        elif action == "update":
            if key in store:
                merged = dict(store[key])
                merged.update(row)
                store[key] = merged
        else:
            store.pop(key, None)

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
                symbols = set()
            else:
                try:
                    expected = sorted(self.keyed[table].items(), key=lambda kv: kv[0])
                except TypeError:
                    problems.append(f"{table}: mixed key kinds accepted")
                    continue
                if list(store.items()) != expected:
                    problems.append(f"{table}: keyed rows differ")
                symbols = {r.get("symbol") for r in self.keyed[table].values()}
            if table in BOOK_TABLES or table == BOOK10:
                for symbol in sorted(s for s in symbols if isinstance(s, str)):
                    book = storage.book(symbol, table)
                    if list(book.bids) != self.levels(table, symbol, "Buy"):
                        problems.append(f"{table}:{symbol} bids differ")
                    if list(book.asks) != self.levels(table, symbol, "Sell"):
                        problems.append(f"{table}:{symbol} asks differ")
        return problems
