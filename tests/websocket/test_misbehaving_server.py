"""The connection against a ``RawServer`` sending what no websocket library would.

Fragmented messages with controls inside, frames sent with the 101, every framing error (the
connection is failed with the RFC's code and the server told why), text that is not UTF-8,
close codes that may not be sent, hang-ups mid-frame. Every test runs under ``trio.fail_after``
on the autojump clock.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from bitmex_trio_websocket._websocket import _frames as wire

from .helpers import (
    TIMEOUT,
    close_body,
    collect,
    drain_until_closed,
    raw_server,
    reason_of,
    server_frame,
)


async def test_server_fragmented_message_with_controls_inside(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(
                server_frame(wire.OP_TEXT, b'{"table":', fin=False)
                + server_frame(wire.OP_PING, b"mid-message")
                + server_frame(wire.OP_CONTINUATION, '"trade","x":"ü'.encode(), fin=False)
            )
            # The ping is answered though the message is incomplete.
            assert await client.receive_messages() == []
            pong = await raw.read_frame()
            assert pong is not None
            assert (pong.opcode, pong.payload) == (wire.OP_PONG, b"mid-message")
            await raw.send(server_frame(wire.OP_CONTINUATION, b'"}'))
            assert await client.get_message() == '{"table":"trade","x":"ü"}'.encode()


async def test_server_close_inside_a_fragmented_message(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(server_frame(wire.OP_TEXT, b"complete"))
            await raw.send(server_frame(wire.OP_TEXT, b"never fini", fin=False))
            await raw.send(server_frame(wire.OP_CLOSE, close_body(1001, b"going away")))
            got, why = await drain_until_closed(client)
            assert got == [b"complete"]  # the unfinished message is not delivered
            assert (why.code, why.reason) == (1001, "going away")
            assert await raw.read_close() == (1001, b"going away")


async def test_server_fragmented_message_split_across_reads(
    autojump_clock: trio.abc.Clock,
) -> None:
    parts = [b"a" * 70000, b"b" * 10, b"", b"c" * 300]
    data = b"".join(
        server_frame(
            wire.OP_BINARY if i == 0 else wire.OP_CONTINUATION, part, fin=i == len(parts) - 1
        )
        for i, part in enumerate(parts)
    )
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw), trio.open_nursery() as nursery:

            async def trickle() -> None:
                for i in range(0, len(data), 997):
                    await raw.send(data[i : i + 997])
                    await trio.sleep(0.01)
                await raw.send(server_frame(wire.OP_TEXT, b"next"))

            nursery.start_soon(trickle)
            assert await collect(client, 2) == [b"".join(parts), b"next"]


async def test_pong_from_raw_server_view(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(
                server_frame(wire.OP_PING, b"\x00\xffbinary") + server_frame(wire.OP_PING)
            )
            assert await client.receive_messages() == []  # pings are no messages
            first, second = await raw.read_frame(), await raw.read_frame()
            assert first is not None and second is not None
            assert (first.opcode, first.payload) == (wire.OP_PONG, b"\x00\xffbinary")
            assert (second.opcode, second.payload) == (wire.OP_PONG, b"")


async def test_messages_sent_with_the_101_are_delivered(autojump_clock: trio.abc.Clock) -> None:
    frames = b"".join(server_frame(wire.OP_TEXT, b"m%d" % i) for i in range(3))
    with trio.fail_after(TIMEOUT):
        async with raw_server(then=frames) as (client, raw):
            # No further read is needed: the raw server sends nothing more.
            assert await client.get_message() == b"m0"
            assert await client.get_message() == b"m1"
            assert await client.get_message() == b"m2"
            await raw.send(server_frame(wire.OP_TEXT, b"m3"))
            assert await client.get_message() == b"m3"


async def test_ping_sent_with_the_101_is_answered(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server(then=server_frame(wire.OP_PING, b"early")) as (client, raw):
            # The server waits for its pong before sending anything else.
            with trio.fail_after(5):  # TooSlowError: the ping that came with the 101 is ignored
                pong = await raw.read_frame()
            assert pong is not None
            assert (pong.opcode, pong.payload) == (wire.OP_PONG, b"early")
            await raw.send(server_frame(wire.OP_TEXT, b"thanks"))
            assert await client.get_message() == b"thanks"


async def test_close_sent_with_the_101_is_reported_and_echoed(
    autojump_clock: trio.abc.Clock,
) -> None:
    then = server_frame(wire.OP_TEXT, b"welcome") + server_frame(
        wire.OP_CLOSE, close_body(1008, b"go away")
    )
    with trio.fail_after(TIMEOUT):
        async with raw_server(then=then) as (client, raw):
            # The server sends nothing more and waits for the echo.
            with trio.fail_after(5):
                got, why = await drain_until_closed(client)
            assert got == [b"welcome"]
            assert (why.code, why.reason) == (1008, "go away")
            with trio.fail_after(5):
                echo = await raw.read_close()
            assert echo == (1008, b"go away")
            assert client.closed is not None
            assert (client.closed.code, client.closed.reason) == (1008, "go away")


async def test_bad_frame_sent_with_the_101_fails_the_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    then = server_frame(wire.OP_TEXT, b"welcome") + server_frame(wire.OP_TEXT, b"hi", mask=b"abcd")
    with trio.fail_after(TIMEOUT):
        # connect_websocket succeeds (the upgrade did) and raises nothing undocumented; the
        # connection is failed like any other framing error.
        async with raw_server(then=then) as (client, raw):
            assert await raw.read_close() == (1002, b"masked frame from the server")
            assert await client.get_message() == b"welcome"  # good data before the bad frame
            with pytest.raises(ConnectionClosed) as info:
                await client.get_message()
            assert reason_of(info.value).code == 1002
            await client.aclose()
            assert await raw.at_eof()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (server_frame(wire.OP_TEXT, b"hi", mask=b"abcd"), 1002),
        (server_frame(wire.OP_TEXT, b"hi", rsv=0b100), 1002),
        (server_frame(0x3, b"hi"), 1002),
        (server_frame(0xB, b""), 1002),
        (server_frame(wire.OP_PING, b"x", fin=False), 1002),
        (server_frame(wire.OP_PING, b"x" * 126), 1002),
        (server_frame(wire.OP_CONTINUATION, b"x"), 1002),
        (server_frame(wire.OP_CLOSE, b"\x03"), 1002),
        (server_frame(wire.OP_TEXT, length=1001), 1009),  # header only: no payload needed
        (
            server_frame(wire.OP_TEXT, b"x" * 600, fin=False)
            + server_frame(wire.OP_CONTINUATION, length=401, fin=True),
            1009,
        ),
        # Close codes that may not be sent are not echoed: the connection fails with 1002.
        (server_frame(wire.OP_CLOSE, close_body(999)), 1002),
        (server_frame(wire.OP_CLOSE, close_body(1004, b"reserved")), 1002),
        (server_frame(wire.OP_CLOSE, close_body(1005)), 1002),
        (server_frame(wire.OP_CLOSE, close_body(1006, b"abnormal")), 1002),
        (server_frame(wire.OP_CLOSE, close_body(1015)), 1002),
        (server_frame(wire.OP_CLOSE, close_body(2000)), 1002),
        (server_frame(wire.OP_CLOSE, close_body(5000)), 1002),
        (server_frame(wire.OP_CLOSE, close_body(1000, b"bye \xff")), 1007),
        (server_frame(wire.OP_TEXT, b'{"x":"\xc0\xaf"}'), 1007),
        (
            server_frame(wire.OP_TEXT, b'{"x":"\xe2', fin=False)
            + server_frame(wire.OP_CONTINUATION, b'\x82"}'),
            1007,
        ),
    ],
    ids=[
        "masked",
        "rsv1",
        "opcode 3",
        "opcode 0xB",
        "fragmented ping",
        "long ping",
        "orphan continuation",
        "one-byte close",
        "oversize header",
        "oversize fragments",
        "close code 999",
        "close code 1004",
        "close code 1005 sent",
        "close code 1006 sent",
        "close code 1015 sent",
        "close code 2000",
        "close code 5000",
        "close reason not UTF-8",
        "text not UTF-8",
        "fragmented text not UTF-8",
    ],
)
async def test_framing_error_fails_the_connection_with_its_code(
    autojump_clock: trio.abc.Clock, frame: bytes, code: int
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server(max_message_size=1000) as (client, raw):
            await raw.send(server_frame(wire.OP_TEXT, b"fine"))
            assert await client.get_message() == b"fine"
            await raw.send(frame)
            got, why = await drain_until_closed(client)
            assert got == []
            assert why.code == code
            assert client.closed is not None and client.closed.code == code
            # The server is told why, in a close frame it can parse.
            sent_code, sent_reason = await raw.read_close()
            assert sent_code == code
            assert sent_reason.decode("utf-8")
            with pytest.raises(ConnectionClosed):
                await client.send_message("after failure")
            # aclose does not wait for a reply from a server that broke the protocol.
            await client.aclose()
            assert await raw.at_eof()


async def test_messages_before_a_framing_error_in_the_same_read_are_delivered(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(
                server_frame(wire.OP_TEXT, b"fine") + server_frame(wire.OP_TEXT, b"x", rsv=0b100)
            )
            got, why = await drain_until_closed(client)
            assert why.code == 1002
            assert got == [b"fine"]


async def test_text_that_is_not_utf8_is_not_delivered_nor_anything_after_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(
                server_frame(wire.OP_TEXT, "ünï".encode())
                + server_frame(wire.OP_TEXT, b"\xed\xa0\x80")  # a UTF-16 surrogate
                + server_frame(wire.OP_TEXT, b"after")
            )
            got, why = await drain_until_closed(client)
            assert got == ["ünï".encode()]
            assert why.code == 1007
            assert (await raw.read_close())[0] == 1007


async def test_eof_from_raw_server_is_1006(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(server_frame(wire.OP_TEXT, b"partial")[:4])
            await raw.stream.aclose()
            got, why = await drain_until_closed(client)
            assert got == []
            assert why.code == 1006


async def test_empty_close_frame_is_1005_and_echoed_empty(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.send(server_frame(wire.OP_CLOSE))
            _, why = await drain_until_closed(client)
            assert why.code == 1005
            echo = await raw.read_frame()
            assert echo is not None
            assert (echo.opcode, echo.payload) == (wire.OP_CLOSE, b"")
