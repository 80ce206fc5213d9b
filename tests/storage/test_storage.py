"""Unit tests of the sans-IO table store (``bitmex_trio_websocket._storage``)."""

from __future__ import annotations

import copy
import datetime
import json
import math
from collections.abc import Mapping, MutableMapping
from typing import Any

import pytest
from sortedcontainers import SortedDict

from bitmex_trio_websocket import ApplyResult, Change, RemoteProtocolError, Storage, Violation
from bitmex_trio_websocket._storage import BOOK_TABLES

BOOK_KEYS = ["symbol", "id", "side"]
Row = dict[str, Any]


def partial(
    table: str, data: list[dict[str, Any]], keys: list[str], symbol: str | None = None
) -> dict[str, Any]:
    return {
        "table": table,
        "action": "partial",
        "keys": keys,
        "filter": {} if symbol is None else {"symbol": symbol},
        "data": data,
    }


def msg(table: str, action: str, *rows: dict[str, Any]) -> dict[str, Any]:
    return {"table": table, "action": action, "data": list(rows)}


def level(
    symbol: str, level_id: int, side: str, size: int | None = None, price: float | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {"symbol": symbol, "id": level_id, "side": side}
    if size is not None:
        row["size"] = size
    if price is not None:
        row["price"] = price
    return row


def book_partial(symbol: str, *levels: tuple[int, str, int, float]) -> dict[str, Any]:
    rows = [level(symbol, i, side, size, price) for i, side, size, price in levels]
    return partial("orderBookL2", rows, BOOK_KEYS, symbol)


def levels_of(storage: Storage, symbol: str, table: str = "orderBookL2") -> tuple[list[Any], ...]:
    book = storage.book(symbol, table)
    return list(book.bids), list(book.asks)


def state(storage: Storage) -> Any:
    """Everything observable about a store, deep-copied, for before/after comparisons."""
    books = {
        (table, symbol): levels_of(storage, symbol, table)
        for table in BOOK_TABLES
        for symbol in storage.data.get(table, {})
    }
    gates = {
        (table, symbol): storage.has_partial(table, symbol)
        for table in [*storage.data, "nosuch"]
        for symbol in (None, "XBTUSD", "ETHUSD", "SOLUSD")
    }
    return (
        copy.deepcopy(storage.data),
        copy.deepcopy(storage.keys),
        books,
        gates,
        copy.deepcopy(storage._kinds),
        storage._arrivals,
        {table: storage.rows(table) for table in storage.data},
    )


@pytest.fixture
def populated() -> Storage:
    """A store holding a book, a keyed table, a 2-key numeric table and a keyless table."""
    storage = Storage()
    storage.apply(
        book_partial("XBTUSD", (1, "Sell", 10, 101.0), (2, "Sell", 20, 102.0), (3, "Buy", 30, 99.0))
    )
    storage.apply(
        partial("instrument", [{"symbol": "XBTUSD", "lastPrice": 100.0}], ["symbol"], None)
    )
    storage.apply(
        partial("chat", [{"id": 5, "channelID": 1, "message": "hi"}], ["channelID", "id"])
    )
    storage.apply(partial("trade", [{"symbol": "XBTUSD", "size": 1}], [], "XBTUSD"))
    return storage


# -- malformed input: RemoteProtocolError and nothing changed -------------------------------

GOOD_LEVEL = {"symbol": "XBTUSD", "id": 3, "side": "Buy", "size": 5}


def deep(depth: int = 1000) -> Any:
    """A list nested as deep as orjson decodes (its limit is 1024): too deep for plain repr()."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


MALFORMED: list[Any] = [
    ["not", "a", "mapping"],
    "text",
    {"action": "insert", "data": []},
    {"table": 5, "action": "insert", "data": []},
    {"table": "trade", "action": "upsert", "data": []},
    {"table": "trade", "action": ["insert"], "data": []},
    {"table": "trade", "action": "insert"},
    {"table": "trade", "action": "insert", "data": {"symbol": "XBTUSD"}},
    {"table": "trade", "action": "insert", "data": ({"symbol": "XBTUSD"},)},
    msg("trade", "insert", {"symbol": "XBTUSD"}, ["XBTUSD"]),  # type: ignore[arg-type]
    msg("trade", "insert", {"symbol": 7}),
    msg("trade", "update", {"symbol": "XBTUSD", "size": 2}),
    msg("trade", "delete", {"symbol": "XBTUSD"}),
    msg("nosuch", "insert", "row"),  # type: ignore[arg-type]
    {"table": "x", "action": "partial", "data": []},  # no keys
    {"table": "x", "action": "partial", "keys": "symbol", "data": []},
    {"table": "x", "action": "partial", "keys": ["symbol", 1], "data": []},
    {"table": "x", "action": "partial", "keys": [], "filter": [], "data": []},
    {"table": "x", "action": "partial", "keys": [], "filter": {"symbol": 1}, "data": []},
    partial("trade", [{"symbol": "ETHUSD", "size": 1}], [], "XBTUSD"),  # outside its slice
    partial("trade", [{"size": 1}], [], "XBTUSD"),
    # keyed rows
    msg("instrument", "update", {"lastPrice": 1.0}),
    msg("instrument", "insert", {"symbol": "ETHUSD"}, {"symbol": None}),
    msg("chat", "insert", {"channelID": 1, "id": None}),
    msg("chat", "insert", {"channelID": 1, "id": True}),
    msg("chat", "insert", {"channelID": 1, "id": math.nan}),
    msg("chat", "insert", {"channelID": 1, "id": math.inf}),
    msg("chat", "insert", {"channelID": 1, "id": [6]}),
    msg("chat", "insert", {"channelID": 1, "id": 6}, {"channelID": 1, "id": "seven"}),
    msg("chat", "delete", {"channelID": "1", "id": 5}),
    partial("chat", [{"channelID": 1, "id": 1}, {"channelID": 2}], ["channelID", "id"]),
    # order book rows
    msg("orderBookL2", "update", GOOD_LEVEL, {**GOOD_LEVEL, "side": "Bid"}),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "side": None}),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "id": "3"}),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "id": True}),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "id": 3.0}),
    msg("orderBookL2", "update", {"id": 3, "side": "Buy", "size": 5}),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "size": math.nan}),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "size": None}),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "price": math.inf}),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "price": "99"}),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "price": None}),
    msg("orderBookL2", "delete", {"symbol": "XBTUSD", "side": "Buy"}),
    msg("orderBookL2", "insert", level("XBTUSD", 9, "Buy", 5)),  # insert without price
    msg("orderBookL2", "insert", level("XBTUSD", 9, "Buy", price=98.0)),  # without size
    msg("orderBookL2", "insert", level("XBTUSD", 9, "Buy", 5, 98.0), "row"),  # type: ignore[arg-type]
    msg(
        "orderBookL2_25",
        "delete",
        {"symbol": "XBTUSD", "id": 1, "side": "Sell", "price": -math.inf},
    ),
    book_partial("XBTUSD", (1, "Sell", 10, 101.0), (2, "Sell", 20, math.nan)),
    partial("orderBookL2", [level("XBTUSD", 1, "Sell", 10)], BOOK_KEYS, "XBTUSD"),
    partial("orderBookL2", [level("ETHUSD", 1, "Sell", 10, 1.0)], BOOK_KEYS, "XBTUSD"),
    # orderBook10
    partial("orderBook10", [{"symbol": "XBTUSD", "bids": [[1, 2, 3]]}], ["symbol"], "XBTUSD"),
    partial("orderBook10", [{"symbol": "XBTUSD", "asks": {"1": 2}}], ["symbol"], "XBTUSD"),
    partial("orderBook10", [{"symbol": "XBTUSD", "asks": [["1", 2]]}], ["symbol"], "XBTUSD"),
    partial("orderBook10", [{"symbol": "XBTUSD", "bids": [[1.0, math.nan]]}], ["symbol"], "XBTUSD"),
    partial("orderBook10", [{"symbol": "XBTUSD", "bids": [(1.0, 2)]}], ["symbol"], "XBTUSD"),
    partial("orderBook10", [{"bids": []}], ["symbol"]),
    # values that used to crash instead of being rejected
    msg("trade", "insert", deep()),
    {"table": "trade", "action": deep(), "data": []},
    msg("orderBookL2", "update", {**GOOD_LEVEL, "price": deep()}),
    msg("orderBookL2", "insert", level("XBTUSD", 9, "Buy", 5, 10**400)),
    msg("orderBookL2", "update", {**GOOD_LEVEL, "size": -(10**400)}),
    book_partial("XBTUSD", (1, "Sell", 10, 101.0), (9, "Buy", 1, 10**400)),
    partial("orderBook10", [{"symbol": "XBTUSD", "bids": [[10**400, 1]]}], ["symbol"], "XBTUSD"),
]


@pytest.mark.parametrize("message", MALFORMED)
def test_malformed_message_raises_and_changes_nothing(populated: Storage, message: Any) -> None:
    before = state(populated)
    with pytest.raises(RemoteProtocolError):
        populated.apply(message)
    assert state(populated) == before


def test_rejected_partial_after_valid_rows_keeps_old_slice(populated: Storage) -> None:
    good = [{"symbol": "XBTUSD", "lastPrice": float(i)} for i in range(50)]
    before = state(populated)
    bad = partial("instrument", [*good, {"lastPrice": 1.0}], ["symbol"])
    with pytest.raises(RemoteProtocolError):
        populated.apply(bad)
    assert state(populated) == before
    assert populated.rows("instrument") == [{"symbol": "XBTUSD", "lastPrice": 100.0}]


def test_orderbook10_update_with_bad_levels_is_rejected() -> None:
    storage = Storage()
    storage.apply(partial("orderBook10", [{"symbol": "XBTUSD", "bids": [[1, 2]]}], ["symbol"]))
    before = state(storage)
    with pytest.raises(RemoteProtocolError):
        storage.apply(msg("orderBook10", "update", {"symbol": "XBTUSD", "bids": [[1]]}))
    assert state(storage) == before


def test_integer_key_beyond_float_range_is_an_ordinary_key() -> None:
    storage = Storage()  # keys are compared exactly, never converted to float
    storage.apply(partial("chat", [{"id": 10**400}, {"id": 1}], ["id"]))
    assert list(storage.data["chat"]) == [(1,), (10**400,)]


def test_error_text_of_a_deep_value_is_bounded() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Storage().apply(msg("trade", "insert", deep()))
    assert info.value.frame is not None and info.value.frame.startswith("[[[")
    assert len(info.value.frame) <= RemoteProtocolError.FRAME_PREFIX


def test_error_carries_offending_text() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        Storage().apply(msg("orderBookL2", "update", {**GOOD_LEVEL, "side": "Bid"}))
    assert info.value.frame is not None and "Bid" in info.value.frame


def test_key_kind_is_fixed_per_table_until_the_table_is_replaced() -> None:
    storage = Storage()
    storage.apply(partial("chat", [], ["id"]))
    storage.apply(msg("chat", "insert", {"id": 1}))
    with pytest.raises(RemoteProtocolError):
        storage.apply(msg("chat", "insert", {"id": "two"}))
    storage.apply(msg("chat", "insert", {"id": 2.5}))  # int and float are one kind
    assert list(storage.data["chat"]) == [(1,), (2.5,)]
    storage.apply(partial("chat", [{"id": "a"}], ["id"]))  # a whole-table partial starts over
    assert list(storage.data["chat"]) == [("a",)]


def test_key_kind_seen_only_in_dropped_rows_does_not_bind() -> None:
    storage = Storage()
    storage.apply(partial("order", [], ["orderID"], "XBTUSD"))
    storage.apply(msg("order", "insert", {"orderID": 1, "symbol": "ETHUSD"}))  # dropped
    result = storage.apply(msg("order", "insert", {"orderID": "a", "symbol": "XBTUSD"}))
    assert result.dropped == 0
    assert list(storage.data["order"]) == [("a",)]


def test_storage_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        Storage(max_table_len=0)
    with pytest.raises(ValueError):
        Storage(table_limits={"trade": 0})


# -- gating ------------------------------------------------------------------------------


def test_deltas_before_partial_are_dropped_and_counted() -> None:
    storage = Storage()
    result = storage.apply(msg("orderBookL2", "insert", level("XBTUSD", 1, "Buy", 5, 9.0)))
    assert result == ApplyResult("orderBookL2", "insert", (), 1, ())
    result = storage.apply(msg("instrument", "update", {"symbol": "XBTUSD"}, {"symbol": "ETHUSD"}))
    assert (result.changes, result.dropped) == ((), 2)
    assert storage.data == {}
    assert not storage.has_partial("instrument", "XBTUSD")

    storage.apply(partial("trade", [], [], "XBTUSD"))
    result = storage.apply(
        msg("trade", "insert", {"symbol": "ETHUSD", "size": 1}, {"symbol": "XBTUSD", "size": 2})
    )
    assert result.dropped == 1
    assert result.changes == (
        Change("trade", "insert", "XBTUSD", ({"symbol": "XBTUSD", "size": 2},)),
    )
    assert storage.rows("trade") == [{"symbol": "XBTUSD", "size": 2}]


def test_per_symbol_partial_does_not_wipe_other_symbols() -> None:
    storage = Storage()
    storage.apply(book_partial("XBTUSD", (1, "Buy", 5, 10.0)))
    storage.apply(book_partial("ETHUSD", (1, "Buy", 7, 2.0)))
    storage.apply(partial("instrument", [{"symbol": "XBTUSD", "v": 1}], ["symbol"], "XBTUSD"))
    storage.apply(partial("instrument", [{"symbol": "ETHUSD", "v": 2}], ["symbol"], "ETHUSD"))
    storage.apply(partial("trade", [{"symbol": "XBTUSD", "n": 1}], [], "XBTUSD"))
    storage.apply(partial("trade", [{"symbol": "ETHUSD", "n": 2}], [], "ETHUSD"))

    storage.apply(book_partial("XBTUSD", (2, "Sell", 6, 11.0)))
    storage.apply(partial("instrument", [{"symbol": "XBTUSD", "v": 3}], ["symbol"], "XBTUSD"))
    storage.apply(partial("trade", [{"symbol": "XBTUSD", "n": 3}], [], "XBTUSD"))

    assert levels_of(storage, "XBTUSD") == ([], [(11.0, 6)])
    assert levels_of(storage, "ETHUSD") == ([(2.0, 7)], [])
    assert storage.data["orderBookL2"]["XBTUSD"] == {
        "Buy": {},
        "Sell": {2: level("XBTUSD", 2, "Sell", 6, 11.0)},
    }
    assert storage.rows("instrument") == [
        {"symbol": "ETHUSD", "v": 2},
        {"symbol": "XBTUSD", "v": 3},
    ]
    assert storage.rows("trade") == [{"symbol": "ETHUSD", "n": 2}, {"symbol": "XBTUSD", "n": 3}]


def test_whole_table_partial_replaces_everything() -> None:
    storage = Storage()
    storage.apply(partial("instrument", [{"symbol": "XBTUSD"}], ["symbol"], "XBTUSD"))
    storage.apply(partial("instrument", [{"symbol": "ETHUSD"}], ["symbol"], "ETHUSD"))
    result = storage.apply(partial("instrument", [{"symbol": "SOLUSD", "x": 1}], ["symbol"]))
    assert storage.rows("instrument") == [{"symbol": "SOLUSD", "x": 1}]
    assert result.changes == (
        Change("instrument", "partial", "SOLUSD", ({"symbol": "SOLUSD", "x": 1},)),
    )
    # The whole table is now covered, including symbols it had no rows for.
    assert storage.has_partial("instrument") and storage.has_partial("instrument", "DOGEUSD")
    result = storage.apply(msg("instrument", "insert", {"symbol": "DOGEUSD"}))
    assert (
        result.dropped == 0
        and storage.make_key("instrument", {"symbol": "DOGEUSD"}) in (storage.data["instrument"])
    )

    storage.apply(book_partial("XBTUSD", (1, "Buy", 5, 10.0)))
    storage.apply(partial("orderBookL2", [level("ETHUSD", 4, "Sell", 1, 3.0)], BOOK_KEYS))
    assert list(storage.data["orderBookL2"]) == ["ETHUSD"]
    assert levels_of(storage, "XBTUSD") == ([], [])
    storage.apply(msg("orderBookL2", "insert", level("ADAUSD", 1, "Buy", 2, 0.5)))
    assert levels_of(storage, "ADAUSD") == ([(0.5, 2)], [])


def test_partial_with_account_filter_covers_whole_table() -> None:
    storage = Storage()
    storage.apply({**partial("order", [], ["orderID"]), "filter": {"account": 22}})
    storage.apply(msg("order", "insert", {"orderID": "a", "symbol": "XBTZ20"}))
    assert storage.rows("order") == [{"orderID": "a", "symbol": "XBTZ20"}]
    storage.apply({**partial("position", [], ["account"]), "filter": {"account": 1, "symbol": "X"}})
    assert storage.has_partial("position", "X") and not storage.has_partial("position")


def test_empty_partial_initialises_slice() -> None:
    storage = Storage()
    result = storage.apply(partial("order", [], ["orderID"], "XBTUSD"))
    assert result == ApplyResult(
        "order", "partial", (Change("order", "partial", "XBTUSD", ()),), 0, ()
    )
    assert storage.has_partial("order", "XBTUSD") and not storage.has_partial("order")
    assert storage.keys["order"] == ["orderID"]
    result = storage.apply(partial("margin", [], ["account"]))
    assert result.changes == (Change("margin", "partial", None, ()),)
    assert storage.has_partial("margin") and storage.rows("margin") == []
    result = storage.apply(partial("orderBookL2", [], BOOK_KEYS, "XBTUSD"))
    assert result.changes == (Change("orderBookL2", "partial", "XBTUSD", ()),)
    assert storage.data["orderBookL2"] == {"XBTUSD": {"Buy": {}, "Sell": {}}}
    storage.apply(msg("orderBookL2", "insert", level("XBTUSD", 1, "Buy", 5, 10.0)))
    assert levels_of(storage, "XBTUSD") == ([(10.0, 5)], [])


def test_partial_changes_grouped_by_symbol_in_first_seen_order() -> None:
    rows: list[dict[str, Any]] = [{"symbol": "B", "n": 1}, {"symbol": "A", "n": 2}, {"n": 3}]
    rows.append({"symbol": "B", "n": 4})
    result = Storage().apply(partial("trade", rows, []))
    assert [(c.symbol, c.rows) for c in result.changes] == [
        ("B", (rows[0], rows[3])),
        ("A", (rows[1],)),
        (None, (rows[2],)),
    ]
    assert all(c.table == "trade" and c.action == "partial" for c in result.changes)


def test_reset_forgets_a_slice() -> None:
    storage = Storage()
    storage.apply(book_partial("XBTUSD", (1, "Buy", 5, 10.0)))
    storage.apply(book_partial("ETHUSD", (1, "Buy", 7, 2.0)))
    storage.reset("orderBookL2", "XBTUSD")
    assert not storage.has_partial("orderBookL2", "XBTUSD")
    assert levels_of(storage, "XBTUSD") == ([], [])
    result = storage.apply(msg("orderBookL2", "update", level("XBTUSD", 1, "Buy", 6)))
    assert result.dropped == 1
    assert storage.apply(msg("orderBookL2", "update", level("ETHUSD", 1, "Buy", 8))).dropped == 0
    assert levels_of(storage, "ETHUSD") == ([(2.0, 8)], [])
    storage.reset("orderBookL2")
    assert storage.data.get("orderBookL2") is None and not storage.has_partial(
        "orderBookL2", "ETHUSD"
    )
    assert storage.apply(msg("orderBookL2", "update", level("ETHUSD", 1, "Buy", 8))).dropped == 1

    storage.apply(partial("trade", [{"symbol": "XBTUSD"}, {"symbol": "ETHUSD"}], []))
    storage.reset("trade", "XBTUSD")  # out of a whole-table slice
    assert storage.rows("trade") == [{"symbol": "ETHUSD"}]
    assert not storage.has_partial("trade") and not storage.has_partial("trade", "XBTUSD")
    assert storage.has_partial("trade", "ETHUSD")
    result = storage.apply(msg("trade", "insert", {"symbol": "XBTUSD"}, {"symbol": "ETHUSD"}))
    assert result.dropped == 1
    storage.apply(partial("trade", [{"symbol": "XBTUSD", "n": 1}], [], "XBTUSD"))
    assert storage.has_partial("trade", "XBTUSD") and storage.has_partial("trade")
    storage.reset("never-seen")
    storage.reset("never-seen", "XBTUSD")


def test_partial_with_new_keys_starts_table_afresh() -> None:
    storage = Storage()
    storage.apply(partial("position", [{"account": 1, "symbol": "X"}], ["account"], "X"))
    storage.apply(partial("position", [{"account": 1, "symbol": "Y"}], ["account"], "Y"))
    row = {"account": 1, "symbol": "X", "strategy": "OneWay"}
    storage.apply(partial("position", [row], ["account", "symbol", "strategy"], "X"))
    assert storage.keys["position"] == ["account", "symbol", "strategy"]
    assert dict(storage.data["position"]) == {(1, "X", "OneWay"): row}
    assert not storage.has_partial("position", "Y")


# -- keyed tables --------------------------------------------------------------------------


def test_keyed_table_sorted_by_key_tuple() -> None:
    storage = Storage()
    storage.apply(partial("instrument", [{"symbol": "XBTUSD"}, {"symbol": "ADAUSD"}], ["symbol"]))
    assert isinstance(storage.data["instrument"], SortedDict)
    assert list(storage.data["instrument"]) == [("ADAUSD",), ("XBTUSD",)]
    assert storage.make_key("instrument", {"symbol": "XBTUSD", "x": 1}) == ("XBTUSD",)


def test_update_merges_only_sent_fields_copy_on_write() -> None:
    storage = Storage()
    original = {"symbol": "XBTUSD", "lastPrice": 1.0, "markPrice": 2.0}
    first = storage.apply(partial("instrument", [original], ["symbol"])).changes[0].rows[0]
    assert first is original  # ownership taken, no defensive copy
    second = storage.apply(msg("instrument", "update", {"symbol": "XBTUSD", "markPrice": 3.0}))
    merged = second.changes[0].rows[0]
    assert merged == {"symbol": "XBTUSD", "lastPrice": 1.0, "markPrice": 3.0}
    assert original == {"symbol": "XBTUSD", "lastPrice": 1.0, "markPrice": 2.0}
    assert storage.data["instrument"][("XBTUSD",)] is merged
    storage.apply(msg("instrument", "update", {"symbol": "XBTUSD", "lastPrice": 9.0}))
    assert merged == {"symbol": "XBTUSD", "lastPrice": 1.0, "markPrice": 3.0}
    deleted = storage.apply(msg("instrument", "delete", {"symbol": "XBTUSD"})).changes[0].rows
    assert deleted == ({"symbol": "XBTUSD", "lastPrice": 9.0, "markPrice": 3.0},)
    assert storage.rows("instrument") == []


def test_unknown_key_update_and_delete_are_violations_rest_applied() -> None:
    storage = Storage()
    storage.apply(partial("order", [{"orderID": "a", "symbol": "X", "q": 1}], ["orderID"]))
    result = storage.apply(
        msg("order", "update", {"orderID": "zz", "symbol": "X", "q": 5}, {"orderID": "a", "q": 2})
    )
    assert result.violations == (Violation("unknown_key", "order", "X", ("zz",), "update"),)
    # The symbol-less row is grouped under the symbol of the stored row it names.
    assert result.changes == (
        Change("order", "update", "X", ({"orderID": "a", "symbol": "X", "q": 2},)),
    )
    assert storage.rows("order") == [{"orderID": "a", "symbol": "X", "q": 2}]
    result = storage.apply(msg("order", "delete", {"orderID": "b", "symbol": "X"}))
    assert [v.kind for v in result.violations] == ["unknown_key"]
    assert result.changes == () and result.dropped == 0
    assert len(storage.rows("order")) == 1


def test_duplicate_insert_replaces_and_is_reported() -> None:
    storage = Storage()
    storage.apply(partial("order", [{"orderID": "a", "q": 1}], ["orderID"]))
    result = storage.apply(msg("order", "insert", {"orderID": "a", "q": 2}))
    assert result.violations == (Violation("duplicate_insert", "order", None, ("a",), "insert"),)
    assert storage.rows("order") == [{"orderID": "a", "q": 2}]
    result = storage.apply(
        partial("order", [{"orderID": "a", "q": 3}, {"orderID": "a", "q": 4}], ["orderID"])
    )
    assert [v.kind for v in result.violations] == ["duplicate_insert"]
    assert storage.rows("order") == [{"orderID": "a", "q": 4}]


def test_make_key_errors() -> None:
    storage = Storage()
    for table in BOOK_TABLES:
        with pytest.raises(ValueError, match="symbol/side/id"):
            storage.make_key(table, {"symbol": "XBTUSD", "id": 1, "side": "Buy"})
    with pytest.raises(ValueError):
        storage.make_key("instrument", {"symbol": "XBTUSD"})
    storage.apply(partial("trade", [], []))
    with pytest.raises(ValueError):
        storage.make_key("trade", {"symbol": "XBTUSD"})
    storage.apply(partial("funding", [], ["timestamp", "symbol"]))
    assert storage.make_key("funding", {"symbol": "X", "timestamp": "t"}) == ("t", "X")


# -- keyless tables ------------------------------------------------------------------------


def test_keyless_rows_never_collide_and_keep_arrival_order() -> None:
    storage = Storage()
    storage.apply(partial("trade", [], []))
    same = {"timestamp": "2021-07-22T22:36:08.120Z", "symbol": "XBTUSD", "side": "Sell", "size": 1}
    storage.apply(msg("trade", "insert", dict(same), dict(same)))
    storage.apply(msg("trade", "insert", {**same, "symbol": "ETHUSD"}))
    assert storage.rows("trade") == [same, same, {**same, "symbol": "ETHUSD"}]
    assert storage.rows("trade", "ETHUSD") == [{**same, "symbol": "ETHUSD"}]
    keys = list(storage.data["trade"])
    assert keys == sorted(keys) and len(set(keys)) == 3


def test_keyless_tables_are_bounded_oldest_first() -> None:
    storage = Storage(max_table_len=3, table_limits={"quote": 2})
    storage.apply(partial("trade", [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}], []))
    assert storage.rows("trade") == [{"n": 1}, {"n": 2}, {"n": 3}]
    result = storage.apply(msg("trade", "insert", {"n": 4}, {"n": 5}))
    assert [r["n"] for r in result.changes[0].rows] == [4, 5]
    assert storage.rows("trade") == [{"n": 3}, {"n": 4}, {"n": 5}]
    storage.apply(partial("quote", [], []))
    for n in range(5):
        storage.apply(msg("quote", "insert", {"n": n}))
    assert storage.rows("quote") == [{"n": 3}, {"n": 4}]
    assert Storage().max_table_len == 1000


def test_keyless_per_symbol_partial_replaces_only_that_symbol() -> None:
    storage = Storage()
    storage.apply(partial("trade", [{"symbol": "A", "n": 1}, {"symbol": "B", "n": 2}], []))
    storage.apply(msg("trade", "insert", {"symbol": "A", "n": 3}))
    storage.apply(partial("trade", [{"symbol": "A", "n": 4}], [], "A"))
    assert storage.rows("trade") == [{"symbol": "B", "n": 2}, {"symbol": "A", "n": 4}]


# -- order books ---------------------------------------------------------------------------


@pytest.fixture
def xbt() -> Storage:
    storage = Storage()
    storage.apply(
        book_partial(
            "XBTUSD",
            (8799000, "Sell", 10, 100.5),
            (8799050, "Sell", 20, 100.0),
            (8799100, "Buy", 30, 99.5),
            (8799150, "Buy", 40, 99.0),
        )
    )
    return storage


def test_book_shape_and_order(xbt: Storage) -> None:
    assert xbt.data["orderBookL2"]["XBTUSD"]["Buy"][8799100] == level(
        "XBTUSD", 8799100, "Buy", 30, 99.5
    )
    book = xbt.book("XBTUSD")
    assert (book.symbol, book.table) == ("XBTUSD", "orderBookL2")
    assert list(book.bids) == [(99.5, 30), (99.0, 40)]
    assert list(book.asks) == [(100.0, 20), (100.5, 10)]
    assert (book.best_bid, book.best_ask) == ((99.5, 30), (100.0, 20))
    assert xbt.rows("orderBookL2", "XBTUSD") == [
        level("XBTUSD", 8799000, "Sell", 10, 100.5),
        level("XBTUSD", 8799050, "Sell", 20, 100.0),
        level("XBTUSD", 8799100, "Buy", 30, 99.5),
        level("XBTUSD", 8799150, "Buy", 40, 99.0),
    ]


def test_book_ordered_by_price_never_by_id() -> None:
    storage = Storage()  # 2023+ ids are arbitrary: ascending ids with ascending prices
    storage.apply(
        book_partial(
            "X",
            (1, "Buy", 1, 10.0),
            (2, "Buy", 2, 11.0),
            (3, "Sell", 3, 13.0),
            (4, "Sell", 4, 12.0),
        )
    )
    assert levels_of(storage, "X") == ([(11.0, 2), (10.0, 1)], [(12.0, 4), (13.0, 3)])


def test_legacy_priceless_update_and_delete(xbt: Storage) -> None:
    result = xbt.apply(msg("orderBookL2", "update", level("XBTUSD", 8799100, "Buy", 35)))
    assert result.changes[0].rows == (level("XBTUSD", 8799100, "Buy", 35, 99.5),)
    assert list(xbt.book("XBTUSD").bids) == [(99.5, 35), (99.0, 40)]
    result = xbt.apply(msg("orderBookL2", "delete", level("XBTUSD", 8799050, "Sell")))
    assert result.changes == (
        Change("orderBookL2", "delete", "XBTUSD", (level("XBTUSD", 8799050, "Sell", 20, 100.0),)),
    )
    assert list(xbt.book("XBTUSD").asks) == [(100.5, 10)]
    assert 8799050 not in xbt.data["orderBookL2"]["XBTUSD"]["Sell"]


def test_size_change_keeps_place_price_change_moves_level(xbt: Storage) -> None:
    xbt.apply(msg("orderBookL2", "update", level("XBTUSD", 8799150, "Buy", 41, 99.0)))
    assert list(xbt.book("XBTUSD").bids) == [(99.5, 30), (99.0, 41)]
    xbt.apply(msg("orderBookL2", "update", level("XBTUSD", 8799150, "Buy", price=99.75)))
    assert list(xbt.book("XBTUSD").bids) == [(99.75, 41), (99.5, 30)]
    xbt.apply(msg("orderBookL2", "update", level("XBTUSD", 8799050, "Sell", price=101.0)))
    assert list(xbt.book("XBTUSD").asks) == [(100.5, 10), (101.0, 20)]
    # A later price-less delete removes the level at its moved price.
    xbt.apply(msg("orderBookL2", "delete", level("XBTUSD", 8799050, "Sell")))
    assert list(xbt.book("XBTUSD").asks) == [(100.5, 10)]
    assert xbt.rows("orderBookL2") == [
        level("XBTUSD", 8799000, "Sell", 10, 100.5),
        level("XBTUSD", 8799150, "Buy", 41, 99.75),
        level("XBTUSD", 8799100, "Buy", 30, 99.5),
    ]


def test_book_unknown_id_and_duplicate_insert(xbt: Storage) -> None:
    result = xbt.apply(
        msg(
            "orderBookL2",
            "update",
            level("XBTUSD", 1, "Buy", 5),
            level("XBTUSD", 8799000, "Buy", 5),  # the id exists, but on the other side
            level("XBTUSD", 8799000, "Sell", 11),
        )
    )
    assert [(v.kind, v.key) for v in result.violations] == [
        ("unknown_key", ("XBTUSD", 1, "Buy")),
        ("unknown_key", ("XBTUSD", 8799000, "Buy")),
    ]
    assert result.changes[0].rows == (level("XBTUSD", 8799000, "Sell", 11, 100.5),)
    result = xbt.apply(msg("orderBookL2", "delete", level("XBTUSD", 2, "Sell")))
    assert [v.kind for v in result.violations] == ["unknown_key"] and result.changes == ()
    result = xbt.apply(msg("orderBookL2", "insert", level("XBTUSD", 8799150, "Buy", 1, 98.0)))
    assert [(v.kind, v.key) for v in result.violations] == [
        ("duplicate_insert", ("XBTUSD", 8799150, "Buy"))
    ]
    assert list(xbt.book("XBTUSD").bids) == [(99.5, 30), (98.0, 1)]


def test_crossed_book_reported_state_applied(xbt: Storage) -> None:
    result = xbt.apply(msg("orderBookL2", "insert", level("XBTUSD", 7, "Buy", 1, 100.0)))
    assert result.violations == (
        Violation(
            "crossed_book", "orderBookL2", "XBTUSD", None, "best bid 100.0 >= best ask 100.0"
        ),
    )
    assert xbt.book("XBTUSD").best_bid == (100.0, 1)
    # Still crossed after an unrelated size change: reported again.
    result = xbt.apply(msg("orderBookL2", "update", level("XBTUSD", 8799150, "Buy", 2)))
    assert [v.kind for v in result.violations] == ["crossed_book"]
    result = xbt.apply(msg("orderBookL2", "delete", level("XBTUSD", 7, "Buy")))
    assert result.violations == ()
    result = xbt.apply(msg("orderBookL2", "update", level("XBTUSD", 8799150, "Buy", 3)))
    assert result.violations == ()
    result = xbt.apply(book_partial("ETHUSD", (1, "Buy", 1, 5.0), (2, "Sell", 1, 4.0)))
    assert [(v.kind, v.symbol) for v in result.violations] == [("crossed_book", "ETHUSD")]


def test_book_view_slicing_best_and_liveness(xbt: Storage) -> None:
    book = xbt.book("XBTUSD")
    bids = book.bids
    xbt.apply(
        msg(
            "orderBookL2",
            "insert",
            *[level("XBTUSD", 100 + i, "Buy", i + 1, 90.0 + i / 2) for i in range(10)],
        )
    )
    assert len(bids) == 12 and len(book.asks) == 2
    assert bids[0] == (99.5, 30) and bids[-1] == (90.0, 1)
    assert bids[:3] == [(99.5, 30), (99.0, 40), (94.5, 10)]
    assert isinstance(bids[:3], list) and bids[100:] == []
    assert bids[1:4:2] == [(99.0, 40), (94.0, 9)]
    assert [price for price, _ in bids] == sorted((price for price, _ in bids), reverse=True)
    assert list(reversed(bids)) == list(bids)[::-1] and next(reversed(book.asks)) == (100.5, 10)
    with pytest.raises(IndexError):
        bids[12]
    assert (99.0, 40) in bids and bids.index((99.0, 40)) == 1
    assert "BookSide" in repr(bids) and "XBTUSD" in repr(book)
    xbt.apply(msg("orderBookL2", "delete", level("XBTUSD", 8799100, "Buy")))
    assert book.best_bid == (99.0, 40) and bids[0] == (99.0, 40)


def test_book_view_for_unknown_symbol_is_empty_and_bad_table_raises(xbt: Storage) -> None:
    book = xbt.book("NOPE")
    assert list(book.bids) == [] and len(book.asks) == 0 and book.asks[:5] == []
    assert book.best_bid is None and book.best_ask is None
    assert Storage().book("XBTUSD", "orderBookL2_25").best_ask is None
    assert Storage().book("XBTUSD", "orderBook10").best_ask is None
    with pytest.raises(ValueError):
        xbt.book("XBTUSD", "trade")


def test_book_prices_are_floats_even_when_sent_as_integers() -> None:
    storage = Storage()
    storage.apply(book_partial("XBTUSD", (1, "Buy", 5, 11584)))
    assert storage.book("XBTUSD").best_bid == (11584.0, 5)
    assert type(storage.book("XBTUSD").best_bid[0]) is float  # type: ignore[index]
    storage.apply(msg("orderBookL2", "update", level("XBTUSD", 1, "Buy", 6)))
    assert storage.book("XBTUSD").bids[:] == [(11584.0, 6)]


def test_orderbook_l2_25_is_a_book_too() -> None:
    storage = Storage()
    storage.apply({**book_partial("XBTUSD", (1, "Buy", 5, 10.0)), "table": "orderBookL2_25"})
    storage.apply(msg("orderBookL2_25", "insert", level("XBTUSD", 2, "Sell", 6, 11.0)))
    assert levels_of(storage, "XBTUSD", "orderBookL2_25") == ([(10.0, 5)], [(11.0, 6)])
    assert levels_of(storage, "XBTUSD") == ([], [])


# -- orderBook10 ---------------------------------------------------------------------------


def test_orderbook10_rows_replace_whole_row() -> None:
    storage = Storage()
    first = {
        "symbol": "XBTUSD",
        "bids": [[9770, 35719], [9769, 31]],
        "asks": [[9770.5, 101196], [9771, 2095]],
        "timestamp": "2020-05-07T19:00:47.235Z",
    }
    storage.apply(partial("orderBook10", [first], ["symbol"], "XBTUSD"))
    book = storage.book("XBTUSD", "orderBook10")
    assert list(book.bids) == [(9770.0, 35719), (9769.0, 31)]
    assert book.asks[:1] == [(9770.5, 101196)]
    update = {
        "symbol": "XBTUSD",
        "asks": [[9771, 5]],
        "timestamp": "2020-05-07T19:00:53.458Z",
        "bids": [[9770, 1]],
    }
    result = storage.apply(msg("orderBook10", "update", update))
    assert result.changes[0].rows == (update,) and result.violations == ()
    assert storage.rows("orderBook10") == [update]
    assert (book.best_bid, book.best_ask) == ((9770.0, 1), (9771.0, 5))
    assert first["bids"] == [[9770, 35719], [9769, 31]]
    # A row without one side means that side is empty.
    storage.apply(msg("orderBook10", "update", {"symbol": "XBTUSD", "bids": [[9770, 2]]}))
    assert list(book.asks) == [] and book.best_bid == (9770.0, 2)
    # Inserts (new listings) behave the same, and a crossed top is reported.
    result = storage.apply(
        msg("orderBook10", "insert", {"symbol": "XBTUSD", "bids": [[5, 1]], "asks": [[4, 1]]})
    )
    assert [v.kind for v in result.violations] == ["crossed_book"]
    assert storage.book("ETHUSD", "orderBook10").bids[:] == []


def test_orderbook10_view_is_sorted_whatever_order_levels_arrive_in() -> None:
    storage = Storage()
    row = {"symbol": "X", "bids": [[1, 1], [3, 3], [2, 2]], "asks": [[6, 6], [4, 4], [5, 5]]}
    storage.apply(partial("orderBook10", [row], ["symbol"], "X"))
    book = storage.book("X", "orderBook10")
    assert list(book.bids) == [(3.0, 3), (2.0, 2), (1.0, 1)]
    assert list(book.asks) == [(4.0, 4), (5.0, 5), (6.0, 6)]
    assert row["bids"] == [[1, 1], [3, 3], [2, 2]]  # the stored row itself is left alone


def test_orderbook10_whole_table_insert_for_new_listing() -> None:
    storage = Storage()
    storage.apply(partial("orderBook10", [], ["symbol"]))
    row = {
        "symbol": "BLURUSDT",
        "bids": [[1.02, 150000000]],
        "timestamp": "2023-02-14T00:00:00.000Z",
    }
    result = storage.apply(msg("orderBook10", "insert", row))
    assert result.violations == () and result.dropped == 0
    book = storage.book("BLURUSDT", "orderBook10")
    assert (book.best_bid, book.best_ask) == ((1.02, 150000000), None)


# -- timestamps ----------------------------------------------------------------------------

UTC = datetime.UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-10-12T16:46:20.255Z", datetime.datetime(2020, 10, 12, 16, 46, 20, 255000, UTC)),
        ("2020-10-12T16:46:20Z", datetime.datetime(2020, 10, 12, 16, 46, 20, 0, UTC)),
        ("2020-10-12T16:46:20.5Z", datetime.datetime(2020, 10, 12, 16, 46, 20, 500000, UTC)),
        ("2020-10-12T16:46:20.123456Z", datetime.datetime(2020, 10, 12, 16, 46, 20, 123456, UTC)),
        ("2000-01-01T08:00:00.000+00:00", datetime.datetime(2000, 1, 1, 8, 0, 0, 0, UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime.datetime) -> None:
    parsed = Storage.parse_timestamp(text)
    assert parsed == expected and parsed.tzinfo is UTC
    assert Storage().parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2020-10-12",
        "2020-10-12T16:46:20.255",
        "2020-10-12T16:46:20.Z",
        "2020-10-12T16:46:20.1234567Z",
        "2020-10-12T16:46:20.255+01:00",
        "2020-10-12 16:46:20.255Z",
        "2020-13-12T16:46:20.255Z",
        "2020-02-30T16:46:20.255Z",
        "2020-10-12T24:00:00.000Z",
        " 2020-10-12T16:46:20.255Z",
        "2020-10-12T16:46:20.255Zjunk",
        "\uff12\uff10\uff12\uff10-10-12T16:46:20.255Z",  # non-ASCII digits
        None,
        1602521180.255,
        b"2020-10-12T16:46:20.255Z",
    ],
)
def test_parse_timestamp_rejects(text: Any) -> None:
    with pytest.raises(ValueError):
        Storage.parse_timestamp(text)


# -- a realistic session -------------------------------------------------------------------

SESSION = r"""
{"info":"Welcome to the BitMEX Realtime API.","version":"2021-07-14T01:26:29.000Z","timestamp":"2021-07-22T22:36:07.865Z","docs":"https://www.bitmex.com/app/wsAPI","limit":{"remaining":39}}
{"success":true,"subscribe":"orderBookL2:XBTUSD","request":{"op":"subscribe","args":["orderBookL2:XBTUSD","orderBookL2:ETHUSD","trade:XBTUSD","instrument"]}}
{"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":8796781300,"side":"Sell","size":100}]}
{"table":"orderBookL2","action":"partial","keys":["symbol","id","side"],"types":{"symbol":"symbol","id":"long","side":"symbol","size":"long","price":"float"},"foreignKeys":{"symbol":"instrument","side":"side"},"attributes":{"symbol":"parted","id":"sorted"},"filter":{"symbol":"XBTUSD"},"data":[{"symbol":"XBTUSD","id":8796781000,"side":"Sell","size":5000,"price":32190},{"symbol":"XBTUSD","id":8796781150,"side":"Sell","size":12000,"price":32188.5},{"symbol":"XBTUSD","id":8796781300,"side":"Sell","size":36000,"price":32187},{"symbol":"XBTUSD","id":8796781350,"side":"Buy","size":1407700,"price":32186.5},{"symbol":"XBTUSD","id":8796781500,"side":"Buy","size":2500,"price":32185},{"symbol":"XBTUSD","id":8796782000,"side":"Buy","size":900,"price":32180}]}
{"success":true,"subscribe":"orderBookL2:ETHUSD","request":{"op":"subscribe","args":["orderBookL2:XBTUSD","orderBookL2:ETHUSD","trade:XBTUSD","instrument"]}}
{"table":"orderBookL2","action":"partial","keys":["symbol","id","side"],"types":{"symbol":"symbol","id":"long","side":"symbol","size":"long","price":"float"},"foreignKeys":{"symbol":"instrument","side":"side"},"attributes":{"symbol":"parted","id":"sorted"},"filter":{"symbol":"ETHUSD"},"data":[{"symbol":"ETHUSD","id":29699960199,"side":"Sell","size":300,"price":1990.05},{"symbol":"ETHUSD","id":29699960200,"side":"Sell","size":12000,"price":1990},{"symbol":"ETHUSD","id":29699960202,"side":"Buy","size":800,"price":1989.9},{"symbol":"ETHUSD","id":29699960210,"side":"Buy","size":5400,"price":1989.5}]}
{"success":true,"subscribe":"trade:XBTUSD","request":{"op":"subscribe","args":["orderBookL2:XBTUSD","orderBookL2:ETHUSD","trade:XBTUSD","instrument"]}}
{"table":"trade","action":"partial","keys":[],"types":{"timestamp":"timestamp","symbol":"symbol","side":"symbol","size":"long","price":"float","tickDirection":"symbol","trdMatchID":"guid","grossValue":"long","homeNotional":"float","foreignNotional":"float"},"foreignKeys":{"symbol":"instrument","side":"side"},"attributes":{"timestamp":"sorted","symbol":"grouped"},"filter":{"symbol":"XBTUSD"},"data":[{"timestamp":"2021-07-22T22:36:05.001Z","symbol":"XBTUSD","side":"Buy","size":100,"price":32187,"tickDirection":"PlusTick","trdMatchID":"0b7e5c1a-3f1e-4c52-9a35-1d2f9c0e4a11","grossValue":310680,"homeNotional":0.0031068,"foreignNotional":100}]}
{"success":true,"subscribe":"instrument","request":{"op":"subscribe","args":["orderBookL2:XBTUSD","orderBookL2:ETHUSD","trade:XBTUSD","instrument"]}}
{"table":"instrument","action":"partial","keys":["symbol"],"types":{"symbol":"symbol","state":"symbol","markPrice":"float","lastPrice":"float","timestamp":"timestamp"},"foreignKeys":{},"attributes":{"symbol":"unique"},"filter":{},"data":[{"symbol":"XBTUSD","state":"Open","markPrice":32186.93,"lastPrice":32187,"timestamp":"2021-07-22T22:36:07.000Z"},{"symbol":"ETHUSD","state":"Open","markPrice":1990.01,"lastPrice":1990,"timestamp":"2021-07-22T22:36:07.000Z"}]}
{"table":"trade","action":"insert","data":[{"timestamp":"2021-07-22T22:36:08.120Z","symbol":"XBTUSD","side":"Sell","size":2000,"price":32186.5,"tickDirection":"MinusTick","trdMatchID":"5d1c8f0e-1b7a-4e0b-8c2d-6a9e3f4b5c01","grossValue":6213720,"homeNotional":0.0621372,"foreignNotional":2000},{"timestamp":"2021-07-22T22:36:08.120Z","symbol":"XBTUSD","side":"Sell","size":500,"price":32186.5,"tickDirection":"ZeroMinusTick","trdMatchID":"5d1c8f0e-1b7a-4e0b-8c2d-6a9e3f4b5c02","grossValue":1553430,"homeNotional":0.0155343,"foreignNotional":500}]}
{"table":"orderBookL2","action":"update","data":[{"symbol":"XBTUSD","id":8796781350,"side":"Buy","size":1405200}]}
{"table":"orderBookL2","action":"delete","data":[{"symbol":"XBTUSD","id":8796781300,"side":"Sell"}]}
{"table":"orderBookL2","action":"insert","data":[{"symbol":"XBTUSD","id":8796781250,"side":"Sell","size":700,"price":32187.5}]}
{"table":"instrument","action":"update","data":[{"symbol":"XBTUSD","lastPrice":32186.5,"timestamp":"2021-07-22T22:36:08.120Z"}]}
{"table":"orderBookL2","action":"update","data":[{"symbol":"ETHUSD","id":29699960200,"side":"Sell","size":11000},{"symbol":"ETHUSD","id":29699960210,"side":"Buy","size":5000}]}
{"table":"orderBookL2","action":"delete","data":[{"symbol":"ETHUSD","id":29699960202,"side":"Buy"}]}
{"table":"trade","action":"insert","data":[{"timestamp":"2021-07-22T22:36:09.001Z","symbol":"ETHUSD","side":"Buy","size":1,"price":1990,"tickDirection":"PlusTick","trdMatchID":"9a8b7c6d-0000-4e0b-8c2d-6a9e3f4b5c03","grossValue":199000,"homeNotional":0.0001,"foreignNotional":1}]}
{"table":"orderBookL2","action":"insert","data":[{"symbol":"ETHUSD","id":29699960204,"side":"Buy","size":150,"price":1989.8}]}
{"table":"instrument","action":"update","data":[{"symbol":"ETHUSD","markPrice":1989.97,"timestamp":"2021-07-22T22:36:09.500Z"}]}
"""


def test_realistic_multi_symbol_session() -> None:
    storage = Storage()
    results = []
    for line in SESSION.strip().splitlines():
        frame = json.loads(line)
        if "table" in frame:
            results.append(storage.apply(frame))
    assert sum(r.dropped for r in results) == 2  # the update before the XBTUSD partial, ETH trade
    assert all(r.violations == () for r in results)

    xbt = storage.book("XBTUSD")
    assert list(xbt.asks) == [(32187.5, 700), (32188.5, 12000), (32190.0, 5000)]
    assert list(xbt.bids) == [(32186.5, 1405200), (32185.0, 2500), (32180.0, 900)]
    eth = storage.book("ETHUSD")
    assert list(eth.asks) == [(1990.0, 11000), (1990.05, 300)]
    assert list(eth.bids) == [(1989.8, 150), (1989.5, 5000)]
    assert storage.rows("orderBookL2", "XBTUSD") == [
        {"symbol": "XBTUSD", "id": 8796781000, "side": "Sell", "size": 5000, "price": 32190},
        {"symbol": "XBTUSD", "id": 8796781150, "side": "Sell", "size": 12000, "price": 32188.5},
        {"symbol": "XBTUSD", "id": 8796781250, "side": "Sell", "size": 700, "price": 32187.5},
        {"symbol": "XBTUSD", "id": 8796781350, "side": "Buy", "size": 1405200, "price": 32186.5},
        {"symbol": "XBTUSD", "id": 8796781500, "side": "Buy", "size": 2500, "price": 32185},
        {"symbol": "XBTUSD", "id": 8796782000, "side": "Buy", "size": 900, "price": 32180},
    ]
    assert len(storage.rows("orderBookL2")) == 6 + 4
    assert storage.data["orderBookL2"]["ETHUSD"]["Buy"] == {
        29699960204: {
            "symbol": "ETHUSD",
            "id": 29699960204,
            "side": "Buy",
            "size": 150,
            "price": 1989.8,
        },
        29699960210: {
            "symbol": "ETHUSD",
            "id": 29699960210,
            "side": "Buy",
            "size": 5000,
            "price": 1989.5,
        },
    }
    assert [(t["size"], t["timestamp"]) for t in storage.rows("trade")] == [
        (100, "2021-07-22T22:36:05.001Z"),
        (2000, "2021-07-22T22:36:08.120Z"),
        (500, "2021-07-22T22:36:08.120Z"),
    ]
    assert dict(storage.data["instrument"]) == {
        ("ETHUSD",): {
            "symbol": "ETHUSD",
            "state": "Open",
            "markPrice": 1989.97,
            "lastPrice": 1990,
            "timestamp": "2021-07-22T22:36:09.500Z",
        },
        ("XBTUSD",): {
            "symbol": "XBTUSD",
            "state": "Open",
            "markPrice": 32186.93,
            "lastPrice": 32186.5,
            "timestamp": "2021-07-22T22:36:08.120Z",
        },
    }
    assert storage.keys == {
        "orderBookL2": ["symbol", "id", "side"],
        "trade": [],
        "instrument": ["symbol"],
    }
    assert [(r.table, r.action, [c.symbol for c in r.changes]) for r in results[-3:]] == [
        ("trade", "insert", []),
        ("orderBookL2", "insert", ["ETHUSD"]),
        ("instrument", "update", ["ETHUSD"]),
    ]


# -- compact order-book levels: rows built when handed out -----------------------------------


def stamped(symbol: str, level_id: int, side: str, size: int, price: float, ms: int) -> Row:
    ts = f"2025-01-01T00:00:00.{ms:03d}Z"
    return {**level(symbol, level_id, side, size, price), "timestamp": ts, "transactTime": ts}


def test_book_rows_handed_out_are_snapshots() -> None:
    storage = Storage()
    first = stamped("XBTUSD", 1, "Buy", 10, 99.0, 1)
    partial_rows = storage.apply(book_partial_rows("XBTUSD", [first])).changes[0].rows
    view_row = storage.data["orderBookL2"]["XBTUSD"]["Buy"][1]
    listed = storage.rows("orderBookL2")
    update = storage.apply(msg("orderBookL2", "update", stamped("XBTUSD", 1, "Buy", 11, 99.0, 2)))
    updated = update.changes[0].rows[0]
    storage.apply(msg("orderBookL2", "update", stamped("XBTUSD", 1, "Buy", 12, 98.5, 3)))
    deleted = storage.apply(msg("orderBookL2", "delete", level("XBTUSD", 1, "Buy"))).changes[0]
    assert partial_rows == (stamped("XBTUSD", 1, "Buy", 10, 99.0, 1),)
    assert view_row == listed[0] == stamped("XBTUSD", 1, "Buy", 10, 99.0, 1)
    assert updated == stamped("XBTUSD", 1, "Buy", 11, 99.0, 2)
    assert deleted.rows == (stamped("XBTUSD", 1, "Buy", 12, 98.5, 3),)
    # Mutating a handed-out row does not reach the store either.
    storage.apply(msg("orderBookL2", "insert", stamped("XBTUSD", 2, "Sell", 5, 101.0, 4)))
    storage.data["orderBookL2"]["XBTUSD"]["Sell"][2]["size"] = 999
    storage.rows("orderBookL2")[0]["price"] = 0.0
    assert storage.rows("orderBookL2") == [stamped("XBTUSD", 2, "Sell", 5, 101.0, 4)]
    assert storage.book("XBTUSD").asks[:] == [(101.0, 5)]


def book_partial_rows(symbol: str, rows: list[Row]) -> dict[str, Any]:
    return partial("orderBookL2", rows, BOOK_KEYS, symbol)


def test_book_rows_keep_every_field_bitmex_sent() -> None:
    storage = Storage()
    odd = {**stamped("XBTUSD", 1, "Sell", 10, 101, 1), "transactTime": "2025-01-01T00:00:00Z"}
    odd["venue"] = {"nested": [1, 2]}  # a field we know nothing about
    plain = level("XBTUSD", 2, "Buy", 20, 99.0)  # pre-2022: no timestamps at all
    nulls = {**level("XBTUSD", 3, "Buy", 30, 98.0), "timestamp": None}
    storage.apply(book_partial_rows("XBTUSD", [odd, plain, nulls]))
    assert storage.rows("orderBookL2") == [odd, plain, nulls]
    assert type(storage.rows("orderBookL2")[0]["price"]) is int  # the price as sent
    # A legacy update (no price, no timestamps) and one bringing a new field merge like dicts.
    result = storage.apply(msg("orderBookL2", "update", level("XBTUSD", 1, "Sell", 11)))
    assert result.changes[0].rows == ({**odd, "size": 11},)
    extra = {**level("XBTUSD", 2, "Buy", 21), "note": "x", "timestamp": "t"}
    result = storage.apply(msg("orderBookL2", "update", extra))
    assert result.changes[0].rows == ({**plain, "size": 21, "note": "x", "timestamp": "t"},)
    # A full standard update over a level with extras keeps the extras.
    full = stamped("XBTUSD", 1, "Sell", 12, 101.0, 5)
    result = storage.apply(msg("orderBookL2", "update", full))
    assert result.changes[0].rows == ({**odd, **full},)
    assert type(result.changes[0].rows[0]["price"]) is float  # now sent as a float
    assert storage.data["orderBookL2"]["XBTUSD"]["Sell"][1] == {**odd, **full}
    deleted = storage.apply(msg("orderBookL2", "delete", level("XBTUSD", 2, "Buy")))
    assert deleted.changes[0].rows == ({**plain, "size": 21, "note": "x", "timestamp": "t"},)
    inserted = {**stamped("XBTUSD", 4, "Buy", 1, 97.0, 6), "flag": True}
    storage.apply(msg("orderBookL2", "insert", inserted))
    assert storage.rows("orderBookL2", "XBTUSD") == [{**odd, **full}, nulls, inserted]


def test_book_data_is_a_read_only_mapping_of_rows() -> None:
    storage = Storage()
    storage.apply(book_partial("XBTUSD", (1, "Buy", 5, 10.0), (2, "Sell", 6, 11.0)))
    books = storage.data["orderBookL2"]
    assert list(books) == ["XBTUSD"] and list(books["XBTUSD"]) == ["Buy", "Sell"]
    bids = books["XBTUSD"]["Buy"]
    assert isinstance(bids, Mapping) and not isinstance(bids, MutableMapping)
    assert len(bids) == 1 and 1 in bids and 2 not in bids and list(bids) == [1]
    assert bids[1] == level("XBTUSD", 1, "Buy", 5, 10.0) and bids[1] is not bids[1]
    assert dict(bids.items()) == {1: level("XBTUSD", 1, "Buy", 5, 10.0)}
    assert bids.get(2) is None and "XBTUSD" in repr(bids)
    with pytest.raises(KeyError):
        bids[2]
    # The view is live, and a deep copy is a detached snapshot.
    frozen = copy.deepcopy(storage.data)
    storage.apply(msg("orderBookL2", "insert", level("XBTUSD", 3, "Buy", 7, 9.0)))
    assert len(bids) == 2 and len(frozen["orderBookL2"]["XBTUSD"]["Buy"]) == 1


def test_levels_sharing_a_price_are_ordered_by_id() -> None:
    storage = Storage()
    storage.apply(
        book_partial(
            "X",
            (5, "Buy", 1, 10.0),
            (3, "Buy", 2, 10.0),
            (9, "Buy", 3, 11.0),
            (4, "Buy", 4, 10),
            (8, "Sell", 5, 12.0),
            (2, "Sell", 6, 12.0),
            (7, "Sell", 7, 13.0),
        )
    )
    book = storage.book("X")
    assert list(book.bids) == [(11.0, 3), (10.0, 2), (10.0, 4), (10.0, 1)]
    assert list(book.asks) == [(12.0, 6), (12.0, 5), (13.0, 7)]
    assert [book.bids[i] for i in range(-4, 4)] == list(book.bids) * 2
    assert book.bids[1:3] == [(10.0, 2), (10.0, 4)] and book.bids[::2] == [(11.0, 3), (10.0, 4)]
    assert list(reversed(book.bids)) == list(book.bids)[::-1]
    assert [r["id"] for r in storage.rows("orderBookL2")] == [7, 8, 2, 9, 3, 4, 5]
    storage.apply(msg("orderBookL2", "delete", level("X", 4, "Buy"), level("X", 2, "Sell")))
    assert list(book.bids) == [(11.0, 3), (10.0, 2), (10.0, 1)]
    assert list(book.asks) == [(12.0, 5), (13.0, 7)]
    storage.apply(msg("orderBookL2", "update", level("X", 9, "Buy", price=10.0)))
    storage.apply(msg("orderBookL2", "insert", level("X", 1, "Buy", 8, 10.0)))
    assert list(book.bids) == [(10.0, 8), (10.0, 2), (10.0, 1), (10.0, 3)]
    assert book.bids[1:] == [(10.0, 2), (10.0, 1), (10.0, 3)]


def test_large_book_sides_stay_ordered() -> None:
    storage = Storage()
    n = 3000  # beyond the plain-list size of a side: switches to a SortedList
    storage.apply(book_partial("X", *[(i, "Buy", i + 1, 1000.0 - i) for i in range(n)]))
    storage.apply(book_partial("Y", (0, "Buy", 1, 1.0)))
    storage.apply(
        msg(
            "orderBookL2",
            "insert",
            *[level("Y", i, "Sell", i, 2.0 + (i * 7919 % n)) for i in range(1, n)],
        )
    )
    bids, asks = storage.book("X").bids, storage.book("Y").asks
    assert len(bids) == n and bids[0] == (1000.0, 1) and bids[-1] == (1000.0 - n + 1, n)
    assert bids[1500:1502] == [(1000.0 - 1500, 1501), (1000.0 - 1501, 1502)]
    prices = [p for p, _ in asks]
    assert len(asks) == n - 1 and prices == sorted(prices)
    storage.apply(msg("orderBookL2", "delete", *[level("X", i, "Buy") for i in range(0, n, 2)]))
    assert [s for _, s in bids] == list(range(2, n + 1, 2))
    storage.apply(msg("orderBookL2", "update", level("X", 1, "Buy", price=5000.0)))
    assert bids[0] == (5000.0, 2) and bids.index((5000.0, 2)) == 0


def test_stored_book_levels_are_compact() -> None:
    memory = pytest.importorskip("benchmarks.memory")
    extra = memory.measure(6000)[0].extra
    # Row dicts cost ~800 bytes a level; the compact records under 300 for big books.
    assert extra["bytes_per_level"] < 400 and extra["bytes_per_level_after_updates"] < 400
