"""The benchmarks still run: each one at a tiny size, one run, no timing asserted."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from benchmarks import (
    ceilings,
    deep_book,
    gen_stream,
    inprocess,
    latency,
    loopback,
    memory,
    oldlib,
    peers,
    run_all,
)
from benchmarks import profile as bench_profile
from benchmarks._common import BENCH_TABLES, load_frames

MESSAGES = 500


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "stream.jsonl.gz"
    gen_stream.write_recording(path, gen_stream.generate(MESSAGES, seed=3))
    return path


def test_stream_is_seeded_and_mixed(stream: Path) -> None:
    frames = load_frames(stream)
    assert len(frames) == MESSAGES
    assert [text for _, text in gen_stream.generate(MESSAGES, seed=3)] == frames
    mix = gen_stream.mix(frames)
    assert set(mix["tables"]) == set(BENCH_TABLES)
    assert mix["book_delta_share"] > 0.8 and mix["rows_per_frame"] > 2.0


def test_ceilings_and_inprocess(stream: Path) -> None:
    frames = load_frames(stream)
    results = ceilings.measure(frames, runs=1) + inprocess.measure(frames, runs=1)
    assert len(results) == 6 and all(r.median > 0 for r in results)


def test_latency_and_memory(stream: Path) -> None:
    frames = load_frames(stream)
    [lat, child] = latency.measure(frames, rate=5000.0, runs=1, child_server=True)
    assert lat.extra["p50_ms"] <= lat.extra["max_ms"]
    assert 0 < child.extra["p50_ms"] <= child.extra["max_ms"] and child.messages == lat.messages
    [mem] = memory.measure(2000)
    assert mem.extra["bytes_per_level"] > 0


def test_deep_book_churn_keeps_the_depth() -> None:
    stream = deep_book.churn(2000, MESSAGES, near=20)
    assert {m["action"] for m in stream} == {"insert", "delete"}
    results = deep_book.measure(2000, MESSAGES, near=20, runs=1)  # asserts the depth it ends at
    assert results and all(r.median > 0 and r.extra["levels"] == 2000 for r in results)


def test_loopback_both_servers(stream: Path) -> None:
    frames = load_frames(stream)
    oldlib_runs = 1 if oldlib.available() else 0
    results = loopback.measure(stream, frames, runs=1, oldlib_runs=oldlib_runs)
    assert len(results) == 4 + oldlib_runs and all(r.median > 0 for r in results)


@pytest.mark.skipif(not oldlib.available(), reason="no 2021-library venv (benchmarks.oldlib)")
def test_peers_wait_for_every_update_of_every_symbol(stream: Path) -> None:
    frames = load_frames(stream)
    updates, symbols = peers.stream_facts(frames)
    messages = [orjson.loads(text) for text in frames]
    partials = sum(m["action"] == "partial" for m in messages)
    indices = sum(all(r["symbol"].startswith(".") for r in m["data"]) for m in messages)
    assert updates == len(frames) - partials - indices and partials >= len(BENCH_TABLES)
    assert symbols and not any(s.startswith(".") for s in symbols)
    # A peer only runs where its venv was made by hand (``python -m benchmarks.peers``).
    ready = [
        peer for peer in peers.PEERS.values() if peer.name == "cryptofeed" and peers.available(peer)
    ]
    results = peers.measure(stream, frames, 1, ready, peer_timeout=120.0)
    assert results[0].path == "loopback/emulator: ours, 3 listeners"
    assert len(results) == 1 + len(ready) and all(r.median > 0 for r in results)


def test_oldlib_in_process(stream: Path) -> None:
    result = oldlib.run_driver("inprocess", stream, runs=1)
    assert result.median > 0 and result.messages == MESSAGES


def test_summary_marks_targets() -> None:
    rows = run_all.summary({})
    assert rows and all(verdict == "-" for *_, verdict in rows)


def test_profile_groups_layers(stream: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_profile.main(["--stream", str(stream), "--top", "3"]) == 0
    assert "storage" in capsys.readouterr().out


def test_replay_benchmark_runs_every_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import replay

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))  # its gzip copy
    path = tmp_path / "day.json"
    replay.write_day_file(path, MESSAGES, seed=3)
    results = replay.measure(path, runs=1)
    assert [r.path for r in results] == list(replay.PATHS)
    assert all(r.median > 0 and r.messages == MESSAGES for r in results)
    # The three listeners took every row listen() yields: all but deletes.
    from bitmex_trio_websocket._replay import iter_frames

    messages = [orjson.loads(frame.text) for frame in iter_frames(path)]
    expected = sum(len(m["data"]) for m in messages if m["action"] != "delete")
    by_path = {r.path: r for r in results}
    assert by_path[replay.REPLAY].extra["rows_delivered"] == expected
    # measure() checks the floor handed out the same rows; its ratio is printed.
    assert 0 < by_path[replay.FLOOR].extra["ratio to orjson parse"] < 5
