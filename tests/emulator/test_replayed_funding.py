"""Funding on history: a position held across a funding time pays once, from the recording.

The history is hand-written (``tests/support/history_frames``): an inverse XBTUSD at a mark of
100.0, asks 100.5 x 200 and 101.0 x 300. The account buys 100 contracts at 100.5 before the
04:00 UTC funding time. At the mark, 100 contracts of an inverse contract are worth
100 USD / 100 USD per XBT = 1 XBT = 100,000,000 XBt; at a rate of 0.0001 the long pays
100,000,000 * 0.0001 = 10,000 XBt (at 0.00015: 15,000 XBt).
"""

from __future__ import annotations

import logging
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from bitmex_trio_websocket.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    open_emulator,
)
from bitmex_trio_websocket.emulator.market import Delta
from bitmex_trio_websocket.emulator.market._replayed import ReplayedMarket
from bitmex_trio_websocket.emulator.market._schemas import TABLE_SCHEMAS

from ..replay.helpers import write_slices
from ..support.history_frames import BOOK, INSTRUMENT, T0, level, msg
from .test_paper import drain, private_feed, rows_of

ACCOUNT = 7
FUNDING_TIME = T0 + 4 * 3600  # 2025-01-01T04:00:00Z
START = FUNDING_TIME - 10
BOOK_META = {"keys": ["symbol", "id", "side"], "types": TABLE_SCHEMAS["orderBookL2"].types}
FUNDING_META = {"keys": ["timestamp", "symbol"], "types": TABLE_SCHEMAS["funding"].types}
ANNOUNCED = {**INSTRUMENT, "fundingTimestamp": "2025-01-01T04:00:00.000Z", "fundingRate": 0.0001}
NEXT = {"symbol": "XBTUSD", "fundingTimestamp": "2025-01-01T12:00:00.000Z", "fundingRate": 0.0002}


def funding_row(when: str, rate: float) -> dict[str, Any]:
    return {"timestamp": when, "symbol": "XBTUSD", "fundingInterval": "2000-01-01T08:00:00.000Z",
            "fundingRate": rate, "fundingRateDaily": rate * 3}  # fmt: skip


def book_frame(t: float) -> tuple[float, str]:
    return (t, msg("orderBookL2", "partial", BOOK, **BOOK_META, filter={"symbol": "XBTUSD"}))


def later_update(t: float, size: int) -> tuple[float, str]:
    return (t, msg("orderBookL2", "update", [level(4, "Buy", size, 99.5)]))


def long_position(tmp_path: Path, frames: list[tuple[float, str]]) -> ReplayedMarket:
    """The venue stepped through the opening second, the account long 100 at 100.5."""
    venue = ReplayedMarket(write_slices(tmp_path / "slices.txt", frames))
    venue.add_account(ACCOUNT, balance_xbt_sats=10**8)
    venue.step(START)
    order = {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "ordType": "Market"}
    row, _ = venue.exchange.place_order(ACCOUNT, order, venue.now)
    assert (row["ordStatus"], row["avgPx"]) == ("Filled", 100.5)
    return venue


def fundings(deltas: list[Delta]) -> list[dict[str, Any]]:
    return [row for d in deltas if d.account == ACCOUNT and d.table == "execution"
            for row in d.rows if row["execType"] == "Funding"]  # fmt: skip


def wallet(venue: ReplayedMarket, account: int = ACCOUNT) -> int:
    (margin,) = [m for m in venue.exchange.margins(account) if m["currency"] == "XBt"]
    return int(margin["walletBalance"])


def test_instrument_rows_announce_the_rate_paid_when_data_time_reaches_the_funding_time(
    tmp_path: Path,
) -> None:
    frames = [
        (START, msg("instrument", "partial", [ANNOUNCED], keys=["symbol"], filter={})),
        book_frame(START),
        # The row announcing the next funding time comes a hair early on the recorder's clock:
        # the 04:00 payment is still due, at the rate announced for 04:00.
        (FUNDING_TIME - 0.002, msg("instrument", "update", [NEXT])),
        later_update(FUNDING_TIME + 5, 450),
        # Data ends before 12:00: the rate announced for 12:00 is never paid.
    ]
    venue = long_position(tmp_path, frames)
    before = wallet(venue)
    assert venue.next_time() == FUNDING_TIME - 0.002
    assert fundings(venue.step(FUNDING_TIME - 0.001)) == []
    assert venue.next_time() == FUNDING_TIME  # the pump wakes at the funding time itself
    deltas = venue.step(FUNDING_TIME)
    (paid,) = fundings(deltas)
    assert (paid["lastQty"], paid["lastPx"], paid["commission"]) == (100, 100.0, 0.0001)
    assert paid["execComm"] == 10_000 and paid["realisedPnl"] == -10_000
    assert paid["timestamp"] == "2025-01-01T04:00:00.000Z"
    assert wallet(venue) == before - 10_000
    assert venue.next_time() == FUNDING_TIME + 5
    rest = venue.step(FUNDING_TIME + 8 * 3600 + 60)
    assert fundings(rest) == []
    assert wallet(venue) == before - 10_000  # once
    assert venue.funding_sources == {"XBTUSD": "instrument"}
    assert venue.unfunded == ()


def test_the_funding_tables_rows_are_paid_once_at_their_rate(tmp_path: Path) -> None:
    old = funding_row("2025-01-01T00:00:00.000Z", 0.0003)  # before the data: history
    new = funding_row("2025-01-01T04:00:00.000Z", 0.00015)
    frames = [
        (START, msg("instrument", "partial", [ANNOUNCED], keys=["symbol"], filter={})),
        (START, msg("funding", "partial", [old], **FUNDING_META, filter={})),
        book_frame(START),
        (FUNDING_TIME + 0.3, msg("funding", "insert", [new])),
        (FUNDING_TIME + 0.4, msg("instrument", "update", [NEXT])),
        # A recorder's reconnect: the repeated partial holds the row already paid.
        (FUNDING_TIME + 2, ""),
        (FUNDING_TIME + 3, msg("funding", "partial", [old, new], **FUNDING_META, filter={})),
        later_update(FUNDING_TIME + 5, 450),
    ]
    venue = long_position(tmp_path, frames)
    before = wallet(venue)
    assert fundings(venue.step(FUNDING_TIME + 0.2)) == []  # the instrument's time: left to the row
    deltas = venue.step(FUNDING_TIME + 0.3)
    (paid,) = fundings(deltas)
    assert (paid["commission"], paid["execComm"]) == (0.00015, 15_000)
    assert paid["timestamp"] == "2025-01-01T04:00:00.300Z"  # when the row was received
    assert fundings(venue.step(FUNDING_TIME + 60)) == []
    assert wallet(venue) == before - 15_000
    assert venue.funding_sources == {"XBTUSD": "funding"}


def test_a_short_receives_what_a_long_pays(tmp_path: Path) -> None:
    frames = [
        (START, msg("instrument", "partial", [ANNOUNCED], keys=["symbol"], filter={})),
        book_frame(START),
        later_update(FUNDING_TIME + 5, 450),
    ]
    venue = ReplayedMarket(write_slices(tmp_path / "slices.txt", frames))
    venue.add_account(ACCOUNT, balance_xbt_sats=10**8)
    venue.step(START)
    order = {"symbol": "XBTUSD", "side": "Sell", "orderQty": 100, "ordType": "Market"}
    venue.exchange.place_order(ACCOUNT, order, venue.now)
    before = wallet(venue)
    (paid,) = fundings(venue.step(FUNDING_TIME + 5))
    assert (paid["lastQty"], paid["execComm"]) == (-100, -10_000)
    assert wallet(venue) == before + 10_000


def test_without_funding_or_instrument_rows_nothing_is_paid_and_the_symbol_is_named_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = [
        book_frame(START),
        later_update(FUNDING_TIME + 5, 450),
        later_update(FUNDING_TIME + 8 * 3600 + 5, 500),  # a second funding time passes
    ]
    venue = long_position(tmp_path, frames)
    before = wallet(venue)
    with caplog.at_level(logging.WARNING, logger="bitmex_trio_websocket.emulator"):
        deltas = venue.step(FUNDING_TIME + 9 * 3600)
    assert fundings(deltas) == []
    assert wallet(venue) == before
    assert venue.unfunded == ("XBTUSD",)
    warnings = [r.getMessage() for r in caplog.records if "funding" in r.getMessage()]
    assert len(warnings) == 1 and "XBTUSD" in warnings[0]
    assert venue.funding_sources == {}


def test_a_dated_future_without_a_funding_timestamp_is_not_named(tmp_path: Path) -> None:
    frames = [
        (START, msg("instrument", "partial", [INSTRUMENT], keys=["symbol"], filter={})),
        book_frame(START),
        later_update(FUNDING_TIME + 5, 450),
    ]
    venue = long_position(tmp_path, frames)
    assert fundings(venue.step(FUNDING_TIME + 5)) == []
    assert venue.unfunded == ()


async def test_a_paper_position_over_the_emulator_pays_funding_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    frames = [
        (START, msg("instrument", "partial", [ANNOUNCED], keys=["symbol"], filter={})),
        book_frame(START),
        later_update(FUNDING_TIME + 5, 450),
        later_update(FUNDING_TIME + 6, 460),
    ]
    source = write_slices(tmp_path / "slices.txt", frames)
    with trio.fail_after(60):
        async with open_emulator(listen=False, history=source, speed=1.0) as emulator:
            topics = ["execution", "margin"]
            async with private_feed(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET, topics) as ws:
                emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Buy", 100, 101.0)
                await emulator.wait_still()  # the data has ended
                messages = await drain(ws)
    executions = list(rows_of(messages, "execution"))
    paid = [e for e in executions if e["execType"] == "Funding"]
    assert [(e["lastQty"], e["execComm"], e["timestamp"]) for e in paid] == [
        (100, 10_000, "2025-01-01T04:00:00.000Z")
    ]
    wallets = [m["walletBalance"] for m in rows_of(messages, "margin") if "walletBalance" in m]
    assert [a - b for a, b in pairwise(wallets)].count(10_000) == 1
