"""The reader's hot path keeps trio's rules while it skips work (docs/performance.rst, "Latency").

``ClientWebSocket.receive_messages`` takes its read lock without a checkpoint of its own when the
lock is free: the read is the checkpoint. These tests check what a caller relies on: a cancelled
caller is stopped at the read without losing data, and a closed connection still raises at a
checkpoint. And after handing a frame's changes out, the session's reader lets the woken
listeners run before it reads again: with frames waiting, each reaches its listener before the
next is read.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from bitmex_trio_websocket import Change, ConnectionClosed, open_bitmex_websocket
from bitmex_trio_websocket._websocket._frames import OP_TEXT, encode_frame
from tests.support.scripted_server import ScriptedServer
from tests.websocket.helpers import real_server

TIMEOUT = 10
URL = "wss://example.invalid/realtime"


class OneFrameReads(trio.abc.Stream):
    """The client's end of a memory stream. Once ``queue(frames)`` is called, those server
    frames wait behind whatever the peer sends next, as in a socket's buffer, and are read one
    per read; a read that finds a frame yields after taking it, as a socket's does."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.waiting: list[bytes] = []
        self.frames_read = 0  # of the queued frames

    def queue(self, frames: list[bytes]) -> None:
        self.waiting = frames

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self.waiting:
            return bytes(await self.inner.receive_some(max_bytes))
        await trio.lowlevel.checkpoint_if_cancelled()
        self.frames_read += 1
        frame = self.waiting.pop(0)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return frame

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


def trade_message(size: int) -> dict[str, Any]:
    row = {"symbol": "XBTUSD", "size": size, "price": 1.0}
    return {"table": "trade", "action": "insert", "data": [row]}


async def test_a_waiting_listener_gets_each_frame_before_the_next_read(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Frames already waiting are read one per read: after a frame's changes are handed out,
    # the reader lets the woken listener run before it reads the next frame (that read is not
    # on the listener's path; it was, before, at every frame: docs/performance.rst).
    trades = 5
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, keys={"trade": []})
            streams: list[OneFrameReads] = []

            async def connect() -> trio.abc.Stream:
                streams.append(OneFrameReads(await server.connect()))
                return streams[-1]

            async with open_bitmex_websocket(URL, connect=connect) as bws:
                async with aclosing(bws.events("trade", "XBTUSD")) as events:
                    assert isinstance(await events.__anext__(), Change)  # the empty partial
                    await trio.testing.wait_all_tasks_blocked()
                    (stream,) = streams
                    # Trades 1.. wait in the buffer while trade 0 arrives (its read is underway).
                    stream.queue(
                        [
                            encode_frame(OP_TEXT, orjson.dumps(trade_message(i)), None)
                            for i in range(1, trades)
                        ]
                    )
                    await server.push(trade_message(0))
                    seen: list[tuple[int, int]] = []
                    while len(seen) < trades:
                        item = await events.__anext__()
                        assert isinstance(item, Change)
                        seen.append((item.rows[0]["size"], stream.frames_read))
                    # Trade i came with the i-th queued frame read: the next one was not read yet.
                    assert seen == [(i, i) for i in range(trades)]
            nursery.cancel_scope.cancel()


async def test_a_cancelled_read_with_data_waiting_loses_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await server.send_message("first")
            await trio.testing.wait_all_tasks_blocked()  # the frame waits in the stream
            with trio.CancelScope() as scope:
                scope.cancel()
                await client.receive_messages()
                pytest.fail("a cancelled read must raise Cancelled at its checkpoint")
            assert scope.cancelled_caught
            assert await client.receive_messages() == [b"first"]


async def test_reading_a_closed_connection_is_a_checkpoint(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, _server):
            await client.aclose(1000, "done")
            with trio.CancelScope() as scope:
                scope.cancel()
                await client.receive_messages()
            assert scope.cancelled_caught  # Cancelled first, as any checkpoint
            with pytest.raises(ConnectionClosed):
                await client.receive_messages()
