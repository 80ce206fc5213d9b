"""benchmarks.backtest still runs: a tiny history, one run of each path, no timing asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import backtest


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
