"""How a command's ending becomes an exit status and what the user sees on stderr."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from bitmex_trio_websocket import ConnectionClosed, SubscriptionError
from bitmex_trio_websocket._cli import main
from bitmex_trio_websocket._cli._run import CommandError, run_command


def in_a_nursery(exc: BaseException) -> Callable[[], Awaitable[None]]:
    """A program whose child task raises ``exc``: it leaves ``trio.run`` inside a group."""

    async def program() -> None:
        async def fail() -> None:
            raise exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)
            await trio.sleep_forever()

    return program


def test_success_is_status_0(capsys: pytest.CaptureFixture[str]) -> None:
    async def program() -> None:
        await trio.lowlevel.checkpoint()

    assert run_command(program) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "error",
    [
        SubscriptionError(400, "Unknown table: orderBook"),
        ConnectionClosed(None),
        CommandError("unknown symbol 'DOGEUSD'"),
        OSError(98, "Address already in use"),
    ],
)
@pytest.mark.parametrize("grouped", [False, True])
def test_errors_a_user_can_act_on_are_one_line(
    error: Exception, grouped: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    async def bare() -> None:
        raise error

    assert run_command(in_a_nursery(error) if grouped else bare) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("bitmex-trio-websocket: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("grouped", [False, True])
def test_ctrl_c_is_a_normal_stop(grouped: bool, capsys: pytest.CaptureFixture[str]) -> None:
    async def bare() -> None:
        raise KeyboardInterrupt

    assert run_command(in_a_nursery(KeyboardInterrupt()) if grouped else bare) == 0
    assert capsys.readouterr().err == ""


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(ExceptionGroup) as info:
        run_command(in_a_nursery(ZeroDivisionError("bug")))
    assert info.group_contains(ZeroDivisionError)


def test_help_says_bitmex_closed(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["listen", "--help"], ["record", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert "BitMEX closed on 2026-09-23" in out
        assert "emulator" in out
