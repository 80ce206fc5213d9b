"""The compiled reader of plain slice blocks (``_compiled._lines.split_plain``, from
``_replay/_lines.c``) takes exactly the blocks the pure-Python check takes, and reads the same
frame texts and receive times from them.

The pure path's verdict is ``_sources._is_plain`` (``isascii``, no ``\\r``, two regular
expressions) and its reading is ``line[29:]`` and ``_plain_time(line)``; both are compared here
with the C function on the benchmark's day file, on hand-made edge blocks and on random
mutations of valid lines, and whole files are read through ``iter_frames`` and replayed with and
without it. The comparisons skip where no compiled core is built (fail instead with
``BITMEX_TRIO_WEBSOCKET_EXPECT_COMPILED=1``, as ``tests/test_cores.py``).
"""

from __future__ import annotations

import datetime
import gzip
import importlib
import os
from array import array
from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks._common import BENCH_TABLES
from benchmarks.replay import write_day_file
from bitmex_trio_websocket import Change, open_bitmex_replay
from bitmex_trio_websocket._replay import _sources
from bitmex_trio_websocket._replay._sources import FrameBatch, Gap, iter_batches, iter_frames
from bitmex_trio_websocket._storage import _core

EXPECT_COMPILED = os.environ.get("BITMEX_TRIO_WEBSOCKET_EXPECT_COMPILED", "") not in ("", "0")
COMPILED, WHY = _core.compiled_module()
SplitPlain = Callable[[bytes], "tuple[list[bytes], bytes] | None"]


def compiled_split() -> SplitPlain:
    if COMPILED is None:
        if EXPECT_COMPILED:
            pytest.fail(f"no compiled core: {WHY}")
        pytest.skip(f"no compiled core: {WHY}")
    split: SplitPlain = importlib.import_module(
        "bitmex_trio_websocket._compiled._lines"
    ).split_plain
    return split


@pytest.fixture
def split_plain() -> SplitPlain:
    return compiled_split()


def pure_split(block: bytes) -> tuple[list[bytes], list[float]] | None:
    """What the pure path reads from ``block``: ``None`` where it is not plain."""
    if not _sources._is_plain(block):
        return None
    lines = block.split(b"\n")
    return [line[29:] for line in lines], [_sources._plain_time(line) for line in lines]


def c_split(split_plain: SplitPlain, block: bytes) -> tuple[list[bytes], list[float]] | None:
    got = split_plain(block)
    if got is None:
        return None
    texts, packed = got
    times = array("d")
    times.frombytes(packed)
    assert len(times) == len(texts)
    return texts, list(times)


def assert_same(split_plain: SplitPlain, block: bytes) -> bool:
    """The C and pure readings of ``block`` agree; whether it was plain."""
    expected = pure_split(block)
    assert c_split(split_plain, block) == expected, block[:200]
    return expected is not None


@contextmanager
def splitter(split: SplitPlain | None) -> Iterator[None]:
    saved = _sources._split_plain
    _sources._split_plain = split
    try:
        yield
    finally:
        _sources._split_plain = saved


def frames_of(path: Path, split: SplitPlain | None, disconnects: bool = False) -> list[Any]:
    with splitter(split):
        return [
            (f.received_at, f.text, f.origin, f.line)
            for f in iter_frames(path, disconnects=disconnects)
        ]


# ---------------------------------------------------------------------- the day file


@pytest.fixture(scope="module")
def day_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("day") / "day.json"
    write_day_file(path, 6000)
    return path


def test_the_day_file_reads_the_same_in_c_and_in_python(
    split_plain: SplitPlain, day_file: Path
) -> None:
    blocks = list(_sources._blocks(str(day_file), None))
    assert len(blocks) > 1  # more than one block, so block ends are crossed too
    assert all(assert_same(split_plain, block) for _, block, _, _ in blocks)
    compiled = frames_of(day_file, split_plain)
    assert compiled == frames_of(day_file, None)
    assert len(compiled) == 6000
    with splitter(split_plain):
        batches = [b for b in iter_batches(day_file) if type(b) is FrameBatch]
    # The compiled form: texts at offset 0, times packed, still "bytes payloads" for the feeder.
    assert all(b.stamps is not None and b.times is None and b.offset == 0 for b in batches)
    assert all(b.payloads[0].startswith(b'{"') for b in batches)  # type: ignore[arg-type]


def test_a_gzip_day_file_with_odd_blocks_reads_the_same(
    split_plain: SplitPlain, day_file: Path, tmp_path: Path
) -> None:
    lines = day_file.read_bytes().split(b"\n")[:-1]
    lines[1000] += b"\r"  # its block is read line by line
    lines[3000:3000] = [b"", b""]  # a disconnect
    lines[4500] = lines[4500][:-1] + "é}".encode()  # not ASCII
    path = tmp_path / "odd.json.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines)))  # the last line without its end
    assert frames_of(path, split_plain) == frames_of(path, None)
    assert frames_of(path, split_plain, True) == frames_of(path, None, True)
    with splitter(split_plain):
        items = list(iter_batches(path, disconnects=True))
    kinds = {(type(b), getattr(b, "stamps", None) is not None) for b in items}
    assert kinds == {(FrameBatch, True), (FrameBatch, False), (Gap, False)}


async def test_a_replay_is_the_same_with_and_without_the_c_reader(
    split_plain: SplitPlain, day_file: Path
) -> None:
    async def replay(split: SplitPlain | None) -> Any:
        seen: dict[str, list[Any]] = {}

        async def take(table: str) -> None:
            async with aclosing(bws.events(table)) as events:
                seen[table] = [
                    (e.action, e.symbol, e.rows) if isinstance(e, Change) else e
                    async for e in events
                ]

        with splitter(split), trio.fail_after(60):
            async with open_bitmex_replay(day_file) as bws:
                async with trio.open_nursery() as nursery:
                    for table in BENCH_TABLES:
                        nursery.start_soon(take, table)
        stats = bws.stats
        return seen, stats.messages, stats.bytes, stats.skipped, stats.data_time

    compiled, pure = await replay(split_plain), await replay(None)
    assert compiled == pure
    assert compiled[1] == 6000 and all(compiled[0].values())


# ---------------------------------------------------------------------- edge blocks

GOOD = b'2021-07-01T00:00:40.1234567Z {"table":"trade","action":"insert","data":[]}'
NEXT = b'2021-07-01T00:01:02.0000001Z {"table":"quote","action":"insert","data":[]}'


def stamped(stamp: bytes, rest: bytes = b' {"a":1}') -> bytes:
    return stamp + rest


ODD_LINES = {
    # each field of the stamp out of range (or, for the dates, just in range)
    "month 00": stamped(b"2021-00-01T00:00:40.1234567Z"),
    "month 13": stamped(b"2021-13-01T00:00:40.1234567Z"),
    "day 00": stamped(b"2021-07-00T00:00:40.1234567Z"),
    "day 32": stamped(b"2021-07-32T00:00:40.1234567Z"),
    "June 31": stamped(b"2021-06-31T00:00:40.1234567Z"),
    "July 31": stamped(b"2021-07-31T00:00:40.1234567Z"),
    "Feb 29 2021": stamped(b"2021-02-29T00:00:40.1234567Z"),
    "Feb 29 2024": stamped(b"2024-02-29T00:00:40.1234567Z"),
    "Feb 29 1900": stamped(b"1900-02-29T00:00:40.1234567Z"),
    "Feb 29 2000": stamped(b"2000-02-29T00:00:40.1234567Z"),
    "Feb 30 2000": stamped(b"2000-02-30T00:00:40.1234567Z"),
    "year 0000": stamped(b"0000-01-01T00:00:40.1234567Z"),
    "year 0001": stamped(b"0001-01-01T00:00:00.0000000Z"),
    "year 9999": stamped(b"9999-12-31T23:59:59.9999999Z"),
    "hour 24": stamped(b"2021-07-01T24:00:40.1234567Z"),
    "hour 30": stamped(b"2021-07-01T30:00:40.1234567Z"),
    "minute 60": stamped(b"2021-07-01T00:60:40.1234567Z"),
    "second 99": stamped(b"2021-07-01T00:00:99.9999999Z"),  # seconds are not checked
    "letter in year": stamped(b"2O21-07-01T00:00:40.1234567Z"),
    "letter in fraction": stamped(b"2021-07-01T00:00:40.12345x7Z"),
    "6 fraction digits": stamped(b"2021-07-01T00:00:40.123456Z"),
    "8 fraction digits": stamped(b"2021-07-01T00:00:40.12345678Z"),
    "no fraction": stamped(b"2021-07-01T00:00:40Z"),
    "lower-case t": stamped(b"2021-07-01t00:00:40.1234567Z"),
    "lower-case z": stamped(b"2021-07-01T00:00:40.1234567z"),
    "slash for dash": stamped(b"2021/07-01T00:00:40.1234567Z"),
    "missing space": b'2021-07-01T00:00:40.1234567Z{"a":1}',
    "tab for space": b'2021-07-01T00:00:40.1234567Z\t{"a":1}',
    "missing brace": b'2021-07-01T00:00:40.1234567Z ["a"]',
    "just the brace": b"2021-07-01T00:00:40.1234567Z {",
    "short": b"2021-07-01T00:00:40.1234567Z ",
    "shorter": b"2021-07-01T00:00",
    "not ASCII in text": GOOD[:-3] + "Ü]}".encode(),
    "not ASCII in stamp": "2021-07-01T00:00:40.123456\u0667Z {}".encode(),  # an Arabic-Indic 7
    "high byte at 30": GOOD[:30] + b"\x80" + GOOD[31:],
    "DEL and NUL are ASCII": GOOD[:-1] + b"\x7f\x00}",
    "CR at the end": GOOD + b"\r",
    "CR inside": GOOD[:40] + b"\r" + GOOD[40:],
    "empty": b"",
    "a recording row": b'{"t": 1.5, "dir": "recv", "frame": "{}"}',
}


@pytest.mark.parametrize("name", sorted(ODD_LINES))
def test_odd_lines_anywhere_in_a_block(split_plain: SplitPlain, name: str) -> None:
    odd = ODD_LINES[name]
    blocks = [
        odd,  # a block of one line (as the last line of a file without its end)
        odd + b"\n" + GOOD,
        GOOD + b"\n" + odd,  # after a line of another minute
        odd[:16] + GOOD[16:] + b"\n" + odd,  # after a line of the same minute
        GOOD + b"\n" + odd + b"\n" + NEXT,
        odd + b"\n",  # an empty last piece
    ]
    for block in blocks:
        assert_same(split_plain, block)


def test_the_edges_are_decided_as_expected(split_plain: SplitPlain) -> None:
    # Not only the same verdicts: the right ones (the comparisons above could agree on nonsense).
    plain = {name for name, line in ODD_LINES.items() if assert_same(split_plain, line)}
    assert plain == {
        "July 31",
        "Feb 29 2024",
        "Feb 29 2000",
        "year 0001",
        "year 9999",
        "second 99",
        "just the brace",
        "DEL and NUL are ASCII",
    }
    assert assert_same(split_plain, b"\n".join([GOOD, NEXT, GOOD]))
    assert not assert_same(split_plain, b"\n".join([GOOD, b"", NEXT]))  # a disconnect marker
    assert not assert_same(split_plain, GOOD + b"\n")
    assert not assert_same(split_plain, b"\n" + GOOD)
    got = c_split(split_plain, GOOD + b"\n" + NEXT)
    assert got == (
        [GOOD[29:], NEXT[29:]],
        [
            datetime.datetime(2021, 7, 1, tzinfo=datetime.UTC).timestamp() + 40.1234567,
            datetime.datetime(2021, 7, 1, 0, 1, tzinfo=datetime.UTC).timestamp() + 2.0000001,
        ],
    )


def test_a_bad_byte_at_every_column_of_a_long_line(split_plain: SplitPlain) -> None:
    # The end of a line is searched 16 (or 8) bytes at a time: every column and line length.
    for length in range(30, 80):
        line = GOOD[:29] + b"{" + b"x" * (length - 30)
        assert assert_same(split_plain, line + b"\n" + NEXT)
        for column in range(30, length):
            for bad in (b"\r", b"\xc3", b"\n"):
                block = line[:column] + bad + line[column + 1 :] + b"\n" + NEXT
                assert_same(split_plain, block)


def test_times_are_exactly_the_pure_floats(split_plain: SplitPlain) -> None:
    # Near the epoch the fraction's last bit shows in the sum: the same operations, in order.
    for minute in (b"1970-01-01T00:00", b"1969-12-31T23:59", b"2021-07-01T00:00"):
        lines = [
            minute + b":%02d.%07dZ {}" % (n % 100, (n * 7_654_321) % 10**7) for n in range(3000)
        ]
        assert assert_same(split_plain, b"\n".join(lines))


def test_other_types_are_refused(split_plain: SplitPlain) -> None:
    with pytest.raises(TypeError):
        split_plain(bytearray(GOOD))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        split_plain(GOOD.decode())  # type: ignore[arg-type]


# ---------------------------------------------------------------------- random mutations

_MOMENTS = st.datetimes(
    min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59)
)
_TEXTS = st.binary(max_size=40).map(lambda b: b"{" + bytes(c % 128 for c in b))
_BYTES = st.sampled_from(list(b"0123456789-:.TZ {\r\n\x80\xffaz\x00"))


@st.composite
def valid_lines(draw: st.DrawFn) -> bytes:
    moment = draw(_MOMENTS)
    fraction = draw(st.integers(0, 9_999_999))
    stamp = moment.isoformat(timespec="seconds") + f".{fraction:07d}Z"
    return stamp.encode() + b" " + draw(_TEXTS).replace(b"\r", b"").replace(b"\n", b"")


@st.composite
def blocks(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(valid_lines(), min_size=1, max_size=6))
    if draw(st.booleans()):  # same minutes, as in real files
        lines = [lines[0][:16] + line[16:] for line in lines]
    block = bytearray(b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b""))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(block)))
        how = draw(st.sampled_from(["set", "insert", "delete"]))
        if how == "delete":
            del block[at : at + 1]
        elif how == "insert":
            block[at:at] = bytes([draw(_BYTES)])
        elif at < len(block):
            block[at] = draw(_BYTES)
    return bytes(block)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=blocks())
def test_random_mutations_of_valid_lines(block: bytes) -> None:
    assert_same(compiled_split(), block)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(valid_lines(), min_size=1, max_size=8))
def test_valid_lines_are_plain_and_read_exactly(lines: list[bytes]) -> None:
    assert assert_same(compiled_split(), b"\n".join(lines))
