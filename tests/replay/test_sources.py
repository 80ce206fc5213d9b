"""Replay sources: every format read back frame for frame, bad input named by file and line."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import orjson
import pytest
import zstandard

from bitmex_trio_websocket import BitMEXError, ReplaySourceError
from bitmex_trio_websocket._replay import _sources, iter_frames
from bitmex_trio_websocket._replay._sources import source_files

from .helpers import (
    captured_session,
    compress,
    filters_hash,
    recording_bytes,
    slice_bytes,
    stamped_time,
    stretched,
    write_cache_folder,
    write_slices,
)


def read(source: object) -> list[tuple[float, str]]:
    return [(frame.received_at, frame.text) for frame in iter_frames(source)]  # type: ignore[arg-type]


def test_a_recording_yields_its_received_frames_exactly(tmp_path: Path) -> None:
    frames = captured_session()
    path = tmp_path / "session.jsonl"
    path.write_bytes(recording_bytes(frames, sent=['{"op":"subscribe","args":["trade"]}']))
    got = list(iter_frames(path))
    assert [(f.received_at, f.text) for f in got] == frames
    # The one "send" row is line 1: the first received frame is line 2.
    assert (got[0].origin, got[0].line, got[-1].line) == (str(path), 2, len(frames) + 1)


def test_a_gzip_recording_and_the_capture_shape_are_read(tmp_path: Path) -> None:
    frames = captured_session()[:50]
    path = tmp_path / "session.jsonl.gz"
    path.write_bytes(gzip.compress(recording_bytes(frames)))
    assert read(path) == frames
    # Other projects' captures: "ts", "dir": "server", "raw"; client rows skipped.
    capture = tmp_path / "capture.jsonl"
    rows = [{"dir": "connect", "ts": 1.0}] + [
        {"dir": "server", "ts": t, "raw": text} for t, text in frames
    ]
    capture.write_bytes(b"\n".join(orjson.dumps(row) for row in rows))
    assert read(capture) == frames


@pytest.mark.parametrize("compression", ["", "gz", "zst"])
def test_slice_files_read_back_time_and_text(tmp_path: Path, compression: str) -> None:
    frames = captured_session()
    # The suffix says nothing: the content is what is read.
    path = write_slices(tmp_path / "slices.data", frames, compression)
    got = list(iter_frames(path))
    assert [f.text for f in got] == [text for _, text in frames]
    assert [f.received_at for f in got] == pytest.approx(
        [stamped_time(t) for t, _ in frames], abs=1e-6
    )
    assert [f.line for f in got] == list(range(1, len(frames) + 1))


def test_the_timestamp_is_read_to_the_tenth_of_a_microsecond(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text('2021-07-01T00:00:40.1234567Z {"table":"trade"}\n\n')
    [frame] = iter_frames(path)
    assert frame.received_at == pytest.approx(1625097640.1234567, abs=1e-6)
    assert frame.text == '{"table":"trade"}'


def test_a_multi_frame_zstd_file_with_a_line_across_frames(tmp_path: Path) -> None:
    data = slice_bytes(captured_session()[:40])
    cut = len(data) // 2 + 7  # inside a line
    compressor = zstandard.ZstdCompressor()
    path = tmp_path / "two-frames.zst"
    path.write_bytes(compressor.compress(data[:cut]) + compressor.compress(data[cut:]))
    plain = write_slices(tmp_path / "plain", captured_session()[:40])
    assert read(path) == read(plain)


def test_a_cache_folder_replays_in_the_order_of_its_minutes(tmp_path: Path) -> None:
    frames = stretched(captured_session(), 12.0)  # about six minutes: six files
    folder = write_cache_folder(tmp_path / "cache", frames)
    files = source_files(tmp_path / "cache")
    assert len(files) >= 6 and all(name.startswith(str(folder)) for name in files)
    got = read(tmp_path / "cache")
    assert [text for _, text in got] == [text for _, text in frames]
    times = [t for t, _ in got]
    assert times == sorted(times)


def test_a_cache_with_two_subscription_sets_is_refused(tmp_path: Path) -> None:
    frames = captured_session()[:20]
    write_cache_folder(tmp_path, frames, filters="one")
    write_cache_folder(tmp_path, frames, filters="two")
    with pytest.raises(ReplaySourceError, match="2 Tardis subscription sets") as caught:
        iter_frames(tmp_path).__next__()
    assert caught.value.path == str(tmp_path)
    # Either set on its own is fine.
    assert len(read(tmp_path / "feeds" / "bitmex" / filters_hash("one"))) == 20


def test_any_folder_of_slices_is_ordered_by_first_timestamp(tmp_path: Path) -> None:
    frames = captured_session()[:90]
    # Names in the reverse of time order: the content decides.
    write_slices(tmp_path / "c.json", frames[:30], "gz")
    write_slices(tmp_path / "b.json", frames[30:60], "zst")
    write_slices(tmp_path / "a.json", frames[60:])
    (tmp_path / ".hidden").write_text("not a slice")
    assert [text for _, text in read(tmp_path)] == [text for _, text in frames]


def test_a_list_is_replayed_in_the_order_given(tmp_path: Path) -> None:
    frames = captured_session()[:60]
    first = tmp_path / "first.jsonl"
    first.write_bytes(recording_bytes(frames[:30]))
    second = write_slices(tmp_path / "second", frames[30:], "gz")
    assert [text for _, text in read([first, os.fspath(second)])] == [t for _, t in frames]


def test_files_going_back_in_time_are_refused_naming_the_file(tmp_path: Path) -> None:
    frames = captured_session()[:60]
    early = write_slices(tmp_path / "early", frames[:30])
    late = write_slices(tmp_path / "late", frames[30:])
    with pytest.raises(ReplaySourceError, match="time goes backwards") as caught:
        read([late, early])
    assert (caught.value.path, caught.value.line) == (str(early), 1)
    assert f"{early}:1" in str(caught.value) and str(late) in str(caught.value)


def test_an_unknown_format_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("\n\nhello, this is not a replay\n")
    with pytest.raises(ReplaySourceError, match="unknown format") as caught:
        read(path)
    assert (caught.value.path, caught.value.line) == (str(path), 3)
    assert isinstance(caught.value, BitMEXError)


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_a_truncated_compressed_file_is_an_error_not_a_short_replay(
    tmp_path: Path, compression: str
) -> None:
    frames = captured_session()
    whole = compress(slice_bytes(frames), compression)
    path = tmp_path / f"cut.{compression}"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(ReplaySourceError, match="truncated or corrupt") as caught:
        read(path)
    assert caught.value.path == str(path)
    assert caught.value.line is not None and caught.value.line <= len(frames)


def test_a_malformed_slice_line_names_its_line(tmp_path: Path) -> None:
    frames = captured_session()[:5]
    path = tmp_path / "bad"
    path.write_bytes(slice_bytes(frames[:3]) + b"2021-07-22 garbage\n" + slice_bytes(frames[3:]))
    with pytest.raises(ReplaySourceError, match="malformed slice line") as caught:
        read(path)
    assert caught.value.line == 4
    path.write_bytes(b'2021-02-30T00:00:00.0000000Z {"table":"trade"}\n')
    with pytest.raises(ReplaySourceError, match="impossible timestamp"):
        read(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"t": 1.0, "dir": "recv", "frame": "x"', "not JSON"),
        (b'{"t": 1.0, "frame": "x"}', 'without a "dir"'),
        (b'{"t": "noon", "dir": "recv", "frame": "x"}', "numeric receive time"),
        (b'{"t": 1.0, "dir": "recv"}', "without its frame text"),
    ],
)
def test_a_malformed_recording_line_names_its_line(
    tmp_path: Path, line: bytes, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(recording_bytes(captured_session()[:2]) + line + b"\n")
    with pytest.raises(ReplaySourceError, match=message) as caught:
        read(path)
    assert caught.value.line == 3


def test_missing_paths_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(ReplaySourceError, match="no such file") as caught:
        read(tmp_path / "absent.json.gz")
    assert caught.value.path == str(tmp_path / "absent.json.gz")
    with pytest.raises(ReplaySourceError, match="empty list"):
        read([])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReplaySourceError, match="no files"):
        read(tmp_path / "empty")
    (tmp_path / "empty.gz").write_bytes(gzip.compress(b""))
    assert read(tmp_path / "empty.gz") == []


def test_a_recorder_disconnect_is_a_marker_only_when_asked_for(tmp_path: Path) -> None:
    frames = captured_session()[:6]
    path = tmp_path / "gap"
    path.write_bytes(slice_bytes(frames[:3]) + b"\n\n" + slice_bytes(frames[3:]))
    assert read(path) == read(write_slices(tmp_path / "plain", frames))
    marked = list(iter_frames(path, disconnects=True))
    assert [f.text for f in marked] == [frames[0][1], frames[1][1], frames[2][1], ""] + [
        text for _, text in frames[3:]
    ]
    # One marker per gap, at the time of the frame before it; empty recording lines are no gap.
    assert (marked[3].line, marked[3].received_at) == (4, marked[2].received_at)
    recording = tmp_path / "r.jsonl"
    recording.write_bytes(recording_bytes(frames[:3]) + b"\n" + recording_bytes(frames[3:]))
    assert all(f.text for f in iter_frames(recording, disconnects=True))


def test_a_cache_prefers_zstd_and_reads_multi_minute_slices(tmp_path: Path) -> None:
    frames = stretched(captured_session()[:40], 10.0)
    folder = write_cache_folder(tmp_path, frames, compression="zst")
    for path in list(folder.rglob("*.json.zst")):  # the same minutes again, as gzip copies
        path.with_name(path.name.replace(".zst", ".gz")).write_bytes(
            gzip.compress(zstandard.ZstdDecompressor().decompress(path.read_bytes()))
        )
    assert all(name.endswith(".zst") for name in source_files(tmp_path))
    assert [text for _, text in read(tmp_path)] == [text for _, text in frames]
    for copy in list(folder.rglob("*.json.gz")):
        copy.unlink()
    minute = next(folder.rglob("*.json.zst"))
    minute.rename(minute.with_name(minute.name.replace(".json", ".size-5.json")))
    assert [text for _, text in read(tmp_path)] == [text for _, text in frames]


def test_a_highly_compressed_zstd_file_is_read_in_bounded_blocks(tmp_path: Path) -> None:
    # zstd expands repetitive data thousands of times and zstandard's decompressobj has no output
    # limit: without care one small read of this file is 30 MB at once.
    line = b'2025-01-01T00:00:00.0000000Z {"table":"trade","action":"insert","data":[]}\n'
    data = line * 400_000
    tail = line * 10
    compressor = zstandard.ZstdCompressor()
    path = tmp_path / "repetitive.zst"
    path.write_bytes(compressor.compress(data) + compressor.compress(tail))
    assert path.stat().st_size * 1000 < len(data)
    with path.open("rb") as raw:
        sizes = [len(chunk) for chunk in _sources._zstd_chunks(raw)]
    assert sum(sizes) == len(data) + len(tail)
    assert max(sizes) <= 4 * _sources._BLOCK
    assert sum(1 for _ in iter_frames(path)) == 400_010
