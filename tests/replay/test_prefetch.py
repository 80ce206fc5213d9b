"""Read-ahead of compressed replay files: the same batches and errors as reading on the
consumer's thread, and no worker thread left running (or outliving its file) however the
reading ends."""

from __future__ import annotations

import gzip
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import aclosing, closing
from pathlib import Path
from typing import Any

import pytest
import trio
import zstandard

from bitmex_trio_websocket import ReplaySourceError, open_bitmex_replay
from bitmex_trio_websocket._replay import _sources
from bitmex_trio_websocket._replay._prefetch import AHEAD, THREAD_NAME, Prefetcher
from bitmex_trio_websocket._replay._sources import FrameBatch, Gap
from bitmex_trio_websocket._replay._sources import iter_batches as _iter_batches

from .helpers import Frame, captured_session, slice_bytes

TIMEOUT = 10.0  # seconds for a join that must not hang


def iter_batches(source: Any) -> Generator[FrameBatch | Gap, None, None]:
    """The sources' ``iter_batches`` (a generator: closed as the replay closes it)."""
    return _iter_batches(source)  # type: ignore[return-value]


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    assert prefetch_threads() == []
    yield
    for thread in prefetch_threads():
        thread.join(TIMEOUT)  # (a failed test's thread: reported, not left to the next test)
    assert prefetch_threads() == []


# ---------------------------------------------------------------------- the Prefetcher alone


def counted(n: int, log: list[str], fail: Exception | None = None) -> Generator[int, None, None]:
    try:
        for i in range(n):
            log.append(f"made {i}")
            yield i
        if fail is not None:
            raise fail
    finally:
        log.append(f"closed on {threading.current_thread().name}")


def test_items_arrive_in_order_then_the_end() -> None:
    log: list[str] = []
    ahead = Prefetcher(counted(50, log))
    assert list(ahead) == list(range(50))
    assert next(ahead, None) is None  # ended stays ended
    assert prefetch_threads() == []  # taking the end joined the thread
    assert log[-1] == f"closed on {THREAD_NAME}"
    ahead.close()  # idempotent


def test_an_error_is_raised_after_every_item_before_it() -> None:
    failure = ValueError("bad block")
    ahead = Prefetcher(counted(7, [], failure))
    got = []
    with pytest.raises(ValueError) as caught:
        for item in ahead:
            got.append(item)
    assert got == list(range(7))
    assert caught.value is failure
    assert prefetch_threads() == []


def test_the_thread_stays_a_bounded_number_of_items_ahead() -> None:
    log: list[str] = []
    limit = threading.Event()

    def items() -> Generator[int, None, None]:
        for i in range(100):
            log.append(f"made {i}")
            if i == AHEAD + 1:  # one taken, AHEAD queued: this one waits for room
                limit.set()
            yield i

    ahead = Prefetcher(items())
    try:
        assert next(ahead) == 0
        assert limit.wait(TIMEOUT)
        # Nothing more can be made until the consumer takes an item.
        assert (len(log), ahead._queue.qsize()) == (AHEAD + 2, AHEAD)
        (thread,) = prefetch_threads()
        assert thread.is_alive()
        assert list(ahead) == list(range(1, 100))
    finally:
        ahead.close()
    assert prefetch_threads() == []


def test_close_frees_a_thread_blocked_on_the_full_queue() -> None:
    log: list[str] = []
    blocked = threading.Event()

    def endless() -> Generator[int, None, None]:
        i = 0
        try:
            while True:
                if i == AHEAD:  # the next put blocks: the queue is full
                    blocked.set()
                yield i
                i += 1
        finally:
            log.append(f"closed on {threading.current_thread().name}")

    ahead = Prefetcher(endless())
    assert blocked.wait(TIMEOUT)
    closer = threading.Thread(target=ahead.close, daemon=True)
    closer.start()
    closer.join(TIMEOUT)
    assert not closer.is_alive(), "close() hung on a thread blocked on a full queue"
    assert prefetch_threads() == []
    assert log == [f"closed on {THREAD_NAME}"]  # the generator closed where it ran
    assert next(ahead, None) is None


# ---------------------------------------------------------------------- files


def big_session(copies: int = 6) -> list[Frame]:
    """The captured session ``copies`` times, one after the other (~1.3 MB each)."""
    frames = captured_session()
    span = frames[-1][0] - frames[0][0] + 1.0
    return [(t + span * k, text) for k in range(copies) for t, text in frames]


def snapshot(source: Any) -> list[Any]:
    """Every batch as the replay sees it: its boundaries, frames (time, text, file, line), gaps."""
    out: list[Any] = []
    with closing(_iter_batches(source, disconnects=True)) as batches:  # type: ignore[type-var]
        for batch in batches:
            if type(batch) is Gap:
                out.append(batch)
            else:
                assert type(batch) is FrameBatch
                out.append([batch.frame(i) for i in range(len(batch))])
    return out


def both_ways(monkeypatch: pytest.MonkeyPatch, read: Callable[[], Any]) -> tuple[Any, Any]:
    """``read()`` with the worker thread, then on the reader's own thread."""
    with_thread = read()
    monkeypatch.setattr(_sources, "_PREFETCH", False)
    alone = read()
    monkeypatch.setattr(_sources, "_PREFETCH", True)
    return with_thread, alone


def failure(source: Path) -> tuple[list[Any], tuple[str, str | None, int | None, str]]:
    """The frames handed out before the error, and the error (message, path, line, cause)."""
    frames: list[Any] = []
    with pytest.raises(ReplaySourceError) as caught:
        with closing(iter_batches(source)) as batches:
            for batch in batches:
                assert type(batch) is FrameBatch
                frames.extend(batch.frame(i) for i in range(len(batch)))
    error = caught.value
    return frames, (str(error), error.path, error.line, type(error.__cause__).__name__)


def gzip_members(data: bytes) -> bytes:
    """Three gzip members with zero padding between and after them (as ``gzip`` reads it)."""
    third = len(data) // 3
    parts = [data[:third], data[third : 2 * third], data[2 * third :]]
    return (b"\x00" * 17).join(gzip.compress(p) for p in parts) + b"\x00" * 100


def zstd(data: bytes, *, write_checksum: bool = False) -> bytes:
    """zstd with a 1 KiB window: the session's copies not matched to each other, so the file
    decompresses in many steps (a step's output is not bounded: the copies would be one)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        1, window_log=10, write_checksum=write_checksum
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def zstd_frames(data: bytes) -> bytes:
    half = len(data) // 2
    return zstd(data[:half]) + zstd(data[half:])


ENCODINGS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress,
    "gz-members-padded": gzip_members,
    "zst": zstd,
    "zst-frames": zstd_frames,
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_the_same_batches_with_and_without_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    frames = big_session(8)
    data = slice_bytes(frames[:3000]) + b"\n" + slice_bytes(frames[3000:])  # and a disconnect
    path = tmp_path / f"day.{encoding}"
    path.write_bytes(ENCODINGS[encoding](data))
    with_thread, alone = both_ways(monkeypatch, lambda: snapshot(path))
    assert with_thread == alone
    assert sum(1 for b in alone if type(b) is not Gap) > AHEAD + 2  # more than it reads ahead
    assert [f.text for b in alone if type(b) is not Gap for f in b] == [t for _, t in frames]


@pytest.mark.parametrize("encoding", ["gz", "zst"])
def test_a_truncated_file_fails_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    whole = ENCODINGS[encoding](slice_bytes(big_session(4)))
    path = tmp_path / f"cut.{encoding}"
    path.write_bytes(whole[: len(whole) * 3 // 4])
    with_thread, alone = both_ways(monkeypatch, lambda: failure(path))
    assert with_thread == alone
    frames, (message, where, line, _) = alone
    assert "truncated or corrupt" in message and where == str(path)
    assert line == len(frames) + 1 and len(frames) > 3000  # after the blocks before it


@pytest.mark.parametrize("encoding", ["gz", "zst"])
def test_a_corrupt_file_fails_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    data = slice_bytes(big_session(4))
    if encoding == "gz":  # a wrong CRC: zlib's error at the member's end
        whole = bytearray(gzip.compress(data))
        whole[-8] ^= 0xFF
    else:  # a wrong checksum: zstandard's error at the frame's end
        whole = bytearray(zstd(data, write_checksum=True))
        whole[-1] ^= 0xFF
    path = tmp_path / f"bad.{encoding}"
    path.write_bytes(bytes(whole))
    with_thread, alone = both_ways(monkeypatch, lambda: failure(path))
    assert with_thread == alone
    frames, (message, where, line, cause) = alone
    assert "truncated or corrupt" in message and where == str(path)
    assert cause == ("error" if encoding == "gz" else "_Truncated")
    assert line == len(frames) + 1 and len(frames) > 2000  # after the blocks before it


def test_no_zstandard_fails_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "day.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(slice_bytes(captured_session())))
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard: ImportError
    with_thread, alone = both_ways(monkeypatch, lambda: failure(path))
    assert with_thread == alone
    assert alone[0] == [] and "needs the zstandard package" in alone[1][0]


class WatchedFile:
    """A file that records, when closed, which read-ahead threads were still alive."""

    def __init__(self, raw: Any, closes: list[list[threading.Thread]]) -> None:
        self._raw = raw
        self._closes = closes
        self.name = raw.name

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)  # type: ignore[no-any-return]

    def seek(self, offset: int) -> int:
        return self._raw.seek(offset)  # type: ignore[no-any-return]

    def __enter__(self) -> WatchedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._closes.append(prefetch_threads())
        self._raw.close()


@pytest.fixture
def closes(monkeypatch: pytest.MonkeyPatch) -> list[list[threading.Thread]]:
    """Every file the sources close, as the list of read-ahead threads alive at that moment."""
    closes: list[list[threading.Thread]] = []

    def watched(path: str, mode: str) -> WatchedFile:
        return WatchedFile(open(path, mode), closes)  # (closed by WatchedFile.__exit__)

    monkeypatch.setattr(_sources, "open", watched, raising=False)
    return closes


@pytest.fixture
def gz_day(tmp_path: Path) -> Path:
    path = tmp_path / "day.json.gz"
    path.write_bytes(gzip.compress(slice_bytes(big_session())))
    return path


def test_closing_after_the_first_batch_stops_the_thread_before_the_file_closes(
    gz_day: Path, closes: list[list[threading.Thread]]
) -> None:
    batches = iter_batches(gz_day)
    next(batches)
    (thread,) = prefetch_threads()  # reading ahead, blocked on the full queue
    batches.close()
    assert not thread.is_alive()
    assert closes == [[]]


def test_an_error_of_the_consumer_mid_file_stops_the_thread(
    gz_day: Path, closes: list[list[threading.Thread]]
) -> None:
    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        with closing(iter_batches(gz_day)) as batches:
            for index, _ in enumerate(batches):
                if index == 2:
                    assert len(prefetch_threads()) == 1
                    raise Stop
    assert closes == [[]]


def test_a_dropped_iterator_stops_the_thread(
    gz_day: Path, closes: list[list[threading.Thread]]
) -> None:
    batches = iter_batches(gz_day)
    next(batches)
    (thread,) = prefetch_threads()
    del batches  # no close(): the generator's finalizer closes it
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert closes == [[]]


def test_a_folder_of_gzip_files_reads_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closes: list[list[threading.Thread]]
) -> None:
    frames = big_session(12)
    folder = tmp_path / "slices"
    folder.mkdir()
    third = len(frames) // 3
    for k in range(3):
        part = frames[k * third : (k + 1) * third]
        (folder / f"part{k}.json.gz").write_bytes(gzip.compress(slice_bytes(part)))
    seen: list[threading.Thread] = []
    alive_most = 0
    with closing(iter_batches(folder)) as batches:
        for batch in batches:
            alive = prefetch_threads()
            alive_most = max(alive_most, len(alive))
            seen.extend(t for t in alive if t not in seen)
            assert type(batch) is FrameBatch
    assert alive_most == 1
    assert len(seen) == 3  # each file its own thread, each gone before the next started
    # Ordering the folder read each file's first block on this thread (3 closes, no thread),
    # then the replay read each file through its thread, stopped before its file closed.
    assert closes == [[]] * 6
    with_thread, alone = both_ways(monkeypatch, lambda: snapshot(folder))
    assert with_thread == alone


def test_a_replay_left_early_leaves_no_thread(gz_day: Path) -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with open_bitmex_replay(gz_day) as bws:
                async with aclosing(bws.listen("orderBookL2")) as rows:
                    async for _ in rows:
                        break
                (thread,) = prefetch_threads()  # the replay is mid-file, reading ahead
            # Leaving the replay cancelled its reader: the thread stopped, not left blocked.
            assert not thread.is_alive()

    trio.run(main)
