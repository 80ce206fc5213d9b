"""``Emulator.place_order``/``cancel_order`` on an emulator serving history (``history=``).

The same hand-written history as ``test_paper_history`` (XBTUSD asks 100.5 x 200, 101.0 x 300,
bids 100.0 x 100, 99.5 x 400); orders placed through the Python calls go to the replayed
venue's exchange at the data's time and their rows reach the account's websocket.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from bitmex_trio_websocket.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    open_emulator,
)

from .test_emulator_replay import line, write_recording
from .test_paper import drain, private_feed, rows_of
from .test_paper_history import trading_history

TIMEOUT = 60


async def test_place_and_cancel_order_trade_history(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            trading_history(tmp_path, speed=1.0) as emulator,
            private_feed(
                emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET, ["order", "execution"]
            ) as ws,
        ):
            taken = emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Buy", 300, 101.0)
            resting = emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Buy", 100, 98.0)
            emulator.cancel_order(DEFAULT_ACCOUNT, resting)
            messages = await drain(ws)
            executions = list(rows_of(messages, "execution"))
            fills = [(r["orderID"], r["lastPx"], r["lastQty"])
                     for r in executions if r["execType"] == "Trade"]  # fmt: skip
            assert fills == [(taken, 100.5, 200), (taken, 101.0, 100)]  # the recorded asks
            statuses = {(r["orderID"], r["ordStatus"]) for r in rows_of(messages, "order")
                        if "ordStatus" in r}  # fmt: skip
            assert {(taken, "Filled"), (resting, "New"), (resting, "Canceled")} <= statuses
            stamps = {r["transactTime"] for r in executions}
            assert stamps and all(s.startswith("2025-01-01T00:00:01") for s in stamps)  # data


async def test_place_order_without_a_market_says_why(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    row = {"symbol": "XBTUSD", "id": 1, "side": "Buy", "size": 5, "price": 1.0}
    partial = {"table": "orderBookL2", "action": "partial", "keys": ["symbol", "id", "side"],
               "data": [row]}  # fmt: skip
    path = write_recording(tmp_path / "r.jsonl", [line(100, partial)])
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, replay=str(path)) as emulator:
            with pytest.raises(RuntimeError, match="per-session replay has no market"):
                emulator.place_order(DEFAULT_ACCOUNT, "XBTUSD", "Buy", 100, 1.0)
            with pytest.raises(RuntimeError, match="per-session replay has no market"):
                emulator.cancel_order(DEFAULT_ACCOUNT, "x")
