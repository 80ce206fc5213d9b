"""The replayed market with the real paper exchange: orders matched against recorded history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bitmex_trio_websocket.emulator.exchange import OrderRejected
from bitmex_trio_websocket.emulator.market import Delta
from bitmex_trio_websocket.emulator.market._replayed import ReplayedMarket
from bitmex_trio_websocket.emulator.market._schemas import TABLE_SCHEMAS

from ..replay.helpers import write_slices
from ..support.history_frames import BOOK, INSTRUMENT, T0, TS, level, msg

ACCOUNT = 7


def opening(*later: tuple[float, str]) -> list[tuple[float, str]]:
    book_meta = {"keys": ["symbol", "id", "side"], "types": TABLE_SCHEMAS["orderBookL2"].types}
    return [
        (T0, msg("instrument", "partial", [INSTRUMENT], keys=["symbol"], filter={})),
        (T0, msg("orderBookL2", "partial", BOOK, **book_meta, filter={"symbol": "XBTUSD"})),
        (T0, msg("trade", "partial", [], keys=[], filter={"symbol": "XBTUSD"})),
        *later,
    ]


def venue_of(tmp_path: Path, frames: list[tuple[float, str]]) -> ReplayedMarket:
    venue = ReplayedMarket(write_slices(tmp_path / "slices.txt", frames))
    venue.add_account(ACCOUNT, balance_xbt_sats=10**8)
    venue.step(T0)
    return venue


def private(deltas: list[Delta], table: str) -> list[dict[str, Any]]:
    return [row for d in deltas if d.account == ACCOUNT and d.table == table for row in d.rows]


def test_a_marketable_order_takes_the_recorded_book_at_its_prices(tmp_path: Path) -> None:
    venue = venue_of(tmp_path, opening())
    book_before = venue.snapshot("orderBookL2", "XBTUSD").rows
    order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 300, "price": 101.0,
             "ordType": "Limit"}  # fmt: skip
    row, deltas = venue.exchange.place_order(ACCOUNT, order, venue.now)
    fills = [(e["lastPx"], e["lastQty"]) for e in private(deltas, "execution")
             if e["execType"] == "Trade"]  # fmt: skip
    assert fills == [(100.5, 200), (101.0, 100)]  # each recorded level at its own price
    assert row["ordStatus"] == "Filled"
    assert all(d.account is not None for d in deltas)  # no public trade of ours: no impact
    assert venue.snapshot("orderBookL2", "XBTUSD").rows == book_before
    # What was taken stays taken until the record changes those levels.
    again = {**order, "orderQty": 500, "timeInForce": "ImmediateOrCancel"}
    row, deltas = venue.exchange.place_order(ACCOUNT, again, venue.now)
    fills = [(e["lastPx"], e["lastQty"]) for e in private(deltas, "execution")
             if e["execType"] == "Trade"]  # fmt: skip
    assert fills == [(101.0, 200)]
    assert row["ordStatus"] == "Canceled" and row["cumQty"] == 200


def test_a_resting_order_fills_when_a_recorded_trade_prints_through_it(tmp_path: Path) -> None:
    trade = {"symbol": "XBTUSD", "side": "Sell", "size": 500, "price": 99.0, "timestamp": TS}
    venue = venue_of(tmp_path, opening((T0 + 5, msg("trade", "insert", [trade]))))
    order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 99.5}
    row, _ = venue.exchange.place_order(ACCOUNT, order, venue.now)
    assert row["ordStatus"] == "New"  # behind the 400 recorded at 99.5
    deltas = venue.step(T0 + 5)
    assert (deltas[0].table, deltas[0].account) == ("trade", None)  # the record first
    executions = [e for e in private(deltas, "execution") if e["execType"] == "Trade"]
    assert [(e["lastPx"], e["lastQty"], e["lastLiquidityInd"]) for e in executions] == [
        (99.5, 100, "AddedLiquidity")
    ]
    assert venue.exchange.orders(ACCOUNT)[-1]["ordStatus"] == "Filled"
    tables = [d.table for d in deltas if d.account == ACCOUNT]
    assert tables.index("order") < tables.index("execution") < tables.index("position")


def test_a_symbol_without_a_book_refuses_orders(tmp_path: Path) -> None:
    venue = venue_of(tmp_path, opening())
    with pytest.raises(OrderRejected, match="Invalid symbol"):
        venue.exchange.place_order(
            ACCOUNT, {"symbol": "ETHUSD", "side": "Buy", "orderQty": 1, "price": 1.0}, venue.now
        )


def _queue_frames() -> list[tuple[float, str]]:
    """A sell of 60 at 100.0 (100 recorded there), its book update 3 ms later (the next frame,
    as receive times have it), then sells of 40 and 100 at 100.0."""

    def sell(size: int) -> str:
        row = {"symbol": "XBTUSD", "side": "Sell", "size": size, "price": 100.0, "timestamp": TS}
        return msg("trade", "insert", [row])

    shrunk = level(3, "Buy", 40, 100.0)
    return opening(
        (T0 + 1, sell(60)),
        (T0 + 1.003, msg("orderBookL2", "update", [shrunk])),
        (T0 + 2, sell(40)),
        (T0 + 3, sell(100)),
    )


def _resting_fills(venue: ReplayedMarket, until: float) -> list[tuple[str, int]]:
    order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 100.0}
    row, _ = venue.exchange.place_order(ACCOUNT, order, venue.now)
    assert row["ordStatus"] == "New"  # behind the 100 recorded at 100.0
    deltas = venue.step(until)
    return [(e["timestamp"], e["lastQty"]) for e in private(deltas, "execution")
            if e["execType"] == "Trade"]  # fmt: skip


def test_a_trade_and_its_book_update_frames_apart_count_once(tmp_path: Path) -> None:
    venue = venue_of(tmp_path, _queue_frames())
    # 100 ahead; the sell of 60 leaves 40 ahead, and the update 100 -> 40 is that sell, not
    # 60 more leaving in front: the sell of 40 at T0 + 2 reaches the front, the next fills us
    fills = _resting_fills(venue, T0 + 3)
    assert fills == [("2025-01-01T00:00:03.000Z", 100)]


def test_without_a_window_the_same_volume_comes_off_twice(tmp_path: Path) -> None:
    # the fault the window fixes: keyed by receive time alone, the update is a second decrease
    venue = ReplayedMarket(write_slices(tmp_path / "s.txt", _queue_frames()), queue_window=0.0)
    venue.add_account(ACCOUNT, balance_xbt_sats=10**8)
    venue.step(T0)
    fills = _resting_fills(venue, T0 + 3)
    assert fills[0] == ("2025-01-01T00:00:02.000Z", 40)  # a second too early
