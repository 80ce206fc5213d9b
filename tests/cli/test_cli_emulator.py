"""``bitmex-trio-websocket emulator``: argument handling in-process, serving in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from bitmex_trio_websocket._cli import main
from bitmex_trio_websocket.emulator import DEFAULT_API_KEY, DEFAULT_API_SECRET

TIMEOUT = 60


def test_help_documents_the_default_account(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert DEFAULT_API_KEY in out and DEFAULT_API_SECRET in out
    for option in ("--host", "--port", "--seed", "--symbols", "--max-events", "--replay"):
        assert option in out


def test_no_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "emulator" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--max-events", "-3"])
    assert info.value.code == 2


def test_missing_replay_file_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["emulator", "--replay", str(tmp_path / "nothing.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "nothing.jsonl" in err and "Traceback" not in err


async def read_line(process: trio.Process) -> bytes:
    assert process.stdout is not None
    data = b""
    while not data.endswith(b"\n"):
        chunk = await process.stdout.receive_some(1)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_serves_and_stops_cleanly(stop: signal.Signals) -> None:
    command = [
        sys.executable, "-m", "bitmex_trio_websocket", "emulator",
        "--port", "0", "--seed", "3", "--symbols", "XBTUSD,ETHUSD", "--max-events", "20",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "0"}
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        try:
            url = (await read_line(process)).decode().strip()
            assert url.startswith("ws://127.0.0.1:") and url.endswith("/realtime")
            async with open_websocket_url(url) as ws:
                welcome = orjson.loads(await ws.get_message())
                assert welcome["info"] == "Welcome to the BitMEX Realtime API."
                await ws.send_message('{"op":"subscribe","args":["instrument:ETHUSD"]}')
                assert orjson.loads(await ws.get_message())["subscribe"] == "instrument:ETHUSD"
            process.send_signal(stop)
            assert await process.wait() == 0
            assert process.stderr is not None
            err = b""
            while chunk := await process.stderr.receive_some():
                err += chunk
            assert b"Traceback" not in err
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()


async def test_serves_a_tardis_slice_folder_to_a_bare_client(tmp_path: Path) -> None:
    from ..replay.helpers import captured_session, stretched, write_cache_folder

    frames = stretched(captured_session(), 10.0)
    folder = write_cache_folder(tmp_path, frames, compression="zst")
    partial = next(
        text for _, text in frames if text.startswith('{"table":"trade","action":"partial"')
    )
    command = [
        sys.executable, "-m", "bitmex_trio_websocket", "emulator",
        "--replay", str(folder), "--replay-mode", "session",
    ]  # fmt: skip
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            url = (await read_line(process)).decode().strip()
            async with open_websocket_url(url) as ws:
                welcome = orjson.loads(await ws.get_message())
                assert welcome["info"] == "Welcome to the BitMEX Realtime API."
                await ws.send_message('{"op":"subscribe","args":["trade"]}')
                assert orjson.loads(await ws.get_message())["subscribe"] == "trade"
                assert await ws.get_message() == partial  # BitMEX's own text, unchanged
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()
