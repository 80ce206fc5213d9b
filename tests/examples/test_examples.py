"""The examples, unchanged, in short backtests: they place orders, get fills and exit cleanly.

Each runs over ``history.py``'s five hand-made minutes (so the fills can be checked against what
the market did) and over two minutes of the seeded synthetic market; every run is deterministic
(two runs, the same report bytes). The last tests run the scripts the way the README says, live
against an emulator in their own process.
"""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import trio

from bitmex_trio_websocket import BitMEXRest, BitMEXWebsocket
from bitmex_trio_websocket.backtest import Report, run_backtest
from bitmex_trio_websocket.backtest._report import iso
from examples import market_maker, momentum

from .history import START_MID, T0, TICK, mid_at, write_history

REPO = Path(__file__).resolve().parents[2]
OPEN = frozenset({"New", "PartiallyFilled"})
Strategy = Callable[[BitMEXWebsocket, BitMEXRest], Awaitable[None]]
STRATEGIES: dict[str, Strategy] = {
    "market_maker": market_maker.strategy,
    "momentum": momentum.strategy,
}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_history(tmp_path_factory.mktemp("history") / "xbtusd.txt")


@pytest.fixture(scope="module")
def mm_report(history: Path) -> Report:
    return run_backtest(market_maker.strategy, history)


@pytest.fixture(scope="module")
def momentum_report(history: Path) -> Report:
    return run_backtest(momentum.strategy, history)


def left_open(report: Report) -> list[str]:
    return [order.cl_ord_id for order in report.orders if order.status in OPEN]


def test_market_maker_quotes_both_sides_post_only_and_cancels_on_exit(mm_report: Report) -> None:
    fills = mm_report.fills
    assert {fill.side for fill in fills} == {"Buy", "Sell"}
    # Post-only: every fill earned the maker rebate, every order was a 1-lot limit.
    assert all(fill.liquidity == "maker" and fill.fee < 0 for fill in fills)
    assert {(o.ord_type, o.qty) for o in mm_report.orders} == {("Limit", 100)}
    # The rising market lifts its asks (the sweeps print through them) until the position
    # reaches the limit of 5 lots; the falling market then hits its bids.
    assert [fill.side for fill in fills[:6]] == ["Sell"] * 5 + ["Buy"]
    assert [fill.price for fill in fills[:5]] == sorted(fill.price for fill in fills[:5])
    assert min(point.position for point in mm_report.equity) == -500
    assert max(abs(point.position) for point in mm_report.equity) == 500
    # Cancelled at the end of the data, it cancelled its quotes on the way out: the bid (short
    # 5 lots after the squeeze, it no longer offered).
    assert left_open(mm_report) == []
    assert mm_report.position == -500
    [canceled] = [order for order in mm_report.orders if order.status == "Canceled"]
    assert (canceled.side, canceled.updated) == ("Buy", iso(mm_report.end))


def test_market_maker_amends_its_quotes_as_the_book_moves(mm_report: Report) -> None:
    # The touch moves 110 times, yet every order but the last two ended in a fill: the quotes
    # followed the book by amending, not by cancelling and placing anew.
    assert len(mm_report.orders) <= len(mm_report.fills) + 2
    # While the market rises the ask rests one tick behind the best ask (mid + 0.25), where the
    # sweeps reach it: it was moved up with the mid every two seconds.
    for fill in mm_report.fills[:5]:
        assert fill.price == mid_at(int(fill.time - T0)) + 0.25 + TICK


def test_market_maker_keeps_the_dead_mans_switch_armed(history: Path) -> None:
    calls: list[tuple[float, int]] = []

    class Spy:
        """The REST client, with its cancelAllAfter calls written down."""

        def __init__(self, rest: BitMEXRest) -> None:
            self._rest = rest

        def __getattr__(self, name: str) -> Any:
            return getattr(self._rest, name)

        async def cancel_all_after(self, timeout_ms: int) -> dict[str, Any]:
            calls.append((trio.current_time(), timeout_ms))
            return await self._rest.cancel_all_after(timeout_ms)

    async def observed(bws: BitMEXWebsocket, rest: BitMEXRest) -> None:
        await market_maker.strategy(bws, cast(BitMEXRest, Spy(rest)))

    report = run_backtest(observed, history)
    armed = [t for t, timeout in calls if timeout == 60_000]
    assert len(armed) == math.ceil((report.end - report.start) / 15)
    assert all(b - a == pytest.approx(15) for a, b in itertools.pairwise(armed))
    assert calls[-1][1] == 0  # disarmed on the way out


def test_momentum_enters_with_the_flow_leaves_on_reversal_and_is_stopped_out(
    momentum_report: Report,
) -> None:
    fills = momentum_report.fills
    orders = {order.cl_ord_id: order for order in momentum_report.orders}
    shown = [(fill.side, orders[fill.cl_ord_id].ord_type) for fill in fills]
    assert shown == [("Buy", "Market"), ("Sell", "Market"), ("Sell", "Market"), ("Buy", "Stop")]
    assert all(fill.liquidity == "taker" for fill in fills)
    enter_long, leave_long, enter_short, stopped = fills
    assert enter_long.time < T0 + 5  # the buying shows within the first seconds
    # The flow turns (sells from 90 s) and crosses -0.6 within the 30 s window.
    assert T0 + 90 < leave_long.time < T0 + 125
    assert enter_short.time - leave_long.time == pytest.approx(1)  # the next check
    # The stop: 0.2% above the short's entry, on the tick, watching the last price.
    stop = orders[stopped.cl_ord_id]
    expected_stop = math.ceil(enter_short.price * 1.002 / TICK) * TICK
    assert stop.stop_px == expected_stop
    # The squeeze's last price (its last trade each second is a sell at the bid, mid - 0.25)
    # first reaches the stop in second 195; the stop buys at that second's ask (mid + 0.25).
    second = next(s for s in range(181, 201) if START_MID + (s - 180) * 2.5 - 0.25 >= stop.stop_px)
    assert (second, stopped.time) == (195, T0 + 195.5)
    assert stopped.price == START_MID + (second - 180) * 2.5 + 0.25
    # The first stop (protecting the long) was cancelled when the bot left; nothing is open.
    assert [o.status for o in momentum_report.orders if o.ord_type == "Stop"] == [
        "Canceled",
        "Filled",
    ]
    assert left_open(momentum_report) == [] and momentum_report.position == 0


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_examples_on_the_synthetic_market(name: str) -> None:
    report = run_backtest(STRATEGIES[name], "synthetic", duration=60)
    assert len(report.fills) >= 2
    assert left_open(report) == []
    if name == "momentum":
        assert report.position == 0  # it closes what it opened when the run ends
    assert run_backtest(STRATEGIES[name], "synthetic", duration=60).to_json() == report.to_json()


def test_examples_repeat_byte_for_byte_on_history(
    history: Path, mm_report: Report, momentum_report: Report
) -> None:
    assert run_backtest(market_maker.strategy, history).to_json() == mm_report.to_json()
    assert run_backtest(momentum.strategy, history).to_json() == momentum_report.to_json()


def test_rest_network_is_the_api_beside_the_websocket() -> None:
    for example in (market_maker, momentum):
        assert (
            example.rest_network("ws://127.0.0.1:8080/realtime") == "http://127.0.0.1:8080/api/v1"
        )
        assert example.rest_network("wss://host.example/realtime") == "https://host.example/api/v1"
        assert example.rest_network("mainnet") == "mainnet"  # closed: the client says so


@pytest.mark.parametrize(
    ("name", "last_line"),
    [
        ("market_maker", "quotes canceled, switch disarmed"),
        ("momentum", "stop canceled, position closed"),
    ],
)
def test_the_scripts_run_live_against_an_emulator_and_exit_cleanly(
    name: str, last_line: str
) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / f"{name}.py"), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("making a market" if name == "market_maker" else "trading")
    assert last_line in lines[-1]


def test_the_readme_backtest_runs_as_written(
    history: Path,
    mm_report: Report,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("```python\n", text.index("**Backtest**")) + len("```python\n")
    code = text[start : text.index("```", start)]
    code, replaced = re.subn(
        r'run_backtest\(strategy, "[^"]*"\)', f"run_backtest(strategy, {str(history)!r})", code
    )
    assert replaced == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    expected = mm_report
    figures = [expected.net_pnl, expected.fees, expected.max_drawdown, len(expected.fills)]
    assert capsys.readouterr().out.split() == [str(figure) for figure in figures]
    assert (tmp_path / "market_maker.png").read_bytes().startswith(b"\x89PNG")


def test_the_docs_command_backtests_an_example_by_module_name(
    history: Path, tmp_path: Path, momentum_report: Report
) -> None:
    # The installed command, run from the repository's root as the docs say: the module is
    # found in the current directory (a console script does not put it on sys.path itself).
    command = Path(sys.executable).with_name("bitmex-trio-websocket")
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            str(command),
            "backtest",
            str(history),
            "examples.momentum:strategy",
            "--report",
            str(report),
        ],
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(report.read_bytes()) == orjson.loads(momentum_report.to_json())
