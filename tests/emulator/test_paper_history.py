"""Paper trading against history: ``open_emulator(history=...)`` and ``emulator --replay``.

The history is hand-written Tardis slice lines (an XBTUSD book, then a trade printing through a
resting bid, then a book change), so every expected fill is computed by hand. The emulator's
clock is the data's time, paced by ``speed`` on trio's clock (virtual here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from trio_websocket import open_websocket_url

from bitmex_trio_websocket.emulator import (
    DEFAULT_ACCOUNT,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    Emulator,
    open_emulator,
)
from bitmex_trio_websocket.emulator.market._replayed import ReplayedMarket
from bitmex_trio_websocket.emulator.market._schemas import TABLE_SCHEMAS

from ..cli.test_cli_emulator import read_line
from ..replay.helpers import write_slices
from ..support.history_frames import BOOK, INSTRUMENT, T0, TS, level, msg
from .http_client import HttpClient, auth_headers
from .test_paper import ACCOUNTS, OTHER_KEY, OTHER_SECRET, drain, private_feed, rows_of, trader

TIMEOUT = 60
TRADE = {"symbol": "XBTUSD", "side": "Sell", "size": 500, "price": 99.0, "timestamp": TS}


def history(tmp_path: Path) -> Path:
    book_meta = {"keys": ["symbol", "id", "side"], "types": TABLE_SCHEMAS["orderBookL2"].types}
    frames = [
        (T0, msg("instrument", "partial", [INSTRUMENT], keys=["symbol"], filter={})),
        (T0, msg("orderBookL2", "partial", BOOK, **book_meta, filter={"symbol": "XBTUSD"})),
        (T0, msg("trade", "partial", [], keys=[], filter={"symbol": "XBTUSD"})),
        (T0 + 10, msg("trade", "insert", [TRADE])),
        (T0 + 20, msg("orderBookL2", "update", [{**level(2, "Sell", 50, 100.5)}])),
    ]
    return write_slices(tmp_path / "slices.txt", frames)


@asynccontextmanager
async def trading_history(tmp_path: Path, **options: Any) -> AsyncIterator[Emulator]:
    async with open_emulator(
        listen=False, history=history(tmp_path), accounts=ACCOUNTS, **options
    ) as emulator:
        yield emulator


async def test_the_clock_is_the_datas_time_paced_by_speed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trading_history(tmp_path, speed=2.0) as emulator:
            start = trio.current_time()
            assert emulator.now() == pytest.approx(T0 + 1.0)  # the opening second pre-rolled
            assert "XBTUSD" in emulator.symbols
            with pytest.raises(RuntimeError, match="history"):
                _ = emulator.market
            async with emulator.open_memory_websocket() as ws:
                await ws.get_message()
                await ws.send_message('{"op":"subscribe","args":["trade:XBTUSD"]}')
                await ws.get_message()  # ack
                assert orjson.loads(await ws.get_message())["data"] == []  # partial
                message = orjson.loads(await ws.get_message())
                # Data second 10 arrives 9 data seconds after the opening, at speed 2.
                assert trio.current_time() - start == pytest.approx(4.5)
                assert message["data"][0]["price"] == 99.0
                assert emulator.now() == pytest.approx(T0 + 10)
            await emulator.wait_still()
            venue = emulator.venue
            assert isinstance(venue, ReplayedMarket) and venue.next_time() is None


async def test_orders_over_rest_fill_against_the_recorded_book_and_trades(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            trading_history(tmp_path, speed=1.0) as emulator,
            private_feed(
                emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET, ["order", "execution"]
            ) as ws,
            private_feed(emulator, OTHER_KEY, OTHER_SECRET, ["order"]) as other_ws,
            trader(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET) as me,
        ):
            book = (await me.call("GET", "/orderBook/L2", {"symbol": "XBTUSD"})).json()
            assert sorted((r["side"], r["price"], r["size"]) for r in book) == sorted(
                (r["side"], r["price"], r["size"]) for r in BOOK
            )
            # Marketable: takes the recorded asks level by level at their own prices.
            taken = await me.call(
                "POST", "/order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 300,
                                   "price": 101.0},
            )  # fmt: skip
            assert taken.status == 200, taken.body
            assert (taken.json()["ordStatus"], taken.json()["avgPx"]) == ("Filled", pytest.approx(
                (200 * 100.5 + 100 * 101.0) / 300, rel=1e-3
            ))  # fmt: skip
            fills = [(r["lastPx"], r["lastQty"]) for r in rows_of(await drain(ws), "execution")
                     if r["execType"] == "Trade"]  # fmt: skip
            assert fills == [(100.5, 200), (101.0, 100)]
            # Resting behind the 400 recorded at 99.5: the trade at 99.0 prints through it.
            resting = (await me.call(
                "POST", "/order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                   "price": 99.5},
            )).json()  # fmt: skip
            assert resting["ordStatus"] == "New"
            await drain(ws)
            await trio.sleep(T0 + 10 - emulator.now())  # speed 1: data seconds are seconds
            messages = await drain(ws)
            trades = [r for r in rows_of(messages, "execution") if r["execType"] == "Trade"]
            assert [(r["orderID"], r["lastPx"], r["lastQty"]) for r in trades] == [
                (resting["orderID"], 99.5, 100)
            ]
            assert trades[0]["transactTime"].startswith("2025-01-01T00:00:10")
            orders = (await me.call("GET", "/order", {"reverse": "true"})).json()
            assert orders[0]["ordStatus"] == "Filled"
            position = (await me.call("GET", "/position", {"symbol": "XBTUSD"})).json()
            assert position[0]["currentQty"] == 400
            assert await drain(other_ws) == []  # the other account saw none of it


async def test_the_switch_runs_on_the_datas_clock(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            trading_history(tmp_path, speed=10.0) as emulator,
            private_feed(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET, ["order"]) as ws,
            trader(emulator, DEFAULT_API_KEY, DEFAULT_API_SECRET) as me,
        ):
            placed = (await me.call(
                "POST", "/order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100,
                                   "price": 90.0},
            )).json()  # fmt: skip
            await drain(ws)
            start, armed_at = trio.current_time(), emulator.now()
            assert (
                await me.call("POST", "/order/cancelAllAfter", {"timeout": 60000})
            ).status == 200
            assert emulator.dead_mans_switch_deadline(DEFAULT_ACCOUNT) == pytest.approx(
                armed_at + 60
            )
            await trio.sleep(5.9)  # 59 data seconds: the data ended at 20 s, time has not
            assert emulator.dead_mans_switch_fired == []
            await trio.sleep(0.2)
            [(account, fired_at)] = emulator.dead_mans_switch_fired
            assert account == DEFAULT_ACCOUNT
            assert fired_at - start == pytest.approx(6.0)
            canceled = [r for r in rows_of(await drain(ws), "order")
                        if r.get("ordStatus") == "Canceled"]  # fmt: skip
            assert [r["orderID"] for r in canceled] == [placed["orderID"]]


def test_history_and_per_session_replay_exclude_each_other(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="one or the other"):
            async with open_emulator(listen=False, history=history(tmp_path), replay="x"):
                pass

    trio.run(main)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_cli_replay_serves_history_as_a_market_with_two_accounts(tmp_path: Path) -> None:
    source = history(tmp_path)
    command = [
        sys.executable, "-m", "bitmex_trio_websocket", "emulator", "--replay", str(source),
        "--speed", "1", "--account", f"{OTHER_KEY}:{OTHER_SECRET}:200002",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        try:
            url, rest_url = (
                (await read_line(process)).decode().strip(),
                (await read_line(process)).decode().strip(),
            )
            assert url.startswith("ws://127.0.0.1:") and url.endswith("/realtime")
            assert rest_url == url.replace("ws://", "http://").replace("/realtime", "/api/v1")
            port = int(url.split(":")[2].split("/")[0])
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                client = HttpClient(stream)
                # One market for both: the second sell finds the first one's level taken (it
                # stays taken until the record changes it) and goes one level down.
                for key, secret, account, price in (
                    (DEFAULT_API_KEY, DEFAULT_API_SECRET, DEFAULT_ACCOUNT, 100.0),
                    (OTHER_KEY, OTHER_SECRET, 200002, 99.5),
                ):
                    body = orjson.dumps({"symbol": "XBTUSD", "side": "Sell", "orderQty": 100,
                                         "ordType": "Market"})  # fmt: skip
                    # The clock is the data's (2025): a wall-clock expiry is in its future.
                    expires = int(time.time()) + 60
                    headers = auth_headers(key, secret, "POST", "/api/v1/order", body, expires)
                    reply = await client.request("POST", "/api/v1/order", headers=headers,
                                                 body=body)  # fmt: skip
                    assert reply.status == 200, reply.body
                    row = reply.json()
                    assert (row["account"], row["ordStatus"], row["avgPx"]) == (
                        account, "Filled", price,
                    )  # fmt: skip
            async with open_websocket_url(url) as ws:
                assert "Welcome" in await ws.get_message()
            process.send_signal(15)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()
