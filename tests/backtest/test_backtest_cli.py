"""``bitmex-trio-websocket backtest SOURCE STRATEGY``: end to end on a small hand-made file."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from bitmex_trio_websocket._cli._backtest_command import parse_time
from bitmex_trio_websocket._cli._main import main
from bitmex_trio_websocket.backtest._progress import ProgressLine
from bitmex_trio_websocket.backtest._runner import Progress

from ..support.history_frames import T0
from .history import BUY_FEE, FINAL_EQUITY, REALISED, write_history

STRATEGY = """
import trio

async def strategy(bws, rest):
    await rest.place_order(symbol="XBTUSD", side="Buy", orderQty=100, ordType="Market")
    await trio.sleep(20)
    await rest.place_order(symbol="XBTUSD", side="Sell", orderQty=100, ordType="Market")

async def failing(bws, rest):
    await trio.sleep(2)
    raise RuntimeError("bug in the bot")

def not_async(bws, rest):
    pass
"""


@pytest.fixture
def bot(tmp_path: Path) -> Path:
    path = tmp_path / "bot.py"
    path.write_text(STRATEGY, encoding="utf-8")
    return path


def test_a_backtest_from_the_command_line(
    tmp_path: Path, bot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, picture = tmp_path / "report.json", tmp_path / "report.png"
    status = main([
        "backtest", str(write_history(tmp_path)), f"{bot}:strategy",
        "--report", str(report), "--plot", str(picture),
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 0, err
    summary = orjson.loads(out)
    assert (summary["fills"], summary["net_pnl"], summary["final_equity"]) == (
        2, FINAL_EQUITY - 10**8, FINAL_EQUITY
    )  # fmt: skip
    assert summary["end"] == "2025-01-01T00:00:30.000Z"
    document = orjson.loads(report.read_bytes())
    assert document["summary"] == summary
    assert [fill["side"] for fill in document["fills"]] == ["Buy", "Sell"]
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert err == ""  # no progress line off a terminal


def test_from_and_to_with_a_module_on_the_path(
    tmp_path: Path, bot: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bt_cli_bot.py").write_text(STRATEGY, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    status = main([
        "backtest", str(write_history(tmp_path)), "bt_cli_bot:strategy",
        "--from", "2025-01-01T00:00:05Z", "--to", str(T0 + 15), "--seed", "3",
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 0, err
    summary = orjson.loads(out)
    assert (summary["start"], summary["end"]) == (
        "2025-01-01T00:00:05.000Z", "2025-01-01T00:00:15.000Z"
    )  # fmt: skip
    assert (summary["seed"], summary["fills"], summary["position"]) == (3, 1, 100)
    assert summary["net_pnl"] == REALISED - BUY_FEE  # the long marked at 125.0


def test_a_strategy_exception_prints_its_traceback(
    tmp_path: Path, bot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["backtest", str(write_history(tmp_path)), f"{bot}:failing"])
    out, err = capsys.readouterr()
    assert status == 1 and out == ""
    assert "RuntimeError: bug in the bot" in err
    assert "at data time 2025-01-01T00:00:03.000Z (0 fills so far)" in err
    assert "Traceback" in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{history}", "{bot}"], "module:function"),
        (["{history}", "{bot}:missing"], "has no 'missing'"),
        (["{history}", "{bot}:not_async"], "is not an async function"),
        (["{history}", "no_such_module_xyz:strategy"], "cannot import"),
        (["{tmp}/missing.txt", "{bot}:strategy"], "no such file or folder"),
        (["{history}", "{bot}:strategy", "--from", "{t1}", "--to", "{t0}"], "after --from"),
        (["synthetic", "{bot}:strategy", "--to", "{t1}", "--duration", "5"], "give one"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path,
    bot: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    history = write_history(tmp_path)
    values = {"history": history, "bot": bot, "tmp": tmp_path, "t0": T0, "t1": T0 + 10}
    assert main(["backtest", *(a.format(**values) for a in arguments)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and err.count("\n") == 1


def test_times_are_iso_or_epoch_seconds() -> None:
    assert parse_time("2025-01-01") == T0
    assert parse_time("2025-01-01T00:00:05Z") == T0 + 5
    assert parse_time("2025-01-01T01:00:05+01:00") == T0 + 5
    assert parse_time(str(T0 + 5.5)) == T0 + 5.5
    with pytest.raises(Exception, match="not a time"):
        parse_time("yesterday")


def test_the_progress_line_shows_data_time_messages_and_fills() -> None:
    clock = iter([0.0, 0.1, 0.5, 0.6])
    stream = io.StringIO()
    line = ProgressLine(stream, now=lambda: next(clock), interval=0.25)
    line(Progress(T0 + 1, 100, 0, 0.1))  # 0.1 s after the start: not yet
    line(Progress(T0 + 2, 400, 3, 0.5))
    line.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "data 2025-01-01 00:00:02Z" in text and "3 fills" in text and "50%" in text
    assert "800 msg/s" in text  # 400 messages in the first 0.5 s
