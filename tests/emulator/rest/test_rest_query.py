"""BitMEX's generic list parameters on rows: filter, columns, count, start, reverse, time bounds."""

from __future__ import annotations

from typing import Any

import pytest

from bitmex_trio_websocket.emulator._texts import iso_timestamp
from bitmex_trio_websocket.emulator.rest._errors import RestError
from bitmex_trio_websocket.emulator.rest._query import Query

from .fakes import NOW, call, make_app

STATUSES = ["New", "Filled", "PartiallyFilled", "Canceled", "Rejected", "New"]
ROWS = [
    {"orderID": f"o{i}", "symbol": "XBTUSD" if i % 2 else "ETHUSD", "side": "Buy",
     "ordStatus": status, "price": 100.0 + i, "timestamp": iso_timestamp(NOW + 3600 * 8 * i)}
    for i, status in enumerate(STATUSES)
]  # fmt: skip


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["orderID"] for row in rows]


def test_defaults_return_up_to_100_oldest_first() -> None:
    many = [{"orderID": f"o{i}"} for i in range(150)]
    assert ids(Query().apply(many)) == [f"o{i}" for i in range(100)]
    assert ids(Query(count=None).apply(many)) == [f"o{i}" for i in range(150)]


def test_symbol_filter_and_list_values() -> None:
    assert ids(Query(symbol="XBTUSD").apply(ROWS)) == ["o1", "o3", "o5"]
    query = Query(filter={"ordStatus": ["Filled", "Rejected"], "side": "Buy"})
    assert ids(query.apply(ROWS)) == ["o1", "o4"]
    assert ids(Query(filter={"price": 102}).apply(ROWS)) == ["o2"]  # 102 == 102.0
    assert Query(filter={"nonexistent": 1}).apply(ROWS) == []


def test_open_and_is_terminated_filters() -> None:
    assert ids(Query(filter={"open": True}).apply(ROWS)) == ["o0", "o2", "o5"]
    assert ids(Query(filter={"ordStatus.isTerminated": False}).apply(ROWS)) == ["o0", "o2", "o5"]
    assert ids(Query(filter={"ordStatus.isTerminated": True}).apply(ROWS)) == ["o1", "o3", "o4"]


def test_timestamp_date_filter() -> None:
    # o0..o2 on 2025-01-01 (0 h, 8 h, 16 h), o3..o5 on 2025-01-02
    assert ids(Query(filter={"timestamp.date": "2025-01-02"}).apply(ROWS)) == ["o3", "o4", "o5"]


def test_start_and_end_time_are_inclusive() -> None:
    query = Query(start_time=NOW + 3600 * 8, end_time=NOW + 3600 * 24)
    assert ids(query.apply(ROWS)) == ["o1", "o2", "o3"]
    assert ids(Query(start_time=NOW + 3600 * 40).apply(ROWS)) == ["o5"]
    assert Query(end_time=NOW - 1).apply(ROWS) == []
    assert Query(start_time=NOW).apply([{"orderID": "no time"}]) == []


def test_reverse_start_and_count_page_newest_first() -> None:
    assert ids(Query(reverse=True, count=2).apply(ROWS)) == ["o5", "o4"]
    assert ids(Query(reverse=True, start=2, count=2).apply(ROWS)) == ["o3", "o2"]
    assert ids(Query(start=5, count=10).apply(ROWS)) == ["o5"]
    assert Query(start=6).apply(ROWS) == []


def test_columns_keep_the_keys() -> None:
    rows = Query(columns=("price",)).apply(ROWS, keys=("orderID",))
    assert rows[0] == {"orderID": "o0", "price": 100.0}
    assert Query(columns=("price", "nope")).apply(ROWS[:1]) == [{"price": 100.0}]


def test_apply_copies_rows() -> None:
    rows = [{"orderID": "o"}]
    Query().apply(rows)[0]["orderID"] = "changed"
    assert rows == [{"orderID": "o"}]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"count": 0}, "count must be between 1 and 1000"),
        ({"count": 1001}, "count must be between 1 and 1000"),
        ({"start": -1}, "start must be a non-negative integer"),
        ({"filter": ["a"]}, "Invalid filter"),
        ({"columns": {"a": 1}}, "Invalid columns"),
        ({"columns": [1]}, "Invalid columns"),
    ],
)
def test_from_params_refusals(params: dict[str, Any], message: str) -> None:
    with pytest.raises(RestError) as caught:
        Query.from_params(params)
    assert (caught.value.status, caught.value.name, caught.value.message) == (
        400,
        "ValidationError",
        message,
    )


def test_count_1000_is_the_maximum_accepted() -> None:
    assert Query.from_params({"count": 1000}).count == 1000


def test_list_parameters_over_http() -> None:
    app = make_app()
    target = (
        "/api/v1/trade?symbol=XBTUSD&count=3&reverse=true&start=1"
        '&columns=["price"]&filter={"side":"Buy"}'
    )
    result = call(app, "GET", target, key=None)
    assert result.status == 200
    # trades t001..t049 alternate XBTUSD (odd); newest first, skip one, three
    assert result.json() == [
        {"timestamp": iso_timestamp(NOW - 60 + i), "symbol": "XBTUSD", "price": 94000.0 + i}
        for i in (47, 45, 43)
    ]
    bad = call(app, "GET", "/api/v1/trade?count=5000", key=None)
    assert bad.status == 400
    assert bad.json()["error"]["name"] == "ValidationError"
