"""Unit tests of the sans-IO table store: validation, gating, partials, keyed and keyless tables.

Order books are in ``test_books.py``, closed orders in ``test_closed_orders.py``.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
from typing import Any

import pytest
from sortedcontainers import SortedDict

from bitmex_trio_websocket import ApplyResult, Change, RemoteProtocolError, Storage, Violation
from bitmex_trio_websocket._storage import BOOK_TABLES
from tests.storage.helpers import BOOK_KEYS, book_partial, level, levels_of, msg, partial
from tests.support.fuzz_strategies import Deep


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
        Deep(5000, "list").build(),  # found by the fuzz campaign: its repr used to recurse
        "2020-10-12T16:46:20.255Z" * 100_000,
    ],
)
def test_parse_timestamp_rejects(text: Any) -> None:
    with pytest.raises(ValueError) as info:
        Storage.parse_timestamp(text)
    assert len(str(info.value)) < 200


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
