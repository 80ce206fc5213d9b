"""Reading replay files in blocks: the lazy path for plain Tardis lines reads exactly what the
line-by-line path reads, whatever the file holds, in bounded memory."""

from __future__ import annotations

import datetime
import gzip
import tracemalloc
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio
import zstandard

from bitmex_trio_websocket import Change, ReplaySourceError, open_bitmex_replay
from bitmex_trio_websocket._replay import iter_frames
from bitmex_trio_websocket._replay._sources import (
    _BLOCK,
    _PLAIN_FIRST,
    FrameBatch,
    Gap,
    iter_batches,
)

from .helpers import captured_session, slice_bytes, table_frames


def reference_frames(data: bytes) -> list[tuple[float, str, int]]:
    """A plain reading of Tardis slice lines, one at a time, from the documented format:
    ``<stamp> <message>``, the stamp's date and time in UTC plus its fraction of a second."""
    out = []
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.rstrip(b"\r")
        if not line:
            continue
        stamp_text, _, message = line.decode().partition(" ")
        whole, _, fraction = stamp_text.rstrip("Z").partition(".")
        moment = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC)
        seconds = moment.second + (int(fraction) / 10 ** len(fraction) if fraction else 0)
        out.append((moment.replace(second=0).timestamp() + seconds, message, number))
    return out


def read(path: Path) -> list[tuple[float, str, int]]:
    return [(f.received_at, f.text, f.line) for f in iter_frames(path)]


def test_plain_stamps_are_exactly_those_datetime_accepts() -> None:
    # The lazy path's regular expression stands in for datetime's checks: same verdicts.
    for year in ("0000", "0001", "1900", "2000", "2023", "2024", "2100", "9999"):
        for month in range(14):
            for day in range(33):
                line = f"{year}-{month:02d}-{day:02d}T12:30:45.1234567Z {{".encode()
                try:
                    datetime.datetime(int(year), month, day, tzinfo=datetime.UTC).timestamp()
                    valid = True
                except (ValueError, OverflowError):
                    valid = False
                assert (_PLAIN_FIRST.match(line) is not None) == valid, line
    for hour in range(26):
        for minute in range(62):
            line = f"2024-02-29T{hour:02d}:{minute:02d}:59.0000000Z {{".encode()
            assert (_PLAIN_FIRST.match(line) is not None) == (hour < 24 and minute < 60), line


def test_plain_blocks_are_read_lazily_and_agree_with_a_plain_reading(tmp_path: Path) -> None:
    frames = table_frames(captured_session())
    data = slice_bytes(frames)
    path = tmp_path / "day.json"
    path.write_bytes(data)
    batches = list(iter_batches(path))
    assert batches and all(type(b) is FrameBatch and b.times is None for b in batches)
    assert read(path) == reference_frames(data)


def test_every_oddity_is_read_as_before(tmp_path: Path) -> None:
    frames = table_frames(captured_session())[:600]
    lines = slice_bytes(frames).split(b"\n")[:-1]
    odd = [
        *lines[:100],
        lines[100] + b"\r",  # a CRLF line
        *lines[101:200],
        lines[200][:26] + lines[200][27:],  # 6 fractional digits
        lines[201][:19] + lines[201][27:],  # no fraction
        *lines[202:300],
        lines[300].replace(b'"XBTUSD"', '"XBTÜSD"'.encode()),  # not ASCII
        *lines[301:],
    ]
    data = b"\n".join(odd) + b"\n"
    path = tmp_path / "odd.json"
    path.write_bytes(data)
    assert read(path) == reference_frames(data)
    kinds = {b.times is None for b in iter_batches(path) if type(b) is FrameBatch}
    assert kinds == {False}  # one block, with odd lines: read line by line


def test_gzip_members_padding_and_a_line_longer_than_a_block(tmp_path: Path) -> None:
    frames = table_frames(captured_session())
    big = '{"table":"trade","action":"insert","data":[' + ",".join(
        ['{"symbol":"XBTUSD","side":"Buy","size":1,"price":1.0}'] * (_BLOCK // 40)
    )
    big += "]}"
    t = frames[300][0]
    data = slice_bytes([*frames[:300], (t, big), *frames[300:]])
    assert len(big) > _BLOCK
    half = data.index(b"\n", len(data) // 3) + 1
    path = tmp_path / "members.json.gz"
    path.write_bytes(gzip.compress(data[:half]) + b"\0" * 7 + gzip.compress(data[half:]) + b"\0")
    assert read(path) == reference_frames(data)
    zst = tmp_path / "frames.json.zst"
    compressor = zstandard.ZstdCompressor()
    zst.write_bytes(compressor.compress(data[: half + 5]) + compressor.compress(data[half + 5 :]))
    assert read(zst) == reference_frames(data)


def test_a_truncated_gzip_replays_its_whole_lines_then_names_the_next(tmp_path: Path) -> None:
    data = slice_bytes(table_frames(captured_session()))
    whole = gzip.compress(data)
    path = tmp_path / "cut.json.gz"
    path.write_bytes(whole[: len(whole) // 2])
    got: list[Any] = []
    with pytest.raises(ReplaySourceError, match="truncated or corrupt after line") as caught:
        got.extend(iter_frames(path))
    assert got and [(f.received_at, f.text) for f in got] == [
        (t, text) for t, text, _ in reference_frames(data)[: len(got)]
    ]
    assert caught.value.line == len(got) + 1


def test_a_bad_line_in_a_plain_block_comes_after_the_lines_before_it(tmp_path: Path) -> None:
    lines = slice_bytes(table_frames(captured_session())).split(b"\n")[:-1]
    path = tmp_path / "bad.json"
    path.write_bytes(b"\n".join([*lines[:500], b"garbage", *lines[500:]]) + b"\n")
    got: list[Any] = []
    with pytest.raises(ReplaySourceError, match="malformed slice line") as caught:
        got.extend(iter_frames(path))
    assert len(got) == 500 and caught.value.line == 501
    feb29 = b"2021-02-29T00:00:00.0000000Z " + lines[0][29:]
    path.write_bytes(b"\n".join([*lines[:500], feb29]) + b"\n")
    with pytest.raises(ReplaySourceError, match="impossible timestamp") as caught:
        list(iter_frames(path))
    assert caught.value.line == 501


def test_gaps_are_markers_between_batches(tmp_path: Path) -> None:
    lines = slice_bytes(table_frames(captured_session())[:300]).split(b"\n")[:-1]
    path = tmp_path / "gaps.json"
    path.write_bytes(b"\n".join([*lines[:100], b"", b"", *lines[100:], b""]) + b"\n")
    items = list(iter_batches(path, disconnects=True))
    gaps = [item for item in items if type(item) is Gap]
    assert len(gaps) == 2  # one per run of empty lines after a frame
    assert gaps[0].line == 101 and gaps[0].received_at == reference_frames(path.read_bytes())[99][0]
    assert sum(len(item) for item in items if type(item) is FrameBatch) == 300


def test_a_big_file_is_read_in_bounded_memory(tmp_path: Path) -> None:
    lines = slice_bytes(table_frames(captured_session())).split(b"\n")[:-1]
    data = b"\n".join(lines * max(1, (24 * _BLOCK) // len(b"\n".join(lines)))) + b"\n"
    path = tmp_path / "big.json.gz"
    path.write_bytes(gzip.compress(data, compresslevel=1))
    tracemalloc.start()
    try:
        count = sum(len(b) for b in iter_batches(path) if type(b) is FrameBatch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == data.count(b"\n")
    assert len(data) > 20 * _BLOCK and peak < 8 * _BLOCK, (len(data), peak)


async def test_the_lazy_path_and_the_line_by_line_path_replay_identically(tmp_path: Path) -> None:
    frames = captured_session()
    plain = tmp_path / "plain.json"
    plain.write_bytes(slice_bytes(frames))
    crlf = tmp_path / "crlf.json"  # every line ends \r\n: read line by line
    crlf.write_bytes(slice_bytes(frames).replace(b"\n", b"\r\n"))
    assert all(b.times is None for b in iter_batches(plain) if type(b) is FrameBatch)
    assert all(b.times is not None for b in iter_batches(crlf) if type(b) is FrameBatch)

    async def replay(path: Path) -> tuple[Any, ...]:
        seen: dict[str, list[Any]] = {}

        async def take(table: str, symbol: str | None) -> None:
            async with aclosing(bws.events(table, symbol)) as events:
                seen[f"{table}:{symbol}"] = [
                    (e.action, e.symbol, e.rows) if isinstance(e, Change) else e
                    async for e in events
                ]

        with trio.fail_after(30):
            async with open_bitmex_replay(path) as bws:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(take, "orderBookL2", "XBTUSD")  # cut to one symbol
                    nursery.start_soon(take, "trade", None)
                    nursery.start_soon(take, "quote", "XBTUSD")
        stats = bws.stats
        counters = (stats.messages, stats.bytes, stats.skipped, stats.ignored, stats.data_time)
        return seen, counters, stats.dropped_before_partial, stats.violations

    lazy, by_line = await replay(plain), await replay(crlf)
    assert lazy == by_line
    seen, (messages, size, skipped, ignored, data_time), _, _ = lazy
    assert messages == len(frames) and size == sum(len(text) for _, text in frames)
    assert data_time == reference_frames(plain.read_bytes())[-1][0]
    assert skipped > 0 and ignored == len(frames) - len(table_frames(frames))
    assert all(seen.values())
