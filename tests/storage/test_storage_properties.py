"""Property tests: ``Storage`` agrees with a deliberately naive model of BitMEX table semantics.

The model keeps plain dicts and lists, decides gating by scanning an event log, and sorts books
from scratch; it shares no code with the implementation.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bitmex_trio_websocket import ApplyResult, RemoteProtocolError, Storage

SYMBOLS = ["XBTUSD", "ETHUSD", "SOLUSD"]
BOOK = "orderBookL2"
KEYS: dict[str, list[str]] = {
    BOOK: ["symbol", "id", "side"],
    "instrument": ["symbol"],
    "funding": ["timestamp", "symbol"],
    "trade": [],
}
TRADE_CAP = 6
Row = dict[str, Any]


class Model:
    def __init__(self) -> None:
        self.events: dict[str, list[tuple[str, str | None]]] = {t: [] for t in KEYS}
        self.keyed: dict[str, dict[tuple[Any, ...], Row]] = {"instrument": {}, "funding": {}}
        self.trades: list[Row] = []
        self.book: dict[tuple[str, str, int], Row] = {}  # (symbol, side, id) -> row

    def accepts(self, table: str, symbol: Any) -> bool:
        # The most recent partial or reset covering this symbol decides.
        for kind, covered in reversed(self.events[table]):
            if covered is None or covered == symbol:
                return kind == "partial"
        return False

    def whole(self, table: str) -> bool:
        return all(self.accepts(table, s) for s in [*SYMBOLS, "never-seen"])

    def forget(self, table: str, symbol: str | None) -> None:
        def gone(row: Row) -> bool:
            return symbol is None or row.get("symbol") == symbol

        if table == BOOK:
            self.book = {k: r for k, r in self.book.items() if not gone(r)}
        elif table == "trade":
            self.trades = [r for r in self.trades if not gone(r)]
        else:
            self.keyed[table] = {k: r for k, r in self.keyed[table].items() if not gone(r)}

    def reset(self, table: str, symbol: str | None) -> None:
        self.events[table].append(("reset", symbol))
        self.forget(table, symbol)

    def key(self, table: str, row: Row) -> tuple[Any, ...]:
        if table == BOOK:
            return (row["symbol"], row["side"], row["id"])
        return tuple(row[k] for k in KEYS[table])

    def partial(self, table: str, symbol: str | None, rows: list[Row]) -> Counter[str]:
        self.events[table].append(("partial", symbol))
        self.forget(table, symbol)
        violations: Counter[str] = Counter()
        for row in rows:
            if table == "trade":
                self.trades.append(row)
                continue
            store = self.book if table == BOOK else self.keyed[table]
            if self.key(table, row) in store:
                violations["duplicate_insert"] += 1
            store[self.key(table, row)] = row
        self.trades = self.trades[-TRADE_CAP:]
        return violations

    def delta(
        self, table: str, action: str, rows: list[Row]
    ) -> tuple[int, Counter[str], list[Row]]:
        dropped, violations, changed = 0, Counter[str](), []
        for row in rows:
            if not self.accepts(table, row.get("symbol")):
                dropped += 1
                continue
            if table == "trade":
                self.trades.append(row)
                changed.append(row)
                continue
            store: dict[Any, Row] = self.book if table == BOOK else self.keyed[table]
            key = self.key(table, row)
            old = store.get(key)
            if action == "insert":
                if old is not None:
                    violations["duplicate_insert"] += 1
                store[key] = row
                changed.append(row)
            elif old is None:
                violations["unknown_key"] += 1
            elif action == "update":
                merged = dict(old)
                merged.update(row)
                store[key] = merged
                changed.append(merged)
            else:
                del store[key]
                changed.append(old)
        self.trades = self.trades[-TRADE_CAP:]
        return dropped, violations, changed

    def levels(self, symbol: str, side: str) -> list[tuple[float, int]]:
        rows = [r for (s, sd, _), r in self.book.items() if s == symbol and sd == side]
        rows.sort(key=lambda r: (-r["price"] if side == "Buy" else r["price"], r["id"]))
        return [(float(r["price"]), r["size"]) for r in rows]

    def crossed(self, symbol: str) -> bool:
        bids, asks = self.levels(symbol, "Buy"), self.levels(symbol, "Sell")
        return bool(bids and asks and bids[0][0] >= asks[0][0])


# -- strategies ------------------------------------------------------------------------------

symbols = st.sampled_from(SYMBOLS)
ACTIONS = ("partial", "insert", "update", "delete")


def book_row(action: str) -> st.SearchStrategy[Row]:
    full = action in ("partial", "insert")

    def make(symbol: str, side: str, level_id: int, ticks: int, size: int, flags: int) -> Row:
        row: Row = {"symbol": symbol, "id": level_id, "side": side}
        if full or flags & 1:  # legacy update/delete rows carry no price
            # Bids 90..101, asks 99..110: mostly apart, overlapping so books sometimes cross.
            row["price"] = (ticks if side == "Buy" else ticks + 18) / 2
        if action != "delete" and (full or flags & 2):
            row["size"] = size
        return row

    return st.builds(
        make,
        symbols,
        st.sampled_from(["Buy", "Sell"]),
        st.integers(0, 4),
        st.integers(180, 202),
        st.integers(1, 1000),
        st.integers(0, 3),
    )


STAMPS = st.sampled_from(["2024-05-06T04:00:00.000Z", "2024-05-06T12:00:00.000Z"])
ROWS: dict[tuple[str, str], st.SearchStrategy[Row]] = {
    **{(BOOK, action): book_row(action) for action in ACTIONS},
    **{
        ("instrument", action): st.fixed_dictionaries({"symbol": symbols, "v": st.integers(0, 9)})
        for action in ACTIONS
    },
    **{
        ("funding", action): st.fixed_dictionaries(
            {"timestamp": STAMPS, "symbol": symbols, "rate": st.integers(-5, 5)}
        )
        for action in ACTIONS
    },
    **{
        ("trade", action): st.fixed_dictionaries({"symbol": symbols, "n": st.integers(0, 10**6)})
        for action in ACTIONS
    },
}
PARTIAL_ROWS = {key: st.lists(rows, max_size=10) for key, rows in ROWS.items()}
DELTA_ROWS = {key: st.lists(rows, min_size=1, max_size=5) for key, rows in ROWS.items()}
ANY_TABLE = st.sampled_from([BOOK, BOOK, BOOK, *KEYS])  # books get most of the traffic
ANY_KIND = st.sampled_from(["partial", *["delta"] * 8, "reset", "bad"])
DELTA_ACTION = st.sampled_from(["insert", "update", "delete"])
SLICE = st.none() | symbols


@st.composite
def operations(
    draw: st.DrawFn, kind: str | None = None, table: str | None = None
) -> tuple[Any, ...]:
    table = table or draw(ANY_TABLE)
    kind = kind or draw(ANY_KIND)
    symbol = draw(SLICE)
    if kind == "reset":
        return ("reset", table, symbol)
    if kind == "partial":
        rows = draw(PARTIAL_ROWS[table, "partial"])
        if symbol is not None:
            rows = [{**row, "symbol": symbol} for row in rows]
        return ("partial", table, symbol, rows)
    action = "insert" if table == "trade" else draw(DELTA_ACTION)
    rows = draw(DELTA_ROWS[table, action])
    if symbol is not None:  # BitMEX deltas normally concern a single symbol
        rows = [{**row, "symbol": symbol} for row in rows]
    if kind == "bad":
        position = draw(st.integers(0, len(rows) - 1))
        how = draw(st.integers(0, 3))
        rows[position] = corrupt(table, rows[position], how)
        action = "update" if table == "trade" and how % 2 else action
        return ("bad", table, action, rows, how)
    return ("delta", table, action, rows)


def corrupt(table: str, row: Row, how: int) -> Any:
    if how == 0:
        return [row]
    if table == BOOK:
        return [{**row, "side": "Bid"}, {**row, "id": str(row["id"])}, {**row, "price": None}][
            how - 1
        ]
    if table == "trade":
        return {**row, "symbol": 5}
    keys = KEYS[table]  # only detectable once a partial told us the keys
    missing = {k: v for k, v in row.items() if k != keys[-1]}
    return [missing, {**row, keys[0]: None}, {**row, keys[-1]: float("nan")}][how - 1]


# -- the property --------------------------------------------------------------------------


def snapshot(storage: Storage) -> Any:
    return (
        copy.deepcopy(storage.data),
        copy.deepcopy(storage.keys),
        {s: (list(storage.book(s).bids), list(storage.book(s).asks)) for s in SYMBOLS},
        {(t, s): storage.has_partial(t, s) for t in KEYS for s in [None, *SYMBOLS]},
    )


def check(storage: Storage, model: Model) -> None:
    for table in KEYS:
        assert storage.has_partial(table) == model.whole(table)
        for symbol in SYMBOLS:
            assert storage.has_partial(table, symbol) == model.accepts(table, symbol)
    assert storage.rows("trade") == model.trades
    for table in ("instrument", "funding"):
        expected = dict(sorted(model.keyed[table].items()))
        assert list(storage.data.get(table, {}).items()) == list(expected.items())
        assert storage.rows(table) == list(expected.values())
    for symbol in SYMBOLS:
        book = storage.book(symbol)
        bids, asks = list(book.bids), list(book.asks)
        assert bids == model.levels(symbol, "Buy")
        assert asks == model.levels(symbol, "Sell")
        assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
        assert [p for p, _ in asks] == sorted(p for p, _ in asks)
        assert book.best_bid == (bids[0] if bids else None)
        assert book.best_ask == (asks[0] if asks else None)
        if not model.crossed(symbol) and bids and asks:
            assert bids[0][0] < asks[0][0]
        stored = storage.data.get(BOOK, {}).get(symbol, {"Buy": {}, "Sell": {}})
        for side in ("Buy", "Sell"):
            assert stored[side] == {
                i: row for (s, sd, i), row in model.book.items() if s == symbol and sd == side
            }
    # Books as BitMEX lays them out: asks then bids, each by descending price.
    rows = storage.rows(BOOK, "XBTUSD")
    assert [(float(r["price"]), r["size"]) for r in rows] == [
        *reversed(model.levels("XBTUSD", "Sell")),
        *model.levels("XBTUSD", "Buy"),
    ]


def check_result(
    result: ApplyResult,
    table: str,
    action: str,
    dropped: int,
    violations: Counter[str],
    changed: list[Row],
    model: Model,
) -> None:
    assert (result.table, result.action, result.dropped) == (table, action, dropped)
    kinds = Counter(v.kind for v in result.violations if v.kind != "crossed_book")
    assert kinds == violations
    groups: dict[Any, list[Row]] = {}  # one Change per symbol, in first-seen order
    for row in changed:
        groups.setdefault(row.get("symbol"), []).append(row)
    assert [(c.symbol, list(c.rows)) for c in result.changes] == list(groups.items())
    symbols_seen = [c.symbol for c in result.changes]
    assert len(symbols_seen) == len(set(symbols_seen))
    for change in result.changes:
        assert (change.table, change.action) == (table, action)
        assert change.rows and all(row.get("symbol") == change.symbol for row in change.rows)
    if table == BOOK:
        crossed = {v.symbol for v in result.violations if v.kind == "crossed_book"}
        assert crossed == {s for s in symbols_seen if model.crossed(s)}  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    # Start with a partial of every table, so that most deltas are accepted.
    st.tuples(*[operations("partial", table) for table in KEYS]).map(list),
    st.lists(operations(), min_size=5, max_size=40),
)
def test_storage_agrees_with_naive_model(
    start: list[tuple[Any, ...]], ops: list[tuple[Any, ...]]
) -> None:
    storage = Storage(table_limits={"trade": TRADE_CAP})
    model = Model()
    handed_out: list[tuple[Row, Row]] = []  # (row given to the caller, its value back then)
    for op in start + ops:
        if op[0] == "reset":
            _, table, symbol = op
            storage.reset(table, symbol)
            model.reset(table, symbol)
        elif op[0] == "partial":
            _, table, symbol, rows = op
            message = {
                "table": table,
                "action": "partial",
                "keys": KEYS[table],
                "filter": {} if symbol is None else {"symbol": symbol},
                "data": copy.deepcopy(rows),
            }
            result = storage.apply(message)
            handed_out += [(r, copy.deepcopy(r)) for c in result.changes for r in c.rows]
            violations = model.partial(table, symbol, copy.deepcopy(rows))
            expected: dict[Any, list[Row]] = {}
            for row in rows:
                expected.setdefault(row.get("symbol"), []).append(row)
            assert [(c.symbol, list(c.rows)) for c in result.changes] == (
                list(expected.items()) or [(symbol, [])]
            )
            assert (
                Counter(v.kind for v in result.violations if v.kind != "crossed_book") == violations
            )
        elif op[0] == "bad":
            _, table, action, rows, how = op
            keys_known = any(kind == "partial" for kind, _ in model.events[table])
            if table in ("instrument", "funding") and how and not keys_known:
                continue  # key fields cannot be checked before a partial names them
            before = snapshot(storage)
            try:
                storage.apply({"table": table, "action": action, "data": rows})
            except RemoteProtocolError:
                pass
            else:
                raise AssertionError(f"accepted a malformed message: {rows!r}")
            assert snapshot(storage) == before
        else:
            _, table, action, rows = op
            result = storage.apply({"table": table, "action": action, "data": copy.deepcopy(rows)})
            handed_out += [(r, copy.deepcopy(r)) for c in result.changes for r in c.rows]
            dropped, violations, changed = model.delta(table, action, copy.deepcopy(rows))
            check_result(result, table, action, dropped, violations, changed, model)
        check(storage, model)
        # Copy-on-write: no row handed out has changed since.
        assert all(row == then for row, then in handed_out)
