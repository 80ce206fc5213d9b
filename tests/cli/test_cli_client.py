"""``listen``, ``record`` and ``demo`` called as a user would, against emulator subprocesses."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path

import orjson
import pytest
import trio

from bitmex_trio_websocket import Storage, open_bitmex_websocket
from bitmex_trio_websocket._cli import main

TOPICS = ["orderBookL2:XBTUSD", "instrument", "trade:XBTUSD"]


@contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """An emulator in its own process; yields its URL (the first line it prints)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bitmex_trio_websocket", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("ws://127.0.0.1:"), url
        yield url
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_listen_prints_json_rows(capsys: pytest.CaptureFixture[str]) -> None:
    with emulator_process("--seed", "4", "--rate", "100") as url:
        status = main(["listen", "instrument", "trade:XBTUSD", "--network", url, "--count", "5"])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 5
    rows = [orjson.loads(line) for line in lines]
    assert all(isinstance(row, dict) and "symbol" in row for row in rows)


def test_bad_table_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["listen", "orderBook:XBTUSD", "--network", "ws://127.0.0.1:9/realtime"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "unknown table 'orderBook'" in captured.err
    assert main(["listen", "trade", "--network", "bitmex"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_half_credentials_are_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITMEX_API_KEY", "k")
    monkeypatch.delenv("BITMEX_API_SECRET", raising=False)
    assert main(["listen", "order", "--network", "ws://127.0.0.1:9/realtime"]) == 2
    assert "both" in capsys.readouterr().err


def test_listen_into_a_closed_pipe_is_quiet() -> None:
    with emulator_process("--seed", "4", "--rate", "200") as url:
        listen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bitmex_trio_websocket",
                "listen",
                "orderBookL2",
                "--network",
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert listen.stdout is not None
        first = listen.stdout.readline()
        listen.stdout.close()  # like `| head -1`
        _, err = listen.communicate(timeout=30)
    assert orjson.loads(first)["symbol"]
    assert listen.returncode == 0
    assert b"Traceback" not in err


def storage_from_recording(path: Path) -> Storage:
    storage = Storage()
    for line in path.read_text().splitlines():
        record = orjson.loads(line)
        if record["dir"] == "recv" and record["frame"].startswith('{"table"'):
            storage.apply(orjson.loads(record["frame"]))
    return storage


async def storage_from_replay(url: str) -> Storage:
    async with open_bitmex_websocket(url) as bws:
        async with trio.open_nursery() as nursery:
            for topic in TOPICS:
                table, _, symbol = topic.partition(":")

                async def drain(table: str = table, symbol: str | None = symbol or None) -> None:
                    async with aclosing(bws.events(table, symbol)) as events:
                        async for _ in events:
                            pass

                nursery.start_soon(drain)
            # The replay streams as fast as we read; wait until it has gone quiet.
            while True:
                before = bws.stats.messages
                await trio.sleep(1)
                if bws.stats.messages == before:
                    break
            snapshot = Storage()
            for table in ("orderBookL2", "instrument", "trade"):
                rows = bws.storage.rows(table)
                keys = bws.storage.keys.get(table, [])
                snapshot.apply({"table": table, "action": "partial", "keys": keys, "data": rows})
            nursery.cancel_scope.cancel()
    return snapshot


@pytest.mark.parametrize("name", ["session.jsonl", "session.jsonl.gz"])
def test_record_then_replay_round_trips(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / name
    with emulator_process("--seed", "6", "--rate", "400", "--max-events", "400") as url:
        assert (
            main(["record", *TOPICS, "--network", url, "--out", str(out), "--duration", "3"]) == 0
        )
    assert "wrote" in capsys.readouterr().err
    plain = out
    if name.endswith(".gz"):
        plain = tmp_path / "plain.jsonl"
        plain.write_bytes(gzip.decompress(out.read_bytes()))
    recorded = storage_from_recording(plain)
    assert len(recorded.book("XBTUSD").bids) > 100
    with emulator_process("--replay", str(out), "--replay-mode", "session") as url:
        replayed = trio.run(storage_from_replay, url)
    assert list(replayed.book("XBTUSD").bids) == list(recorded.book("XBTUSD").bids)
    assert list(replayed.book("XBTUSD").asks) == list(recorded.book("XBTUSD").asks)
    assert dict(replayed.data["instrument"]) == dict(recorded.data["instrument"])
    assert replayed.rows("trade") == recorded.rows("trade")


def test_demo_shows_a_book_and_exits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--duration", "3", "--rate", "300"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("best bid" in line and "spread" in line for line in lines)


def test_demo_unknown_symbol(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--symbol", "DOGEUSD", "--duration", "1"]) == 1
    assert "unknown symbol" in capsys.readouterr().err
