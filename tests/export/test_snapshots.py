"""Book snapshots at steps of data time, checked against an independent recomputation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from bitmex_trio_websocket import Storage
from bitmex_trio_websocket._export import BookSampler, DataTimeScan, snapshot_types, timestamp_text

from ..replay.helpers import captured_session, recording_bytes, reference_book, table_frames

KEYS = ["symbol", "id", "side"]


def book(action: str, *rows: tuple[int, str, int, float], symbol: str = "XBTUSD") -> str:
    data = [{"symbol": symbol, "id": i, "side": s, "size": z, "price": p} for i, s, z, p in rows]
    message: dict[str, Any] = {"table": "orderBookL2", "action": action, "data": data}
    if action == "partial":
        message |= {"keys": KEYS, "types": {}, "filter": {"symbol": symbol}}
    return orjson.dumps(message).decode()


def run(frames: list[tuple[float, str]], sampler_args: dict[str, Any]) -> list[dict[str, Any]]:
    storage = Storage()
    sampler = BookSampler(storage, **sampler_args)
    out: list[dict[str, Any]] = []
    for t, text in frames:
        out += sampler.advance(t)
        sampler.note(storage.apply(orjson.loads(text)), t)
    return out + sampler.finish()


def test_a_snapshot_is_the_state_after_every_message_at_or_before_its_time() -> None:
    frames = [
        (99.5, book("update", (1, "Buy", 1, 9.0))),  # before any book: no snapshot, no harm
        (100.2, book("partial", (1, "Buy", 5, 10.0), (2, "Sell", 7, 11.0))),
        (101.0, book("update", (1, "Buy", 6, 10.0))),  # exactly at a step: in that snapshot
        (101.4, book("insert", (3, "Buy", 2, 10.5))),
        (104.0, book("delete", (2, "Sell", 0, 11.0))),  # a quiet stretch before it
    ]
    rows = run(frames, {"depth": 2, "every": 1.0})
    assert [(r["timestamp"], r["bid_0_price"], r["bid_0_size"]) for r in rows] == [
        (timestamp_text(101.0), 10.0, 6),  # first step at or after the partial
        (timestamp_text(102.0), 10.5, 2),
        (timestamp_text(103.0), 10.5, 2),  # nothing changed: the book was that all the same
        (timestamp_text(104.0), 10.5, 2),  # finish: the step at the last message's own time
    ]
    assert rows[0] == {
        "timestamp": timestamp_text(101.0), "symbol": "XBTUSD",
        "bid_0_price": 10.0, "bid_0_size": 6, "ask_0_price": 11.0, "ask_0_size": 7,
        "bid_1_price": None, "bid_1_size": None, "ask_1_price": None, "ask_1_size": None,
    }  # fmt: skip
    assert rows[-1]["ask_0_price"] is None  # the ask was deleted at 104.0
    assert list(rows[0]) == list(snapshot_types(2))


def test_only_the_named_books_are_sampled_in_first_seen_order() -> None:
    frames = [
        (10.0, book("partial", (1, "Buy", 1, 1.0), symbol="ETHUSD")),
        (10.5, book("partial", (2, "Buy", 2, 2.0), symbol="XBTUSD")),
        (10.7, book("partial", (3, "Buy", 3, 3.0), symbol="SOLUSD")),
        (12.0, book("update", (2, "Buy", 4, 2.0), symbol="XBTUSD")),
    ]
    everything = run(frames, {"depth": 1, "every": 1.0})
    assert [(r["timestamp"][17:19], r["symbol"]) for r in everything] == [
        ("10", "ETHUSD"), ("11", "ETHUSD"), ("11", "XBTUSD"), ("11", "SOLUSD"),
        ("12", "ETHUSD"), ("12", "XBTUSD"), ("12", "SOLUSD"),
    ]  # fmt: skip
    only = run(frames, {"depth": 1, "every": 1.0, "symbols": ["XBTUSD"]})
    assert [(r["symbol"], r["bid_0_size"]) for r in only] == [("XBTUSD", 2), ("XBTUSD", 4)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        BookSampler(Storage(), depth=0, every=1.0)
    with pytest.raises(ValueError):
        BookSampler(Storage(), depth=1, every=0.0)


def test_snapshots_of_a_real_session_equal_a_recomputation(tmp_path: Path) -> None:
    frames = table_frames(captured_session())
    path = tmp_path / "session.jsonl"
    path.write_bytes(recording_bytes(frames))
    storage = Storage()
    scan = DataTimeScan(path, tables={"orderBookL2"})
    sampler = BookSampler(storage, depth=10, every=2.5, symbols=["XBTUSD", "ETHUSD", "ADAUSDT"])
    rows: list[dict[str, Any]] = []
    for t, message in scan.messages_of():
        rows += sampler.advance(t)
        sampler.note(scan.apply(storage, message), t)
    rows += sampler.finish()
    span = frames[-1][0] - frames[0][0]
    assert len(rows) >= 2 * math.floor(span / 2.5)  # two of the three symbols are in the data
    checked = 0
    for row in rows:
        at = Storage.parse_timestamp(row["timestamp"]).timestamp()
        bids, asks = reference_book(((t, x) for t, x in frames if t <= at), row["symbol"])
        for level in range(10):
            for side, levels in (("bid", bids), ("ask", asks)):
                want = levels[level] if level < len(levels) else (None, None)
                got = (row[f"{side}_{level}_price"], row[f"{side}_{level}_size"])
                assert got == want, (row["timestamp"], row["symbol"], side, level)
        checked += 1
    assert checked == len(rows) > 20
    assert {row["symbol"] for row in rows} == {"XBTUSD", "ADAUSDT"}  # no ETHUSD in the data
