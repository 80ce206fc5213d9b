"""Replay: recordings load, cut into topics, pace, and replay to the same table state."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from trio_websocket import WebSocketConnection

from bitmex_trio_websocket._auth import realtime_signature
from bitmex_trio_websocket._storage import Storage
from bitmex_trio_websocket.emulator import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    load_recording,
    open_emulator,
    parse_recording,
)

EPOCH = 1_735_689_600.0
TIMEOUT = 60
CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "captures"
CRYPTOFEED = CAPTURES / "cryptofeed_BITMEX.ws.1.0.jsonl"


def virtual_clock() -> Callable[[], float]:
    origin = trio.current_time()
    return lambda: EPOCH + trio.current_time() - origin


def auth_headers() -> list[tuple[bytes, bytes]]:
    expires = int(EPOCH) + 3600
    sig = realtime_signature(DEFAULT_API_SECRET, expires)
    return [
        (b"api-key", DEFAULT_API_KEY.encode()),
        (b"api-expires", str(expires).encode()),
        (b"api-signature", sig.encode()),
    ]


def line(t: float, frame: Any, direction: str = "recv") -> str:
    text = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
    return orjson.dumps({"t": t, "dir": direction, "frame": text}).decode()


def write_recording(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


async def send(ws: WebSocketConnection, obj: Any) -> None:
    await ws.send_message(orjson.dumps(obj).decode())


async def table_frames(ws: WebSocketConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` table messages (acks and other replies skipped)."""
    out: list[dict[str, Any]] = []
    while len(out) < count:
        message = orjson.loads(await ws.get_message())
        if "table" in message:
            out.append(message)
    return out


async def nothing_more(ws: WebSocketConnection) -> None:
    await ws.send_message("ping")
    assert await ws.get_message() == "pong"


# --------------------------------------------------------------------------- loading


def test_parse_recording_keeps_received_table_frames() -> None:
    partial = {"table": "trade", "action": "partial", "keys": [], "filter": {}, "data": []}
    insert = {"table": "trade", "action": "insert", "data": [{"symbol": "XBTUSD", "size": 1}]}
    lines = [
        line(1.0, {"op": "subscribe", "args": ["trade"]}, "send"),
        line(1.5, {"info": "Welcome to the BitMEX Realtime API.", "version": "2.0.0"}),
        line(2.0, {"success": True, "subscribe": "trade", "request": {}}),
        line(2.5, partial),
        "",
        line(3.0, "pong"),
        line(3.5, "{not json"),
        # The capture shape of other projects' test data.
        orjson.dumps(
            {"seq": 9, "dir": "server", "ts": 4.0, "raw": orjson.dumps(insert).decode()}
        ).decode(),
        orjson.dumps({"dir": "server", "msg": insert}).decode(),
        orjson.dumps({"dir": "client", "ts": 5.0, "raw": "ping"}).decode(),
    ]
    recording = parse_recording(lines)
    assert [(f.t, f.action) for f in recording.frames] == [
        (2.5, "partial"),
        (4.0, "insert"),
        (4.0, "insert"),  # no time of its own: the previous one
    ]
    assert recording.frames[0].whole and recording.frames[1].symbol == "XBTUSD"
    assert recording.symbols == {"XBTUSD"}
    with pytest.raises(ValueError, match="line 2"):
        parse_recording([lines[0], "{broken"])


def test_load_recording_gzip(tmp_path: Path) -> None:
    frame = {"table": "quote", "action": "partial", "keys": [], "filter": {}, "data": []}
    plain = write_recording(tmp_path / "a.jsonl", [line(1.0, frame)])
    packed = write_recording(tmp_path / "a.jsonl.gz", [line(1.0, frame)])
    assert load_recording(plain).frames == load_recording(packed).frames


def test_topic_frames_start_at_the_partial_and_narrow() -> None:
    rows = [{"symbol": "XBTUSD", "price": 1}, {"symbol": "ETHUSD", "price": 2}]
    early = {"table": "trade", "action": "insert", "data": [{"symbol": "ETHUSD", "price": 0}]}
    partial = {"table": "trade", "action": "partial", "keys": [], "filter": {}, "data": rows}
    mixed = {"table": "trade", "action": "insert", "data": [*rows, {"symbol": "XBTUSD"}]}
    eth = {"table": "trade", "action": "insert", "data": [{"symbol": "ETHUSD", "price": 3}]}
    recording = parse_recording([line(0, early), line(1, partial), line(2, mixed), line(3, eth)])
    whole = [f.message for f in recording.topic_frames("trade", None)]
    assert whole == [partial, mixed, eth]
    narrow = [f.message for f in recording.topic_frames("trade", "ETHUSD")]
    assert narrow == [
        {**partial, "filter": {"symbol": "ETHUSD"}, "data": [rows[1]]},
        {**mixed, "data": [rows[1]]},
        eth,
    ]
    assert orjson.loads(next(recording.topic_frames("trade", "ETHUSD")).text) == narrow[0]
    assert list(recording.topic_frames("quote", None)) == []
    assert recording.has_partial("trade", "SOLUSD") and not recording.has_partial("quote", None)


# --------------------------------------------------------------------------- serving


async def test_replay_serves_topics_with_pacing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    partial = {
        "table": "orderBookL2",
        "action": "partial",
        "keys": ["symbol", "id", "side"],
        "filter": {"symbol": "XBTUSD"},
        "data": [{"symbol": "XBTUSD", "id": 1, "side": "Buy", "size": 5, "price": 10.0}],
    }
    # Pre-2023 updates carry no price.
    update = {
        "table": "orderBookL2",
        "action": "update",
        "data": [{"symbol": "XBTUSD", "id": 1, "side": "Buy", "size": 7}],
    }
    delete = {
        "table": "orderBookL2",
        "action": "delete",
        "data": [{"symbol": "XBTUSD", "id": 1, "side": "Buy"}],
    }
    path = write_recording(
        tmp_path / "r.jsonl", [line(100, partial), line(101, update), line(103, delete)]
    )
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, replay=str(path), speed=2.0) as emulator:
            with pytest.raises(RuntimeError):
                _ = emulator.market
            async with emulator.open_memory_websocket() as ws:
                await ws.get_message()  # welcome
                await send(ws, {"op": "subscribe", "args": ["orderBookL2:XBTUSD", "quote:XBTUSD"]})
                seen = []
                start = trio.current_time()
                for _ in range(5):
                    message = orjson.loads(await ws.get_message())
                    seen.append((trio.current_time() - start, message))
                await send(ws, {"op": "subscribe", "args": ["trade:NOPE"]})
                bad = orjson.loads(await ws.get_message())
    assert [(t, m.get("subscribe") or m["action"]) for t, m in seen] == [
        (0, "orderBookL2:XBTUSD"),
        (0, "quote:XBTUSD"),
        (0, "partial"),  # nothing recorded for quote: an empty partial
        (0, "partial"),
        (0.5, "update"),
    ]
    assert seen[2][1]["table"] == "quote" and seen[2][1]["data"] == []
    assert seen[3][1] == partial and seen[4][1] == update
    assert bad["status"] == 400 and bad["error"] == "Unknown or expired symbol: NOPE"


async def test_replay_round_trip_gives_the_same_storage(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    topics = ["orderBookL2", "orderBookL2_25:XBTUSD", "trade", "quote", "instrument", "order"]
    lines = [line(0.0, {"op": "subscribe", "args": topics}, "send")]
    live = Storage()
    with trio.fail_after(TIMEOUT * 100):
        async with open_emulator(
            listen=False, rate=100, max_events=1500, clock=virtual_clock()
        ) as emulator:
            emulator.place_order(100001, "XBTUSD", "Buy", 100, 1.0)
            async with emulator.open_memory_websocket(extra_headers=auth_headers()) as ws:
                await send(ws, {"op": "subscribe", "args": topics})
                done = False
                while not done:
                    text = await ws.get_message()
                    if text == "pong":
                        break
                    lines.append(line(emulator.now(), text))
                    message = orjson.loads(text)
                    if "table" in message:
                        live.apply(message)
                    if emulator.still.is_set() and not done:
                        await ws.send_message("ping")
                        done = True
                while (text := await ws.get_message()) != "pong":
                    lines.append(line(emulator.now(), text))
                    live.apply(orjson.loads(text))
        path = write_recording(tmp_path / "session.jsonl.gz", lines)
        recording = load_recording(path)
        replayed = Storage()
        async with open_emulator(listen=False, replay=str(path), clock=virtual_clock()) as emulator:
            async with emulator.open_memory_websocket(extra_headers=auth_headers()) as ws:
                await send(ws, {"op": "subscribe", "args": topics})
                for message in await table_frames(ws, len(recording)):
                    replayed.apply(message)
                await nothing_more(ws)
    for symbol in ("XBTUSD", *sorted(recording.symbols)):
        assert list(replayed.book(symbol).bids) == list(live.book(symbol).bids)
        assert list(replayed.book(symbol).asks) == list(live.book(symbol).asks)
    for table in ("orderBookL2", "orderBookL2_25", "trade", "quote", "instrument", "order"):
        assert replayed.rows(table) == live.rows(table), table
    assert live.rows("order") and live.rows("trade") and live.book("XBTUSD").bids


@pytest.mark.skipif(not CRYPTOFEED.exists(), reason="shared captures not available")
async def test_replay_of_a_real_2021_session(autojump_clock: trio.testing.MockClock) -> None:
    recording = load_recording(CRYPTOFEED)
    expected = Storage()
    for frame in recording.frames:  # the whole session as the recording client saw it
        expected.apply(frame.message)
    topics = ["orderBookL2", "quote:XBTUSD", "trade:XBTUSD"]
    count = len(list(recording.topic_frames("orderBookL2", None)))
    count += len(list(recording.topic_frames("quote", "XBTUSD")))
    count += len(list(recording.topic_frames("trade", "XBTUSD")))
    replayed = Storage()
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, replay=str(CRYPTOFEED)) as emulator:
            async with emulator.open_memory_websocket() as ws:
                await ws.get_message()
                await send(ws, {"op": "subscribe", "args": topics})
                for message in await table_frames(ws, count):
                    replayed.apply(message)
                await nothing_more(ws)
    assert count > 1000
    assert len(replayed.book("XBTUSD").bids) > 1000
    for symbol in sorted(recording.symbols):
        assert list(replayed.book(symbol).bids) == list(expected.book(symbol).bids)
        assert list(replayed.book(symbol).asks) == list(expected.book(symbol).asks)
    assert replayed.rows("quote", "XBTUSD") == expected.rows("quote", "XBTUSD")
    assert replayed.rows("trade", "XBTUSD") == expected.rows("trade", "XBTUSD")


async def test_replay_unsubscribe_stops_a_topic(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    frames: list[dict[str, Any]] = [
        {"table": "trade", "action": "partial", "keys": [], "filter": {"symbol": "XBTUSD"}}
    ]
    frames[0]["data"] = []
    frames += [
        {"table": "trade", "action": "insert", "data": [{"symbol": "XBTUSD", "size": n}]}
        for n in range(50)
    ]
    path = write_recording(tmp_path / "t.jsonl", [line(n, f) for n, f in enumerate(frames)])
    with trio.fail_after(TIMEOUT * 10):
        async with open_emulator(listen=False, replay=str(path), speed=1.0) as emulator:
            async with emulator.open_memory_websocket() as ws:
                await ws.get_message()
                await send(ws, {"op": "subscribe", "args": "trade:XBTUSD"})
                received = await table_frames(ws, 3)
                await send(ws, {"op": "unsubscribe", "args": "trade:XBTUSD"})
                while "unsubscribe" not in orjson.loads(await ws.get_message()):
                    pass
                await trio.sleep(100)
                await nothing_more(ws)
    assert [f["action"] for f in received] == ["partial", "insert", "insert"]
