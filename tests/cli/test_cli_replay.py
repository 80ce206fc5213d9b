"""``bitmex-trio-websocket replay``: rows, Parquet, snapshots, plots, errors, one subprocess."""

from __future__ import annotations

import builtins
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bitmex_trio_websocket import Storage
from bitmex_trio_websocket._cli import _replay_command, main

from ..replay.helpers import (
    captured_session,
    recording_bytes,
    reference_book,
    stretched,
    table_frames,
    write_cache_folder,
)

pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")

Frames = list[tuple[float, str]]


@pytest.fixture
def session(tmp_path: Path) -> tuple[Path, Frames]:
    """cryptofeed's 2021 capture as a recording the ``record`` command could have written."""
    frames = captured_session()
    path = tmp_path / "session.jsonl.gz"
    import gzip

    path.write_bytes(gzip.compress(recording_bytes(frames, sent=['{"op":"subscribe"}'])))
    return path, table_frames(frames)


def expected_rows(frames: Frames, table: str, symbol: str) -> list[dict[str, Any]]:
    """What ``listen(table, symbol)`` yields, recomputed with plain dicts: the partial's rows,
    inserted rows, updated rows merged with the stored row (deletes are not rows)."""
    stored: dict[Any, dict[str, Any]] | None = None
    out: list[dict[str, Any]] = []
    for _, text in frames:
        message = orjson.loads(text)
        if message["table"] != table:
            continue
        rows = [row for row in message["data"] if row.get("symbol") == symbol]
        key = (lambda row: row["id"]) if "orderBook" in table else id
        if message["action"] == "partial":
            if (message.get("filter") or {}).get("symbol", symbol) != symbol:
                continue  # another symbol's partial
            stored = {key(row): row for row in rows}
            out += rows
        elif stored is None:
            continue
        elif message["action"] == "insert":
            stored.update({key(row): row for row in rows})
            out += rows
        elif message["action"] == "update":
            for row in rows:
                merged = stored[key(row)] = {**stored[key(row)], **row}
                out.append(merged)
        elif message["action"] == "delete":
            for row in rows:
                del stored[key(row)]
    return out


def printed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


# --------------------------------------------------------------------------- rows


def test_rows_are_what_listen_yields_and_end_with_the_data(
    session: tuple[Path, Frames], capsys: pytest.CaptureFixture[str]
) -> None:
    path, frames = session
    assert main(["replay", str(path), "orderBookL2:XBTUSD"]) == 0
    rows = printed(capsys)
    assert rows == expected_rows(frames, "orderBookL2", "XBTUSD")
    assert len(rows) > 10_000 and all("price" in row for row in rows)  # 2021: merged prices


def test_several_topics_and_count(
    session: tuple[Path, Frames], capsys: pytest.CaptureFixture[str]
) -> None:
    path, frames = session
    assert main(["replay", str(path), "trade:XBTUSD", "quote:XBTUSD"]) == 0
    rows = printed(capsys)
    trades = [row for row in rows if "trdMatchID" in row]
    quotes = [row for row in rows if "bidPrice" in row]
    assert trades == expected_rows(frames, "trade", "XBTUSD") and trades
    assert len(quotes) == len(expected_rows(frames, "quote", "XBTUSD")) > 3
    assert len(rows) == len(trades) + len(quotes)
    # --count stops inside a partial's rows, which arrive without a checkpoint.
    assert main(["replay", str(path), "orderBookL2:XBTUSD", "--count", "3"]) == 0
    assert printed(capsys) == expected_rows(frames, "orderBookL2", "XBTUSD")[:3]


def test_a_tardis_cache_folder_replays_the_same_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = stretched(table_frames(captured_session()), 10.0)
    folder = write_cache_folder(tmp_path, frames, compression="zst")
    assert main(["replay", str(folder), "trade:XBTUSD"]) == 0
    assert printed(capsys) == expected_rows(frames, "trade", "XBTUSD")


def test_rows_of_a_topic_to_parquet(
    session: tuple[Path, Frames], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, frames = session
    out = tmp_path / "trades.parquet"
    assert main(["replay", str(path), "trade:XBTUSD", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    table = pq.read_table(out)
    assert f"wrote {table.num_rows} rows to {out}" in captured.err
    expected = expected_rows(frames, "trade", "XBTUSD")
    assert table.num_rows == len(expected) > 3
    schema = table.schema
    # Typed by the partial's declared types: prices written as 32175 are floats all the same.
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("price").type == pa.float64()
    assert schema.field("size").type == pa.int64()
    got = table.to_pylist()
    for row, want in zip(got, expected, strict=True):
        assert row["timestamp"] == Storage.parse_timestamp(want["timestamp"])
        assert (row["price"], row["size"], row["side"]) == (
            want["price"],
            want["size"],
            want["side"],
        )


# --------------------------------------------------------------------------- data time


def test_book_snapshots_as_json_and_parquet_agree_with_a_recomputation(
    session: tuple[Path, Frames], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, frames = session
    args = ["replay", str(path), "orderBookL2:XBTUSD", "--book-depth", "3", "--every", "5"]
    assert main(args) == 0
    rows = printed(capsys)
    assert len(rows) >= 5 and {row["symbol"] for row in rows} == {"XBTUSD"}
    for row in rows:
        at = Storage.parse_timestamp(row["timestamp"]).timestamp()
        assert at % 5 == 0
        bids, asks = reference_book([(t, x) for t, x in frames if t <= at], "XBTUSD")
        assert [(row[f"bid_{n}_price"], row[f"bid_{n}_size"]) for n in range(3)] == bids[:3]
        assert [(row[f"ask_{n}_price"], row[f"ask_{n}_size"]) for n in range(3)] == asks[:3]
    out = tmp_path / "book.parquet"
    assert main([*args, "--out", str(out), "--count", "4"]) == 0
    table = pq.read_table(out)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("bid_0_size").type == pa.int64()
    assert [r["bid_0_price"] for r in table.to_pylist()] == [r["bid_0_price"] for r in rows[:4]]


def test_plot_draws_a_png(
    session: tuple[Path, Frames], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    path, _ = session
    png = tmp_path / "xbtusd.png"
    assert main(["replay", str(path), "orderBookL2:XBTUSD", "--plot", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    err = capsys.readouterr().err
    assert f"drew XBTUSD to {png}" in err
    # Without a book in the data: one line, status 1.
    assert main(["replay", str(path), "orderBookL2:DOGEUSD", "--plot", str(png)]) == 1
    assert "nothing to plot" in capsys.readouterr().err


def test_progress_on_a_terminal_only(
    session: tuple[Path, Frames],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = session

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    args = ["replay", str(path), "orderBookL2", "--book-depth", "1", "--count", "1"]
    assert main(args) == 0
    assert capsys.readouterr().err == ""  # not a terminal: no progress
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(_replay_command, "_PROGRESS_INTERVAL", 0.0)
    assert main(["replay", str(path), "orderBookL2", "--book-depth", "1"]) == 0
    text = terminal.getvalue()
    assert "\r" in text and text.endswith("\n")
    assert "msgs  data 2021-07-22 22:36:" in text and "msg/s" in text


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trade", "--every", "1"], "--every goes with --book-depth or --plot"),
        ([], "name the topics to replay"),
        (["trade", "quote", "--out", "x.parquet"], "--out writes the rows of one topic"),
        (["trade", "--book-depth", "5"], "--book-depth samples order books"),
        (["orderBookL2", "--plot", "x.png", "--speed", "2"], "--speed paces printed rows"),
        (["orderBook:XBTUSD"], "unknown table 'orderBook'"),
    ],
)
def test_bad_arguments_are_one_line_status_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "history.jsonl", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err


def test_a_url_cannot_be_sampled_in_data_time(capsys: pytest.CaptureFixture[str]) -> None:
    url = "ws://localhost:8000/ws-replay?exchange=bitmex&from=2021-07-01&to=2021-07-02"
    assert main(["replay", url, "orderBookL2", "--book-depth", "5"]) == 2
    assert "carries no receive times" in capsys.readouterr().err


def test_bad_sources_are_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.jsonl"
    assert main(["replay", str(missing), "trade"]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err and err.count("\n") == 1
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello\n")
    assert main(["replay", str(garbage), "orderBookL2", "--book-depth", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{garbage}:1: unknown format" in err and err.count("\n") == 1


@pytest.mark.parametrize(("option", "extra"), [("--out", "parquet"), ("--plot", "plot")])
def test_a_missing_extra_is_named(
    option: str,
    extra: str,
    session: tuple[Path, Frames],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real_import = builtins.__import__
    hidden = ("pyarrow", "matplotlib")

    def without_extras(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(hidden):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("importlib.import_module", lambda name: without_extras(name))
    path, _ = session
    assert main(["replay", str(path), "orderBookL2:XBTUSD", option, "file"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"bitmex-trio-websocket: {option}{' (Parquet)' if extra == 'parquet' else ''} needs "
        f"{hidden[extra == 'plot']}, which is not installed: "
        f'pip install "bitmex-trio-websocket[{extra}]"\n'
    )


# --------------------------------------------------------------------------- subprocess


def test_the_installed_command_in_a_pipe(session: tuple[Path, Frames]) -> None:
    path, frames = session
    result = subprocess.run(
        [sys.executable, "-m", "bitmex_trio_websocket", "replay", str(path), "trade:XBTUSD",
         "--count", "2"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""  # a pipe is not a terminal: no progress line
    lines = result.stdout.decode().splitlines()
    assert [orjson.loads(line) for line in lines] == expected_rows(frames, "trade", "XBTUSD")[:2]
