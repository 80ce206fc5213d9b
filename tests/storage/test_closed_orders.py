"""Closed orders leave the ``order`` table (``_storage._orders``): the rule, and what breaks it.

The rule: an order is closed from the first row that shows it ``Filled``, ``Canceled`` or
``Rejected`` (since it entered the table or was last open), at that row's timestamp; it leaves
once an order row ``closed_order_ttl`` seconds newer has been applied. Before issue 13 the
eviction crashed half way on a non-string ``ordStatus`` and evicted in arrival order; the tests
whose comment says "Regression" failed on that code.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from bitmex_trio_websocket import RemoteProtocolError, Storage
from tests.support.fuzz_model import canon, state_of


def partial(data: list[dict[str, Any]], symbol: str | None = "XBTUSD") -> dict[str, Any]:
    return {
        "table": "order",
        "action": "partial",
        "keys": ["orderID"],
        "filter": {} if symbol is None else {"symbol": symbol},
        "data": data,
    }


def msg(table: str, action: str, *rows: dict[str, Any]) -> dict[str, Any]:
    return {"table": table, "action": action, "data": list(rows)}


def order(order_id: str, status: Any, at: str | None, **extra: Any) -> dict[str, Any]:
    """An order row; ``at`` is ``"MM:SS"`` past 2026-01-01T00:00 (``None``: no timestamp)."""
    row = {"orderID": order_id, "symbol": "XBTUSD", "ordStatus": status, **extra}
    if at is not None:
        row["timestamp"] = f"2026-01-01T00:{at}.000Z"
    return row


def order_storage(**options: Any) -> Storage:
    storage = Storage(**options)
    storage.apply(partial([order("a", "New", "00:00")]))
    return storage


def ids(storage: Storage) -> list[str]:
    return [row["orderID"] for row in storage.rows("order")]


# --------------------------------------------------------------------------- the rule


def test_closed_orders_leave_the_table_after_the_ttl_of_server_time() -> None:
    storage = order_storage()
    storage.apply(msg("order", "update", order("a", "Filled", "00:10", leavesQty=0)))
    storage.apply(msg("order", "insert", order("b", "New", "01:09")))
    assert storage.data["order"][("a",)]["ordStatus"] == "Filled"  # 59 s after it closed
    result = storage.apply(msg("order", "insert", order("c", "New", "01:10")))
    assert ("a",) not in storage.data["order"]  # 60 s: gone
    assert [row["orderID"] for row in storage.rows("order")] == ["b", "c"]
    # Eviction is housekeeping, not a BitMEX delete: it is not reported as a change.
    assert [(c.action, [r["orderID"] for r in c.rows]) for c in result.changes] == [
        ("insert", ["c"])
    ]


def test_open_orders_are_never_evicted_and_the_ttl_can_be_disabled() -> None:
    for ttl, kept in ((60.0, ["b"]), (None, ["a", "b"])):
        storage = order_storage(closed_order_ttl=ttl)
        storage.apply(msg("order", "update", order("a", "Canceled", "00:00")))
        storage.apply(msg("order", "insert", order("b", "New", "00:00")))
        storage.apply(msg("order", "update", order("b", "PartiallyFilled", "59:00")))
        assert [row["orderID"] for row in storage.rows("order")] == kept


def test_a_closed_order_deleted_by_bitmex_is_forgotten() -> None:
    storage = order_storage(closed_order_ttl=0)
    storage.apply(msg("order", "update", order("a", "Rejected", "00:01")))
    assert storage.rows("order") == []  # ttl 0: gone as soon as it is closed
    storage = order_storage()
    storage.apply(msg("order", "update", order("a", "Filled", "00:01")))
    storage.apply(msg("order", "delete", {"orderID": "a", "symbol": "XBTUSD"}))
    storage.apply(msg("order", "insert", order("a2", "New", "05:00")))
    assert [row["orderID"] for row in storage.rows("order")] == ["a2"]


def test_closed_order_ttl_is_validated() -> None:
    with pytest.raises(ValueError, match="closed_order_ttl"):
        Storage(closed_order_ttl=-1)
    with pytest.raises(ValueError, match="closed_order_ttl"):
        Storage(closed_order_ttl=math.nan)


# --------------------------------------------------------------------------- issue 13


@pytest.mark.parametrize("status", [[], ["Filled"], {"s": "Filled"}, None, 1, "filled"])
def test_a_status_that_is_not_a_closed_string_never_crashes_and_means_open(status: Any) -> None:
    # Regression: a list or dict ordStatus raised TypeError (unhashable) in the eviction, after
    # the message had been applied: apply crashed half way.
    storage = order_storage(closed_order_ttl=0)
    result = storage.apply(msg("order", "update", order("a", status, "10:00")))
    assert result.changes[0].rows == (
        {**order("a", "New", "00:00"), **order("a", status, "10:00")},
    )
    storage.apply(msg("order", "insert", order("b", "New", "20:00")))
    assert ids(storage) == ["a", "b"]  # open: kept however late it gets


def test_the_message_found_by_fuzzing_applies_whole() -> None:
    # Regression (fuzz campaign, issue 13): closing rows around a row whose ordStatus is a list.
    storage = Storage(closed_order_ttl=0)
    storage.apply(partial([order(i, "New", "00:00") for i in "abc"]))
    rows = [order("a", "Filled", "00:01"), order("b", [], "00:01"), order("c", "Filled", "00:01")]
    result = storage.apply(msg("order", "update", *rows))
    assert [row["orderID"] for row in result.changes[0].rows] == ["a", "b", "c"]
    assert ids(storage) == ["b"]  # the two closed ones left at once (ttl 0)


def test_closed_orders_leave_by_their_own_close_time_not_in_arrival_order() -> None:
    # Regression: eviction walked close times in arrival order and stopped at the first one not
    # due, so "b" (closed earlier, heard of later) outstayed its 60 s behind "a".
    storage = order_storage()
    storage.apply(msg("order", "insert", order("b", "New", "00:00")))
    storage.apply(msg("order", "update", order("a", "Filled", "01:40")))  # closed at 100 s
    storage.apply(msg("order", "update", order("b", "Canceled", "00:50")))  # closed at 50 s
    storage.apply(msg("order", "insert", order("c", "New", "01:51")))  # 111 s: 61 s after b
    assert ids(storage) == ["a", "c"]
    storage.apply(msg("order", "insert", order("d", "New", "02:40")))  # 160 s: 60 s after a
    assert ids(storage) == ["c", "d"]


def test_an_undated_close_counts_from_the_next_known_server_time() -> None:
    # Regression: with no server time known yet, an undated close was "at minus infinity" and
    # the order left at once; it is now timed from the first server time heard.
    storage = Storage()
    storage.apply(partial([order("a", "New", None)]))
    storage.apply(msg("order", "update", order("a", "Filled", None)))
    storage.apply(msg("order", "insert", order("b", "New", "00:10")))  # server time: 10 s
    storage.apply(msg("order", "insert", order("c", "New", "01:09")))
    assert ids(storage) == ["a", "b", "c"]
    storage.apply(msg("order", "insert", order("d", "New", "01:10")))  # 60 s after 10 s
    assert ids(storage) == ["b", "c", "d"]


def test_an_undated_close_counts_from_the_server_time_known_then() -> None:
    # (An update row without a timestamp keeps the stored row's: this row never had one.)
    storage = Storage()
    storage.apply(partial([order("a", "New", None)]))
    storage.apply(msg("order", "insert", order("b", "New", "00:30")))
    storage.apply(msg("order", "update", order("a", "Filled", None)))  # closed "at" 30 s
    storage.apply(msg("order", "insert", order("c", "New", "01:29")))
    assert ids(storage) == ["a", "b", "c"]
    storage.apply(msg("order", "insert", order("d", "New", "01:30")))
    assert ids(storage) == ["b", "c", "d"]


def test_an_order_open_again_is_timed_from_its_last_close() -> None:
    # Regression: the first close time outlived a reopening.
    storage = order_storage()
    storage.apply(msg("order", "update", order("a", "Filled", "00:00")))
    storage.apply(msg("order", "update", order("a", "New", "00:30")))
    storage.apply(msg("order", "update", order("a", "Canceled", "00:50")))
    storage.apply(msg("order", "insert", order("b", "New", "01:49")))
    assert ids(storage) == ["a", "b"]
    storage.apply(msg("order", "insert", order("c", "New", "01:50")))
    assert ids(storage) == ["b", "c"]


@pytest.mark.parametrize("how", ["reset", "partial"])
def test_an_order_removed_then_sent_again_is_timed_from_its_new_row(how: str) -> None:
    # Regression: a close time outlived its row (removed by a reset or a new partial of its slice).
    storage = order_storage()
    storage.apply(msg("order", "update", order("a", "Filled", "00:00")))
    if how == "reset":
        storage.reset("order", "XBTUSD")
    storage.apply(partial([order("a", "Filled", "00:50")]))
    storage.apply(msg("order", "insert", order("b", "New", "01:49")))
    assert ids(storage) == ["a", "b"]
    storage.apply(msg("order", "insert", order("c", "New", "01:50")))
    assert ids(storage) == ["b", "c"]


def test_a_refused_message_with_closing_rows_changes_nothing() -> None:
    storage = order_storage(closed_order_ttl=0)
    before = canon(state_of(storage))
    with pytest.raises(RemoteProtocolError):  # the second row has no key
        storage.apply(msg("order", "update", order("a", "Filled", "10:00"), {"ordStatus": "New"}))
    assert canon(state_of(storage)) == before


@pytest.mark.parametrize("stamp", ["2026-13-45T00:00:00.000Z", "yesterday", 1.5e9, ["x"], None])
def test_a_malformed_timestamp_is_no_server_time(stamp: Any) -> None:
    storage = order_storage()
    storage.apply(msg("order", "update", order("a", "Filled", "00:10")))
    storage.apply(msg("order", "insert", {**order("b", "New", None), "timestamp": stamp}))
    storage.apply(msg("order", "insert", order("c", "New", "01:09")))
    assert ids(storage) == ["a", "b", "c"]
    storage.apply(msg("order", "insert", order("d", "New", "01:10")))
    assert ids(storage) == ["b", "c", "d"]


def test_many_orders_closing_and_reopening_keep_the_bookkeeping_small() -> None:
    storage = order_storage()
    tracker = storage._closed
    assert tracker is not None
    for n in range(2000):  # a market maker re-quoting: the same order closes and reopens
        storage.apply(msg("order", "update", order("a", "Canceled" if n % 2 else "New", "00:00")))
    assert len(tracker._heap) <= 2 * len(tracker.closed) + 65
    assert ids(storage) == ["a"] and not math.isinf(tracker.now)
