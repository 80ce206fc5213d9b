"""The emulator's batched sender: queued frames go out together, intact, in order, and the
bounded queue, faults and replay pacing behave as they did frame by frame."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.frame_protocol import FrameProtocol, Opcode

from bitmex_trio_websocket.emulator import Emulator, FaultKind, open_emulator
from bitmex_trio_websocket.emulator._connection import BATCH_CHARS
from bitmex_trio_websocket.emulator._transport import FaultStream, encode_text_frames

EPOCH = 1_735_689_600.0
TIMEOUT = 30  # seconds; virtual under autojump_clock
SLOW_CLIENT = (1008, "Client too slow: outgoing message buffer full")


def virtual_clock() -> Callable[[], float]:
    origin = trio.current_time()
    return lambda: EPOCH + trio.current_time() - origin


@asynccontextmanager
async def emulator_and_ws(**options: Any) -> AsyncIterator[tuple[Emulator, WebSocketConnection]]:
    options.setdefault("listen", False)
    options.setdefault("clock", virtual_clock())
    async with open_emulator(**options) as emulator:
        async with emulator.open_memory_websocket() as ws:
            assert "info" in orjson.loads(await ws.get_message())  # the welcome
            yield emulator, ws


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write that reaches an emulator transport, in order."""
    seen: list[bytes] = []
    original = FaultStream.send_all

    async def recording(self: FaultStream, data: bytes | bytearray | memoryview) -> None:
        seen.append(bytes(data))
        await original(self, data)

    monkeypatch.setattr(FaultStream, "send_all", recording)
    return seen


def decode_frames(data: bytes, chunk: int | None = None) -> list[str]:
    """The text messages in ``data``, decoded by wsproto as a client would (in ``chunk``s)."""
    client = FrameProtocol(client=True, extensions=[])
    step = chunk or max(1, len(data))
    messages: list[str] = []
    current = ""
    for start in range(0, len(data), step):
        client.receive_bytes(data[start : start + step])
        for frame in client.received_frames():
            assert frame.opcode in (Opcode.TEXT, Opcode.CONTINUATION)
            assert isinstance(frame.payload, str)
            current += frame.payload
            if frame.message_finished:
                messages.append(current)
                current = ""
    assert current == ""
    return messages


# Every header form: 7-bit, 16-bit and 64-bit lengths, at their edges, and multi-byte UTF-8
# (the length is in bytes, not characters).
TEXTS = [
    "",
    "a",
    "x" * 125,
    "x" * 126,
    "é" * 63,  # 126 bytes
    "y" * 65535,
    "z" * 65536,
    "€" * 30_000,  # 90,000 bytes
    '{"table":"trade"}',
]


def test_encode_text_frames_decodes_with_wsproto() -> None:
    data = encode_text_frames(TEXTS)
    assert decode_frames(data) == TEXTS
    assert decode_frames(data, chunk=4093) == TEXTS  # headers and UTF-8 split across reads


async def test_queued_frames_go_out_in_one_write_intact_and_in_order(
    autojump_clock: trio.testing.MockClock, writes: list[bytes]
) -> None:
    texts = [orjson.dumps({"n": i, "pad": "é" * (i % 7)}).decode() for i in range(100)]
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (emulator, ws):
            connection = emulator.connections[0]
            sent_before = connection.messages_sent
            writes.clear()
            for text in texts:  # no await in between: all queued before the sender runs
                connection.send_raw(text)
            assert connection.queued == len(texts)
            received = [await ws.get_message() for _ in texts]
            assert received == texts
            assert writes == [encode_text_frames(texts)]
            assert connection.messages_sent == sent_before + len(texts)


async def test_large_and_mixed_frames_split_into_bounded_writes_in_order(
    autojump_clock: trio.testing.MockClock, writes: list[bytes]
) -> None:
    texts = [*TEXTS, *(f"small {i}" for i in range(50)), "big " * 40_000, "last"]
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0, max_queued_frames=1000) as (emulator, ws):
            connection = emulator.connections[0]
            writes.clear()
            for text in texts:
                connection.send_raw(text)
            received = [await ws.get_message() for _ in texts]
            data_writes = list(writes)  # before the close frame is written
    assert received == texts
    batches = [decode_frames(write) for write in data_writes]
    assert [text for batch in batches for text in batch] == texts
    assert 1 < len(batches) < len(texts)
    # A batch only grows past BATCH_CHARS by the frame that crossed it.
    assert all(sum(map(len, batch[:-1])) < BATCH_CHARS for batch in batches)


async def test_slow_client_still_closed_with_1008_while_a_batch_is_stuck(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = 20
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0, max_queued_frames=limit) as (emulator, ws):
            connection = emulator.connections[0]
            connection.stall()
            for i in range(5):
                connection.send_raw(f"early {i}")
            await trio.sleep(1)  # the sender takes those five and blocks writing them
            assert connection.queued == 0
            for i in range(limit):
                connection.send_raw(f"late {i}")
            assert connection.queued == limit and connection.close_reason is None
            connection.send_raw("one too many")  # the bound holds: shed, not grown
            assert connection.queued == 1  # only the close request is left
            await trio.sleep(5)
            connection.unstall()
            received = []
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    received.append(await ws.get_message())
    assert received == [f"early {i}" for i in range(5)]  # then the close, nothing queued after
    assert info.value.reason is not None and info.value.reason.code == 1008
    assert connection.close_reason == SLOW_CLIENT


def trade_recording(path: Path, count: int) -> Path:
    partial = {"table": "trade", "action": "partial", "keys": [], "filter": {}, "data": []}
    lines = [orjson.dumps({"t": 100.0, "dir": "recv", "frame": orjson.dumps(partial).decode()})]
    for i in range(count):
        insert = {"table": "trade", "action": "insert", "data": [{"symbol": "XBTUSD", "n": i}]}
        frame = orjson.dumps(insert).decode()
        lines.append(orjson.dumps({"t": 100.0 + i / 100, "dir": "recv", "frame": frame}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def test_replay_arrives_in_order_paced_by_a_small_queue(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = trade_recording(tmp_path / "trades.jsonl", 1000)
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(replay=str(path), max_queued_frames=8) as (emulator, ws):
            await ws.send_message('{"op":"subscribe","args":["trade"]}')
            assert orjson.loads(await ws.get_message())["success"] is True
            assert orjson.loads(await ws.get_message())["action"] == "partial"
            numbers = []
            for _ in range(1000):
                numbers.append(orjson.loads(await ws.get_message())["data"][0]["n"])
                assert emulator.connections[0].queued <= 8
            assert emulator.connections[0].close_reason is None
    assert numbers == list(range(1000))


async def test_replay_timing_is_kept(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = trade_recording(tmp_path / "trades.jsonl", 300)  # one frame per 10 ms recorded
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(replay=str(path), speed=2.0) as (_, ws):
            await ws.send_message('{"op":"subscribe","args":["trade"]}')
            await ws.get_message()  # ack
            await ws.get_message()  # partial, at the origin
            start = trio.current_time()
            times = []
            for _ in range(300):
                await ws.get_message()
                times.append(trio.current_time() - start)
    assert times == pytest.approx([i / 100 / 2 for i in range(300)])


@pytest.mark.parametrize("kind", [FaultKind.CLOSE, FaultKind.DROP])
async def test_scripted_fault_fires_at_its_count_inside_a_burst(
    kind: FaultKind, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = trade_recording(tmp_path / "trades.jsonl", 500)
    with trio.fail_after(TIMEOUT):
        async with open_emulator(listen=False, replay=str(path), clock=virtual_clock()) as emulator:
            emulator.schedule_fault(kind, connection=0, after_messages=137)
            async with emulator.open_memory_websocket() as ws:
                await ws.send_message('{"op":"subscribe","args":["trade"]}')
                received = []
                with pytest.raises(ConnectionClosed) as info:
                    while True:
                        received.append(await ws.get_message())
    assert len(received) == 137  # welcome, ack, partial, then 134 trades
    assert orjson.loads(received[-1])["data"][0]["n"] == 133
    assert info.value.reason is not None
    assert info.value.reason.code == (1000 if kind is FaultKind.CLOSE else 1006)
    assert [(r.kind, r.after_messages) for r in emulator.fault_log] == [(kind, 137)]


async def test_fault_scheduled_while_the_sender_waits_is_not_overshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with emulator_and_ws(max_events=0) as (emulator, ws):
            connection = emulator.connections[0]
            await trio.sleep(1)  # the sender is idle, waiting for frames
            after = connection.messages_sent + 3
            emulator.schedule_fault(FaultKind.DROP, connection=0, after_messages=after)
            for i in range(10):
                connection.send_raw(f"frame {i}")
            closed = await expect_closed_after(ws, ["frame 0", "frame 1", "frame 2"])
    assert closed.reason is not None and closed.reason.code == 1006
    assert [(r.kind, r.after_messages) for r in emulator.fault_log] == [(FaultKind.DROP, after)]


async def expect_closed_after(ws: WebSocketConnection, expected: list[str]) -> ConnectionClosed:
    received = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            received.append(await ws.get_message())
    assert received == expected
    return info.value
