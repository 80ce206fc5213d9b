"""Unit tests of the order books in the store: L2 levels, price order, views, ``orderBook10``."""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from typing import Any

import pytest

from bitmex_trio_websocket import Change, Storage, Violation
from tests.storage.helpers import BOOK_KEYS, Row, book_partial, level, levels_of, msg, partial

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
    n = 3000  # a deep side: inserts all over it, not only near the best
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
