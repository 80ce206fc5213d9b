"""The backtest runner and its report: figures computed by hand, determinism, errors, bounds."""

from __future__ import annotations

import math
import sys
from contextlib import aclosing
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from bitmex_trio_websocket import Change
from bitmex_trio_websocket._export._errors import MissingExtraError
from bitmex_trio_websocket.backtest import Progress, open_backtest, run_backtest

from ..support.history_frames import T0
from .history import (
    BUY_COST,
    BUY_FEE,
    FINAL_EQUITY,
    LOW_EQUITY,
    REALISED,
    SELL_COST,
    SELL_FEE,
    buy_then_sell,
    write_history,
)

TIMEOUT = 60


def test_the_report_of_a_buy_then_a_sell_on_a_hand_made_history(tmp_path: Path) -> None:
    report = run_backtest(buy_then_sell, write_history(tmp_path))
    buy, sell = report.fills
    assert (buy.time, buy.side, buy.qty, buy.price, buy.liquidity) == (
        T0 + 1, "Buy", 100, 100.0, "taker"
    )  # fmt: skip
    assert (buy.fee, buy.value, buy.realised_pnl) == (BUY_FEE, BUY_COST, 0)
    # The strategy's trio.sleep(20) is twenty seconds of data time.
    assert (sell.time, sell.side, sell.price) == (T0 + 21, "Sell", 125.0)
    assert (sell.fee, sell.value, sell.realised_pnl) == (SELL_FEE, SELL_COST, REALISED)
    assert [(o.side, o.ord_type, o.status, o.filled, o.cl_ord_id) for o in report.orders] == [
        ("Buy", "Market", "Filled", 100, "bt1-1"),
        ("Sell", "Market", "Filled", 100, "bt1-2"),
    ]
    assert (report.start, report.end) == (T0 + 1, T0 + 30)  # the data ends at T0 + 30
    assert (report.currency, report.symbol, report.messages) == ("XBt", "XBTUSD", 8)
    assert report.initial_equity == 10**8
    assert report.final_equity == FINAL_EQUITY
    assert report.realised_pnl == REALISED
    assert report.fees == BUY_FEE + SELL_FEE
    assert report.net_pnl == REALISED - BUY_FEE - SELL_FEE == FINAL_EQUITY - 10**8
    assert (report.unrealised_pnl, report.funding, report.position) == (0, 0, 0)
    assert (report.turnover, report.volume) == (BUY_COST + SELL_COST, 200)
    # From the starting 1 XBT down to the long marked at 95.0.
    assert report.max_drawdown == 10**8 - LOW_EQUITY
    assert report.max_drawdown_pct == pytest.approx((10**8 - LOW_EQUITY) / 10**8)
    # Equity at the mark; the price is the book's mid (99.5/100.0, then 125.0/125.5).
    assert [(p.time - T0, p.equity, p.position, p.price) for p in report.equity] == [
        (1, 10**8, 0, 99.75),  # as the strategy found the account
        (1, 10**8 - BUY_FEE, 100, 99.75),  # the buy
        (5, LOW_EQUITY, 100, 99.75),  # marked at 95.0
        (10, 10**8 - BUY_FEE + REALISED, 100, 125.25),  # marked at 125.0
        (21, FINAL_EQUITY, 0, 125.25),  # the sell
        (30, FINAL_EQUITY, 0, 125.25),  # the end
    ]


def test_the_report_as_json(tmp_path: Path) -> None:
    report = run_backtest(buy_then_sell, write_history(tmp_path))
    document = orjson.loads(report.to_json())
    assert document["format"] == "bitmex-trio-websocket backtest report"
    assert document["version"] == 1
    summary = document["summary"]
    assert (summary["start"], summary["end"]) == (
        "2025-01-01T00:00:01.000Z", "2025-01-01T00:00:30.000Z"
    )  # fmt: skip
    assert (summary["net_pnl"], summary["fills"], summary["orders"]) == (
        FINAL_EQUITY - 10**8, 2, 2
    )  # fmt: skip
    assert [fill["price"] for fill in document["fills"]] == [100.0, 125.0]
    assert document["orders"][1]["status"] == "Filled"
    columns = document["equity"]["columns"]
    rows = [dict(zip(columns, row, strict=True)) for row in document["equity"]["rows"]]
    assert rows[2] == {"time": T0 + 5, "equity": LOW_EQUITY, "wallet": 10**8 - BUY_FEE,
                       "unrealised_pnl": LOW_EQUITY - 10**8 + BUY_FEE, "position": 100,
                       "price": 99.75}  # fmt: skip


async def quoting(bws: Any, rest: Any) -> None:
    """Rests a bid and an ask around the touch every 5 s and listens to the book meanwhile: fills
    come from the synthetic flow, at times and sizes a scheduling difference would change."""
    async with trio.open_nursery() as nursery:

        async def read_book() -> None:
            async for _ in bws.listen("orderBookL2_25", "XBTUSD"):
                pass

        nursery.start_soon(read_book)
        while True:
            book = await rest.order_book("XBTUSD", depth=1)
            bid = max(row["price"] for row in book if row["side"] == "Buy")
            ask = min(row["price"] for row in book if row["side"] == "Sell")
            await rest.cancel_all()
            await rest.place_order(symbol="XBTUSD", side="Buy", orderQty=100, price=bid)
            await rest.place_order(symbol="XBTUSD", side="Sell", orderQty=100, price=ask)
            await trio.sleep(5)


def test_two_synthetic_runs_give_the_same_report_bytes() -> None:
    first = run_backtest(quoting, "synthetic", duration=300, seed=7)
    second = run_backtest(quoting, "synthetic", duration=300, seed=7)
    assert len(first.fills) > 5  # something happened that could have differed
    assert first.to_json() == second.to_json()
    other = run_backtest(quoting, "synthetic", duration=300, seed=8)
    assert other.to_json() != first.to_json()


def test_two_history_runs_give_the_same_report_bytes(tmp_path: Path) -> None:
    source = write_history(tmp_path)
    assert run_backtest(buy_then_sell, source).to_json() == (
        run_backtest(buy_then_sell, source).to_json()
    )


def test_a_strategy_exception_is_raised_with_the_data_time(tmp_path: Path) -> None:
    async def failing(bws: Any, rest: Any) -> None:
        await rest.place_order(symbol="XBTUSD", side="Buy", orderQty=100, ordType="Market")
        await trio.sleep(4)
        raise ValueError("the strategy's own bug")

    with pytest.raises(ValueError, match="the strategy's own bug") as caught:
        run_backtest(failing, write_history(tmp_path))
    assert caught.value.__notes__ == [
        "raised by the backtest's strategy at data time 2025-01-01T00:00:05.000Z (1 fills so far)"
    ]


def test_from_and_to_bound_the_run(tmp_path: Path) -> None:
    report = run_backtest(buy_then_sell, write_history(tmp_path), start=T0 + 5, end=T0 + 15)
    assert (report.start, report.end) == (T0 + 5, T0 + 15)
    # The buy at the start; the sell would be at T0 + 25, after the end: the strategy was
    # cancelled with its position open, marked at 125.0.
    [fill] = report.fills
    assert (fill.time, fill.price) == (T0 + 5, 100.0)
    assert report.position == 100
    assert report.unrealised_pnl == REALISED
    assert report.net_pnl == REALISED - BUY_FEE
    assert report.equity[0].time == T0 + 5 and report.equity[-1].time == T0 + 15


def test_a_synthetic_run_lasts_its_duration_in_data_time() -> None:
    seen: list[Progress] = []

    async def idle(bws: Any, rest: Any) -> None:
        await trio.sleep_forever()

    report = run_backtest(idle, "quiet", duration=30, start=T0, progress=seen.append)
    assert (report.start, report.end) == (T0, T0 + 30)
    assert report.messages == 30 * 50  # the synthetic market's 50 events per data second
    assert report.fills == () and report.net_pnl == 0
    assert [p.data_time - T0 for p in seen] == list(range(1, 31))
    assert seen[-1].fraction == 1.0 and seen[14].fraction == pytest.approx(0.5)


def test_bad_arguments_are_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="end or duration"):
        run_backtest(buy_then_sell, "synthetic", end=T0 + 10, duration=10)
    with pytest.raises(ValueError, match="after start"):
        run_backtest(buy_then_sell, "synthetic", start=T0, end=T0)
    with pytest.raises(Exception, match="no such file"):
        run_backtest(buy_then_sell, str(tmp_path / "missing.json"))


async def test_open_backtest_yields_connected_clients(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_backtest(write_history(tmp_path)) as (bws, rest):
            assert bws.authenticated
            placed: dict[str, Any] = {}
            async with aclosing(bws.events("execution")) as changes:
                async for change in changes:
                    if isinstance(change, Change) and change.action == "partial":
                        placed = await rest.place_order(
                            symbol="XBTUSD", side="Buy", orderQty=100, ordType="Market"
                        )
                    elif isinstance(change, Change) and change.rows[0]["execType"] == "Trade":
                        break
            assert isinstance(change, Change)
            row = change.rows[0]
            assert (row["orderID"], row["lastPx"]) == (placed["orderID"], 100.0)
            assert row["timestamp"] == "2025-01-01T00:00:01.000Z"  # data time
            [position] = await rest.positions()
            assert position["currentQty"] == 100


def test_the_picture(tmp_path: Path) -> None:
    report = run_backtest(buy_then_sell, write_history(tmp_path))
    picture = tmp_path / "report.png"
    report.plot(picture)
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert picture.stat().st_size > 10_000


def test_the_picture_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = run_backtest(buy_then_sell, write_history(tmp_path))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=r'pip install "bitmex-trio-websocket\[plot\]"'):
        report.plot(tmp_path / "report.png")
    assert not (tmp_path / "report.png").exists()
    assert math.isfinite(report.max_drawdown_pct)
