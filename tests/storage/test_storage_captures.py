"""Replay real BitMEX sessions (``shared/captures`` beside the repository) through ``Storage``.

The captures are other projects' data under other licences: they are read in place, never copied
into this repository. Set ``BITMEX_CAPTURES_DIR`` to read them from elsewhere; without them these
tests skip.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bitmex_trio_websocket import ApplyResult, RemoteProtocolError, Storage

CAPTURES = Path(
    os.environ.get("BITMEX_CAPTURES_DIR")
    or Path(__file__).resolve().parents[2].parent / "shared" / "captures"
)
Row = dict[str, Any]


def records(name: str) -> Iterator[Row]:
    path = CAPTURES / name
    if not path.is_file():
        pytest.skip(f"capture {name} not found in {CAPTURES}")
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def message(record: Row) -> Any:
    """The server message a capture row holds (``None`` for rows without a parsable one)."""
    if "msg" in record:
        return record["msg"]
    try:
        return json.loads(record["raw"]) if "raw" in record else None
    except ValueError:  # one source kept a stray quote; not a websocket frame anyway
        return None


def table_messages(name: str) -> list[Row]:
    found = []
    for record in records(name):
        frame = message(record)
        if record.get("dir") == "server" and isinstance(frame, dict) and "table" in frame:
            found.append(frame)
    return found


class BookModel:
    """Independent order book model: ``(symbol, side, id) -> [price, size]``, sorted on demand."""

    def __init__(self) -> None:
        self.levels: dict[tuple[str, str, int], list[Any]] = {}
        self.symbols: set[str] = set()
        self.dropped = 0

    def apply(self, frame: Row) -> None:
        action = frame["action"]
        if action == "partial":
            symbol = frame["filter"]["symbol"]
            self.symbols.add(symbol)
            self.levels = {k: v for k, v in self.levels.items() if k[0] != symbol}
        for row in frame["data"]:
            key = (row["symbol"], row["side"], row["id"])
            if row["symbol"] not in self.symbols:
                self.dropped += 1
            elif action in ("partial", "insert"):
                self.levels[key] = [row["price"], row["size"]]
            elif action == "update":
                entry = self.levels[key]
                entry[0] = row.get("price", entry[0])  # pre-2023 updates carry no price
                entry[1] = row.get("size", entry[1])
            else:
                del self.levels[key]

    def side(self, symbol: str, side: str) -> list[tuple[float, int]]:
        found = [
            (p, i, s) for (sym, sd, i), (p, s) in self.levels.items() if (sym, sd) == (symbol, side)
        ]
        found.sort(key=lambda level: (-level[0] if side == "Buy" else level[0], level[1]))
        return [(float(p), s) for p, _, s in found]


def assert_book_matches(storage: Storage, model: BookModel, symbol: str, table: str) -> None:
    book = storage.book(symbol, table)
    bids, asks = model.side(symbol, "Buy"), model.side(symbol, "Sell")
    assert list(book.bids) == bids
    assert list(book.asks) == asks
    assert book.bids[:10] == bids[:10] and book.asks[:10] == asks[:10]
    assert bids and asks and bids[0][0] < asks[0][0], f"{symbol} book is crossed or empty"
    rows = storage.rows(table, symbol)
    assert [(float(r["price"]), r["size"]) for r in rows] == [*reversed(asks), *bids]
    assert [r["side"] for r in rows] == ["Sell"] * len(asks) + ["Buy"] * len(bids)


def test_cryptofeed_2021_orderbookl2_session() -> None:
    frames = table_messages("cryptofeed_BITMEX.ws.1.0.jsonl")
    storage = Storage()
    model = BookModel()
    trades: dict[str, list[Row]] = {"trade": [], "quote": []}
    results: list[ApplyResult] = []
    legacy_updates = 0
    for frame in frames:
        table, action = frame["table"], frame["action"]
        if table == "orderBookL2":
            model.apply(json.loads(json.dumps(frame)))
            legacy_updates += action == "update" and all("price" not in r for r in frame["data"])
        elif action == "partial":
            symbol = frame["filter"]["symbol"]
            trades[table] = [r for r in trades[table] if r["symbol"] != symbol] + frame["data"]
        else:
            trades[table] += frame["data"]
        results.append(storage.apply(frame))

    assert len(results) == 2089 and legacy_updates > 1000  # the pre-2023 price-less format
    assert all(r.violations == () for r in results), "a book crossed or a key was unknown"
    assert sum(r.dropped for r in results) == model.dropped
    assert sorted(storage.data["orderBookL2"]) == sorted(model.symbols) and len(model.symbols) == 10
    for symbol in model.symbols:
        assert_book_matches(storage, model, symbol, "orderBookL2")
    assert len(storage.book("XBTUSD").bids) + len(storage.book("XBTUSD").asks) > 9000
    for table in ("trade", "quote"):
        assert storage.rows(table) == trades[table][-1000:]
        assert storage.keys[table] == []


def test_z_hao_wang_orderbookl2_25_stripped_session() -> None:
    storage = Storage()
    model = BookModel()
    for record in records("z-hao-wang_bitmexObRaw.jsonl"):
        frame = dict(record["msg"])  # `table` and `symbol` were stripped by the source
        frame["table"] = "orderBookL2_25"
        frame["data"] = [{**row, "symbol": "XBTUSD"} for row in frame["data"]]
        if frame["action"] == "partial":
            frame.setdefault("keys", ["symbol", "id", "side"])
            frame.setdefault("filter", {"symbol": "XBTUSD"})
        model.apply(json.loads(json.dumps(frame)))
        result = storage.apply(frame)
        assert result.violations == () and result.dropped == 0
        assert [c.symbol for c in result.changes] == ["XBTUSD"]
    assert_book_matches(storage, model, "XBTUSD", "orderBookL2_25")
    assert storage.book("XBTUSD").best_bid is None  # nothing leaked into orderBookL2
    assert storage.rows("orderBookL2_25") == storage.rows("orderBookL2_25", "XBTUSD")


def scenarios() -> dict[str, list[Row]]:
    found: dict[str, list[Row]] = {}
    for record in records("bitmex-api-connectors_nodejs-fixtures.jsonl"):
        frame = message(record)
        if record["dir"] == "server" and isinstance(frame, dict) and "table" in frame:
            found.setdefault(record["scenario"], []).append(frame)
    return found


def test_nodejs_fixture_trade_and_order_scenarios() -> None:
    found = scenarios()

    storage = Storage()
    [result] = [storage.apply(f) for f in found["basicTradeInsert"]]
    rows = found["basicTradeInsert"][0]["data"]
    assert storage.rows("trade") == rows and len(rows) == 129
    assert [c.symbol for c in result.changes] == list(dict.fromkeys(r["symbol"] for r in rows))
    assert storage.has_partial("trade") and storage.has_partial("trade", "XBTUSD")

    storage = Storage()
    for frame in found["symboledTradeInsert"]:
        storage.apply(frame)
    assert storage.rows("trade") == found["symboledTradeInsert"][0]["data"]
    assert storage.has_partial("trade", "XBTUSD") and not storage.has_partial("trade")

    storage = Storage()  # order:* with filter {"account": 22}: a whole-table slice
    results = [storage.apply(f) for f in found["orderEmptyPartial"]]
    inserted = [row for f in found["orderEmptyPartial"][1:] for row in f["data"]]
    assert [r.dropped for r in results] == [0, 0, 0] and storage.keys["order"] == ["orderID"]
    assert dict(storage.data["order"]) == {(r["orderID"],): r for r in inserted}
    assert {r["symbol"] for r in inserted} == {"XBTUSD", "XBTZ20"}

    storage = Storage()  # order:XBTUSD with filter {"account": 22, "symbol": "XBTUSD"}
    for frame in found["orderSymboledEmptyPartial"]:
        storage.apply(frame)
    assert storage.rows("order") == found["orderSymboledEmptyPartial"][1]["data"]
    assert storage.has_partial("order", "XBTUSD") and not storage.has_partial("order", "XBTZ20")


def test_nodejs_fixture_orderbookl2_25_repartials() -> None:
    frames = scenarios()["orderbookSymboledEmptyPartial"]
    storage = Storage()
    results = [storage.apply(frame) for frame in frames]
    xbt = storage.book("XBTUSD", "orderBookL2_25")
    # Before the re-partial, a 2023 price-less update kept the level's price.
    assert results[2].changes[0].rows == (
        {**frames[0]["data"][0], "size": 77300, "timestamp": "2023-02-15T08:11:07.523Z"},
    )
    # The (hand-made) re-partial crosses XBTUSD: applied, and reported until it uncrosses.
    assert [(v.kind, v.symbol) for v in results[3].violations] == [("crossed_book", "XBTUSD")]
    assert [v.kind for v in results[5].violations] == ["crossed_book"]
    assert list(xbt.asks) == [(22077.5, 77300)] and list(xbt.bids) == [(22078.0, 202500)]
    # An empty re-partial empties that book only; the slice stays subscribed.
    assert results[4].changes[0].symbol == "ETHYLDH23" and results[4].changes[0].rows == ()
    eth = storage.book("ETHYLDH23", "orderBookL2_25")
    assert eth.best_bid is None and storage.has_partial("orderBookL2_25", "ETHYLDH23")
    assert sum(r.dropped for r in results) == 0


def test_liquidation_2024_lifecycle() -> None:
    frames = table_messages("unresolved_liquidation-capture-2024.jsonl")
    storage = Storage()
    model: dict[str, Row] = {}
    for frame in frames:
        result = storage.apply(frame)
        assert result.violations == () and result.dropped == 0
        rows = frame["data"]
        if frame["action"] == "partial":
            assert frame["filter"] == {} and rows == [] and storage.has_partial("liquidation")
            model.clear()
            continue
        [change] = result.changes
        assert change.symbol == rows[0]["symbol"]
        if frame["action"] == "insert":
            model.update({r["orderID"]: r for r in rows})
            expected = rows
        elif frame["action"] == "update":  # only changed fields, plus orderID and symbol
            expected = [model[r["orderID"]] | r for r in rows]
            model.update({r["orderID"]: r for r in expected})
        else:
            expected = [model.pop(r["orderID"]) for r in rows]
            assert all({"side", "price", "leavesQty"} <= r.keys() for r in expected)
        assert list(change.rows) == expected
        assert storage.rows("liquidation") == [model[k] for k in sorted(model)]
    assert len(frames) == 34 and storage.rows("liquidation") == []  # every liquidation left


def test_every_capture_applies_or_is_known_edited() -> None:
    """Every real table message is accepted, except partials whose source stripped ``keys``."""
    if not CAPTURES.is_dir():
        pytest.skip(f"no captures in {CAPTURES}")
    applied = 0
    for path in sorted(CAPTURES.glob("*.jsonl")):
        storage = Storage()
        for frame in table_messages(path.name):
            if frame.get("action") == "partial" and "keys" not in frame:
                with pytest.raises(RemoteProtocolError):
                    storage.apply(frame)
                continue
            storage.apply(frame)
            applied += 1
    assert applied > 2200


def test_parse_every_captured_timestamp() -> None:
    if not CAPTURES.is_dir():
        pytest.skip(f"no captures in {CAPTURES}")
    seen = 0
    for path in sorted(CAPTURES.glob("*.jsonl")):
        for frame in table_messages(path.name):
            for row in frame["data"]:
                for field in ("timestamp", "transactTime"):
                    text = row.get(field) if isinstance(row, dict) else None
                    if not isinstance(text, str):
                        continue
                    parsed = Storage.parse_timestamp(text)
                    assert parsed.utcoffset() == datetime.timedelta(0)
                    millis = f"{parsed:%Y-%m-%dT%H:%M:%S}.{parsed.microsecond // 1000:03d}Z"
                    assert millis == text
                    seen += 1
    assert seen > 500
