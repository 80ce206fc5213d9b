"""Replay: recordings and Tardis slices load, cut into topics, pace, and replay to the same
table state, for our client and a bare websocket client alike."""

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
from trio_websocket import WebSocketConnection, open_websocket_url

from bitmex_trio_websocket import ReplaySourceError, open_bitmex_websocket
from bitmex_trio_websocket._auth import realtime_signature
from bitmex_trio_websocket._storage import Storage
from bitmex_trio_websocket.emulator import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    load_recording,
    open_emulator,
    parse_recording,
)

from ..replay.helpers import (
    book_levels,
    captured_session,
    reference_book,
    stretched,
    write_cache_folder,
    write_slices,
)
from ..replay.helpers import table_frames as table_frames_of

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
    assert bad["status"] == 400 and bad["error"] == "Unknown or expired symbol."


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
            # far below the market, and within the account's margin (at $1 it needed 10 XBT)
            emulator.place_order(100001, "XBTUSD", "Buy", 100, 90_000.0)
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


# --------------------------------------------------------------------------- Tardis history


def slice_folder(tmp_path: Path, compression: str = "zst") -> tuple[Path, list[tuple[float, str]]]:
    """cryptofeed's 2021 capture as a Tardis cache folder, stretched over several minutes."""
    frames = stretched(captured_session(), 10.0)  # about 5 minutes: one file per minute
    return write_cache_folder(tmp_path, frames, compression=compression), frames


def test_load_recording_reads_tardis_slices_and_folders(tmp_path: Path) -> None:
    folder, frames = slice_folder(tmp_path)
    recording = load_recording(folder)
    assert len(list(folder.rglob("*.json.zst"))) >= 4
    expected = [text for _, text in table_frames_of(frames)]
    assert [frame.text for frame in recording.frames] == expected
    one_file = write_slices(tmp_path / "day.txt.gz", frames, "gz")
    assert [frame.text for frame in load_recording(one_file).frames] == expected
    # A list of sources is replayed in the order given: the same frames again.
    files = sorted(folder.rglob("*.json.zst"))
    assert len(load_recording(files)) == len(recording)
    with pytest.raises(ReplaySourceError):
        load_recording(tmp_path / "missing")


async def test_our_client_consumes_a_slice_folder_through_the_emulator(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    folder, frames = slice_folder(tmp_path)
    recording = load_recording(folder)
    book_messages = len(list(recording.topic_frames("orderBookL2", "XBTUSD")))
    trade_rows = sum(len(f.message["data"]) for f in recording.topic_frames("trade", "XBTUSD"))
    trades: list[dict[str, Any]] = []
    span = frames[-1][0] - frames[0][0]
    with trio.fail_after(span * 2):
        async with open_emulator(listen=False, replay=str(folder), speed=1.0) as emulator:
            async with open_bitmex_websocket(
                "ws://emulator/realtime", connect=emulator.connect_in_memory
            ) as bws:
                started = trio.current_time()
                elapsed = 0.0

                async def book() -> None:
                    nonlocal elapsed
                    seen = 0
                    async with aclosing(bws.events("orderBookL2", "XBTUSD")) as events:
                        async for _ in events:
                            seen += 1
                            if seen == book_messages:
                                elapsed = trio.current_time() - started
                                levels = book_levels(bws.storage, "XBTUSD")
                                assert levels == reference_book(frames, "XBTUSD")
                                break
                        with trio.move_on_after(span):  # nothing more: each message once
                            async for event in events:
                                raise AssertionError(f"more than the data: {event}")

                async def trade() -> None:
                    async with aclosing(bws.listen("trade", "XBTUSD")) as rows:
                        async for row in rows:
                            trades.append(row)
                            if len(trades) == trade_rows:
                                assert bws.storage.rows("trade", "XBTUSD") == trades
                                return

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(book)
                    nursery.start_soon(trade)
    assert bws.stats.reconnects == 0
    # Paced at speed 1 by the recorded (stretched) receive times, on trio's clock.
    assert span * 0.5 < elapsed <= span + 1
    assert trade_rows > 1 and book_messages > 100


async def test_a_bare_websocket_client_consumes_a_slice_folder(tmp_path: Path) -> None:
    folder, frames = slice_folder(tmp_path, compression="gz")
    recording = load_recording(folder)
    count = len(list(recording.topic_frames("orderBookL2", None)))
    received: list[tuple[float, str]] = []
    with trio.fail_after(TIMEOUT):
        async with open_emulator(replay=folder) as emulator:
            async with open_websocket_url(emulator.url) as ws:
                welcome = orjson.loads(await ws.get_message())
                assert welcome["info"] == "Welcome to the BitMEX Realtime API."
                await send(ws, {"op": "subscribe", "args": ["orderBookL2"]})
                ack = orjson.loads(await ws.get_message())
                assert ack == {"success": True, "subscribe": "orderBookL2",
                               "request": {"op": "subscribe", "args": ["orderBookL2"]}}  # fmt: skip
                while len(received) < count:
                    text = await ws.get_message()
                    assert isinstance(text, str)
                    received.append((0.0, text))
                await nothing_more(ws)
    # The frames are BitMEX's own text, unchanged, and rebuild every book of the data.
    assert [text for _, text in received] == [
        f.text for f in recording.topic_frames("orderBookL2", None)
    ]
    for symbol in sorted(recording.symbols):
        assert reference_book(received, symbol) == reference_book(frames, symbol), symbol
    assert len(reference_book(received, "XBTUSD")[0]) > 1000
