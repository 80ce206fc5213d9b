"""The data-time scan: table messages with receive times, other tables skipped undecoded."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitmex_trio_websocket import ReplaySourceError, Storage
from bitmex_trio_websocket._export import DataTimeScan, table_of

from ..replay.helpers import captured_session, table_frames, write_cache_folder


def test_table_of_reads_the_first_bytes() -> None:
    assert table_of('{"table":"orderBookL2","action":"update","data":[]}') == "orderBookL2"
    assert table_of('{"action":"update","table":"trade"}') is None  # not told there
    assert table_of("pong") is None
    assert table_of('{"table":"tru') is None


def test_only_wanted_tables_are_decoded(tmp_path: Path) -> None:
    path = tmp_path / "slices.txt"
    lines = [
        '2021-07-22T22:36:07.0000000Z {"info":"Welcome to the BitMEX Realtime API."}',
        '2021-07-22T22:36:07.1000000Z {"table":"quote","action":"insert","data":[broken',
        "2021-07-22T22:36:07.2000000Z pong",
        '2021-07-22T22:36:07.3000000Z {"action":"partial","table":"trade","keys":[],'
        '"filter":{},"data":[]}',
        '2021-07-22T22:36:07.4000000Z {"success":true,"subscribe":"trade"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    scan = DataTimeScan(path, tables={"trade"})
    got = list(scan.messages_of())
    # The broken quote frame was never decoded; the trade partial told its table late, and was.
    assert [(round(t % 60, 1), m["table"]) for t, m in got] == [(7.3, "trade")]
    assert scan.messages == 1 and scan.fraction is None
    bad = DataTimeScan(path, tables={"quote", "trade"})
    with pytest.raises(ReplaySourceError) as caught:
        list(bad.messages_of())
    assert (caught.value.path, caught.value.line) == (str(path), 2)


def test_a_malformed_message_names_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "slices.txt"
    path.write_text('2021-07-22T22:36:07.0000000Z {"table":"trade","action":"insert","data":5}\n')
    scan = DataTimeScan(path)
    storage = Storage()
    with pytest.raises(ReplaySourceError, match="not BitMEX table data") as caught:
        for _, message in scan.messages_of():
            scan.apply(storage, message)
    assert caught.value.line == 1 and caught.value.path == str(path)


def test_a_cache_folder_counts_files_for_progress(tmp_path: Path) -> None:
    frames = table_frames(captured_session())
    start = frames[0][0]
    spread = [(start + 60 * n / len(frames) * 4, text) for n, (_, text) in enumerate(frames)]
    folder = write_cache_folder(tmp_path, spread)
    scan = DataTimeScan(folder, tables={"orderBookL2"})
    fractions: set[float] = set()
    times = []
    for t, _ in scan.messages_of():
        assert scan.fraction is not None
        fractions.add(scan.fraction)
        times.append(t)
    assert len(scan.files) >= 4
    assert sorted(fractions) == [n / len(scan.files) for n in range(len(scan.files))]
    assert times == sorted(times) and scan.data_time == times[-1]
