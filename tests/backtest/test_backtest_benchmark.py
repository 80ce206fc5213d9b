"""benchmarks.backtest still runs: a tiny history, one run of each path, no timing asserted."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from benchmarks import backtest
from bitmex_trio_websocket.emulator._fast_forward import FastForward


def test_every_path_runs_and_trades_each_data_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    path = backtest.history_file(600, seed=2, rate=50.0)  # 12 seconds of data
    results = {result.path: result for result in backtest.measure(path, runs=1)}
    assert list(results) == list(backtest.PATHS)
    for name, result in results.items():
        assert result.messages == 600 and result.median > 0
        trading = name != "idle strategy"
        # A market order at 0, 1, 2... data seconds after the start: one fill each.
        seconds = result.extra["data seconds"]
        assert seconds >= 10
        if trading:
            assert seconds <= result.extra["fills"] <= seconds + 1
        else:
            assert result.extra["fills"] == 0


def test_the_sleeping_pump_comparison_runs_both_and_restores_the_fast_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    path = backtest.history_file(300, seed=3, rate=50.0)
    paths = ["idle strategy", "an order every data second"]
    results = backtest.measure(path, runs=2, paths=paths, sleeping=True)
    names = {result.path: result for result in results}
    assert set(names) == {name + suffix for name in paths for suffix in ("", backtest.SLEEPING)}
    for name in paths:  # the same market, the same fills (measure checks the report bytes too)
        fast, slept = names[name].extra, names[name + backtest.SLEEPING].extra
        assert (fast["data seconds"], fast["fills"]) == (slept["data seconds"], slept["fills"])
        assert len(names[name].rates) == len(names[name + backtest.SLEEPING].rates) == 2
    assert FastForward.of_current_clock is not None
    with backtest.sleeping_pump():
        assert FastForward.of_current_clock() is None

    async def inside() -> object:
        return FastForward.of_current_clock()

    clock = trio.testing.MockClock(autojump_threshold=0)
    assert isinstance(trio.run(inside, clock=clock), FastForward)  # restored
