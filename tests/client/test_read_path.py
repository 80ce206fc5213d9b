"""The reader's hot path keeps trio's rules while it skips work (docs/performance.rst, "Latency").

``ClientWebSocket.receive_messages`` takes its read lock without a checkpoint of its own when the
lock is free: the read is the checkpoint. These tests check what a caller relies on: a cancelled
caller is stopped at the read without losing data, and a closed connection still raises at a
checkpoint.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from bitmex_trio_websocket import ConnectionClosed
from tests.websocket.helpers import real_server

TIMEOUT = 10


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
