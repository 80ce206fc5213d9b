"""The client's websocket connection (``_connection``): messages, pings and the close handshake.

Mostly against a trio-websocket server (``real_server``), so every frame we send is parsed by
wsproto and every frame we read was written by it; a ``RawServer`` where a peer must misbehave
in time (never answering, never reading, hanging up). Every test runs under ``trio.fail_after``
on the virtual (autojump) clock, so a hang fails at once instead of stalling the suite.
"""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from trio_websocket import CloseReason, ConnectionClosed

from bitmex_trio_websocket._websocket import _frames as wire

from .helpers import (
    TIMEOUT,
    RawServer,
    close_body,
    collect,
    connect,
    drain_until_closed,
    raw_server,
    real_server,
    reason_of,
    server_frame,
)


async def test_text_messages_both_ways(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.send_message("hello")
            assert await server.get_message() == "hello"
            await server.send_message('{"info":"Welcome"}')
            assert await client.get_message() == b'{"info":"Welcome"}'
            assert client.closed is None


@pytest.mark.parametrize("text", ["ünïcödé ✓ 漢字 🚀", "", "a" * 125, "b" * 126, "c" * 65536])
async def test_non_ascii_and_every_length_encoding_both_ways(
    autojump_clock: trio.abc.Clock, text: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.send_message(text)
            assert await server.get_message() == text
            await server.send_message(text)
            assert (await client.get_message()).decode("utf-8") == text


async def test_one_mebibyte_messages_both_ways(autojump_clock: trio.abc.Clock) -> None:
    text = "".join(chr(0x20 + i % 90) for i in range(1 << 20))
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.send_message(text)
            assert await server.get_message() == text
            await server.send_message(text)
            assert await client.get_message() == text.encode()


async def test_many_messages_arrive_in_order(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            for i in range(200):
                await server.send_message(f'{{"n":{i}}}')
            got = await collect(client, 200)
            assert [json.loads(m)["n"] for m in got] == list(range(200))
            for i in range(200):
                await client.send_message(str(i))
            assert [await server.get_message() for _ in range(200)] == [str(i) for i in range(200)]


async def test_server_ping_is_answered_with_its_payload(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server), trio.open_nursery() as nursery:
            nursery.start_soon(drain_until_closed, client)
            with trio.fail_after(5):
                await server.ping(b"are you there")  # returns once the matching pong arrives
                await server.ping(b"")
            # The connection is still good both ways.
            await server.send_message("after")
            await client.send_message("still here")
            assert await server.get_message() == "still here"
            nursery.cancel_scope.cancel()


async def test_unsolicited_pong_is_ignored(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await server.pong(b"unasked")
            await server.send_message("data")
            assert await client.get_message() == b"data"
            assert client.closed is None


@pytest.mark.parametrize(("code", "reason"), [(1000, "Bye"), (1001, None), (4000, "ünï")])
async def test_server_initiated_close(
    autojump_clock: trio.abc.Clock, code: int, reason: str | None
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await server.send_message("one")
            await server.send_message("two")
            async with trio.open_nursery() as nursery:
                # The server's aclose returns only once our echo has arrived.
                nursery.start_soon(server.aclose, code, reason)
                got, why = await drain_until_closed(client)
            assert got == [b"one", b"two"]  # data sent before the close is delivered first
            assert (why.code, why.reason) == (code, reason)
            assert client.closed is not None
            assert (client.closed.code, client.closed.reason) == (code, reason)
            # The server saw our echo: same code and reason.
            assert server.closed is not None
            assert (server.closed.code, server.closed.reason) == (code, reason)
            # Closed means closed: reading again and sending both refuse.
            with pytest.raises(ConnectionClosed) as again:
                await client.receive_messages()
            assert reason_of(again.value).code == code
            with pytest.raises(ConnectionClosed):
                await client.send_message("too late")
            await client.aclose()  # and closing a closed connection is fine


async def test_client_aclose_completes_the_close_handshake(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.aclose(1000, "client closed")
            with pytest.raises(ConnectionClosed) as info:
                await server.get_message()
            assert (reason_of(info.value).code, reason_of(info.value).reason) == (
                1000,
                "client closed",
            )
            assert client.closed is not None
            assert client.closed.code == 1000  # the server's reply
            with pytest.raises(ConnectionClosed):
                await client.send_message("after close")
            with pytest.raises(ConnectionClosed):
                await client.receive_messages()
            await client.aclose()  # idempotent


async def test_client_aclose_discards_data_in_flight(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            for i in range(10):
                await server.send_message(f"in flight {i}")
            await client.aclose(1000, "client closed")
            assert client.closed is not None
            assert client.closed.code == 1000
            with pytest.raises(ConnectionClosed) as info:
                await server.get_message()
            assert reason_of(info.value).reason == "client closed"


async def test_aclose_while_another_task_is_reading(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            results: list[tuple[list[bytes], CloseReason]] = []

            async def reader() -> None:
                results.append(await drain_until_closed(client))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await server.send_message("before")
                await trio.testing.wait_all_tasks_blocked()  # the reader is in receive_some
                await client.aclose(1000, "client closed")  # no BusyResourceError
            ((got, why),) = results
            assert got == [b"before"]
            assert why.code == 1000
            with pytest.raises(ConnectionClosed) as info:
                await server.get_message()
            assert (reason_of(info.value).code, reason_of(info.value).reason) == (
                1000,
                "client closed",
            )


async def test_aclose_on_connection_lost_is_quiet(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        raw = RawServer(server_stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw.handshake)
            client = await connect(client_stream)
        await server_stream.aclose()
        await client.aclose()
        assert client.closed is not None
        assert client.closed.code == 1006


async def test_server_message_too_big_for_the_client_is_1009(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server(max_message_size=1000) as (client, server):
            await server.send_message("x" * 1000)  # the limit is inclusive
            assert await client.get_message() == b"x" * 1000
            await server.send_message("x" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                await client.receive_messages()
            assert reason_of(info.value).code == 1009
            # We told the server why (wsproto parsed our close frame).
            with pytest.raises(ConnectionClosed) as seen:
                await server.get_message()
            assert reason_of(seen.value).code == 1009
            await client.aclose()


async def test_peer_hangs_up_without_close_frame_is_1006(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        async with real_server(streams=(client_stream, server_stream)) as (client, server):
            await server.send_message("last words")
            await server_stream.aclose()  # the TCP connection drops: no close frame
            got, why = await drain_until_closed(client)
            assert got == [b"last words"]
            assert why.code == 1006
            with pytest.raises(ConnectionClosed) as info:
                await client.send_message("anyone?")
            assert reason_of(info.value).code == 1006
            await client.aclose()


async def test_aclose_when_the_peer_never_answers_is_bounded(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            with trio.move_on_after(3) as scope:
                await client.aclose(1000, "client closed")
            assert scope.cancelled_caught  # it did wait for the reply...
            assert client.closed is not None
            # ... and still sent its close frame and closed the stream.
            assert await raw.read_close() == (1000, b"client closed")
            assert await raw.at_eof()
            with pytest.raises(ConnectionClosed):
                await client.send_message("after close")


async def test_aclose_when_the_peer_never_reads_is_bounded(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Lockstep streams have no buffer: a send blocks until the peer reads, like a full socket.
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.lockstep_stream_pair()
        raw = RawServer(server_stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw.handshake)
            client = await connect(client_stream)
        with trio.move_on_after(3) as scope:
            await client.aclose()
        assert scope.cancelled_caught
        with pytest.raises(trio.ClosedResourceError):
            await client_stream.send_all(b"x")  # the stream was closed anyway
        await server_stream.aclose()


async def test_aclose_after_server_close_frame_is_immediate(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(server_frame(wire.OP_CLOSE, close_body(1001, b"restart")))
            _, why = await drain_until_closed(client)
            assert (why.code, why.reason) == (1001, "restart")
            start = trio.current_time()
            await client.aclose()
            assert trio.current_time() == start
            assert await raw.read_close() == (1001, b"restart")  # the echo, once
            assert await raw.at_eof()


async def test_client_close_reason_is_truncated_to_a_valid_control_frame(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with real_server() as (client, server):
            await client.aclose(4000, "é" * 200)
            with pytest.raises(ConnectionClosed) as info:
                await server.get_message()
            reason = reason_of(info.value)
            assert reason.code == 4000
            assert reason.reason is not None
            assert set(reason.reason) == {"é"}
            assert len(reason.reason.encode()) <= 123


async def test_concurrent_senders_do_not_interleave_frames(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Lockstep streams make send_all yield mid-write, where interleaving would happen.
    with trio.fail_after(TIMEOUT):
        streams = trio.testing.lockstep_stream_pair()
        async with real_server(streams=streams) as (client, server):
            texts = [f"{i}:" + "x" * (i * 997 % 70000) for i in range(20)]
            got: list[str | bytes] = []

            async def server_reads() -> None:
                for _ in texts:
                    got.append(await server.get_message())

            async with trio.open_nursery() as senders:
                senders.start_soon(server_reads)
                for text in texts:
                    senders.start_soon(client.send_message, text)
            # wsproto parsed every frame: none was cut into by another.
            assert sorted(got) == sorted(texts)
            await client.aclose()
