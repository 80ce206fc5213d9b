"""Column kinds: declared by BitMEX's partial or inferred, and values made to fit them."""

from __future__ import annotations

import pytest

from bitmex_trio_websocket._export import Kind, infer_kinds, timestamp_text
from bitmex_trio_websocket._export._columns import fit, kind_of, merge


def test_each_value_gets_the_narrowest_kind() -> None:
    assert kind_of(None) is Kind.NULL
    assert kind_of(True) is Kind.BOOL  # not an int, although Python says it is
    assert kind_of(7) is Kind.INT
    assert kind_of(7.5) is Kind.FLOAT
    assert kind_of("2021-07-22T22:36:07.875Z") is Kind.TIMESTAMP
    assert kind_of("2021-07-22T22:36:07Z") is Kind.TIMESTAMP
    assert kind_of("2021-07-22 22:36:07") is Kind.STRING  # not BitMEX's spelling
    assert kind_of("XBTUSD") is Kind.STRING
    assert kind_of([[1.0, 2]]) is Kind.JSON


def test_merging_kinds_never_loses_a_value() -> None:
    assert merge(Kind.INT, Kind.FLOAT) is Kind.FLOAT  # 11584 and 11584.5 in one price column
    assert merge(Kind.NULL, Kind.INT) is Kind.INT
    assert merge(Kind.TIMESTAMP, Kind.STRING) is Kind.STRING
    assert merge(Kind.BOOL, Kind.INT) is Kind.JSON
    assert merge(Kind.STRING, Kind.FLOAT) is Kind.JSON


def test_declared_types_win_and_name_columns_no_row_carried() -> None:
    declared = {"symbol": "symbol", "price": "float", "size": "long", "timestamp": "timestamp",
                "bids": "", "foreignNotional": "float"}  # fmt: skip
    rows = [
        {"symbol": "XBTUSD", "price": 11584, "size": 1, "timestamp": "2021-01-01T00:00:00.000Z"},
        {"symbol": "XBTUSD", "bids": [[1.5, 2]], "extra": True, "later": None},
    ]
    kinds = infer_kinds(rows, declared)
    assert kinds == {
        "symbol": Kind.STRING,
        "price": Kind.FLOAT,  # declared float although this batch only spelled an int
        "size": Kind.INT,
        "timestamp": Kind.TIMESTAMP,
        "bids": Kind.JSON,  # declared with no type name: inferred
        "foreignNotional": Kind.FLOAT,  # declared, never seen: still a column
        "extra": Kind.BOOL,
        "later": Kind.STRING,  # only nulls: text, the widest
    }


def test_fit_passes_good_columns_and_counts_what_does_not_fit() -> None:
    assert fit(Kind.FLOAT, [1, 2.5, None]) == ([1, 2.5, None], 0)
    assert fit(Kind.INT, [1, 2.0, 2.5, True, None]) == ([1, 2, None, None, None], 2)
    assert fit(Kind.BOOL, [True, 1]) == ([True, None], 1)
    assert fit(Kind.STRING, ["a", 1, None]) == (["a", "1", None], 0)
    assert fit(Kind.JSON, [[1, 2], None, {"a": 1}]) == (["[1,2]", None, '{"a":1}'], 0)
    stamps = ["2021-01-01T00:00:00.000Z", "soon", 5]
    assert fit(Kind.TIMESTAMP, stamps, strict=True) == (["2021-01-01T00:00:00.000Z", None, None], 2)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "1970-01-01T00:00:00.000Z"), (1626993370.5, "2021-07-22T22:36:10.500Z")],
)
def test_timestamp_text_is_bitmex_spelling(seconds: float, text: str) -> None:
    assert timestamp_text(seconds) == text
    assert kind_of(timestamp_text(seconds)) is Kind.TIMESTAMP
