"""``open_bitmex_replay`` over files: every source type, every row once, listeners that end."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from bitmex_trio_websocket import (
    BitMEXReplay,
    Change,
    ConnectionClosed,
    Disconnected,
    Reconnected,
    ReplaySourceError,
    ReplayStats,
    open_bitmex_replay,
)

from .helpers import (
    Frame,
    book_levels,
    captured_session,
    compress,
    expected_rows,
    recording_bytes,
    reference_book,
    slice_bytes,
    stretched,
    table_frames,
    write_cache_folder,
    write_slices,
)

SYMBOL = "XBTUSD"


def write_recording(tmp: Path, frames: list[Frame]) -> Path:
    path = tmp / "session.jsonl"
    path.write_bytes(recording_bytes(frames))
    return path


def write_recording_gz(tmp: Path, frames: list[Frame]) -> Path:
    path = tmp / "session.jsonl.gz"
    path.write_bytes(gzip.compress(recording_bytes(frames)))
    return path


def write_plain(tmp: Path, frames: list[Frame]) -> Path:
    return write_slices(tmp / "day.json", frames)


def write_gz(tmp: Path, frames: list[Frame]) -> Path:
    return write_slices(tmp / "day.json.gz", frames, "gz")


def write_zst(tmp: Path, frames: list[Frame]) -> Path:
    return write_slices(tmp / "day.json.zst", frames, "zst")


def write_cache(tmp: Path, frames: list[Frame]) -> Path:
    write_cache_folder(tmp / "cache", frames, compression="zst")
    return tmp / "cache"


def write_list(tmp: Path, frames: list[Frame]) -> list[Path]:
    half = len(frames) // 2
    first = write_recording(tmp, frames[:half])
    return [first, write_slices(tmp / "rest.gz", frames[half:], "gz")]


SOURCES: dict[str, Callable[[Path, list[Frame]], Any]] = {
    "recording": write_recording,
    "recording-gz": write_recording_gz,
    "slices": write_plain,
    "slices-gz": write_gz,
    "slices-zst": write_zst,
    "cache-folder": write_cache,
    "list": write_list,
}


async def collect(bws: BitMEXReplay, table: str, symbol: str | None) -> list[dict[str, Any]]:
    rows = []
    async with aclosing(bws.listen(table, symbol)) as stream:
        async for row in stream:
            rows.append(row)
    return rows


@pytest.mark.parametrize("kind", sorted(SOURCES))
async def test_every_source_rebuilds_the_book_and_delivers_every_row_once(
    tmp_path: Path, kind: str
) -> None:
    frames = stretched(captured_session(), 5.0)  # a few minutes: several cache files
    source = SOURCES[kind](tmp_path, frames)
    results: dict[str, list[dict[str, Any]]] = {}

    async def listen(table: str) -> None:
        results[table] = await collect(bws, table, SYMBOL)

    with trio.fail_after(20):
        async with open_bitmex_replay(source) as bws:
            async with trio.open_nursery() as nursery:  # each ends by itself
                for table in ("orderBookL2", "quote", "trade"):
                    nursery.start_soon(listen, table)
            assert book_levels(bws.storage, SYMBOL) == reference_book(frames, SYMBOL)
    for table in ("orderBookL2", "quote", "trade"):
        assert results[table] == expected_rows(frames, table, SYMBOL), table
    assert len(results["orderBookL2"]) > 1000
    stats = bws.stats
    assert isinstance(stats, ReplayStats)
    assert stats.messages == len(frames) and stats.violations == 0
    assert stats.ignored == len(frames) - len(table_frames(frames))  # welcome, acks


async def test_events_carry_deletes_and_end_by_themselves(tmp_path: Path) -> None:
    frames = captured_session()
    source = write_gz(tmp_path, frames)
    with trio.fail_after(20):
        async with open_bitmex_replay(source) as bws:
            async with aclosing(bws.events("orderBookL2", SYMBOL)) as events:
                changes = [event async for event in events]
    actions = [change.action for change in changes if isinstance(change, Change)]
    assert actions[0] == "partial" and {"insert", "update", "delete"} <= set(actions)
    deleted = sum(len(c.rows) for c in changes if isinstance(c, Change) and c.action == "delete")
    assert deleted == sum(
        text.count('"symbol":"XBTUSD"')
        for _, text in frames
        if '"action":"delete"' in text and '"orderBookL2"' in text
    )


async def test_topics_without_listeners_keep_the_store_and_skip_the_rest(tmp_path: Path) -> None:
    frames = captured_session()
    source = write_zst(tmp_path, frames)
    with trio.fail_after(20):
        async with open_bitmex_replay(source, topics=["orderBookL2:XBTUSD"]) as bws:
            await bws.wait_finished()
            assert book_levels(bws.storage, SYMBOL) == reference_book(frames, SYMBOL)
            # Only XBTUSD of the book is kept: other symbols' partials were cut out.
            assert bws.storage.has_partial("orderBookL2", SYMBOL)
            assert not bws.storage.has_partial("orderBookL2", "ETHUSD")
            assert not bws.storage.has_partial("quote", SYMBOL)
            with pytest.raises(ValueError, match="not replayed"):
                await bws.listen("trade", SYMBOL).__anext__()
            with pytest.raises(ValueError, match="not replayed"):
                await bws.listen("orderBookL2").__anext__()  # only XBTUSD is replayed
    # Quotes and trades (never decoded), and book messages without an XBTUSD row.
    unwanted = [
        message
        for message in map(orjson.loads, (text for _, text in table_frames(frames)))
        if message["table"] != "orderBookL2"
        or all(row["symbol"] != SYMBOL for row in message["data"])
    ]
    assert len(unwanted) > 100 and bws.stats.skipped == len(unwanted)


async def test_after_the_end_storage_stays_and_new_listeners_end_at_once(tmp_path: Path) -> None:
    frames = captured_session()
    with trio.fail_after(20):
        async with open_bitmex_replay(write_plain(tmp_path, frames)) as bws:
            first = await collect(bws, "trade", SYMBOL)
            assert first == expected_rows(frames, "trade", SYMBOL)
            assert await collect(bws, "trade", SYMBOL) == []
            await bws.wait_finished()
            assert bws.storage.rows("trade", SYMBOL) == first
    with pytest.raises(ConnectionClosed):
        await collect(bws, "trade", SYMBOL)


async def test_a_paced_replay_runs_in_data_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    frames = stretched(captured_session(), 100.0)  # about 50 minutes of data
    speed = 4.0
    span = frames[-1][0] - frames[0][0]
    source = write_recording(tmp_path, frames)
    seen: list[tuple[float, float | None]] = []

    async def own_timer(bws: BitMEXReplay) -> None:
        # A user's timer: every 60 s of trio time, where the data is.
        while True:
            await trio.sleep(60)
            seen.append((trio.current_time() - start, bws.stats.data_time))

    with trio.fail_after(span):  # virtual seconds
        async with open_bitmex_replay(source, speed=speed) as bws:
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(own_timer, bws)
                rows = await collect(bws, "trade", None)
                nursery.cancel_scope.cancel()
            elapsed = trio.current_time() - start
    assert elapsed == pytest.approx(span / speed, abs=1e-6)
    symbols = {row["symbol"] for row in rows}
    assert len(symbols) == 10
    assert len(rows) == sum(len(expected_rows(frames, "trade", s)) for s in symbols)
    times = [t for t, _ in frames]
    assert len(seen) == int(span / speed // 60)
    for at, data_time in seen:
        assert data_time is not None
        # The data reached exactly what its time allows: the last frame due, and no later one.
        due = [t for t in times if t <= times[0] + at * speed]
        assert data_time == due[-1]


async def test_a_late_listener_of_a_replayed_topic_gets_the_state_first(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    frames = stretched(captured_session(), 10.0)
    source = write_plain(tmp_path, frames)
    with trio.fail_after(600):
        async with open_bitmex_replay(source, topics=["orderBookL2:XBTUSD"], speed=1.0) as bws:
            nursery_done = trio.Event()

            async def run_it() -> None:
                await bws.wait_finished()
                nursery_done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_it)
                await trio.sleep((frames[-1][0] - frames[0][0]) / 2)
                before = book_levels(bws.storage, SYMBOL)
                async with aclosing(bws.events("orderBookL2", SYMBOL)) as events:
                    first = await events.__anext__()
                    assert isinstance(first, Change) and first.action == "partial"
                    rows = {(r["side"], r["price"]): r["size"] for r in first.rows}
                    assert len(rows) == len(before[0]) + len(before[1])
                    rest = [event async for event in events]
                assert rest and all(isinstance(e, Change) for e in rest)
    assert book_levels(bws.storage, SYMBOL) == reference_book(frames, SYMBOL)


async def test_bad_data_names_file_and_line_and_leaves_the_store_as_before(
    tmp_path: Path,
) -> None:
    frames = captured_session()
    good = table_frames(frames)[:200]
    path = tmp_path / "bad.json"
    bad = b'2021-07-22T22:36:10.0000000Z {"table":"orderBookL2","action":"explode","data":[]}\n'
    path.write_bytes(slice_bytes(good) + bad + slice_bytes(table_frames(frames)[200:]))
    with trio.fail_after(20):
        async with open_bitmex_replay(path) as bws:
            with pytest.raises(ReplaySourceError, match="not BitMEX data") as caught:
                await collect(bws, "orderBookL2", SYMBOL)
            assert (caught.value.path, caught.value.line) == (str(path), len(good) + 1)
            assert book_levels(bws.storage, SYMBOL) == reference_book(good, SYMBOL)
            with pytest.raises(ReplaySourceError):
                await bws.wait_finished()


async def test_a_truncated_file_fails_listeners_naming_the_file(tmp_path: Path) -> None:
    data = compress(slice_bytes(captured_session()), "gz")
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with trio.fail_after(20):
        async with open_bitmex_replay(path) as bws:
            with pytest.raises(ReplaySourceError, match="truncated") as caught:
                await collect(bws, "orderBookL2", SYMBOL)
    assert caught.value.path == str(path)


async def test_an_unreported_failure_is_raised_by_the_block(tmp_path: Path) -> None:
    frames = table_frames(captured_session())
    path = tmp_path / "bad-end.json"
    path.write_bytes(slice_bytes(frames) + b"garbage at the end\n")
    with trio.fail_after(20), pytest.raises(ReplaySourceError, match="malformed") as caught:
        async with open_bitmex_replay(path, topics=["trade"]) as bws:
            async with aclosing(bws.listen("trade")) as rows:
                async for _ in rows:
                    break  # nobody listens any more; the topics keep the replay going
            await trio.testing.wait_all_tasks_blocked()
    assert caught.value.line == len(frames) + 1


async def test_a_recorder_gap_clears_the_slices_until_their_next_partial(tmp_path: Path) -> None:
    frames = table_frames(captured_session())
    start = max(i for i, (_, text) in enumerate(frames) if '"partial"' in text) + 1
    later = frames[start + 100][0]
    path = tmp_path / "gap.json"
    # Deltas, a gap, deltas the recorder got before its new partials (dropped), the partials.
    path.write_bytes(
        slice_bytes(frames[: start + 50])
        + b"\n"
        + slice_bytes(frames[start + 50 : start + 100])
        + slice_bytes([(later, text) for _, text in frames[:start]])
    )
    with trio.fail_after(20):
        async with open_bitmex_replay(path) as bws:
            async with aclosing(bws.events("orderBookL2", SYMBOL)) as events:
                seen = [event async for event in events]
    kinds = [type(event).__name__ for event in seen]
    assert kinds.count("Disconnected") == 1 and kinds.count("Reconnected") == 1
    gap = kinds.index("Disconnected")
    assert isinstance(seen[gap], Disconnected) and isinstance(seen[gap + 1], Reconnected)
    after_gap = seen[gap + 2 :]
    assert isinstance(after_gap[0], Change) and after_gap[0].action == "partial"
    assert bws.stats.gaps == 1 and bws.stats.dropped_before_partial > 0
    assert bws.stats.violations == 0
