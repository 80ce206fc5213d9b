"""Named market regimes: each deterministic, each doing what its name says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import trio
import trio_websocket

from bitmex_trio_websocket._cli._emulator_command import SCENARIO_NAMES
from bitmex_trio_websocket.emulator import SCENARIOS, Market, open_emulator
from bitmex_trio_websocket.emulator.market import Delta

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z


def steps(market: Market, count: int, rate: float = 50.0) -> list[Delta]:
    out: list[Delta] = []
    for index in range(1, count + 1):
        out.extend(market.step(T0 + index / rate))
    return out


def last_price(market: Market, symbol: str = "XBTUSD") -> float:
    price: float = market.snapshot("instrument", symbol).rows[0]["lastPrice"]
    return price


def test_the_cli_names_every_scenario() -> None:
    assert tuple(SCENARIOS) == SCENARIO_NAMES


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_is_deterministic(name: str) -> None:
    runs = []
    for _ in range(2):
        market = Market(seed=5, start_time=T0, scenario=name)
        runs.append([orjson.dumps([d.table, d.action, d.rows]) for d in steps(market, 3000)])
    assert runs[0] == runs[1]
    assert runs[0] != [
        orjson.dumps([d.table, d.action, d.rows])
        for d in steps(Market(seed=6, start_time=T0, scenario=name), 3000)
    ]


def price_range(market: Market, count: int) -> float:
    prices: list[float] = [
        row["price"]
        for delta in steps(market, count)
        if delta.table == "trade" and delta.symbol == "XBTUSD"
        for row in delta.rows
    ]
    return max(prices) - min(prices)


def test_quiet_moves_less_than_the_plain_market_and_trending_goes_up() -> None:
    plain = price_range(Market(seed=7, start_time=T0), 30_000)
    quiet = price_range(Market(seed=7, start_time=T0, scenario="quiet"), 30_000)
    assert quiet < plain / 2
    trending = Market(seed=7, start_time=T0, scenario="trending")
    start = last_price(trending)
    steps(trending, 30_000)
    assert last_price(trending) > start * 1.001


def test_flash_crash_falls_with_a_liquidation_cascade_then_recovers_part() -> None:
    market = Market(seed=8, start_time=T0, scenario="flash_crash")
    start = last_price(market)
    crash = SCENARIOS["flash_crash"]
    assert crash.crash_after is not None
    out = steps(market, int((crash.crash_after + crash.crash_seconds + 120) * 50))
    prices = [
        row["price"]
        for delta in out
        if delta.table == "trade" and delta.symbol == "XBTUSD"
        for row in delta.rows
    ]
    bottom = min(prices)
    assert bottom < start * (1 - crash.crash_depth * 0.5)
    sells = [
        row
        for delta in out
        if delta.table == "liquidation" and delta.action == "insert"
        for row in delta.rows
        if row["side"] == "Sell"
    ]
    assert len(sells) > 20
    sizes = [row["leavesQty"] for row in sells[:40]]
    assert sum(sizes[-10:]) > sum(sizes[:10])  # the cascade grows
    assert bottom < prices[-1] < start  # part of the fall recovered


def test_thin_book_is_thin() -> None:
    plain = Market(seed=9, start_time=T0)
    thin = Market(seed=9, start_time=T0, scenario="thin_book")
    assert len(thin.book_levels("XBTUSD")) < len(plain.book_levels("XBTUSD")) / 5


def virtual_clock() -> Callable[[], float]:
    origin = trio.current_time()
    return lambda: T0 + trio.current_time() - origin


async def test_funding_flip_opens_before_funding_and_flips_the_rate(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(2000):
        async with open_emulator(
            listen=False, clock=virtual_clock(), scenario="funding_flip"
        ) as emu:
            (row,) = emu.market.snapshot("instrument", "XBTUSD").rows
            assert row["fundingTimestamp"] == "2025-01-01T04:00:00.000Z"
            assert emu.now() == pytest.approx(T0 + 4 * 3600 - 300)
            assert row["fundingRate"] > 0 > row["indicativeFundingRate"]
            await trio.sleep(301)
            (row,) = emu.market.snapshot("instrument", "XBTUSD").rows
            assert row["fundingTimestamp"] == "2025-01-01T12:00:00.000Z"
            assert row["fundingRate"] < 0
            funding = emu.market.snapshot("funding", "XBTUSD").rows
            assert funding[-1]["timestamp"] == "2025-01-01T04:00:00.000Z"


async def test_exchange_deploy_says_bye_then_refuses_for_a_while(
    autojump_clock: trio.abc.Clock,
) -> None:
    scenario = SCENARIOS["exchange_deploy"]
    assert scenario.deploy_after is not None
    with trio.fail_after(600):
        async with open_emulator(listen=False, clock=virtual_clock(), scenario=scenario) as emu:
            async with emu.open_memory_websocket() as ws:
                await ws.get_message()  # the welcome
                with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                    while True:
                        await ws.get_message()
                assert closed.value.reason is not None
                assert (closed.value.reason.code, closed.value.reason.reason) == (1000, "Bye")
                assert trio.current_time() == pytest.approx(scenario.deploy_after, abs=1)
            with pytest.raises(trio_websocket.ConnectionRejected) as refused:
                async with emu.open_memory_websocket():
                    pass
            assert refused.value.status_code == 503
            await trio.sleep(scenario.deploy_down)
            async with emu.open_memory_websocket() as ws:
                welcome: Any = orjson.loads(await ws.get_message())
                assert welcome["info"].startswith("Welcome")
