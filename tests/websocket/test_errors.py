"""Every error the connection raises is the library's own and trio-websocket's.

``ConnectionClosed``, ``HandshakeError`` and ``ConnectionRejected`` from
``bitmex_trio_websocket`` subclass both ``BitMEXError`` and the trio-websocket class of the same
name: ``except BitMEXError`` and the 2021 library's ``except trio_websocket.ConnectionClosed``
both catch them, and they carry the structured fields (``reason`` with code and text;
``status_code``, ``headers``, ``body``). Checked for each way a connection ends or an upgrade
fails, on the autojump clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
import trio_websocket
from trio_websocket import CloseReason

import bitmex_trio_websocket as btw
from bitmex_trio_websocket._websocket import _frames as wire

from .helpers import (
    TIMEOUT,
    RawServer,
    close_body,
    connect,
    raw_server,
    server_frame,
)


async def end_by_server_close(raw: RawServer) -> None:
    await raw.send(server_frame(wire.OP_CLOSE, close_body(1001, b"maintenance")))


async def end_by_hang_up(raw: RawServer) -> None:
    await raw.stream.aclose()


async def end_by_protocol_error(raw: RawServer) -> None:
    await raw.send(server_frame(wire.OP_TEXT, b"hi", rsv=0b010))


async def end_by_bad_text(raw: RawServer) -> None:
    await raw.send(server_frame(wire.OP_TEXT, b"\xff"))


ENDINGS = {
    "server close": (end_by_server_close, 1001, "maintenance"),
    "hang-up": (end_by_hang_up, 1006, "connection lost"),
    "protocol error": (end_by_protocol_error, 1002, "reserved bits set"),
    "not UTF-8": (end_by_bad_text, 1007, "text message is not valid UTF-8"),
}


@pytest.mark.parametrize(("end", "code", "reason"), ENDINGS.values(), ids=ENDINGS.keys())
async def test_connection_closed_is_a_bitmex_error_and_trio_websockets(
    autojump_clock: trio.abc.Clock,
    end: Callable[[RawServer], Awaitable[None]],
    code: int,
    reason: str,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await end(raw)
            errors: list[btw.ConnectionClosed] = []
            with pytest.raises(btw.ConnectionClosed) as received:
                while True:
                    await client.receive_messages()
            errors.append(received.value)
            with pytest.raises(btw.ConnectionClosed) as sent:
                await client.send_message("after the end")
            errors.append(sent.value)
            for error in errors:
                assert isinstance(error, btw.BitMEXError)
                assert isinstance(error, trio_websocket.ConnectionClosed)  # the seed's except
                assert isinstance(error.reason, CloseReason)
                assert error.reason.code == code
                assert error.reason.reason is not None
                assert error.reason.reason.startswith(reason)
            await client.aclose()


async def test_connection_lost_while_sending_is_a_bitmex_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with raw_server() as (client, raw):
            await raw.stream.aclose()
            with pytest.raises(btw.ConnectionClosed) as info:
                await client.send_message("into the void")
            error = info.value
            assert isinstance(error, btw.BitMEXError)
            assert isinstance(error, trio_websocket.ConnectionClosed)
            assert error.reason is not None
            assert (error.reason.code, error.reason.reason) == (
                1006,
                "connection lost while sending",
            )


async def raw_reply(reply: bytes) -> BaseException:
    """What ``connect_websocket`` raises when the server answers the upgrade with ``reply``."""
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def serve() -> None:
        await RawServer(server_stream).read_request()
        await server_stream.send_all(reply)
        await server_stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        with pytest.raises(BaseException) as info:
            await connect(client_stream)
        await client_stream.aclose()
    return info.value


async def test_refused_upgrade_is_a_bitmex_error_and_trio_websockets(
    autojump_clock: trio.abc.Clock,
) -> None:
    body = b'{"error":{"message":"Rate limit exceeded","name":"HTTPError"}}'
    reply = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    with trio.fail_after(TIMEOUT):
        error = await raw_reply(reply)
    assert isinstance(error, btw.ConnectionRejected)
    assert isinstance(error, btw.HandshakeError)
    assert isinstance(error, btw.BitMEXError)
    assert isinstance(error, trio_websocket.ConnectionRejected)
    assert isinstance(error, trio_websocket.HandshakeError)
    assert error.status_code == 429
    assert (b"retry-after", b"30") in error.headers
    assert error.body == body


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "bad handshake response"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "without 'Upgrade: websocket'"),
        (b"HTTP/1.1 200 OK\r\nContent-Len", "closed connection"),
    ],
    ids=["not HTTP", "not an upgrade", "hang-up"],
)
async def test_failed_upgrade_is_a_bitmex_error_and_trio_websockets(
    autojump_clock: trio.abc.Clock, reply: bytes, reason: str
) -> None:
    with trio.fail_after(TIMEOUT):
        error = await raw_reply(reply)
    assert type(error) is btw.HandshakeError
    assert isinstance(error, btw.BitMEXError)
    assert isinstance(error, trio_websocket.HandshakeError)
    assert reason in str(error)


async def test_stream_broken_during_upgrade_is_a_bitmex_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(TIMEOUT):
        client_stream, server_stream = trio.testing.memory_stream_pair()
        await client_stream.aclose()
        with pytest.raises(btw.HandshakeError) as info:
            await connect(client_stream)
        await server_stream.aclose()
    assert isinstance(info.value, btw.BitMEXError)
    assert isinstance(info.value, trio_websocket.HandshakeError)
    assert str(info.value) == "connection lost during the handshake"
    assert isinstance(info.value.__cause__, trio.ClosedResourceError)
